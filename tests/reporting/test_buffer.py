"""The event queue: bounded, indexed in order, one batch in flight, nothing lost on retry."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import pytest

from tinkex.reporting import EventBuffer, Outcome
from tinkex.reporting.events import generic_event
from tinkex.types import TelemetryEvent


def make(name: str = "e") -> Callable[[int], TelemetryEvent]:
    def build(index: int) -> TelemetryEvent:
        return generic_event(index, name, {}, "INFO")

    return build


def indexes(batch: list[TelemetryEvent] | None) -> list[int]:
    assert batch is not None
    return [event.event_session_index for event in batch]


def test_events_are_indexed_in_order_and_sent_in_batches_only_while_flushing() -> None:
    buffer = EventBuffer(100)
    for _ in range(5):
        buffer.put(make())
    assert buffer.take(2) is None, "no flush was requested"
    buffer.request_flush()
    assert indexes(buffer.take(2)) == [0, 1]
    assert buffer.take(2) is None, "one batch in flight at a time"
    buffer.settle(Outcome.SENT)
    assert indexes(buffer.take(2)) == [2, 3]
    buffer.settle(Outcome.SENT)
    assert indexes(buffer.take(2)) == [4]
    buffer.settle(Outcome.SENT)
    assert buffer.take(2) is None, "the queue is empty: the flush is over"
    buffer.put(make())
    assert buffer.take(2) is None, "a new event waits for the next flush"
    assert (buffer.sent, buffer.lost, len(buffer), buffer.last_index) == (5, 0, 1, 5)


def test_an_interrupted_batch_goes_back_to_the_front_and_a_failed_one_is_counted() -> None:
    buffer = EventBuffer(100)
    for _ in range(4):
        buffer.put(make())
    buffer.request_flush()
    assert indexes(buffer.take(3)) == [0, 1, 2]
    buffer.settle(Outcome.INTERRUPTED)
    assert len(buffer) == 4
    assert indexes(buffer.take(3)) == [0, 1, 2]
    buffer.settle(Outcome.LOST)
    assert indexes(buffer.take(3)) == [3]
    buffer.settle(Outcome.SENT)
    assert (buffer.sent, buffer.lost, len(buffer)) == (1, 3, 0)


def test_a_full_queue_drops_new_events_counts_them_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    buffer = EventBuffer(3)
    with caplog.at_level(logging.WARNING, logger="tinkex.reporting"):
        accepted = [buffer.put(make()) for _ in range(10)]
    assert accepted == [1, 2, 3, None, None, None, None, None, None, None]
    assert buffer.dropped == 7
    assert buffer.last_index == 2, "dropped events take no index"
    warnings = [r.getMessage() for r in caplog.records if r.name == "tinkex.reporting"]
    assert len(warnings) == 1
    assert "telemetry queue is full (3 events)" in warnings[0]
    # The batch in flight still counts: the queue holds at most max_size events.
    buffer.request_flush()
    buffer.take(2)
    assert buffer.put(make()) is None


def test_wait_through_returns_once_the_events_up_to_an_index_left() -> None:
    buffer = EventBuffer(100)
    for _ in range(4):
        buffer.put(make())
    buffer.request_flush()
    assert not buffer.wait_through(1, timeout=0)
    batch = buffer.take(2)
    assert indexes(batch) == [0, 1]
    sent = threading.Event()

    def settle_later() -> None:
        sent.wait(10)
        buffer.settle(Outcome.SENT)

    worker = threading.Thread(target=settle_later)
    worker.start()
    sent.set()
    assert buffer.wait_through(1, timeout=10)
    worker.join(10)
    assert not buffer.wait_through(3, timeout=0), "events 2 and 3 are still queued"
    assert buffer.wait_through(-1, timeout=0)


def test_a_buffer_needs_room_for_one_event() -> None:
    with pytest.raises(ValueError, match="max_size must be at least 1"):
        EventBuffer(0)


def test_events_are_built_when_taken_once_each_and_a_broken_one_costs_only_itself(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # put() runs on the I/O loop for every forwarded request: it must not build.
    built: list[int] = []

    def recording(index: int) -> TelemetryEvent:
        built.append(index)
        return generic_event(index, "e", {}, "INFO")

    def broken(index: int) -> TelemetryEvent:
        raise RuntimeError("an odd value")

    buffer = EventBuffer(100)
    for build in (recording, broken, recording):
        buffer.put(build)
    assert built == []
    buffer.request_flush()
    with caplog.at_level(logging.WARNING, logger="tinkex.reporting"):
        first = buffer.take(3)
    assert indexes(first) == [0, 2] and built == [0, 2]
    assert (buffer.lost, len(buffer)) == (1, 2)
    assert any("could not build telemetry event 1" in r.getMessage() for r in caplog.records)
    # Sent again after an interruption: the same events (ids included), not rebuilt.
    buffer.settle(Outcome.INTERRUPTED)
    again = buffer.take(3)
    assert again == first and built == [0, 2]
    buffer.settle(Outcome.SENT)
    assert (buffer.sent, buffer.lost, len(buffer)) == (2, 1, 0)
    assert buffer.wait_through(2, timeout=0)


def test_a_batch_whose_every_event_is_broken_does_not_stall_the_flush() -> None:
    def broken(index: int) -> TelemetryEvent:
        raise RuntimeError("an odd value")

    buffer = EventBuffer(100)
    buffer.put(broken)
    buffer.put(broken)
    buffer.put(make())
    buffer.request_flush()
    assert indexes(buffer.take(2)) == [2], "the next batch is taken at once"
    assert buffer.lost == 2
