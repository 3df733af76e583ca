"""The client rides out the local server's injected faults (PROTOCOL §4.2-4.4).

Each test starts ``tinkex serve`` with a seeded fault profile and talks to it over real
HTTP; what is checked is what the user sees (results, errors, weights) and what the client
reports through telemetry.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import tinkex
from tests.client.conftest import BASE_MODEL, datum, new_key
from tinkex import AdamParams, ModelInput, SamplingParams, telemetry
from tinkex.actors.runtime import Runtime
from tinkex.config import Tenant

ASAMPLE = "/api/v1/asample"
PROMPT = ModelInput.from_ints(list(b"storm"))
BATCH = [datum("faults are fine"), datum("exactly once")]
ADAM = AdamParams(learning_rate=1e-2)

Event = tuple[str, dict[str, Any], dict[str, Any]]


class Submissions:
    """Records every ``/asample`` attempt to one server, with the windows open at its start.

    The handler runs in the I/O loop thread right before the request is sent, so
    ``RateWindows.remaining`` is read at the moment of submission.
    """

    def __init__(self, base_url: str, tenants: dict[str, Tenant]) -> None:
        self.base_url = base_url
        self.tenants = tenants
        self.windows = Runtime.get().windows()
        self.seen: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def __call__(self, event: str, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        if metadata["path"] != ASAMPLE or metadata["base_url"] != self.base_url:
            return
        open_windows = {name: self.windows.remaining(t) for name, t in self.tenants.items()}
        with self._lock:
            self.seen.append({"attempt": metadata["attempt"], "remaining": open_windows})


@pytest.fixture
def watch() -> Iterator[Callable[[Submissions], None]]:
    attached: list[str] = []

    def start(recorder: Submissions) -> None:
        handler_id = f"test-submissions-{len(attached)}"
        telemetry.attach(handler_id, "tinkex.http.request.start", recorder)
        attached.append(handler_id)

    yield start
    for handler_id in attached:
        telemetry.detach(handler_id)


def _injected(server: Any, name: str) -> int:
    count: int = server.service.faults.injected[name]
    return count


# --- sampling backpressure -------------------------------------------------------------------


def test_a_429_storm_is_waited_out_in_the_tenants_window(
    serve: Callable[..., Any], watch: Callable[[Submissions], None]
) -> None:
    server = serve("sample_429_rate=0.6,seed=3")
    clean = serve()
    key = new_key()
    tenant = tinkex.Config(api_key=key, base_url=server.url).tenant
    submissions = Submissions(server.url, {"storm": tenant})
    watch(submissions)
    # More samples than the 10 allowed in flight while throttled, so some queue at that gate.
    params = [SamplingParams(max_tokens=3, seed=i, stop=[]) for i in range(14)]

    with (
        telemetry.capture("tinkex.rate_limit.backoff") as backoffs,
        tinkex.ServiceClient(base_url=server.url, api_key=key) as service,
    ):
        sampler = service.create_sampling_client(base_model=BASE_MODEL).result(timeout=30)
        futures = [sampler.sample(PROMPT, 1, p) for p in params]
        results = [f.result(timeout=60) for f in futures]  # no error reaches the user

    with tinkex.ServiceClient(base_url=clean.url, api_key=key) as service:
        sampler = service.create_sampling_client(base_model=BASE_MODEL).result(timeout=30)
        expected = [sampler.sample(PROMPT, 1, p).result(timeout=60) for p in params]
    assert [r.sequences[0].tokens for r in results] == [e.sequences[0].tokens for e in expected]

    rejected = _injected(server, "sample_429_rate")
    assert rejected > 0
    # The 429s opened (or extended) the tenant's window, for the server's Retry-After of 1 s.
    windows = [(m["seconds"], md["reason"]) for _, m, md in backoffs if md["tenant"] == tenant]
    assert windows, "no 429 opened the tenant's window"
    assert set(windows) == {(1.0, "asample 429")}
    # A 429 is backpressure for the job, not something the HTTP layer retries on its own:
    # each rejected submission was made again once, after the window.
    assert all(s["attempt"] == 0 for s in submissions.seen)
    assert len(submissions.seen) == len(params) + rejected
    opened_at_submit = [
        s["remaining"]["storm"] for s in submissions.seen if s["remaining"]["storm"]
    ]
    assert opened_at_submit == [], "an /asample was submitted while its tenant's window was open"


def test_another_tenant_is_not_held_by_a_tenants_window(
    serve: Callable[..., Any], watch: Callable[[Submissions], None]
) -> None:
    server = serve()
    throttled_key, other_key = new_key(), new_key()
    throttled = tinkex.Config(api_key=throttled_key, base_url=server.url).tenant
    other = tinkex.Config(api_key=other_key, base_url=server.url).tenant
    assert throttled != other, "two keys on one server are two tenants"
    windows = Runtime.get().windows()
    # What a 429 to the throttled tenant does; long enough to outlast this test by far.
    windows.backoff(throttled, 600.0, reason="test")
    submissions = Submissions(server.url, {"throttled": throttled, "other": other})
    watch(submissions)

    with (
        telemetry.capture("tinkex.rate_limit.backoff") as backoffs,
        tinkex.ServiceClient(base_url=server.url, api_key=other_key) as service,
    ):
        sampler = service.create_sampling_client(base_model=BASE_MODEL).result(timeout=30)
        futures = [
            sampler.sample(PROMPT, 1, SamplingParams(max_tokens=2, seed=i)) for i in range(4)
        ]
        results = [f.result(timeout=60) for f in futures]

    assert all(len(r.sequences) == 1 for r in results)
    assert len(submissions.seen) == 4
    assert all(s["remaining"]["throttled"] > 0 for s in submissions.seen), (
        "the other tenant's samples were submitted while the throttled tenant's window was open"
    )
    assert all(s["remaining"]["other"] == 0 for s in submissions.seen)
    assert [md for _, _, md in backoffs if md["tenant"] == other] == []
    assert not windows.recently_throttled(other), "the other tenant never had a window"


# --- training submissions: 5xx and dropped connections -----------------------------------


def _train(url: str, **config: Any) -> np.ndarray:
    with tinkex.ServiceClient(base_url=url, api_key=new_key(), **config) as service:
        client = service.create_lora_training_client(BASE_MODEL, rank=4, seed=7).result(timeout=60)
        for _ in range(3):
            client.forward_backward(BATCH, "cross_entropy")
            client.optim_step(ADAM)
        out = client.forward(BATCH, "cross_entropy").result(timeout=60)
    return np.concatenate([o["logprobs"].to_numpy() for o in out.loss_fn_outputs])


def test_every_training_step_is_applied_exactly_once_despite_5xx_and_drops(
    serve: Callable[..., Any],
) -> None:
    faulty = serve("submit_5xx_rate=0.25,submit_drop_rate=0.25,seed=10")
    clean = serve()
    logprobs = _train(faulty.url)
    assert _injected(faulty, "submit_5xx_rate") > 0
    assert _injected(faulty, "submit_drop_rate") > 0  # applied, answer lost, submitted again
    np.testing.assert_array_equal(logprobs, _train(clean.url))


def test_training_429s_open_the_tenants_window_and_are_sat_out(
    serve: Callable[..., Any],
) -> None:
    """With no HTTP-layer retries, every 429 on a training submission reaches the job, which
    opens the tenant's window, waits it out and sends the same seq_id again."""
    faulty = serve("submit_429_rate=0.3,seed=4")
    clean = serve()
    windows: list[dict[str, Any]] = []
    telemetry.attach(
        "test-training-429",
        "tinkex.rate_limit.backoff",
        lambda event, measurements, metadata: windows.append(metadata),
    )
    try:
        logprobs = _train(faulty.url, max_retries=0)
    finally:
        telemetry.detach("test-training-429")
    training_windows = [
        w for w in windows if w["reason"] in ("forward_backward 429", "optim_step 429")
    ]
    assert training_windows, "no training 429 opened a window"
    np.testing.assert_array_equal(logprobs, _train(clean.url))


# --- queue state -----------------------------------------------------------------------------


def test_paused_queue_states_are_signalled_per_request(serve: Callable[..., Any]) -> None:
    server = serve("paused_polls=3,paused_state=paused_capacity")
    with (
        telemetry.capture("tinkex.queue.state_change") as changes,
        tinkex.ServiceClient(base_url=server.url, api_key=new_key()) as service,
    ):
        created = service.create_lora_training_client(BASE_MODEL, rank=4, seed=1)
        client = created.result(timeout=60)
        fwdbwd = client.forward_backward(BATCH, "cross_entropy")
        fwdbwd.result(timeout=60)
        sampler = service.create_sampling_client(base_model=BASE_MODEL).result(timeout=30)
        sample = sampler.sample(PROMPT, 1, SamplingParams(max_tokens=2))
        sample.result(timeout=60)
        session_id = service.session_id

    expected = {
        created.request_id: ("CreateModel", {"session_id": session_id}),
        fwdbwd.request_id: (
            "ForwardBackward",
            {"model_id": client.model_id, "session_id": session_id},
        ),
        sample.request_id: ("Sample", {"sampling_session_id": sampler.sampling_session_id}),
    }
    assert None not in expected, "every future knows its request id once it is done"
    by_request: dict[str, list[tuple[str, int, dict[str, Any]]]] = {}
    for _, measurements, metadata in changes:
        if metadata["request_id"] in expected:
            by_request.setdefault(metadata["request_id"], []).append(
                (metadata["queue_state"], measurements["polls"], metadata)
            )
    assert set(by_request) == set(expected)
    for request_id, (request_type, ids) in expected.items():
        states = by_request[request_id]
        # Paused on the first poll, active again once the fourth delivered the result.
        assert [(state, polls) for state, polls, _ in states] == [
            ("paused_capacity", 1),
            ("active", 4),
        ]
        paused, active = (metadata for _, _, metadata in states)
        assert paused["queue_state_reason"] == "fault injection: queue paused"
        assert active["queue_state_reason"] is None
        for metadata in (paused, active):
            assert metadata["request_type"] == request_type
            assert {k: metadata.get(k) for k in ids} == ids


# --- expired promises ------------------------------------------------------------------------


def test_a_sample_whose_promise_expired_is_resubmitted(
    serve: Callable[..., Any], watch: Callable[[Submissions], None]
) -> None:
    server = serve("expire_rate=0.5,seed=1")
    clean = serve()
    key = new_key()
    submissions = Submissions(server.url, {})
    watch(submissions)
    params = [SamplingParams(max_tokens=3, seed=i, stop=[]) for i in range(4)]

    def sample_all(url: str) -> tuple[str, list[list[int]]]:
        with tinkex.ServiceClient(base_url=url, api_key=key) as service:
            sampler = service.create_sampling_client(base_model=BASE_MODEL).result(timeout=30)
            futures = [sampler.sample(PROMPT, 1, p) for p in params]
            tokens = [f.result(timeout=60).sequences[0].tokens for f in futures]
            return sampler.sampling_session_id, tokens

    with telemetry.capture("tinkex.future.api_error") as errors:
        sampler_id, tokens = sample_all(server.url)
    expired = _injected(server, "expire_rate")
    assert expired > 0
    gone = [md for _, _, md in errors if md.get("sampling_session_id") == sampler_id]
    assert [md["error_type"] for md in gone] == ["RetryableFutureError"] * expired
    assert len(submissions.seen) == len(params) + expired, "one new submission per 410"
    assert tokens == sample_all(clean.url)[1]
