"""Training and sampling numerics through the HTTP API, driven by the official SDK."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import pytest
import tinker
from tinker import types as ttypes

from tests.conftest import API_KEY
from tests.local.raw import RawTinker
from tinkex import types

BASE_MODEL = "tinkex/tiny-llama"
LINES = ["alpha beta gamma delta", "one two three four five", "red green blue"]
ADAM = ttypes.AdamParams(learning_rate=5e-3)


def _datum(text: str) -> ttypes.Datum:
    tokens = list(text.encode())
    return ttypes.Datum(
        model_input=ttypes.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * (len(tokens) - 1)},
    )


BATCH = [_datum(line) for line in LINES]


@pytest.fixture(scope="module")
def service(base_url: str) -> Iterator[tinker.ServiceClient]:
    client = tinker.ServiceClient(base_url=base_url, api_key=API_KEY)
    yield client
    client.close("success").result(timeout=30)


def _new(service: tinker.ServiceClient) -> tinker.TrainingClient:
    return service.create_lora_training_client(base_model=BASE_MODEL, rank=8, seed=7).result()


def _step(client: tinker.TrainingClient) -> float:
    fwdbwd = client.forward_backward(BATCH, "cross_entropy")
    client.optim_step(ADAM).result(timeout=60)
    loss: float = fwdbwd.result(timeout=60).metrics["loss:sum"]
    return loss


def _logprobs(client: tinker.TrainingClient) -> np.ndarray:
    out = client.forward(BATCH, "cross_entropy").result(timeout=60)
    return np.concatenate([o["logprobs"].to_numpy() for o in out.loss_fn_outputs])


def test_loss_falls_over_twenty_steps(service: tinker.ServiceClient) -> None:
    client = _new(service)
    losses = [_step(client) for _ in range(20)]
    assert losses[-1] < 0.6 * losses[0], losses
    assert sum(b < a for a, b in itertools.pairwise(losses)) >= 15


@pytest.mark.parametrize("with_optimizer", [True, False], ids=["with-optimizer", "weights-only"])
def test_an_interrupted_run_continues_to_the_same_weights_only_with_its_optimizer(
    service: tinker.ServiceClient, with_optimizer: bool
) -> None:
    straight = _new(service)
    for _ in range(6):
        _step(straight)
    interrupted = _new(service)
    for _ in range(3):
        _step(interrupted)
    path = interrupted.save_state(f"halfway-{with_optimizer}").result(timeout=60).path
    if with_optimizer:
        resumed = service.create_training_client_from_state_with_optimizer(path).result()
    else:
        resumed = service.create_training_client_from_state(path).result()
    for _ in range(3):
        _step(resumed)
    same = np.allclose(_logprobs(resumed), _logprobs(straight), rtol=0, atol=1e-6)
    assert same == with_optimizer


def test_sampler_prompt_logprobs_equal_forward_logprobs(service: tinker.ServiceClient) -> None:
    client = _new(service)
    _step(client)
    tokens = list(LINES[1].encode())
    sampler = client.save_weights_and_get_sampling_client().result()
    response = sampler.sample(
        ttypes.ModelInput.from_ints(tokens),
        num_samples=1,
        sampling_params=ttypes.SamplingParams(max_tokens=1),
        include_prompt_logprobs=True,
    ).result(timeout=60)
    forward = client.forward([_datum(LINES[1])], "cross_entropy").result(timeout=60)
    expected = forward.loss_fn_outputs[0]["logprobs"].to_numpy()
    np.testing.assert_allclose(np.array(response.prompt_logprobs[1:]), expected, atol=1e-5)


def test_same_seed_same_tokens(service: tinker.ServiceClient) -> None:
    sampler = service.create_sampling_client(base_model=BASE_MODEL).result()
    prompt = ttypes.ModelInput.from_ints(list(b"seed"))

    def draw(seed: int) -> list[list[int]]:
        params = ttypes.SamplingParams(max_tokens=12, seed=seed, stop=[])
        result = sampler.sample(prompt, num_samples=2, sampling_params=params).result(timeout=60)
        return [list(seq.tokens) for seq in result.sequences]

    first = draw(11)
    assert first == draw(11)
    assert first != draw(12)
    assert all(len(tokens) == 12 for tokens in first)


def test_retried_submission_is_not_applied_twice(
    service: tinker.ServiceClient, base_url: str
) -> None:
    once, twice = _new(service), _new(service)
    raw = RawTinker(base_url)
    try:
        for client, sends in ((once, 1), (twice, 2)):
            _step(client)
            # The SDK has used seq_ids 1 (forward_backward) and 2 (optim_step).
            fwd = client.forward_backward(BATCH, "cross_entropy")  # seq_id 3
            fwd.result(timeout=60)
            body = {"model_id": client.model_id, "seq_id": 4, "adam_params": ADAM.model_dump()}
            request_ids = {raw.ok("optim_step", body)["request_id"] for _ in range(sends)}
            assert len(request_ids) == 1, "a resent seq_id must get the original promise"
            raw.result(request_ids.pop())
    finally:
        raw.close()
    np.testing.assert_array_equal(_logprobs_raw(once, base_url), _logprobs_raw(twice, base_url))


def _wire_datum(text: str) -> dict[str, object]:
    tokens = list(text.encode())
    datum = types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": tokens[1:]},
    )
    return datum.to_wire()


def _logprobs_raw(client: tinker.TrainingClient, base_url: str) -> np.ndarray:
    raw = RawTinker(base_url)
    try:
        body = raw.ok(
            "forward",
            {
                "model_id": client.model_id,
                "seq_id": 5,
                "forward_input": {
                    "data": [_wire_datum(line) for line in LINES],
                    "loss_fn": "cross_entropy",
                },
            },
        )
        result = raw.result(body["request_id"])
    finally:
        raw.close()
    return np.concatenate([np.array(o["logprobs"]["data"]) for o in result["loss_fn_outputs"]])
