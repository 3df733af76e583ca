"""The reporter's event queue: bounded, thread-safe, and outliving the reporter actor.

Events are appended from any thread (user code, telemetry handlers on the I/O loop, actor
threads) without waiting for the actor: an append is a lock and a deque push. What is
queued is the *recipe* of an event, not the event: sanitizing its data and building the
wire model costs tens of microseconds, and a forwarded HTTP signal is queued on the I/O
loop thread for every request, so the work is done when the actor takes the batch, outside
the lock. The actor takes one batch at a time to send and settles it when the send ends; a
batch whose send was interrupted (the client closing, the loop restarting) goes back to the
front, already built, so order, indexes and event ids are kept. The buffer lives in the
actor's supervisor-owned store, so a crash of the actor loses nothing that was queued.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from tinkex.types import TelemetryEvent

__all__ = ["Build", "EventBuffer", "Outcome"]

log = logging.getLogger("tinkex.reporting")

Build = Callable[[int], TelemetryEvent]
"""Builds the event given its ``event_session_index``; called once, in the sending thread."""


class Outcome(Enum):
    """How the send of a batch ended."""

    SENT = "sent"
    """The server accepted it."""
    LOST = "lost"
    """Every attempt failed; the events are dropped (counted in ``lost``)."""
    INTERRUPTED = "interrupted"
    """The send did not finish (client closing, loop restarting): queue it again."""


@dataclass(slots=True)
class _Entry:
    """One accepted event: its index and recipe until :meth:`EventBuffer.take` builds it."""

    index: int
    build: Build
    event: TelemetryEvent | None = None


class EventBuffer:
    """Queued events of one session plus the one batch being sent, at most ``max_size``.

    Every accepted event gets the next ``event_session_index`` (0, 1, 2, ...) under the
    lock, so indexes follow queue order. When the queue is full, new events are dropped,
    counted in :attr:`dropped`, and one warning is logged. An event whose builder raises
    when its batch is taken is skipped, counted in :attr:`lost` and logged.
    """

    def __init__(self, max_size: int) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1, got {max_size}")
        self.max_size = max_size
        self.dropped = 0
        """Events refused because the queue was full."""
        self.lost = 0
        """Events given up on: their batch failed every send attempt, or they could not be
        built."""
        self.sent = 0
        """Events the server accepted."""
        self._queue: deque[_Entry] = deque()
        self._in_flight: list[_Entry] = []
        self._next_index = 0
        self._flushing = False
        self._changed = threading.Condition()

    def __len__(self) -> int:
        """Events waiting, the batch being sent included."""
        with self._changed:
            return len(self._queue) + len(self._in_flight)

    @property
    def last_index(self) -> int:
        """The index of the last accepted event (-1 before the first)."""
        with self._changed:
            return self._next_index - 1

    def put(self, build: Build) -> int | None:
        """Append the event ``build`` makes (built later, when its batch is taken); returns
        the queue length, or ``None`` if it was dropped."""
        with self._changed:
            if len(self._queue) + len(self._in_flight) >= self.max_size:
                self.dropped += 1
                first = self.dropped == 1
            else:
                self._queue.append(_Entry(self._next_index, build))
                self._next_index += 1
                return len(self._queue)
        if first:
            log.warning(
                "telemetry queue is full (%d events): new events are dropped until it drains "
                "(the count is in TelemetryReporter.dropped)",
                self.max_size,
            )
        return None

    def request_flush(self) -> None:
        """Send everything queued, batch after batch, until the queue is empty."""
        with self._changed:
            self._flushing = True

    def take(self, limit: int) -> list[TelemetryEvent] | None:
        """The next batch (at most ``limit`` events) to send, if a flush is under way.

        ``None`` while another batch is being sent, when no flush was requested, or when the
        queue is empty (which ends the flush). Events are built here, outside the lock, so
        that producers never wait for it; only one thread sends, so only one takes.
        """
        while True:
            with self._changed:
                if self._in_flight or not self._flushing:
                    return None
                if not self._queue:
                    self._flushing = False
                    return None
                count = min(limit, len(self._queue))
                entries = [self._queue.popleft() for _ in range(count)]
                self._in_flight = entries  # taken: put() counts them, take() refuses
            batch = [event for event in map(_built, entries) if event is not None]
            with self._changed:
                self._in_flight = [entry for entry in entries if entry.event is not None]
                self.lost += len(entries) - len(self._in_flight)
                if batch:
                    return batch
                self._changed.notify_all()  # every event of the batch was skipped

    def settle(self, outcome: Outcome) -> None:
        """End the send of the batch in flight."""
        with self._changed:
            batch, self._in_flight = self._in_flight, []
            if outcome is Outcome.SENT:
                self.sent += len(batch)
            elif outcome is Outcome.LOST:
                self.lost += len(batch)
            else:
                self._queue.extendleft(reversed(batch))
            self._changed.notify_all()

    def wait_through(self, index: int, timeout: float) -> bool:
        """Wait until no event with an index up to ``index`` is queued or in flight.

        Returns ``False`` if that did not happen within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while not self._settled_through(index):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    def _settled_through(self, index: int) -> bool:
        oldest = self._in_flight[0] if self._in_flight else self._queue[0] if self._queue else None
        return oldest is None or oldest.index > index


def _built(entry: _Entry) -> TelemetryEvent | None:
    """``entry``'s event, built once (a batch sent again keeps its events and their ids)."""
    if entry.event is None:
        try:
            entry.event = entry.build(entry.index)
        except Exception:  # an odd value in the data must cost that event only
            log.warning(
                "could not build telemetry event %d; it is skipped", entry.index, exc_info=True
            )
    return entry.event
