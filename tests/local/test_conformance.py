"""The official ``tinker`` SDK, unchanged, against ``tinkex serve``: proof we speak the API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tinker
from tinker import types as ttypes

from tests.conftest import API_KEY

BASE_MODEL = "tinkex/tiny-llama"


def _datum(tokens: list[int], weights: list[float] | None = None) -> ttypes.Datum:
    inputs, targets = tokens[:-1], tokens[1:]
    return ttypes.Datum(
        model_input=ttypes.ModelInput.from_ints(inputs),
        loss_fn_inputs={
            "target_tokens": targets,
            "weights": weights if weights is not None else [1.0] * len(targets),
        },
    )


def _text(text: str) -> list[int]:
    return list(text.encode())


@pytest.fixture(scope="module")
def service(base_url: str) -> Iterator[tinker.ServiceClient]:
    client = tinker.ServiceClient(base_url=base_url, api_key=API_KEY)
    yield client
    client.close("success").result(timeout=30)


@pytest.fixture(scope="module")
def training(service: tinker.ServiceClient) -> tinker.TrainingClient:
    return service.create_lora_training_client(base_model=BASE_MODEL, rank=8, seed=0).result()


def test_training_client_reports_model_info(training: tinker.TrainingClient) -> None:
    info = training.get_info()
    assert info.model_data.model_name == BASE_MODEL
    assert info.model_data.tokenizer_id
    assert info.lora_rank == 8
    assert training.model_id.endswith(":train:0")


def test_forward_backward_cross_entropy_then_optim_step(training: tinker.TrainingClient) -> None:
    data = [_datum(_text("hello world")), _datum(_text("tinkex local"))]
    fwdbwd = training.forward_backward(data, "cross_entropy")
    step = training.optim_step(ttypes.AdamParams(learning_rate=1e-3))
    out = fwdbwd.result(timeout=60)
    step.result(timeout=60)
    assert out.metrics["loss:sum"] > 0
    assert len(out.loss_fn_outputs) == 2
    logprobs = out.loss_fn_outputs[0]["logprobs"].to_numpy()
    assert logprobs.shape == (len("hello world") - 1,)
    assert np.all(logprobs < 0)
    elementwise = out.loss_fn_outputs[0]["elementwise_loss"].to_numpy()
    assert np.allclose(elementwise, -logprobs, atol=1e-5)


def test_forward_backward_ppo(training: tinker.TrainingClient) -> None:
    tokens = _text("reward me")
    n = len(tokens) - 1
    datum = ttypes.Datum(
        model_input=ttypes.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={
            "target_tokens": tokens[1:],
            "logprobs": [-3.0] * n,
            "advantages": [1.0] * n,
        },
    )
    out = training.forward_backward(
        [datum], "ppo", {"clip_low_threshold": 0.9, "clip_high_threshold": 1.1}
    ).result(timeout=60)
    assert "loss:sum" in out.metrics
    assert out.loss_fn_outputs[0]["logprobs"].to_numpy().shape == (n,)


def test_forward_only_changes_nothing(training: tinker.TrainingClient) -> None:
    data = [_datum(_text("same input twice"))]
    first = training.forward(data, "cross_entropy").result(timeout=60)
    second = training.forward(data, "cross_entropy").result(timeout=60)
    assert first.metrics["loss:sum"] == pytest.approx(second.metrics["loss:sum"])


def test_large_batch_is_chunked_and_merged(training: tinker.TrainingClient) -> None:
    data = [_datum([1 + (i % 200), 2 + (i % 100), 3]) for i in range(1100)]
    out = training.forward(data, "cross_entropy").result(timeout=120)
    assert len(out.loss_fn_outputs) == 1100
    expected = -sum(float(o["logprobs"].to_numpy().sum()) for o in out.loss_fn_outputs)
    assert out.metrics["loss:sum"] == pytest.approx(expected, rel=1e-4)


def test_save_state_and_restore_with_optimizer(
    service: tinker.ServiceClient, training: tinker.TrainingClient
) -> None:
    path = training.save_state("conformance-state").result(timeout=60).path
    assert path.startswith("tinker://") and path.endswith("/weights/conformance-state")
    probe = [_datum(_text("probe text"))]
    before = training.forward(probe, "cross_entropy").result(timeout=60)
    restored = service.create_training_client_from_state_with_optimizer(path).result()
    after = restored.forward(probe, "cross_entropy").result(timeout=60)
    assert after.metrics["loss:sum"] == pytest.approx(before.metrics["loss:sum"], rel=1e-6)
    assert restored.get_info().lora_rank == 8


def test_sampling_client_from_training_weights(training: tinker.TrainingClient) -> None:
    sampler = training.save_weights_and_get_sampling_client().result()
    prompt = ttypes.ModelInput.from_ints(_text("hi there"))
    params = ttypes.SamplingParams(max_tokens=5, temperature=1.0, seed=3)
    response = sampler.sample(
        prompt,
        num_samples=2,
        sampling_params=params,
        include_prompt_logprobs=True,
        topk_prompt_logprobs=3,
    ).result(timeout=60)
    assert len(response.sequences) == 2
    for seq in response.sequences:
        assert 1 <= len(seq.tokens) <= 5
        assert seq.stop_reason in ("stop", "length")
        assert seq.logprobs is not None and len(seq.logprobs) == len(seq.tokens)
    assert response.prompt_logprobs is not None
    assert response.prompt_logprobs[0] is None
    assert len(response.prompt_logprobs) == len("hi there")
    assert response.topk_prompt_logprobs is not None
    assert response.topk_prompt_logprobs[0] is None
    assert len(response.topk_prompt_logprobs[1]) == 3


def test_compute_logprobs_matches_forward(training: tinker.TrainingClient) -> None:
    tokens = _text("compare me")
    sampler = training.save_weights_and_get_sampling_client().result()
    logprobs = sampler.compute_logprobs(ttypes.ModelInput.from_ints(tokens)).result(timeout=60)
    forward = training.forward([_datum(tokens)], "cross_entropy").result(timeout=60)
    expected = forward.loss_fn_outputs[0]["logprobs"].to_numpy()
    assert logprobs[0] is None
    assert np.allclose(np.array(logprobs[1:], dtype=np.float32), expected, atol=1e-4)


def test_named_sampler_checkpoint_and_base_model_sampling(
    service: tinker.ServiceClient, training: tinker.TrainingClient
) -> None:
    path = training.save_weights_for_sampler("conformance-sampler").result(timeout=60).path
    assert "/sampler_weights/conformance-sampler" in path
    from_path = service.create_sampling_client(model_path=path).result()
    base = service.create_sampling_client(base_model=BASE_MODEL).result()
    prompt = ttypes.ModelInput.from_ints(_text("abc"))
    params = ttypes.SamplingParams(max_tokens=4, seed=1)
    for client in (from_path, base):
        result = client.sample(prompt, num_samples=1, sampling_params=params).result(timeout=60)
        assert len(result.sequences[0].tokens) >= 1


def test_rest_client_lists_runs_and_manages_checkpoints(
    base_url: str, training: tinker.TrainingClient
) -> None:
    path = training.save_state("rest-managed").result(timeout=60).path
    rest = tinker.RestClient(base_url=base_url, api_key=API_KEY)
    runs = rest.list_training_runs().result(timeout=30)
    assert training.model_id in [r.training_run_id for r in runs.training_runs]
    listed = rest.list_checkpoints(training.model_id).result(timeout=30)
    assert "weights/rest-managed" in [c.checkpoint_id for c in listed.checkpoints]
    rest.set_checkpoint_ttl_from_tinker_path(path, 7200).result(timeout=30)
    rest.publish_checkpoint_from_tinker_path(path).result(timeout=30)
    listed = rest.list_checkpoints(training.model_id).result(timeout=30)
    ckpt = next(c for c in listed.checkpoints if c.checkpoint_id == "weights/rest-managed")
    assert ckpt.public and ckpt.expires_at is not None
    rest.delete_checkpoint_from_tinker_path(path).result(timeout=30)
    listed = rest.list_checkpoints(training.model_id).result(timeout=30)
    assert "weights/rest-managed" not in [c.checkpoint_id for c in listed.checkpoints]


def test_service_client_close_finishes_the_session(base_url: str, local_server: Any) -> None:
    with tinker.ServiceClient(base_url=base_url, api_key=API_KEY) as client:
        model_id = (
            client.create_lora_training_client(base_model=BASE_MODEL, rank=4).result().model_id
        )
    session_id = model_id.split(":train:")[0]
    session = local_server.service.store.get_session(session_id)
    assert session is not None and session.finish_reason == "success"
    # The finished session's model is unloaded, freeing the key's training-client slot.
    assert local_server.service.engine.lane(model_id) is None
