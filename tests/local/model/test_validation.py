"""Bad user input raises ModelInputError naming the argument, the value and what is allowed,
before any work is done."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tinkex.local.model import (
    AdamConfig,
    BaseModel,
    DatumArrays,
    LoraSpec,
    ModelInputError,
    Sampler,
    TrainableModel,
)


@pytest.fixture(scope="module")
def model(base: BaseModel) -> TrainableModel:
    return TrainableModel(base, LoraSpec(rank=2, seed=0))


def _datum(tokens: Any, **inputs: Any) -> DatumArrays:
    return DatumArrays(np.asarray(tokens), {k: np.asarray(v) for k, v in inputs.items()})


GOOD = _datum([1, 2, 3], target_tokens=[2, 3, 4])
RL = {"logprobs": [-1.0, -1.0, -1.0], "advantages": [1.0, 0.0, -1.0]}


@pytest.mark.parametrize(
    ("datum", "loss_fn", "message"),
    [
        (
            _datum([1, 70000, 2], target_tokens=[1, 2, 3]),
            "cross_entropy",
            "datum 1: model_input token id 70000 is outside the vocabulary [0, 259)",
        ),
        (
            _datum([1, -1, 2], target_tokens=[1, 2, 3]),
            "cross_entropy",
            "datum 1: model_input token id -1 is outside the vocabulary [0, 259)",
        ),
        (
            _datum([1, 2, 3], target_tokens=[1, 2, 259]),
            "cross_entropy",
            "datum 1: loss_fn_inputs['target_tokens'] token id 259 is outside the vocabulary",
        ),
        (
            _datum([1, 2, 3], target_tokens=[1, 2]),
            "cross_entropy",
            "datum 1: loss_fn_inputs['target_tokens'] has shape (2,), but model_input has 3 "
            "tokens; it must have shape (3,)",
        ),
        (
            _datum([1, 2, 3], target_tokens=[1, 2, 3], weights=[1.0, 1.0]),
            "cross_entropy",
            "datum 1: loss_fn_inputs['weights'] has shape (2,)",
        ),
        (
            _datum([1, 2, 3], weights=[1.0, 1.0, 1.0]),
            "cross_entropy",
            "datum 1: loss_fn 'cross_entropy' requires loss_fn_inputs target_tokens; "
            "missing target_tokens",
        ),
        (
            _datum([1, 2, 3], target_tokens=[1, 2, 3], advantages=[1.0, 1.0, 1.0]),
            "ppo",
            "datum 1: loss_fn 'ppo' requires loss_fn_inputs target_tokens, logprobs, advantages;"
            " missing logprobs",
        ),
        (
            _datum([1, 2, 3], target_tokens=[1, 2, 3], mask=[1.0, 1.0, 1.0], **RL),
            "importance_sampling",
            "datum 1: loss_fn_inputs key 'mask' is not used by loss_fn 'importance_sampling' "
            "(allowed: advantages, logprobs, target_tokens, weights)",
        ),
        (
            _datum(
                [1, 2, 3],
                target_tokens=[1, 2, 3],
                logprobs=[-1, np.nan, -1],
                advantages=RL["advantages"],
            ),
            "ppo",
            "datum 1: loss_fn_inputs['logprobs'] has nan at position 1; values must be finite",
        ),
        (
            _datum([1, 2, 3], target_tokens=[1.0, 2.0, 3.0]),
            "cross_entropy",
            "datum 1: loss_fn_inputs['target_tokens'] must hold integer token ids, not float64",
        ),
        (
            _datum([1.0, 2.0], target_tokens=[1, 2]),
            "cross_entropy",
            "datum 1: model_input must hold integer token ids, not float64",
        ),
        (
            _datum(np.zeros(0, np.int64), target_tokens=np.zeros(0, np.int64)),
            "cross_entropy",
            "datum 1: model_input is empty",
        ),
        (
            _datum(np.ones(513, np.int64), target_tokens=np.ones(513, np.int64)),
            "cross_entropy",
            "datum 1: model_input has 513 tokens, more than the context length 512 of "
            "'tinkex/tiny-llama'",
        ),
        (
            _datum([[1, 2]], target_tokens=[[1, 2]]),
            "cross_entropy",
            "datum 1: model_input must be 1-D, got shape (1, 2)",
        ),
    ],
)
def test_bad_datum(model: TrainableModel, datum: DatumArrays, loss_fn: str, message: str) -> None:
    good = GOOD if loss_fn == "cross_entropy" else _datum([1, 2, 3], target_tokens=[1, 2, 3], **RL)
    with pytest.raises(ModelInputError) as info:
        model.forward_backward([good, datum], loss_fn, forward_only=False)
    assert message in str(info.value)
    # Validation happens before any compute: the good datum left no gradient behind.
    assert model.optim_step(AdamConfig(learning_rate=0.0))["grad_norm:mean"] == 0.0


def test_empty_batch_is_fine(model: TrainableModel) -> None:
    result = model.forward_backward([], "cross_entropy", forward_only=True)
    assert result.outputs == [] and result.metrics == {"loss:sum": 0.0}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rank": 0}, "lora rank must be an integer >= 1, got 0"),
        ({"rank": 2.0}, "lora rank must be an integer >= 1, got 2.0"),
        ({"rank": 4, "seed": "x"}, "lora seed must be an integer or None, got 'x'"),
        (
            {"rank": 4, "train_attn": False, "train_mlp": False, "train_unembed": False},
            "at least one of train_attn, train_mlp, train_unembed must be true",
        ),
        ({"rank": 4, "alpha": 0.0}, "lora alpha must be a finite number > 0, got 0.0"),
    ],
)
def test_bad_lora_spec(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ModelInputError) as info:
        LoraSpec(**kwargs)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"learning_rate": -1e-3}, "adam learning_rate must be >= 0, got -0.001"),
        ({"beta1": 1.0}, "adam beta1 must be in [0, 1), got 1.0"),
        ({"beta2": -0.1}, "adam beta2 must be in [0, 1), got -0.1"),
        ({"eps": 0.0}, "adam eps must be > 0, got 0.0"),
        ({"weight_decay": -1.0}, "adam weight_decay must be >= 0, got -1.0"),
        ({"grad_clip_norm": -1.0}, "adam grad_clip_norm must be >= 0 (0 disables clipping)"),
        ({"learning_rate": float("inf")}, "adam learning_rate must be finite, got inf"),
        ({"learning_rate": "0.1"}, "adam learning_rate must be a number, got '0.1'"),
    ],
)
def test_bad_adam_config(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ModelInputError) as info:
        AdamConfig(**kwargs)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("prompt", "kwargs", "message"),
    [
        ([1, 300], {}, "prompt token id 300 is outside the vocabulary [0, 259)"),
        ([], {}, "prompt must be a non-empty 1-D array of token ids, got shape (0,)"),
        ([1.5], {}, "prompt must hold integer token ids, not float64"),
        (
            [1] * 513,
            {},
            "prompt has 513 tokens, more than the context length 512 of 'tinkex/tiny-llama'",
        ),
        ([1] * 512, {}, "prompt has 512 tokens, which fills the context length 512"),
        ([1], {"num_samples": 0}, "num_samples must be an integer >= 1, got 0"),
        ([1], {"max_tokens": -1}, "max_tokens must be None or an integer >= 0, got -1"),
        ([1], {"temperature": -0.5}, "temperature must be a finite number >= 0, got -0.5"),
        ([1], {"temperature": float("nan")}, "temperature must be a finite number >= 0, got nan"),
        ([1], {"top_p": 0.0}, "top_p must be in (0, 1], got 0.0"),
        ([1], {"top_p": 1.5}, "top_p must be in (0, 1], got 1.5"),
        ([1], {"top_k": -2}, "top_k must be -1 or 0 (no limit) or an integer >= 1, got -2"),
        ([1], {"seed": 1.5}, "seed must be an integer or None, got 1.5"),
        ([1], {"stop": ["a", 1]}, "stop must be None, a string, a list of strings or a list of"),
        ([1], {"stop": [""]}, "stop: stop strings must be non-empty"),
        ([1], {"stop": [259]}, "stop: token id 259 is outside the vocabulary [0, 259)"),
        ([1], {"topk_prompt_logprobs": -1}, "topk_prompt_logprobs must be an integer >= 0"),
    ],
)
def test_bad_sampling_request(
    base: BaseModel, prompt: list[Any], kwargs: dict[str, Any], message: str
) -> None:
    args: dict[str, Any] = {"num_samples": 1, "max_tokens": 4} | kwargs
    if "max_tokens" not in kwargs and len(prompt) >= 512:
        args["max_tokens"] = None
    with pytest.raises(ModelInputError) as info:
        Sampler(base).sample(np.asarray(prompt), **args)
    assert message in str(info.value)
