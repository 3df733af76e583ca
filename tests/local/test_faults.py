"""Each fault knob of ``tinkex serve`` does what it says, and the official SDK rides it out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tinker
from tinker import types as ttypes

from tests.conftest import API_KEY
from tests.local.raw import RawTinker
from tinkex.local import FaultProfile, LocalServer, ServerConfig

BASE_MODEL = "tinkex/tiny-llama"
TOKENS = list(b"faults are fine")
BATCH = [
    ttypes.Datum(
        model_input=ttypes.ModelInput.from_ints(TOKENS[:-1]),
        loss_fn_inputs={"target_tokens": TOKENS[1:], "weights": [1.0] * (len(TOKENS) - 1)},
    )
]


@pytest.fixture
def faulty(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LocalServer]:
    profile = FaultProfile.load(request.param)
    config = ServerConfig(port=0, data_dir=tmp_path, faults=profile, long_poll_seconds=2.0)
    with LocalServer(config) as server:
        yield server


def _injected(server: LocalServer, name: str) -> int:
    assert server.service is not None
    return server.service.faults.injected[name]


def _train_and_read(url: str) -> np.ndarray:
    with tinker.ServiceClient(base_url=url, api_key=API_KEY) as service:
        client = service.create_lora_training_client(base_model=BASE_MODEL, rank=4, seed=1).result()
        for _ in range(3):
            client.forward_backward(BATCH, "cross_entropy")
            client.optim_step(ttypes.AdamParams(learning_rate=1e-2)).result(timeout=120)
        out = client.forward(BATCH, "cross_entropy").result(timeout=120)
        return out.loss_fn_outputs[0]["logprobs"].to_numpy()


@pytest.fixture(scope="module")
def clean_logprobs(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    config = ServerConfig(port=0, data_dir=tmp_path_factory.mktemp("clean"))
    with LocalServer(config) as server:
        return _train_and_read(server.url)


@pytest.mark.parametrize("faulty", ["submit_drop_rate=0.3,seed=4"], indirect=True)
def test_dropped_answers_are_retried_and_never_applied_twice(
    faulty: LocalServer, clean_logprobs: np.ndarray
) -> None:
    logprobs = _train_and_read(faulty.url)
    assert _injected(faulty, "submit_drop_rate") > 0
    np.testing.assert_array_equal(logprobs, clean_logprobs)


@pytest.mark.parametrize("faulty", ["submit_5xx_rate=0.3,seed=2"], indirect=True)
def test_503_on_submit_is_retried(faulty: LocalServer, clean_logprobs: np.ndarray) -> None:
    logprobs = _train_and_read(faulty.url)
    assert _injected(faulty, "submit_5xx_rate") > 0
    np.testing.assert_array_equal(logprobs, clean_logprobs)


@pytest.mark.parametrize("faulty", ["sample_429_rate=0.5,seed=3"], indirect=True)
def test_sampling_backpressure_429_is_waited_out(faulty: LocalServer) -> None:
    with tinker.ServiceClient(base_url=faulty.url, api_key=API_KEY) as service:
        sampler = service.create_sampling_client(base_model=BASE_MODEL).result()
        params = ttypes.SamplingParams(max_tokens=3, seed=0)
        prompt = ttypes.ModelInput.from_ints(TOKENS)
        futures = [sampler.sample(prompt, 1, params) for _ in range(4)]
        results = [f.result(timeout=120) for f in futures]
    assert all(len(r.sequences) == 1 for r in results)
    assert _injected(faulty, "sample_429_rate") > 0


@pytest.mark.parametrize("faulty", ["paused_polls=3,paused_state=paused_rate_limit"], indirect=True)
def test_paused_polls_answer_try_again_with_the_state(faulty: LocalServer) -> None:
    raw = RawTinker(faulty.url)
    try:
        promise = raw.submit_model(raw.session())
        polls = [raw.poll(promise) for _ in range(3)]
        assert [p.body["queue_state"] for p in polls] == ["paused_rate_limit"] * 3
        assert all(p.status == 200 and p.body["type"] == "try_again" for p in polls)
        assert "model_id" in raw.result(promise)
    finally:
        raw.close()


@pytest.mark.parametrize("faulty", ["expire_rate=1"], indirect=True)
def test_expired_promises_answer_410(faulty: LocalServer) -> None:
    raw = RawTinker(faulty.url)
    try:
        promise = raw.submit_model(raw.session())
        first, second = raw.poll(promise), raw.poll(promise)
    finally:
        raw.close()
    assert first.status == 410 and "expired" in first.body["detail"]
    assert second.status == 410, "an expired promise stays gone"


@pytest.mark.parametrize("faulty", ["heartbeat_fail_rate=1"], indirect=True)
def test_heartbeat_failures(faulty: LocalServer) -> None:
    raw = RawTinker(faulty.url)
    try:
        response = raw.post("session_heartbeat", {"session_id": raw.session()})
    finally:
        raw.close()
    assert response.status_code == 503
    assert "heartbeat failed" in response.json()["detail"]


@pytest.mark.parametrize("faulty", ["slow_poll_seconds=0.2"], indirect=True)
def test_slow_polls_still_deliver(faulty: LocalServer) -> None:
    raw = RawTinker(faulty.url)
    try:
        promise = raw.submit_model(raw.session())
        assert "model_id" in raw.result(promise)
    finally:
        raw.close()


def test_fault_profiles_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown fault setting"):
        FaultProfile.load("no_such_knob=1")
    with pytest.raises(ValueError, match="between 0 and 1"):
        FaultProfile.load("sample_429_rate=2")
    with pytest.raises(ValueError, match="not a valid float"):
        FaultProfile.load("expire_rate=often")
    profile_file = tmp_path / "faults.json"
    profile_file.write_text('{"seed": 9, "submit_drop_rate": 0.25}')
    assert FaultProfile.load(str(profile_file)) == FaultProfile(seed=9, submit_drop_rate=0.25)
