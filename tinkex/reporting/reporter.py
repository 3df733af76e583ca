"""The telemetry reporter: one per session, batching events to ``POST /api/v1/telemetry``.

Two parts, as in the rest of the client:

* :class:`TelemetryReporter` is what code holds (``ServiceClient.telemetry_reporter``). Its
  methods work from any thread, never wait for the network unless asked to
  (:meth:`~TelemetryReporter.flush`, :meth:`~TelemetryReporter.close`) and never raise
  because telemetry failed. It owns the event queue, an :class:`~.buffer.EventBuffer`.
* :class:`ReporterActor` is the supervised actor (a transient child of the runtime's
  ``telemetry`` supervisor, named ``telemetry:<session_id>``). It attaches the handler that
  forwards the session's own signals, runs the flush timer in a thread of its own (a
  handler never sleeps), and hands each batch to the I/O loop as a :class:`SendJob`. The
  reporter lives in the actor's store, so a crash and restart loses no queued event; if
  the actor is gone for good (its supervisor gave up and came back empty), the reporter
  starts it again on its next flush.

Until it is closed, a reporter is registered with :mod:`.hooks`, which reports an
unhandled exception and drains the reporter when the process ends.

A flush sends the whole queue, one batch of at most ``max_batch_size`` events at a time; it
starts every ``flush_interval`` seconds, as soon as ``flush_threshold`` events are queued,
right after an exception is logged, and on :meth:`~TelemetryReporter.flush` /
:meth:`~TelemetryReporter.close`. A batch that fails is retried with exponential backoff up
to ``max_send_attempts`` times, then dropped (and counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

import pykka

from tinkex import telemetry
from tinkex.actors.base import TinkexActor
from tinkex.actors.io_loop import ClientClosedError, LoopContext, LoopStoppedError
from tinkex.actors.jobs import complete, new_job_id
from tinkex.config import Config
from tinkex.errors import APIConnectionError, APIError, APIStatusError
from tinkex.futures.events import (
    FUTURE_API_ERROR,
    FUTURE_REQUEST_FAILED,
    FUTURE_VALIDATION_ERROR,
    QUEUE_STATE_CHANGE,
)
from tinkex.supervision import DuplicateChildError, ExitReason
from tinkex.transport.client import LATE_ATTEMPT_SECONDS
from tinkex.types import TelemetrySendRequest

from . import context, hooks
from .buffer import Build, EventBuffer, Outcome
from .events import (
    PLATFORM,
    PROCESS_UUID,
    check_severity,
    exception_event,
    generic_event,
    now,
    sanitize,
    session_end_event,
    session_start_event,
    signal_event,
)

if TYPE_CHECKING:
    from tinkex.actors.runtime import Runtime

__all__ = [
    "DEFAULT_FORWARDED_EVENTS",
    "SUPERVISOR",
    "ReporterActor",
    "ReporterSettings",
    "SendJob",
    "TelemetryReporter",
]

log = logging.getLogger("tinkex.reporting")

DEFAULT_FORWARDED_EVENTS: Final[tuple[str, ...]] = (
    "tinkex.http.request.stop",
    "tinkex.http.request.exception",
    QUEUE_STATE_CHANGE,
    FUTURE_REQUEST_FAILED,
    FUTURE_API_ERROR,
    FUTURE_VALIDATION_ERROR,
)
"""The signals a reporter forwards as ``GENERIC_EVENT``s, when they are its session's."""

SUPERVISOR: Final = "telemetry"
"""The runtime's dynamic supervisor of the reporters' actors, beside ``clients``."""
TELEMETRY_PATH: Final = "telemetry"
_OWN_REQUESTS: Final = "/api/v1/" + TELEMETRY_PATH
"""The reporter's own requests are never forwarded (that would feed itself forever)."""
_RETRYABLE_STATUSES: Final = frozenset({408, 409, 429})
_MAX_RETRY_DELAY: Final = 30.0


@dataclass(frozen=True)
class ReporterSettings:
    """How a :class:`TelemetryReporter` batches and sends (defaults: PROTOCOL §4.9)."""

    flush_interval: float = 10.0
    """Seconds between periodic flushes."""
    flush_threshold: int = 100
    """A flush starts as soon as this many events are queued."""
    max_batch_size: int = 100
    """Events per request."""
    max_queue_size: int = 10_000
    """Events held at most (the batch being sent included); more are dropped and counted."""
    send_timeout: float = 5.0
    """Seconds one send attempt may take."""
    max_send_attempts: int = 4
    """Attempts per batch (the first and three retries) before it is dropped."""
    retry_base_delay: float = 1.0
    """Seconds before the first retry; doubled for each next one (up to 10 % jitter)."""
    drain_timeout: float = 30.0
    """How long :meth:`TelemetryReporter.close` (and a bare ``flush()``) waits."""
    forwarded_events: tuple[str, ...] = DEFAULT_FORWARDED_EVENTS
    """Signals forwarded as ``GENERIC_EVENT``s; ``()`` forwards none."""

    def __post_init__(self) -> None:
        for name in ("flush_interval", "send_timeout", "drain_timeout"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"ReporterSettings.{name} must be a positive number of seconds")
        if not isinstance(self.retry_base_delay, int | float) or self.retry_base_delay < 0:
            raise ValueError("ReporterSettings.retry_base_delay must not be negative")
        for name in ("flush_threshold", "max_batch_size", "max_queue_size", "max_send_attempts"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ReporterSettings.{name} must be a positive integer")
        if isinstance(self.forwarded_events, str):
            raise ValueError("ReporterSettings.forwarded_events must be a tuple of event names")

    def retry_delay(self, retry: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry`` (1, 2, ...)."""
        delay = min(float(self.retry_base_delay) * 2.0 ** (retry - 1), _MAX_RETRY_DELAY)
        return delay * rng.uniform(1.0, 1.1)


class TelemetryReporter:
    """Reports one session's events to the server; safe to use from any thread.

    Get it from ``ServiceClient.telemetry_reporter`` (``None`` when telemetry is disabled
    with ``TINKER_TELEMETRY=0`` / ``Config(telemetry=False)``)::

        reporter = service.telemetry_reporter
        if reporter is not None:
            reporter.log("eval.done", {"accuracy": 0.91})
            try:
                ...
            except Exception as exc:
                reporter.log_exception(exc)
                raise

    :meth:`log` and :meth:`log_exception` only queue (they return whether the event was
    accepted; ``False`` when the queue is full). Bad arguments raise ``TypeError`` /
    ``ValueError``; nothing else does. Make one with :meth:`start`, which also starts its
    actor (a reporter without one queues but never sends).
    """

    def __init__(
        self,
        runtime: Runtime,
        config: Config,
        session_id: str,
        settings: ReporterSettings | None = None,
    ) -> None:
        self.session_id = session_id
        self.settings = settings or ReporterSettings()
        self.name = f"telemetry:{session_id}"
        """Registry name of this reporter's actor."""
        self.handler_id = f"tinkex.reporting.{session_id}"
        """Telemetry handler id of the forwarding handler."""
        self._runtime = runtime
        self._config = config
        self._secrets = config.secrets
        self._buffer = EventBuffer(self.settings.max_queue_size)
        self._samplers: set[str] = set()
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._closed = False
        self._stopped = False
        """Set once :meth:`close` stopped the actor: it is never started again."""
        self._buffer.put(functools.partial(session_start_event, timestamp=now()))

    @classmethod
    def start(
        cls,
        runtime: Runtime,
        config: Config,
        session_id: str,
        settings: ReporterSettings | None = None,
    ) -> TelemetryReporter:
        """A reporter for ``session_id`` with its actor started (queues ``SESSION_START``).

        Raises:
            ValueError: the session already has a reporter (``ServiceClient`` starts one:
                use its ``telemetry_reporter``).
        """
        reporter = cls(runtime, config, session_id, settings)
        if runtime.registry.whereis(reporter.name) is not None:
            raise ValueError(
                f"session {session_id} already has a telemetry reporter; use that one "
                "(ServiceClient.telemetry_reporter) instead of starting another"
            )
        runtime.ensure_client_actor(
            reporter.name, ReporterActor, under=SUPERVISOR, reporter=reporter
        )
        hooks.register(reporter, runtime)
        return reporter

    def __repr__(self) -> str:
        return (
            f"TelemetryReporter(session_id={self.session_id!r}, queued={len(self._buffer)}, "
            f"sent={self.sent}, dropped={self.dropped}, lost={self.lost})"
        )

    # counters -------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (later events are refused)."""
        return self._closed

    @property
    def queued(self) -> int:
        """Events not yet sent (the batch being sent included)."""
        return len(self._buffer)

    @property
    def sent(self) -> int:
        """Events the server accepted."""
        return self._buffer.sent

    @property
    def dropped(self) -> int:
        """Events refused because the queue was full."""
        return self._buffer.dropped

    @property
    def lost(self) -> int:
        """Events given up on: every send attempt of their batch failed, or they could not
        be encoded."""
        return self._buffer.lost

    # the public API -------------------------------------------------------------------------

    def log(
        self, name: str, data: Mapping[str, Any] | None = None, *, severity: str = "INFO"
    ) -> bool:
        """Queue a ``GENERIC_EVENT`` called ``name`` carrying ``data`` (a JSON-able mapping).

        Values that are not JSON are sent as their ``repr``; the credentials never are.
        Returns whether the event was queued.
        """
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"log() needs a non-empty event name, got {name!r}")
        if data is not None and not isinstance(data, Mapping):
            raise TypeError(f"log() data must be a mapping (e.g. a dict), got {type(data)}")
        level = check_severity(severity)
        try:  # now, in the caller's thread: the caller may change ``data`` afterwards
            clean = sanitize(data or {}, self._secrets)
        except Exception:  # an odd value in the data must not reach the caller
            log.warning("could not encode the data of telemetry event %r", name, exc_info=True)
            return False
        return self._enqueue(
            functools.partial(generic_event, name=name, data=clean, severity=level, timestamp=now())
        )

    def log_exception(self, error: BaseException, *, severity: str = "ERROR") -> bool:
        """Queue ``error`` and start a flush: a ``user_error`` event if it is the caller's
        fault (see :func:`~tinkex.reporting.events.is_user_error`), else an
        ``UNHANDLED_EXCEPTION`` with its traceback. Returns whether it was queued."""
        if not isinstance(error, BaseException):
            raise TypeError(f"log_exception() needs an exception, got {type(error)}")
        level = check_severity(severity)
        return self._enqueue(
            functools.partial(
                exception_event,
                error=error,
                severity=level,
                secrets=self._secrets,
                timestamp=now(),
            ),
            urgent=True,
        )

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued so far and wait up to ``timeout`` seconds (default
        ``drain_timeout``) until it has been sent or given up on; ``timeout=0`` only starts
        the flush. Returns whether every such event left the queue in time."""
        target = self._buffer.last_index
        self._buffer.request_flush()
        self._poke()
        return self._wait_through(target, timeout)

    def wait_drained(self, timeout: float | None = None) -> bool:
        """Wait like :meth:`flush` but without starting a flush: for the periodic or the
        threshold flush to send what is queued now."""
        return self._wait_through(self._buffer.last_index, timeout)

    def _wait_through(self, index: int, timeout: float | None) -> bool:
        return self._buffer.wait_through(index, self._wait_seconds(timeout))

    def _wait_seconds(self, timeout: float | None) -> float:
        """``timeout``, or by default ``drain_timeout`` cut to what is left of the config's
        ``deadline`` (as the HTTP layer cuts its attempts: never below
        :data:`~tinkex.transport.client.LATE_ATTEMPT_SECONDS`), so that a command with a
        ``--timeout`` does not wait half a minute at its end for a server that went away."""
        if timeout is not None:
            return max(0.0, timeout)
        deadline = self._config.deadline
        if deadline is None:
            return self.settings.drain_timeout
        left = max(deadline - time.monotonic(), LATE_ATTEMPT_SECONDS)
        return min(self.settings.drain_timeout, left)

    def close(self, timeout: float | None = None) -> bool:
        """End the session's reporting: stop forwarding signals, queue ``SESSION_END``,
        drain the queue (up to ``timeout``, default ``drain_timeout``), stop the actor.

        Returns whether everything was sent in time. Later calls do nothing.
        """
        with self._lock:
            if self._closed:
                return True
            self._closed = True
        telemetry.detach(self.handler_id)
        duration = timedelta(seconds=time.monotonic() - self._started)
        self._buffer.put(functools.partial(session_end_event, duration=duration, timestamp=now()))
        wait = self._wait_seconds(timeout)
        drained = self.flush(wait)
        if not drained:
            log.warning(
                "telemetry of session %s: %d event(s) were not sent within %g s",
                self.session_id,
                len(self._buffer),
                wait,
            )
        self._stopped = True
        hooks.unregister(self)
        try:
            self._runtime.stop_client_actor(self.name, under=SUPERVISOR)
        except Exception:
            log.warning("could not stop the telemetry reporter %s", self.name, exc_info=True)
        return drained

    def track_sampling_session(self, sampling_session_id: str) -> None:
        """Count ``sampling_session_id``'s signals as this session's (sampling signals name
        only their sampler)."""
        with self._lock:
            self._samplers.add(sampling_session_id)

    # the forwarding handler -----------------------------------------------------------------

    def forward(self, event: str, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        """Telemetry handler: queue this session's signals as ``GENERIC_EVENT``s.

        It runs for every HTTP request, on the I/O loop thread, so it only queues a recipe
        (the event is built when its batch is sent) over shallow copies of the dicts.
        """
        if metadata.get("path") == _OWN_REQUESTS or not self._owns(metadata):
            return
        self._enqueue(
            functools.partial(
                signal_event,
                event=event,
                measurements=dict(measurements),
                metadata=dict(metadata),
                secrets=self._secrets,
                timestamp=now(),
            )
        )

    def _owns(self, metadata: Mapping[str, Any]) -> bool:
        """Whether the signal names this session or one of its samplers (its metadata
        first, then the ids the emitting job bound, see :mod:`.context`)."""
        bound = context.current()
        session = metadata["session_id"] if "session_id" in metadata else bound.get("session_id")
        if session == self.session_id:
            return True
        key = "sampling_session_id"
        sampler = metadata[key] if key in metadata else bound.get(key)
        if sampler is None:
            return False
        with self._lock:
            return sampler in self._samplers

    # internals ------------------------------------------------------------------------------

    def _enqueue(self, build: Build, *, urgent: bool = False) -> bool:
        if self._closed:
            return False
        length = self._buffer.put(build)
        if length is None:
            return False
        if urgent or length == self.settings.flush_threshold:
            self._buffer.request_flush()
            self._poke()
        return True

    def _poke(self) -> None:
        """Ask the actor to send the next batch (a message: it does not wait for the send).
        A missing actor is fine: the next incarnation resumes the flush when it starts, and
        if none is coming the actor is started again (see :meth:`_restart_actor`)."""
        ref = self._runtime.registry.whereis(self.name)
        if ref is None:
            self._restart_actor()
            return
        with contextlib.suppress(pykka.ActorDeadError):
            ref.tell(_Pump())

    def _restart_actor(self) -> None:
        """Start the actor again when its supervisor lost it for good (the supervisor gave
        up and was restarted empty); the new incarnation resumes the flush.

        Starting waits for the supervisor, so it is never done in a thread running an event
        loop (a signal forwarded on the I/O loop, or a caller's asyncio code): the next
        flush from an ordinary thread, ``close()`` included, does it.
        """
        if self._stopped or _in_event_loop():
            return
        try:
            self._runtime.ensure_client_actor(
                self.name, ReporterActor, under=SUPERVISOR, reporter=self
            )
        except DuplicateChildError:
            pass  # its supervisor is restarting it right now
        except Exception:
            log.warning("could not restart the telemetry reporter %s", self.name, exc_info=True)

    def _send_next(self) -> None:
        """Hand the next batch to the I/O loop, if a flush is under way and none is in flight.

        Called in the actor's thread only.
        """
        batch = self._buffer.take(self.settings.max_batch_size)
        if batch is None:
            return
        request = TelemetrySendRequest(
            events=batch,
            platform=PLATFORM,
            sdk_version=self._config.sdk_version,
            session_id=self.session_id,
            process_uuid=PROCESS_UUID,
        )
        job = SendJob(self._config, request.to_wire(), self.settings)
        job.result.add_done_callback(self._sent)
        try:
            self._runtime.loop().spawn(job)
        except LoopStoppedError:
            pass  # the job is on the loop's board and runs on its next incarnation
        except Exception:
            log.warning("could not hand a telemetry batch to the I/O loop", exc_info=True)
            self._buffer.settle(Outcome.INTERRUPTED)

    def _sent(self, result: Future[None]) -> None:
        error = None if result.cancelled() else result.exception()
        if result.cancelled() or isinstance(error, ClientClosedError):
            self._buffer.settle(Outcome.INTERRUPTED)  # the runtime is closing; keep them
        elif error is None:
            self._buffer.settle(Outcome.SENT)
        else:
            self._buffer.settle(Outcome.LOST)
            log.warning(
                "telemetry of session %s: a batch was dropped after %d attempt(s): %s",
                self.session_id,
                self.settings.max_send_attempts,
                error,
            )
        self._poke()


@dataclass
class SendJob:
    """Posts one batch, retrying transient failures with backoff; a job on the I/O loop.

    As a job it is kept on the loop's board: if the loop restarts mid-send, the batch is
    sent again (the server can deduplicate by ``event_id``).
    """

    config: Config
    body: dict[str, Any]
    settings: ReporterSettings
    rng: random.Random = field(default_factory=random.Random)
    job_id: str = field(default_factory=lambda: new_job_id("telemetry"))
    result: Future[None] = field(default_factory=Future)

    async def run(self, ctx: LoopContext) -> None:
        transport = ctx.transport(self.config)
        for attempt in range(1, self.settings.max_send_attempts + 1):
            try:
                await transport.request_json(
                    "POST",
                    TELEMETRY_PATH,
                    json=self.body,
                    timeout=self.settings.send_timeout,
                    max_retries=0,
                )
            except APIError as exc:
                if attempt == self.settings.max_send_attempts or not _retryable(exc):
                    raise
                await asyncio.sleep(self.settings.retry_delay(attempt, self.rng))
            else:
                complete(self.result, None)
                return


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _retryable(error: APIError) -> bool:
    if isinstance(error, APIStatusError):
        return error.status_code >= 500 or error.status_code in _RETRYABLE_STATUSES
    return isinstance(error, APIConnectionError)


@dataclass(frozen=True)
class _Pump:
    """Message: send the next batch if a flush is under way."""


class _Ticker:
    """Calls ``tick`` every ``interval`` seconds in a thread of its own until stopped."""

    def __init__(self, interval: float, tick: Callable[[], None], name: str) -> None:
        self._interval = interval
        self._tick = tick
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            self._tick()

    def stop(self) -> None:
        self._stopped.set()


class ReporterActor(TinkexActor):
    """The supervised half of a :class:`TelemetryReporter` (see the module docs)."""

    def __init__(self, reporter: TelemetryReporter) -> None:
        super().__init__()
        self._initial = reporter

    def init(self) -> None:
        self.reporter: TelemetryReporter = self.store.setdefault("reporter", self._initial)
        reporter = self.reporter
        telemetry.detach(reporter.handler_id)  # still attached if the last incarnation crashed
        if reporter.settings.forwarded_events and not reporter.closed:
            telemetry.attach_many(
                reporter.handler_id, reporter.settings.forwarded_events, reporter.forward
            )
        reporter._send_next()  # resume a flush the last incarnation had under way
        # Last: terminate() stops it, and terminate() runs only after init() succeeded.
        self._ticker = _Ticker(
            reporter.settings.flush_interval, self._tick, name=f"tinkex-{reporter.name}-timer"
        )

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, _Pump):
            self.reporter._send_next()
            return None
        return super().on_receive(message)

    def terminate(self, reason: ExitReason) -> None:
        self._ticker.stop()
        if not reason.abnormal:  # after a crash, keep forwarding until the restart
            telemetry.detach(self.reporter.handler_id)

    def _tick(self) -> None:
        self.reporter.flush(timeout=0)
