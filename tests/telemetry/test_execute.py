"""Emitting events: strong references, isolation of failing handlers, many threads."""

from __future__ import annotations

import gc
import logging
import threading
from collections import Counter
from typing import Any

import pytest

from tinkex import telemetry

Calls = list[tuple[str, dict[str, Any], dict[str, Any]]]


def test_execute_without_handlers_does_nothing() -> None:
    telemetry.execute("nobody.listens", {"n": 1}, {"k": "v"})


def test_handlers_get_event_measurements_and_metadata() -> None:
    with telemetry.capture("tests.queue.state_change", "other.event") as calls:
        telemetry.execute("tests.queue.state_change", {"n": 1}, {"queue_state": "paused"})
        telemetry.execute("unrelated.event")

    assert calls == [("tests.queue.state_change", {"n": 1}, {"queue_state": "paused"})]


class Sink:
    calls: Calls = []

    def record(self, event: str, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        Sink.calls.append((event, measurements, metadata))


def attach_closure() -> Calls:
    calls: Calls = []

    def handler(event: str, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        calls.append((event, measurements, metadata))

    telemetry.attach("closure", "weak.trap", handler)
    return calls


def test_lambdas_closures_and_bound_methods_are_held_strongly() -> None:
    lambda_calls: Calls = []
    telemetry.attach("lambda", "weak.trap", lambda e, m, md: lambda_calls.append((e, m, md)))
    closure_calls = attach_closure()
    Sink.calls = []
    telemetry.attach("bound", "weak.trap", Sink().record)  # nothing else refers to the Sink
    gc.collect()

    try:
        telemetry.execute("weak.trap")
    finally:
        for handler_id in ("lambda", "closure", "bound"):
            telemetry.detach(handler_id)

    assert lambda_calls == closure_calls == Sink.calls == [("weak.trap", {}, {})]


def test_a_raising_handler_is_detached_logged_once_and_breaks_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(event: str, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        raise RuntimeError("handler bug")

    telemetry.attach("broken", "some.event", broken)
    with telemetry.capture("some.event", telemetry.HANDLER_FAILURE) as calls:
        telemetry.execute("some.event")  # does not raise
        telemetry.execute("some.event")

    events = [event for event, _, _ in calls]  # handlers run in no particular order
    assert sorted(events) == ["some.event", "some.event", telemetry.HANDLER_FAILURE]
    [failure] = [metadata for event, _, metadata in calls if event == telemetry.HANDLER_FAILURE]
    assert failure["handler_id"] == "broken"
    assert failure["event_name"] == "some.event"
    assert isinstance(failure["reason"], RuntimeError)
    assert telemetry.list_handlers("some.event") == []
    errors = [
        r for r in caplog.records if r.name == "tinkex.telemetry" and r.levelno == logging.ERROR
    ]
    assert len(errors) == 1
    assert "'broken'" in errors[0].getMessage()


def test_many_threads_attach_execute_and_detach_at_once() -> None:
    emitters, rounds = 6, 200
    counts: Counter[str] = Counter()
    counts_lock = threading.Lock()
    attached, done = threading.Barrier(emitters), threading.Barrier(emitters)
    errors: list[BaseException] = []
    churning = threading.Event()

    def count(
        event: str, measurements: dict[str, Any], metadata: dict[str, Any], config: str
    ) -> None:
        with counts_lock:
            counts[config] += 1

    def emitter(index: int) -> None:
        try:
            telemetry.attach(f"emitter-{index}", "load.event", count, f"emitter-{index}")
            attached.wait(10)
            for _ in range(rounds):
                telemetry.execute("load.event")
            done.wait(10)
            telemetry.detach(f"emitter-{index}")
        except BaseException as exc:
            errors.append(exc)

    def churn() -> None:
        try:
            while not churning.is_set():
                telemetry.attach("churn", "load.event", count, "churn")
                telemetry.detach("churn")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=emitter, args=(i,)) for i in range(emitters)]
    churner = threading.Thread(target=churn)
    churner.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    churning.set()
    churner.join(30)

    assert errors == []
    assert {key: n for key, n in counts.items() if key != "churn"} == {
        f"emitter-{i}": emitters * rounds for i in range(emitters)
    }
    assert telemetry.list_handlers("load.event") == []
