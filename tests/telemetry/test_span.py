"""span(): start / stop / exception with monotonic durations."""

from __future__ import annotations

import types

import pytest

from tinkex import telemetry

EVENTS = ("tinkex.http.request.start", "tinkex.http.request.stop", "tinkex.http.request.exception")


def test_a_span_emits_start_and_stop() -> None:
    with (
        telemetry.capture(*EVENTS) as calls,
        telemetry.span("tinkex.http.request", {"path": "/x"}) as span,
    ):
        span.metadata["status"] = 200
        span.measurements["bytes"] = 12

    (start, start_m, start_md), (stop, stop_m, stop_md) = calls
    assert (start, stop) == EVENTS[:2]
    assert set(start_m) == {"system_time", "monotonic_time"}
    assert start_md == {"path": "/x", "telemetry_span_context": span.context}
    assert stop_m["bytes"] == 12
    assert isinstance(stop_m["duration"], int)
    assert stop_m["duration"] >= 0
    assert stop_m["monotonic_time"] - stop_m["duration"] == start_m["monotonic_time"]
    assert stop_md == {"path": "/x", "status": 200, "telemetry_span_context": span.context}


def test_a_failing_span_emits_exception_and_reraises() -> None:
    with (
        telemetry.capture(*EVENTS) as calls,
        pytest.raises(KeyError),
        telemetry.span(("tinkex", "http", "request")),
    ):
        raise KeyError("k")

    assert [event for event, _, _ in calls] == [EVENTS[0], EVENTS[2]]
    _, measurements, metadata = calls[1]
    assert measurements["duration"] >= 0
    assert metadata["kind"] == "error"
    assert isinstance(metadata["reason"], KeyError)
    assert isinstance(metadata["stacktrace"], types.TracebackType)
    assert metadata["telemetry_span_context"] == calls[0][2]["telemetry_span_context"]


def test_a_base_exception_is_an_exit() -> None:
    with (
        telemetry.capture(EVENTS[2]) as calls,
        pytest.raises(SystemExit),
        telemetry.span("tinkex.http.request"),
    ):
        raise SystemExit(2)

    assert calls[0][2]["kind"] == "exit"


def test_each_span_has_its_own_context() -> None:
    with telemetry.span("a.b") as first, telemetry.span("a.b") as second:
        pass

    assert first.context != second.context
