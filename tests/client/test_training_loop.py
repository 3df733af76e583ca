"""The tinkex client end to end against ``tinkex serve``: train, checkpoint, restore, sample."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest

import tinkex
from tests.conftest import API_KEY
from tinkex import AdamParams, Datum, ModelInput, SamplingParams

BASE_MODEL = "tinkex/tiny-llama"
LINES = ["alpha beta gamma delta", "one two three four five", "red green blue"]
ADAM = AdamParams(learning_rate=5e-3)


def _datum(text: str) -> Datum:
    tokens = list(text.encode())
    return Datum(
        model_input=ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * (len(tokens) - 1)},
    )


BATCH = [_datum(line) for line in LINES]


@pytest.fixture(scope="module")
def service(base_url: str) -> Iterator[tinkex.ServiceClient]:
    with tinkex.ServiceClient(base_url=base_url, api_key=API_KEY) as client:
        yield client


def _logprobs(client: tinkex.TrainingClient) -> np.ndarray:
    out = client.forward(BATCH, "cross_entropy").result(timeout=60)
    return np.concatenate([o["logprobs"].to_numpy() for o in out.loss_fn_outputs])


def test_training_loop_checkpoints_and_sampling(service: tinkex.ServiceClient) -> None:
    client = service.create_lora_training_client(BASE_MODEL, rank=8, seed=3).result(timeout=60)
    assert client.get_info().model_data.model_name == BASE_MODEL
    losses = []
    for _ in range(20):
        fwdbwd = client.forward_backward(BATCH, "cross_entropy")
        step = client.optim_step(ADAM)
        losses.append(fwdbwd.result(timeout=60).metrics["loss:sum"])
        step.result(timeout=60)
    assert losses[-1] < 0.6 * losses[0], losses

    path = client.save_state("client-loop").result(timeout=60).path
    restored = service.create_training_client_from_state_with_optimizer(path).result(timeout=60)
    np.testing.assert_array_equal(_logprobs(restored), _logprobs(client))

    sampler_path = client.save_weights_for_sampler("client-sampler").result(timeout=60).path
    assert sampler_path.endswith("/sampler_weights/client-sampler")
    sampler = client.save_weights_and_get_sampling_client().result(timeout=60)
    prompt = ModelInput.from_ints(list(b"alpha"))
    params = SamplingParams(max_tokens=8, seed=5, stop=[])
    first = sampler.sample(prompt, 2, params).result(timeout=60)
    again = sampler.sample(prompt, 2, params).result(timeout=60)
    assert [s.tokens for s in first.sequences] == [s.tokens for s in again.sequences]
    assert all(len(s.tokens) == 8 for s in first.sequences)

    logprobs = sampler.compute_logprobs(ModelInput.from_ints(list(LINES[0].encode()))).result(
        timeout=60
    )
    expected = client.forward([BATCH[0]], "cross_entropy").result(timeout=60)
    np.testing.assert_allclose(
        np.array(logprobs[1:]), expected.loss_fn_outputs[0]["logprobs"].to_numpy(), atol=1e-5
    )


def test_the_same_loop_in_asyncio(base_url: str) -> None:
    async def main() -> list[float]:
        with tinkex.ServiceClient(base_url=base_url, api_key=API_KEY) as service:
            created = await service.create_lora_training_client_async(BASE_MODEL, rank=8, seed=3)
            client = await created
            losses = []
            for _ in range(5):
                fwdbwd = await client.forward_backward_async(BATCH, "cross_entropy")
                step = await client.optim_step_async(ADAM)
                losses.append((await fwdbwd).metrics["loss:sum"])
                await step
            sampler = await client.save_weights_and_get_sampling_client()
            response = await sampler.sample(
                ModelInput.from_ints(list(b"one")), 1, SamplingParams(max_tokens=4, seed=1)
            )
            assert len(response.sequences) == 1
            return losses

    losses = asyncio.run(main())
    assert losses[-1] < losses[0]
