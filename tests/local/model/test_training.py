"""Training: loss goes down, adapters are exactly the requested ones, base weights never
move, and exported/imported state reproduces runs bit for bit."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from tinkex.local.model import (
    AdamConfig,
    BaseModel,
    DatumArrays,
    LoraSpec,
    LoraWeights,
    ModelInputError,
    TrainableModel,
)
from tinkex.local.model.optim import AdamW

ADAM = AdamConfig(learning_rate=3e-3)


def _train(model: TrainableModel, batch: list[DatumArrays], steps: int) -> list[float]:
    losses = []
    for _ in range(steps):
        result = model.forward_backward(batch, "cross_entropy", forward_only=False)
        model.optim_step(ADAM)
        losses.append(result.metrics["loss:sum"])
    return losses


def _forward_logprobs(model: TrainableModel, batch: list[DatumArrays]) -> list[np.ndarray]:
    result = model.forward_backward(batch, "cross_entropy", forward_only=True)
    return [out["logprobs"] for out in result.outputs]


def test_loss_falls_over_20_steps(base: BaseModel, sft_batch: list[DatumArrays]) -> None:
    model = TrainableModel(base, LoraSpec(rank=8, seed=0))
    losses = _train(model, sft_batch, 20)
    tokens = sum(d.tokens.size for d in sft_batch)
    assert losses[0] / tokens == pytest.approx(np.log(259), abs=0.1)  # untrained: ~uniform
    assert losses[-1] < 0.5 * losses[0]
    assert model.optim_steps == 20


def test_fresh_adapter_leaves_the_base_output_unchanged(
    base: BaseModel, sft_batch: list[DatumArrays]
) -> None:
    model = TrainableModel(base, LoraSpec(rank=4, seed=3))
    for datum, logprobs in zip(sft_batch, _forward_logprobs(model, sft_batch), strict=True):
        logits = base.logits(torch.from_numpy(datum.tokens)[None])[0]
        expected = torch.log_softmax(logits, -1).gather(
            -1, torch.from_numpy(datum.inputs["target_tokens"])[:, None]
        )
        np.testing.assert_allclose(logprobs, expected[:, 0].numpy(), atol=1e-5)


def test_same_seed_same_adapter(base: BaseModel) -> None:
    a = TrainableModel(base, LoraSpec(rank=4, seed=7)).adapter_state()
    b = TrainableModel(base, LoraSpec(rank=4, seed=7)).adapter_state()
    c = TrainableModel(base, LoraSpec(rank=4, seed=8)).adapter_state()
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert all(torch.count_nonzero(v) == 0 for k, v in a.items() if "lora_B" in k)


@pytest.mark.parametrize(
    ("attn", "mlp", "unembed"),
    [(True, False, False), (False, True, False), (False, False, True), (True, True, True)],
)
def test_train_flags_select_adapters_and_base_stays_frozen(
    base: BaseModel, sft_batch: list[DatumArrays], attn: bool, mlp: bool, unembed: bool
) -> None:
    spec = LoraSpec(rank=2, seed=0, train_attn=attn, train_mlp=mlp, train_unembed=unembed)
    model = TrainableModel(base, spec)
    modules = {
        k.removeprefix("base_model.model.").rsplit(".lora_", 1)[0] for k in model.adapter_state()
    }
    expected = set()
    for i in range(base.config.num_layers):
        if attn:
            expected |= {f"model.layers.{i}.self_attn.{p}_proj" for p in "qkvo"}
        if mlp:
            expected |= {f"model.layers.{i}.mlp.{p}_proj" for p in ("gate", "up", "down")}
    if unembed:
        expected.add("lm_head")
    assert modules == expected
    before = {k: t.clone() for k, t in base.weights.tensors.items()}
    initial = model.adapter_state()
    _train(model, sft_batch, 2)
    assert all(torch.equal(before[k], t) for k, t in base.weights.tensors.items())
    assert all(not t.requires_grad and t.grad is None for t in base.weights.tensors.values())
    after = model.adapter_state()
    assert all(not torch.equal(initial[k], after[k]) for k in after if "lora_B" in k)


def test_gradients_accumulate_until_optim_step(
    base: BaseModel, sft_batch: list[DatumArrays]
) -> None:
    whole = TrainableModel(base, LoraSpec(rank=4, seed=0))
    whole.forward_backward(sft_batch, "cross_entropy", forward_only=False)
    whole_metrics = whole.optim_step(ADAM)
    split = TrainableModel(base, LoraSpec(rank=4, seed=0))
    split.forward_backward(sft_batch[:1], "cross_entropy", forward_only=False)
    split.forward_backward(sft_batch[1:], "cross_entropy", forward_only=False)
    split_metrics = split.optim_step(ADAM)
    assert split_metrics["grad_norm:mean"] == pytest.approx(whole_metrics["grad_norm:mean"], 1e-5)
    assert split_metrics["learning_rate:mean"] == pytest.approx(3e-3)
    a, b = whole.adapter_state(), split.adapter_state()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5)
    # ... and the step cleared them.
    assert whole.optim_step(AdamConfig(learning_rate=0.0))["grad_norm:mean"] == 0.0


def test_padding_does_not_change_results(base: BaseModel, sft_batch: list[DatumArrays]) -> None:
    model = TrainableModel(base, LoraSpec(rank=4, seed=0))
    _train(model, sft_batch, 1)
    together = _forward_logprobs(model, sft_batch)
    for datum, logprobs in zip(sft_batch, together, strict=True):
        np.testing.assert_allclose(_forward_logprobs(model, [datum])[0], logprobs, atol=1e-5)


def test_save_load_gives_bitwise_identical_logprobs(
    base: BaseModel, sft_batch: list[DatumArrays]
) -> None:
    spec = LoraSpec(rank=4, seed=0)
    trained = TrainableModel(base, spec)
    _train(trained, sft_batch, 3)
    state = trained.adapter_state()
    assert all(t.is_contiguous() and t.device.type == "cpu" for t in state.values())
    restored = TrainableModel(base, LoraSpec(rank=4, seed=99))
    restored.load_adapter_state(state)
    expected = _forward_logprobs(trained, sft_batch)
    for a, b in zip(expected, _forward_logprobs(restored, sft_batch), strict=True):
        np.testing.assert_array_equal(a, b)
    # The snapshot is a copy: training on does not change it.
    _train(trained, sft_batch, 1)
    assert all(torch.equal(state[k], v) for k, v in restored.adapter_state().items())
    # LoraWeights round-trip.
    weights = restored.lora_weights()
    again = LoraWeights.from_state_dict(base, spec, weights.state_dict())
    assert all(torch.equal(again.state_dict()[k], v) for k, v in state.items())


def test_interrupted_training_continues_exactly(
    base: BaseModel, sft_batch: list[DatumArrays]
) -> None:
    spec = LoraSpec(rank=4, seed=5)
    straight = TrainableModel(base, spec)
    _train(straight, sft_batch, 6)

    first = TrainableModel(base, spec)
    _train(first, sft_batch, 3)
    adapter, optimizer = first.adapter_state(), first.optimizer_state()
    assert optimizer["step"].dtype == torch.int64 and int(optimizer["step"]) == 3
    del first
    resumed = TrainableModel(base, LoraSpec(rank=4, seed=123))
    resumed.load_adapter_state(adapter)
    resumed.load_optimizer_state(optimizer)
    assert resumed.optim_steps == 3
    _train(resumed, sft_batch, 3)

    a, b = straight.adapter_state(), resumed.adapter_state()
    assert all(torch.equal(a[k], b[k]) for k in a)
    sa, sb = straight.optimizer_state(), resumed.optimizer_state()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_state_mismatches_are_reported(base: BaseModel) -> None:
    rank8 = TrainableModel(base, LoraSpec(rank=8, seed=0))
    rank16 = TrainableModel(base, LoraSpec(rank=16, seed=0))
    with pytest.raises(ModelInputError, match=r"has shape \(8, 128\), expected \(16, 128\)"):
        rank16.load_adapter_state(rank8.adapter_state())
    with pytest.raises(ModelInputError, match=r"has shape \(8, 128\), expected \(16, 128\)"):
        rank16.load_optimizer_state(rank8.optimizer_state())
    mlp_only = TrainableModel(base, LoraSpec(rank=8, seed=0, train_attn=False))
    with pytest.raises(
        ModelInputError, match=re.escape("missing 'base_model.model.model.layers.0.self_attn")
    ):
        rank8.load_adapter_state(mlp_only.adapter_state())
    with pytest.raises(
        ModelInputError, match=re.escape("unexpected key 'base_model.model.model.layers.0")
    ):
        mlp_only.load_adapter_state(rank8.adapter_state())
    with pytest.raises(
        ModelInputError, match=re.escape("optimizer state is missing 'exp_avg.base_model")
    ):
        rank8.load_optimizer_state(mlp_only.optimizer_state())
    bad_step = rank8.optimizer_state() | {"step": torch.tensor(1.5)}
    with pytest.raises(ModelInputError, match="'step' must be an integer"):
        rank8.load_optimizer_state(bad_step)
    nan_state = rank8.adapter_state()
    next(iter(nan_state.values()))[0, 0] = float("nan")
    with pytest.raises(ModelInputError, match="contains NaN"):
        rank8.load_adapter_state(nan_state)


def test_non_finite_gradient_is_refused(base: BaseModel, sft_batch: list[DatumArrays]) -> None:
    model = TrainableModel(base, LoraSpec(rank=2, seed=0))
    before = model.adapter_state()
    datum = sft_batch[0]
    n = datum.tokens.size
    wild = DatumArrays(
        datum.tokens,
        {
            "target_tokens": datum.inputs["target_tokens"],
            "logprobs": np.full(n, -1e4, dtype=np.float32),  # ratio exp(~1e4) overflows
            "advantages": np.ones(n, dtype=np.float32),
        },
    )
    model.forward_backward([wild], "importance_sampling", forward_only=False)
    with pytest.raises(ModelInputError, match="gradient is not finite"):
        model.optim_step(ADAM)
    after = model.adapter_state()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.optim_steps == 0
    assert model.optim_step(AdamConfig(learning_rate=0.0))["grad_norm:mean"] == 0.0


def test_adamw_matches_torch() -> None:
    generator = torch.Generator().manual_seed(0)
    start = torch.randn(5, 3, generator=generator)
    grads = [torch.randn(5, 3, generator=generator) * 10 for _ in range(4)]
    for config in (
        AdamConfig(learning_rate=1e-2, beta1=0.8, beta2=0.99, eps=1e-8, weight_decay=0.1),
        AdamConfig(learning_rate=1e-2, grad_clip_norm=1.0),
    ):
        ours = start.clone()
        theirs = start.clone().requires_grad_(True)
        optimizer = AdamW({"p": ours})
        reference = torch.optim.AdamW(
            [theirs],
            lr=config.learning_rate,
            betas=(config.beta1, config.beta2),
            eps=config.eps,
            weight_decay=config.weight_decay,
        )
        for grad in grads:
            ours.grad = grad.clone()
            metrics = optimizer.step(config)
            assert metrics["grad_norm:mean"] == pytest.approx(float(grad.norm()), rel=1e-5)
            theirs.grad = grad.clone()
            if config.grad_clip_norm:
                torch.nn.utils.clip_grad_norm_([theirs], config.grad_clip_norm)
            reference.step()
            assert ours.grad is None
        torch.testing.assert_close(ours, theirs.detach(), atol=1e-6, rtol=1e-5)
