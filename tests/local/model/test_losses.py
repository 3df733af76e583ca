"""Loss functions: values and gradients on hand-checkable numbers, clipping, config checks,
and the same losses end to end through ``TrainableModel.forward_backward``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tinkex.local.model import AdamConfig, BaseModel, DatumArrays, LoraSpec, TrainableModel
from tinkex.local.model.errors import ModelInputError
from tinkex.local.model.losses import elementwise_loss, resolve_loss


def _loss_and_grad(
    loss_fn: str,
    logp: list[float],
    config: dict[str, float] | None = None,
    **inputs: list[float],
) -> tuple[list[float], list[float]]:
    definition, full_config = resolve_loss(loss_fn, config)
    lp = torch.tensor(logp, dtype=torch.float64, requires_grad=True)
    tensors = {k: torch.tensor(v, dtype=torch.float64) for k, v in inputs.items()}
    loss = elementwise_loss(definition.name, full_config, lp, tensors)
    torch.autograd.backward(loss.sum())
    assert lp.grad is not None
    return loss.tolist(), lp.grad.tolist()


LN2 = math.log(2.0)


def test_cross_entropy() -> None:
    loss, grad = _loss_and_grad("cross_entropy", [-1.0, -2.0, -3.0], weights=[1.0, 0.5, 0.0])
    assert loss == pytest.approx([1.0, 1.0, 0.0])
    assert grad == pytest.approx([-1.0, -0.5, 0.0])
    loss, grad = _loss_and_grad("cross_entropy", [-1.0, -2.0])
    assert loss == pytest.approx([1.0, 2.0]) and grad == pytest.approx([-1.0, -1.0])


def test_importance_sampling() -> None:
    # ratio = exp(logp - q) = [2, 1]
    loss, grad = _loss_and_grad(
        "importance_sampling", [-LN2, -1.0], logprobs=[-2 * LN2, -1.0], advantages=[1.0, -3.0]
    )
    assert loss == pytest.approx([-2.0, 3.0])
    assert grad == pytest.approx([-2.0, 3.0])  # d(-ratio*A)/dlogp = -ratio*A


def test_ppo_clips_only_in_the_direction_of_the_advantage() -> None:
    logp = [-0.0, -0.0, -2 * LN2, -2 * LN2, -1.0]
    q = [-LN2, -LN2, -LN2, -LN2, -1.0]  # ratios 2, 2, 0.5, 0.5, 1
    adv = [1.0, -1.0, 1.0, -1.0, 2.0]
    loss, grad = _loss_and_grad("ppo", logp, logprobs=q, advantages=adv)
    # ratio 2, A>0: clipped to 1.2, no gradient; ratio 2, A<0: unclipped -2 is the min.
    # ratio 0.5, A>0: unclipped 0.5 is the min; ratio 0.5, A<0: clipped to 0.8, no gradient.
    assert loss == pytest.approx([-1.2, 2.0, -0.5, 0.8, -2.0])
    assert grad == pytest.approx([0.0, 2.0, -0.5, 0.0, -2.0])
    loss, grad = _loss_and_grad(
        "ppo",
        [0.0],
        {"clip_low_threshold": 0.5, "clip_high_threshold": 1.5},
        logprobs=[-LN2],
        advantages=[1.0],
    )
    assert loss == pytest.approx([-1.5]) and grad == pytest.approx([0.0])


def test_cispo_uses_the_clipped_ratio_as_a_constant_weight() -> None:
    logp = [-1.0, -1.0, -1.0]
    q = [-1.0 - math.log(8.0), -1.0 + LN2, -1.0]  # ratios 8 (clipped to 4), 0.5, 1
    adv = [1.0, 2.0, -1.0]
    loss, grad = _loss_and_grad("cispo", logp, logprobs=q, advantages=adv)
    assert loss == pytest.approx([4.0, 1.0, -1.0])  # -clip(ratio) * logp * A
    assert grad == pytest.approx([-4.0, -1.0, 1.0])  # -clip(ratio) * A: ratio is not differentiated
    _, grad = _loss_and_grad(
        "cispo",
        [-1.0],
        {"clip_low_threshold": 0.0, "clip_high_threshold": 2.0},
        logprobs=[-1.0 - math.log(8.0)],
        advantages=[1.0],
    )
    assert grad == pytest.approx([-2.0])


def test_dro_quadratic_penalty() -> None:
    loss, grad = _loss_and_grad(
        "dro", [-1.0, -3.0], {"beta": 0.1}, logprobs=[-2.0, -3.0], advantages=[2.0, 1.0]
    )
    # -(logp*A - beta/2*(logp - q)^2)
    assert loss == pytest.approx([2.0 + 0.05, 3.0])
    assert grad == pytest.approx([-2.0 + 0.1, -1.0])  # -A + beta*(logp - q)
    loss, _ = _loss_and_grad("dro", [-1.0], logprobs=[-2.0], advantages=[0.0])
    assert loss == pytest.approx([0.5 * 0.05])  # default beta 0.05


def test_weights_scale_rl_losses() -> None:
    loss, grad = _loss_and_grad(
        "importance_sampling",
        [-1.0, -1.0],
        logprobs=[-1.0, -1.0],
        advantages=[1.0, 1.0],
        weights=[1.0, 0.0],
    )
    assert loss == pytest.approx([-1.0, 0.0]) and grad == pytest.approx([-1.0, 0.0])


@pytest.mark.parametrize(
    ("loss_fn", "config", "message"),
    [
        ("mse", None, "loss_fn 'mse' is not supported (supported: cross_entropy, importance"),
        ("cross_entropy", {"beta": 0.1}, "key 'beta' is not accepted by loss_fn 'cross_entropy'"),
        ("ppo", {"beta": 0.1}, "accepted keys: clip_low_threshold, clip_high_threshold"),
        ("ppo", {"clip_low_threshold": "low"}, "loss_fn_config['clip_low_threshold'] must be a"),
        ("ppo", {"clip_low_threshold": float("nan")}, "must be finite"),
        ("cispo", {"clip_low_threshold": -0.1}, "must be >= 0, got -0.1"),
        ("ppo", {"clip_low_threshold": 1.5}, "clip_high_threshold'] (1.2) must be >= clip_low"),
        ("dro", {"beta": -1.0}, "loss_fn_config['beta'] must be >= 0, got -1.0"),
        ("dro", {"beta": True}, "must be a number, got True"),
    ],
)
def test_bad_loss_fn_or_config(loss_fn: str, config: dict[str, object], message: str) -> None:
    with pytest.raises(ModelInputError) as info:
        resolve_loss(loss_fn, config)  # type: ignore[arg-type]
    assert message in str(info.value)


# --- end to end --------------------------------------------------------------------


def _grad_norm(model: TrainableModel) -> float:
    return model.optim_step(AdamConfig(learning_rate=0.0))["grad_norm:mean"]


def _rl_batch(
    sft_batch: list[DatumArrays], logprobs: list[np.ndarray], shift: float, adv: float
) -> list[DatumArrays]:
    return [
        DatumArrays(
            d.tokens,
            {
                "target_tokens": d.inputs["target_tokens"],
                "logprobs": (lp - shift).astype(np.float32),
                "advantages": np.full(lp.size, adv, dtype=np.float32),
            },
        )
        for d, lp in zip(sft_batch, logprobs, strict=True)
    ]


def test_losses_end_to_end(base: BaseModel, sft_batch: list[DatumArrays]) -> None:
    model = TrainableModel(base, LoraSpec(rank=4, seed=1))
    ce = model.forward_backward(sft_batch, "cross_entropy", forward_only=False)
    ce_norm = _grad_norm(model)
    assert ce_norm > 0
    logprobs = [out["logprobs"] for out in ce.outputs]
    for out, datum in zip(ce.outputs, sft_batch, strict=True):
        assert out["logprobs"].dtype == np.float32 == out["elementwise_loss"].dtype
        assert out["logprobs"].shape == datum.tokens.shape
        np.testing.assert_allclose(out["elementwise_loss"], -out["logprobs"], rtol=1e-6)
        assert (out["logprobs"] < 0).all()
    assert ce.metrics["loss:sum"] == pytest.approx(-sum(float(lp.sum()) for lp in logprobs))
    assert ce.loss_fn_output_type == "ArrayRecord"

    # On-policy importance sampling with A = 1 has the cross-entropy gradient.
    on_policy = _rl_batch(sft_batch, logprobs, shift=0.0, adv=1.0)
    result = model.forward_backward(on_policy, "importance_sampling", forward_only=False)
    assert _grad_norm(model) == pytest.approx(ce_norm, rel=1e-4)
    total = sum(lp.size for lp in logprobs)
    assert result.metrics["loss:sum"] == pytest.approx(-total, rel=1e-5)

    # PPO with every ratio = e (> 1.2) and A > 0: all clipped, no gradient.
    result = model.forward_backward(
        _rl_batch(sft_batch, logprobs, shift=1.0, adv=1.0), "ppo", forward_only=False
    )
    assert _grad_norm(model) == 0.0
    assert result.metrics["loss:sum"] == pytest.approx(-1.2 * total, rel=1e-5)
    # ... but with a wider clip range the same batch has a gradient (e times CE's).
    model.forward_backward(
        _rl_batch(sft_batch, logprobs, shift=1.0, adv=1.0),
        "ppo",
        {"clip_high_threshold": 10.0},
        forward_only=False,
    )
    assert _grad_norm(model) == pytest.approx(math.e * ce_norm, rel=1e-4)

    # CISPO with ratio e^2 clipped to 4: 4 times the CE gradient.
    model.forward_backward(
        _rl_batch(sft_batch, logprobs, shift=2.0, adv=1.0), "cispo", forward_only=False
    )
    assert _grad_norm(model) == pytest.approx(4.0 * ce_norm, rel=1e-4)

    # DRO on-policy: the penalty has no gradient, A = 0.5 halves the CE gradient.
    result = model.forward_backward(
        _rl_batch(sft_batch, logprobs, shift=0.0, adv=0.5), "dro", forward_only=False
    )
    assert _grad_norm(model) == pytest.approx(0.5 * ce_norm, rel=1e-4)
    assert result.metrics["loss:sum"] == pytest.approx(
        -0.5 * sum(float(lp.sum()) for lp in logprobs), rel=1e-5
    )


def test_forward_only_leaves_no_gradient(base: BaseModel, sft_batch: list[DatumArrays]) -> None:
    model = TrainableModel(base, LoraSpec(rank=4, seed=1))
    fwd = model.forward_backward(sft_batch, "cross_entropy", forward_only=True)
    assert _grad_norm(model) == 0.0
    bwd = model.forward_backward(sft_batch, "cross_entropy", forward_only=False)
    assert fwd.metrics == bwd.metrics
    for a, b in zip(fwd.outputs, bwd.outputs, strict=True):
        np.testing.assert_array_equal(a["logprobs"], b["logprobs"])
