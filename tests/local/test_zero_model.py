"""``tinkex/zero``, the zero-compute model for client benchmarks, served and driven over HTTP."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import tinker
from tinker import types as ttypes

import tinkex
from tinkex.local import LocalServer, ModelSource, ServerConfig
from tinkex.local.catalog import ModelCatalog
from tinkex.local.model import ZERO_MODEL, ModelInputError, Sampler, ZeroModel, load_base_model

API_KEY = "tml-zero-test"
ZERO_LP = -math.log(256)


@pytest.fixture(scope="module")
def zero_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = ServerConfig(
        port=0,
        data_dir=tmp_path_factory.mktemp("zero"),
        models=(ModelSource.parse("tinkex/zero"),),
    )
    with LocalServer(config) as server:
        yield server.url


@pytest.fixture(scope="module")
def official(zero_url: str) -> Iterator[tinker.ServiceClient]:
    client = tinker.ServiceClient(base_url=zero_url, api_key=API_KEY)
    yield client
    client.close("success").result(timeout=30)


@pytest.fixture(scope="module")
def client(zero_url: str) -> Iterator[tinkex.ServiceClient]:
    with tinkex.ServiceClient(base_url=zero_url, api_key=API_KEY) as service:
        yield service


def test_served_only_when_asked_for(zero_url: str) -> None:
    assert ModelCatalog(()).names == ["tinkex/tiny-llama"]
    assert isinstance(load_base_model(ZERO_MODEL), ZeroModel)
    rest = tinker.RestClient(base_url=zero_url, api_key=API_KEY)
    models = rest.get_server_capabilities().result(timeout=30).supported_models
    assert [m.model_name for m in models] == [ZERO_MODEL]


def test_official_sdk_sampling_shapes_and_determinism(official: tinker.ServiceClient) -> None:
    sampler = official.create_sampling_client(base_model=ZERO_MODEL).result()
    prompt = ttypes.ModelInput.from_ints(list(b"hello zero"))
    params = ttypes.SamplingParams(max_tokens=17, seed=11)
    first = sampler.sample(prompt, 3, params, include_prompt_logprobs=True).result(timeout=60)
    again = sampler.sample(prompt, 3, params).result(timeout=60)
    other = sampler.sample(prompt, 3, ttypes.SamplingParams(max_tokens=17, seed=12)).result(
        timeout=60
    )
    assert len(first.sequences) == 3
    for seq in first.sequences:
        assert len(seq.tokens) == 17 and seq.stop_reason == "length"
        assert all(0 <= t < 256 for t in seq.tokens)
        np.testing.assert_allclose(seq.logprobs, ZERO_LP, rtol=1e-6)
    assert [s.tokens for s in first.sequences] == [s.tokens for s in again.sequences]
    assert [s.tokens for s in first.sequences] != [s.tokens for s in other.sequences]
    assert first.sequences[0].tokens != first.sequences[1].tokens
    assert first.prompt_logprobs is not None and len(first.prompt_logprobs) == len(b"hello zero")
    assert first.prompt_logprobs[0] is None
    np.testing.assert_allclose(first.prompt_logprobs[1:], ZERO_LP, rtol=1e-6)


def test_stop_tokens_and_strings(official: tinker.ServiceClient) -> None:
    sampler = official.create_sampling_client(base_model=ZERO_MODEL).result()
    prompt = ttypes.ModelInput.from_ints([1, 2, 3])
    by_id = sampler.sample(
        prompt, 8, ttypes.SamplingParams(max_tokens=4000, seed=3, stop=[ord("a")])
    ).result(timeout=60)
    for seq in by_id.sequences:
        assert seq.stop_reason == "stop" and seq.tokens[-1] == ord("a")
        assert ord("a") not in seq.tokens[:-1]
    by_text = sampler.sample(
        prompt, 4, ttypes.SamplingParams(max_tokens=4000, seed=3, stop=["z"])
    ).result(timeout=60)
    for seq in by_text.sequences:
        assert seq.stop_reason == "stop" and seq.tokens[-1] == ord("z")


def test_tinkex_client_samples_and_trains(client: tinkex.ServiceClient) -> None:
    sampler = client.create_sampling_client(base_model=ZERO_MODEL).result(timeout=60)
    prompt = tinkex.ModelInput.from_ints([5, 6, 7, 8])
    params = tinkex.SamplingParams(max_tokens=9, seed=4)
    first = sampler.sample(prompt, 2, params).result(timeout=60)
    again = sampler.sample(prompt, 2, params).result(timeout=60)
    assert [len(s.tokens) for s in first.sequences] == [9, 9]
    assert [s.tokens for s in first.sequences] == [s.tokens for s in again.sequences]

    training = client.create_lora_training_client(ZERO_MODEL, rank=4, seed=0).result(timeout=60)
    assert training.get_info().model_data.model_name == ZERO_MODEL
    lengths = [3, 700, 50]
    data = [
        tinkex.Datum(
            model_input=tinkex.ModelInput.from_ints([7] * n),
            loss_fn_inputs={"target_tokens": np.full(n, 9), "weights": np.full(n, 0.5)},
        )
        for n in lengths
    ]
    out = training.forward_backward(data, "cross_entropy").result(timeout=60)
    training.optim_step(tinkex.AdamParams(learning_rate=1e-3)).result(timeout=60)
    assert [o["logprobs"].to_numpy().shape for o in out.loss_fn_outputs] == [(n,) for n in lengths]
    for o in out.loss_fn_outputs:
        np.testing.assert_allclose(o["logprobs"].to_numpy(), ZERO_LP, rtol=1e-6)
        np.testing.assert_allclose(o["elementwise_loss"].to_numpy(), -0.5 * ZERO_LP, rtol=1e-6)
    assert out.metrics["loss:sum"] == pytest.approx(-0.5 * ZERO_LP * sum(lengths), rel=1e-5)

    trained = training.save_weights_and_get_sampling_client().result(timeout=60)
    assert len(trained.sample(prompt, 1, params).result(timeout=60).sequences[0].tokens) == 9


def test_official_sdk_forward_backward_rl_loss(official: tinker.ServiceClient) -> None:
    training = official.create_lora_training_client(base_model=ZERO_MODEL, rank=4).result()
    n = 2048
    datum = ttypes.Datum(
        model_input=ttypes.ModelInput.from_ints([1] * n),
        loss_fn_inputs={
            "target_tokens": ttypes.TensorData.from_numpy(np.full(n, 2, np.int64)),
            "logprobs": ttypes.TensorData.from_numpy(np.full(n, ZERO_LP, np.float32)),
            "advantages": ttypes.TensorData.from_numpy(np.full(n, 2.0, np.float32)),
        },
    )
    out = training.forward_backward([datum], "importance_sampling").result(timeout=60)
    assert out.loss_fn_outputs[0]["logprobs"].to_numpy().shape == (n,)
    # ratio = exp(logp - q) = 1, so every token's loss is -A.
    np.testing.assert_allclose(out.loss_fn_outputs[0]["elementwise_loss"].to_numpy(), -2.0)
    assert out.metrics["loss:sum"] == pytest.approx(-2.0 * n, rel=1e-5)


def test_validation_is_the_real_models() -> None:
    base = load_base_model(ZERO_MODEL, max_context_length=64)
    assert base.max_context_length == 64
    with pytest.raises(ModelInputError, match="outside the vocabulary"):
        Sampler(base).sample(np.array([300]), num_samples=1, max_tokens=1)
    with pytest.raises(ModelInputError, match="context length"):
        Sampler(base).sample(np.zeros(65, np.int64), num_samples=1, max_tokens=1)
