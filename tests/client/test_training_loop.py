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
    async def main() -> None:
        with tinkex.ServiceClient(base_url=base_url, api_key=API_KEY) as service:
            created = await service.create_lora_training_client_async(BASE_MODEL, rank=8, seed=3)
            client = await created
            losses = []
            for _ in range(20):
                fwdbwd = await client.forward_backward_async(BATCH, "cross_entropy")
                step = await client.optim_step_async(ADAM)
                losses.append((await fwdbwd).metrics["loss:sum"])
                await step
            assert losses[-1] < 0.6 * losses[0], losses
            path = (await (await client.save_state_async("async-loop"))).path
            restored = await (
                await service.create_training_client_from_state_with_optimizer_async(path)
            )
            restored_out = await (await restored.forward_async(BATCH, "cross_entropy"))
            original_out = await (await client.forward_async(BATCH, "cross_entropy"))
            assert restored_out.metrics == original_out.metrics
            sampler = await (await client.save_weights_and_get_sampling_client_async())
            prompt = ModelInput.from_ints(list(b"one"))
            params = SamplingParams(max_tokens=6, seed=1, stop=[])
            first = await (await sampler.sample_async(prompt, 2, params))
            second = await sampler.sample(prompt, 2, params)
            assert [s.tokens for s in first.sequences] == [s.tokens for s in second.sequences]
            logprobs = await (await sampler.compute_logprobs_async(prompt))
            assert logprobs[0] is None and len(logprobs) == 3
        await service.close_async()

    asyncio.run(main())


def test_a_batch_over_1024_datums_is_chunked_and_merged(service: tinkex.ServiceClient) -> None:
    client = service.create_lora_training_client(BASE_MODEL, rank=4).result(timeout=60)
    data = [_datum(f"{i % 97} {i % 89}") for i in range(1100)]
    out = client.forward(data, "cross_entropy").result(timeout=120)
    assert len(out.loss_fn_outputs) == 1100
    for datum, output in zip(data, out.loss_fn_outputs, strict=True):
        assert len(output["logprobs"].data) == len(datum.loss_fn_inputs["target_tokens"].data)
    total = -sum(float(np.sum(o["logprobs"].to_numpy())) for o in out.loss_fn_outputs)
    assert out.metrics["loss:sum"] == pytest.approx(total, rel=1e-5)
    # Two requests (1,024 + 76 datums), numbered 1 and 2: the next call is seq_id 3.
    assert client._state.reserve(1, list) == [3]
