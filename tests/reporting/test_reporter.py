"""The telemetry reporter against a real ``tinkex serve``: what reaches ``/api/v1/telemetry``.

Each test uses a fresh API key, so the server's record of that tenant holds exactly what
the test's sessions sent (``GET /api/v1/local/telemetry_events``).
"""

from __future__ import annotations

import json
import logging
import platform
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

import tinkex
from tests.client.conftest import BASE_MODEL, new_key
from tests.conftest import API_KEY
from tests.reporting.conftest import batches_of, events_of, serve
from tinkex import ModelInput, RequestFailedError, SamplingParams, telemetry
from tinkex.actors.runtime import Runtime
from tinkex.reporting import ReporterSettings, TelemetryReporter
from tinkex.reporting.events import PROCESS_UUID

PROMPT = ModelInput.from_ints(list(b"hello"))
PARAMS = SamplingParams(max_tokens=2, seed=1)
QUIET = {"flush_interval": 3600.0}
"""Settings under which nothing is sent until the test says so."""

StartReporter = Callable[..., TelemetryReporter]

__all__ = ["serve"]  # the fixture, imported for these tests


@pytest.fixture
def start_reporter() -> Iterator[StartReporter]:
    """``start_reporter(config, **settings)``: a reporter of a fresh session, closed after."""
    started: list[TelemetryReporter] = []

    def start(config: tinkex.Config, **settings: Any) -> TelemetryReporter:
        session_id = f"session-test-{uuid.uuid4().hex[:8]}"
        reporter = TelemetryReporter.start(
            Runtime.get(), config, session_id, ReporterSettings(**settings)
        )
        started.append(reporter)
        return reporter

    yield start
    for reporter in started:
        reporter.close(timeout=5)


def forwarded(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("event_name") == name]


def paths(events: list[dict[str, Any]]) -> list[str]:
    return [
        e["event_data"]["metadata"]["path"] for e in forwarded(events, "tinkex.http.request.stop")
    ]


# --- a session's report ----------------------------------------------------------------------


def test_a_session_reports_its_start_its_own_signals_its_events_and_its_end(
    open_server: Any,
) -> None:
    key = new_key()
    with tinkex.ServiceClient(base_url=open_server.url, api_key=key, telemetry=True) as service:
        sampler = service.create_sampling_client(base_model=BASE_MODEL).result(timeout=60)
        sampler.sample(PROMPT, 1, PARAMS).result(timeout=60)
        reporter = service.telemetry_reporter
        assert reporter is not None
        assert reporter.log("eval.done", {"accuracy": 0.5, "api_key": key}, severity="warning")
        session = service.session_id

    [batch] = batches_of(open_server, key)  # close() flushed everything in one batch
    assert batch["session_id"] == session
    assert batch["platform"] == platform.system()
    assert batch["sdk_version"] == "0.38.0"
    assert batch["process_uuid"] == PROCESS_UUID
    events = batch["events"]
    assert events[0]["event"] == "SESSION_START"
    assert events[-1]["event"] == "SESSION_END" and events[-1]["duration"].startswith("0:00:")
    assert [e["event_session_index"] for e in events] == list(range(len(events)))
    assert len({e["event_id"] for e in events}) == len(events)
    [mine] = forwarded(events, "eval.done")
    assert mine["severity"] == "WARNING"
    assert mine["event_data"] == {"accuracy": 0.5, "api_key": "***"}
    # The session's own requests, sampling included; never the reporter's own posts.
    sent = paths(events)
    assert "/api/v1/create_sampling_session" in sent
    assert sent.count("/api/v1/asample") == 1
    assert "/api/v1/retrieve_future" in sent
    assert sent[-1] == f"/api/v1/sessions/{session}/finish"
    assert "/api/v1/telemetry" not in sent
    assert key not in json.dumps(batch)
    # Closed: the actor is gone and later events are refused.
    assert reporter.closed and reporter.queued == 0 and reporter.sent == len(events)
    assert Runtime.get().registry.whereis(reporter.name) is None
    assert not reporter.log("too.late")
    assert not telemetry.list_handlers(reporter.handler_id)


def test_the_reporter_is_there_from_the_first_line(open_server: Any) -> None:
    # As in the docs: the reporter is asked for before anything else opened the session.
    key = new_key()
    with tinkex.ServiceClient(base_url=open_server.url, api_key=key, telemetry=True) as service:
        reporter = service.telemetry_reporter
        assert reporter is not None
        assert reporter.log("first.thing")
        session = service.session_id
    names = [e.get("event_name", e["event"]) for e in events_of(open_server, key, session)]
    assert names[:2] == ["SESSION_START", "first.thing"]
    assert names[-1] == "SESSION_END"
    closed_early = tinkex.ServiceClient(base_url=open_server.url, api_key=key, telemetry=True)
    closed_early.close().result(timeout=60)
    assert closed_early.telemetry_reporter is None


def test_two_sessions_report_only_their_own_signals(open_server: Any) -> None:
    key = new_key()
    config = {"base_url": open_server.url, "api_key": key, "telemetry": True}
    with tinkex.ServiceClient(**config) as one, tinkex.ServiceClient(**config) as two:
        first = one.create_sampling_client(base_model=BASE_MODEL).result(timeout=60)
        second = two.create_sampling_client(base_model=BASE_MODEL).result(timeout=60)
        futures = [sampler.sample(PROMPT, 1, PARAMS) for sampler in (first, second, second)]
        for future in futures:
            future.result(timeout=60)
        sessions = one.session_id, two.session_id

    for session, samples in zip(sessions, (1, 2), strict=True):
        sent = paths(events_of(open_server, key, session))
        assert sent.count("/api/v1/asample") == samples
        assert sent.count("/api/v1/create_sampling_session") == 1
        finishes = [p for p in sent if p.endswith("/finish")]
        assert finishes == [f"/api/v1/sessions/{session}/finish"]


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_disabled_telemetry_sends_nothing_at_all(
    open_server: Any, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    key = new_key()
    if how == "argument":
        service = tinkex.ServiceClient(base_url=open_server.url, api_key=key, telemetry=False)
    else:
        monkeypatch.setenv("TINKER_TELEMETRY", "0")
        service = tinkex.ServiceClient(base_url=open_server.url, api_key=key)
    with service:
        sampler = service.create_sampling_client(base_model=BASE_MODEL).result(timeout=60)
        sampler.sample(PROMPT, 1, PARAMS).result(timeout=60)
        assert service.telemetry_reporter is None
        session = service.session_id
    assert Runtime.get().registry.whereis(f"telemetry:{session}") is None
    assert batches_of(open_server, key) == []


def test_user_errors_and_crashes_are_told_apart(open_server: Any) -> None:
    key = new_key()
    with (
        pytest.raises(RuntimeError, match="the script broke"),
        tinkex.ServiceClient(base_url=open_server.url, api_key=key, telemetry=True) as service,
    ):
        sampler = service.create_sampling_client(base_model=BASE_MODEL).result(timeout=60)
        session = service.session_id
        with pytest.raises(RequestFailedError) as bad_input:
            sampler.sample(ModelInput.from_ints([1, 300]), 1, PARAMS).result(timeout=60)
        reporter = service.telemetry_reporter
        assert reporter is not None
        reporter.log_exception(bad_input.value)
        raise RuntimeError("the script broke")

    events = events_of(open_server, key, session)
    user_errors = forwarded(events, "user_error")
    # One forwarded from the failed future's signal, one logged by the script.
    assert [e["event_data"].get("signal") for e in user_errors] == [
        "tinkex.future.request_failed",
        None,
    ]
    for event in user_errors:
        assert event["severity"] == "WARNING"
        assert event["event_data"]["category"] == "user"
        assert "outside the vocabulary" in event["event_data"]["message"]
    [crash] = [e for e in events if e["event"] == "UNHANDLED_EXCEPTION"]
    assert crash["error_type"] == "RuntimeError"
    assert crash["error_message"] == "the script broke"
    assert 'raise RuntimeError("the script broke")' in crash["traceback"]
    assert events[-1]["event"] == "SESSION_END"


def test_every_credential_of_the_config_is_scrubbed_from_what_is_sent(
    open_server: Any, start_reporter: StartReporter
) -> None:
    key = new_key()
    config = tinkex.Config(
        api_key=key,
        base_url=open_server.url,
        default_headers={"Authorization": "Bearer hdr-bearer-5e2a", "X-Trace-Id": "trace-1"},
        cf_access_client_secret="cf-secret-77b1",
        proxy="http://alice:pr%40xy-pass-9c@proxy.invalid:3128",
        # The proxy is never used: the reporter sends through this client, to the server.
        http_client=httpx.AsyncClient(),
    )
    reporter = start_reporter(config, **QUIET)
    leaks = f"{key} hdr-bearer-5e2a cf-secret-77b1 pr@xy-pass-9c alice:pr%40xy-pass-9c trace-1"
    reporter.log("leak", {"text": leaks})
    reporter.log_exception(RuntimeError(f"failed with {leaks}"))

    assert reporter.flush(timeout=30)
    sent = json.dumps(batches_of(open_server, key))
    for secret in (key, "hdr-bearer-5e2a", "cf-secret-77b1", "pr@xy-pass-9c", "pr%40xy-pass-9c"):
        assert secret not in sent
    _, leak, crash = events_of(open_server, key)
    assert leak["event_data"] == {"text": "*** *** *** *** *** trace-1"}
    assert crash["error_message"] == "failed with *** *** *** *** *** trace-1"


# --- batching ---------------------------------------------------------------------------------


def test_the_threshold_starts_a_flush_sent_in_batches(
    open_server: Any, start_reporter: StartReporter
) -> None:
    key = new_key()
    config = tinkex.Config(api_key=key, base_url=open_server.url)
    reporter = start_reporter(config, flush_threshold=5, max_batch_size=3, **QUIET)
    for n in range(3):
        assert reporter.log("step", {"n": n})
    assert reporter.queued == 4  # SESSION_START and three events: below the threshold
    assert batches_of(open_server, key) == []

    assert reporter.log("step", {"n": 3})  # the fifth event
    assert reporter.wait_drained(timeout=30)

    batches = batches_of(open_server, key)
    assert [len(b["events"]) for b in batches] == [3, 2]
    indexes = [e["event_session_index"] for b in batches for e in b["events"]]
    assert indexes == [0, 1, 2, 3, 4]
    assert reporter.sent == 5


def test_the_timer_flushes_what_is_queued(open_server: Any, start_reporter: StartReporter) -> None:
    key = new_key()
    config = tinkex.Config(api_key=key, base_url=open_server.url)
    reporter = start_reporter(config, flush_interval=0.05, flush_threshold=1000)
    reporter.log("one")
    reporter.log("two")
    assert reporter.wait_drained(timeout=30)  # only the timer can have sent them
    names = [e.get("event_name", e["event"]) for e in events_of(open_server, key)]
    assert names == ["SESSION_START", "one", "two"]


def test_a_full_queue_drops_and_counts_and_what_was_kept_is_sent(
    open_server: Any, start_reporter: StartReporter, caplog: pytest.LogCaptureFixture
) -> None:
    key = new_key()
    config = tinkex.Config(api_key=key, base_url=open_server.url)
    reporter = start_reporter(config, max_queue_size=4, **QUIET)
    with caplog.at_level(logging.WARNING, logger="tinkex.reporting"):
        accepted = [reporter.log("e", {"n": n}) for n in range(6)]
    assert accepted == [True, True, True, False, False, False]
    assert reporter.dropped == 3
    assert len([r for r in caplog.records if "queue is full" in r.getMessage()]) == 1

    assert reporter.flush(timeout=30)
    assert [e["event_session_index"] for e in events_of(open_server, key)] == [0, 1, 2, 3]


def test_events_carry_what_and_when_it_happened_not_what_it_became_by_the_send(
    open_server: Any, start_reporter: StartReporter
) -> None:
    # Events are built when their batch is sent, off the I/O loop; what they say must still
    # be fixed when they are queued.
    key = new_key()
    reporter = start_reporter(tinkex.Config(api_key=key, base_url=open_server.url), **QUIET)
    data: dict[str, Any] = {"step": 1, "nested": {"loss": 0.5}}
    metadata = {"session_id": reporter.session_id, "path": "/api/v1/asample", "status": 200}
    before = datetime.now(UTC)
    assert reporter.log("mine", data)
    reporter.forward("tinkex.http.request.stop", {"duration": 5}, metadata)
    after = datetime.now(UTC)
    data["nested"]["loss"] = 9.0
    metadata["status"] = 500

    assert reporter.flush(timeout=30)
    _, mine, signal = events_of(open_server, key)
    assert mine["event_data"] == {"step": 1, "nested": {"loss": 0.5}}
    assert signal["event_data"]["metadata"]["status"] == 200
    for event in (mine, signal):
        assert before <= datetime.fromisoformat(event["timestamp"]) <= after


# --- failures: a tinkex serve whose telemetry endpoint misbehaves ---------------------------

FAST_RETRIES = {"retry_base_delay": 0.001, "max_send_attempts": 4, **QUIET}


def injected(server: Any, knob: str) -> int:
    """How many times ``server``'s fault ``knob`` fired."""
    count: int = server.service.faults.injected[knob]
    return count


def test_503s_are_retried_and_every_batch_arrives_once_in_order(
    serve: Callable[..., Any], start_reporter: StartReporter
) -> None:
    server = serve("telemetry_5xx_rate=0.5,seed=1")
    key = new_key()
    config = tinkex.Config(api_key=key, base_url=server.url)
    reporter = start_reporter(config, max_batch_size=1, **FAST_RETRIES)
    for n in range(5):
        reporter.log("precious", {"n": n})

    assert reporter.flush(timeout=30)

    assert injected(server, "telemetry_5xx_rate") > 0, "the seed should inject some 503s"
    batches = batches_of(server, key)  # a 503 records nothing: what is here was delivered
    assert [[e["event_session_index"] for e in b["events"]] for b in batches] == [
        [n] for n in range(6)
    ]
    assert (reporter.sent, reporter.lost) == (6, 0)


def test_a_batch_the_server_keeps_refusing_is_dropped_without_troubling_the_caller(
    serve: Callable[..., Any], start_reporter: StartReporter, caplog: pytest.LogCaptureFixture
) -> None:
    server = serve("telemetry_5xx_rate=1")
    key = new_key()
    reporter = start_reporter(tinkex.Config(api_key=key, base_url=server.url), **FAST_RETRIES)
    with caplog.at_level(logging.WARNING, logger="tinkex.reporting"):
        assert reporter.log_exception(RuntimeError("boom"))  # starts a flush by itself
        assert reporter.wait_drained(timeout=30)

    assert injected(server, "telemetry_5xx_rate") == 4  # max_send_attempts
    assert (reporter.sent, reporter.lost) == (0, 2)
    assert any("a batch was dropped" in r.getMessage() for r in caplog.records)
    # The reporter keeps working: the next batch gets its own four attempts.
    assert reporter.log("after")
    assert reporter.flush(timeout=30)
    assert injected(server, "telemetry_5xx_rate") == 8
    assert (reporter.sent, reporter.lost) == (0, 3)
    assert batches_of(server, key) == []


def test_a_dropped_answer_is_retried_with_the_same_events(
    serve: Callable[..., Any], start_reporter: StartReporter
) -> None:
    # The server recorded each attempt before the connection dropped, so it holds every
    # resend: the same batch, event ids included (what a server deduplicates on).
    server = serve("telemetry_drop_rate=1")
    key = new_key()
    reporter = start_reporter(tinkex.Config(api_key=key, base_url=server.url), **FAST_RETRIES)
    reporter.log("precious")

    assert reporter.flush(timeout=30)

    batches = batches_of(server, key)
    assert len(batches) == injected(server, "telemetry_drop_rate") == 4
    assert all(batch == batches[0] for batch in batches)
    assert [e.get("event_name", e["event"]) for e in batches[0]["events"]] == [
        "SESSION_START",
        "precious",
    ]
    assert (reporter.sent, reporter.lost) == (0, 2)  # the client never saw an answer


def test_a_config_deadline_bounds_the_drain_at_close(
    serve: Callable[..., Any], start_reporter: StartReporter, caplog: pytest.LogCaptureFixture
) -> None:
    # `tinkex --timeout` passes its deadline in the config: a server whose telemetry keeps
    # failing must not hold the command for the 30 s drain timeout once the budget is spent.
    server = serve("telemetry_5xx_rate=1")
    key = new_key()
    config = tinkex.Config(api_key=key, base_url=server.url, deadline=time.monotonic() - 1)
    slow_retries = {**FAST_RETRIES, "retry_base_delay": 60.0}  # each retry waits a minute
    reporter = start_reporter(config, **slow_retries)
    with caplog.at_level(logging.WARNING, logger="tinkex.reporting"):
        assert not reporter.close()
    [warning] = [r.getMessage() for r in caplog.records if "were not sent" in r.getMessage()]
    assert warning.endswith("were not sent within 1 s")


def test_a_refused_key_is_not_retried(
    serve: Callable[..., Any], start_reporter: StartReporter
) -> None:
    server = serve(api_keys=frozenset({API_KEY}))
    reporter = start_reporter(tinkex.Config(api_key=new_key(), base_url=server.url), **FAST_RETRIES)
    with telemetry.capture("tinkex.http.request.stop") as answers:
        assert reporter.flush(timeout=30)
    statuses = [
        metadata["status"]
        for _, _, metadata in answers
        if metadata["base_url"] == server.url and metadata["path"] == "/api/v1/telemetry"
    ]
    assert statuses == [401]
    assert (reporter.sent, reporter.lost) == (0, 1)


def test_a_crashed_reporter_is_restarted_and_loses_nothing(
    open_server: Any, start_reporter: StartReporter
) -> None:
    key = new_key()
    reporter = start_reporter(tinkex.Config(api_key=key, base_url=open_server.url), **QUIET)
    for n in range(3):
        reporter.log("before", {"n": n})
    restarted = threading.Event()

    def on_restart(event: str, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        if metadata["child_id"] == reporter.name:
            restarted.set()

    telemetry.attach("test-reporter-restart", "tinkex.supervisor.child_restarted", on_restart)
    try:
        Runtime.get().ref(reporter.name).tell("a message no actor understands")
        assert restarted.wait(30), "the reporter was not restarted"
    finally:
        telemetry.detach("test-reporter-restart")
    for n in range(2):
        reporter.log("after", {"n": n})

    assert reporter.flush(timeout=30)
    events = events_of(open_server, key)
    assert [e.get("event_name", e["event"]) for e in events] == ["SESSION_START"] + [
        "before"
    ] * 3 + ["after"] * 2
    assert [e["event_session_index"] for e in events] == list(range(6))
    assert [h.id for h in telemetry.list_handlers()].count(reporter.handler_id) == 1


def test_the_reporters_own_requests_are_never_forwarded(
    open_server: Any, start_reporter: StartReporter
) -> None:
    # Forwarding them would feed the reporter its own sends for ever.
    reporter = start_reporter(tinkex.Config(api_key=new_key(), base_url=open_server.url), **QUIET)
    own = {"session_id": reporter.session_id, "method": "POST", "status": 200}
    reporter.forward("tinkex.http.request.stop", {}, {**own, "path": "/api/v1/telemetry"})
    assert reporter.queued == 1
    reporter.forward("tinkex.http.request.stop", {}, {**own, "path": "/api/v1/asample"})
    assert reporter.queued == 2


# --- the API ----------------------------------------------------------------------------------


def test_bad_arguments_are_refused_clearly_and_queue_nothing(
    open_server: Any, start_reporter: StartReporter
) -> None:
    reporter = start_reporter(tinkex.Config(api_key=new_key(), base_url=open_server.url), **QUIET)
    with pytest.raises(ValueError, match="non-empty event name"):
        reporter.log("  ")
    with pytest.raises(TypeError, match="data must be a mapping"):
        reporter.log("x", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="severity must be one of"):
        reporter.log("x", severity="LOUD")
    with pytest.raises(TypeError, match="needs an exception"):
        reporter.log_exception("boom")  # type: ignore[arg-type]
    assert reporter.queued == 1  # SESSION_START only


def test_a_session_has_one_reporter(open_server: Any, start_reporter: StartReporter) -> None:
    config = tinkex.Config(api_key=new_key(), base_url=open_server.url)
    reporter = start_reporter(config, **QUIET)
    with pytest.raises(ValueError, match="already has a telemetry reporter"):
        TelemetryReporter.start(Runtime.get(), config, reporter.session_id)


@pytest.mark.parametrize(
    ("setting", "value"),
    [("flush_interval", 0), ("max_batch_size", 0), ("max_queue_size", 2.5), ("send_timeout", -1)],
)
def test_bad_settings_name_the_setting(setting: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"ReporterSettings.{setting} must be"):
        ReporterSettings(**{setting: value})
