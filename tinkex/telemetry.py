"""Telemetry events: Erlang's ``:telemetry`` over blinker signals.

tinkex reports what it does (HTTP requests, queue states, restarts of its actors) as *events*:
a dotted name such as ``"tinkex.queue.state_change"``, a dict of numeric *measurements* and a
dict of *metadata*. Code that wants to know attaches a handler by id::

    from tinkex import telemetry

    def on_restart(event, measurements, metadata):
        print(event, metadata["child_id"], metadata["generation"])

    telemetry.attach("my-restarts", "tinkex.supervisor.child_restarted", on_restart)
    ...
    telemetry.detach("my-restarts")

Why a layer over blinker instead of blinker itself: blinker holds receivers weakly by default,
so a lambda or closure handler is silently dropped as soon as the caller's frame ends; a
receiver that raises propagates out of ``send()`` and the remaining receivers are skipped; and
blinker has no notion of handler ids. This module holds handlers strongly, isolates each one
(a handler that raises is detached, logged once and reported as a
``"telemetry.handler.failure"`` event), and owns the id table, like ``:telemetry`` does.

Handlers run synchronously in the thread that calls :func:`execute` -- often an actor's thread
-- so they must be quick and must not block. Handlers must not mutate the dicts they receive:
every handler of one event sees the same objects. Durations and monotonic times are integer
nanoseconds (``time.monotonic_ns()``); system times are ``time.time_ns()``.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, TypeVar, overload

import blinker

__all__ = [
    "DEFAULT_LOG_EVENTS",
    "HANDLER_FAILURE",
    "SUPERVISOR_CHILD_ABANDONED",
    "SUPERVISOR_CHILD_EXITED",
    "SUPERVISOR_CHILD_RESTARTED",
    "SUPERVISOR_CHILD_STARTED",
    "SUPERVISOR_MAX_RESTARTS_EXCEEDED",
    "SUPERVISOR_SHUTDOWN",
    "SUPERVISOR_TASK_FAILED",
    "ConfiguredHandler",
    "EventName",
    "Handler",
    "HandlerExistsError",
    "HandlerInfo",
    "Span",
    "attach",
    "attach_logger",
    "attach_many",
    "capture",
    "detach",
    "execute",
    "list_handlers",
    "looks_secret",
    "span",
]

C = TypeVar("C")

EventName = str | tuple[str, ...]
"""An event name: ``"tinkex.queue.state_change"`` or ``("tinkex", "queue", "state_change")``."""

Handler = Callable[[str, dict[str, Any], dict[str, Any]], object]
"""``handler(event, measurements, metadata)``; its return value is ignored."""

ConfiguredHandler = Callable[[str, dict[str, Any], dict[str, Any], C], object]
"""``handler(event, measurements, metadata, config)``: attached with a ``config`` argument."""

# --- Event catalogue ------------------------------------------------------------------------
# The names tinkex emits, in one place so that emitters, handlers and attach_logger agree.

HANDLER_FAILURE: Final = "telemetry.handler.failure"
"""A handler raised and was detached (metadata: handler_id, handler_config, event_name, kind,
reason, stacktrace). Named like ``:telemetry``'s own ``[:telemetry, :handler, :failure]``."""

SUPERVISOR_CHILD_STARTED: Final = "tinkex.supervisor.child_started"
SUPERVISOR_CHILD_EXITED: Final = "tinkex.supervisor.child_exited"
SUPERVISOR_CHILD_RESTARTED: Final = "tinkex.supervisor.child_restarted"
SUPERVISOR_CHILD_ABANDONED: Final = "tinkex.supervisor.child_abandoned"
SUPERVISOR_MAX_RESTARTS_EXCEEDED: Final = "tinkex.supervisor.max_restarts_exceeded"
SUPERVISOR_SHUTDOWN: Final = "tinkex.supervisor.shutdown"
SUPERVISOR_TASK_FAILED: Final = "tinkex.supervisor.task_failed"

DEFAULT_LOG_EVENTS: Final[tuple[str, ...]] = (
    "tinkex.http.request.stop",
    "tinkex.http.request.exception",
    "tinkex.queue.state_change",
    "tinkex.future.timeout",
    "tinkex.future.api_error",
    "tinkex.future.request_failed",
    "tinkex.future.validation_error",
    "tinkex.retry.attempt",
    "tinkex.retry.sample",
    "tinkex.rate_limit.backoff",
    "tinkex.session.heartbeat_warning",
    "tinkex.session.expired",
    "tinkex.recovery.detected",
    "tinkex.recovery.succeeded",
    "tinkex.recovery.exhausted",
    "tinkex.recovery.callback_error",
    SUPERVISOR_CHILD_STARTED,
    SUPERVISOR_CHILD_EXITED,
    SUPERVISOR_CHILD_RESTARTED,
    SUPERVISOR_CHILD_ABANDONED,
    SUPERVISOR_MAX_RESTARTS_EXCEEDED,
    SUPERVISOR_SHUTDOWN,
    SUPERVISOR_TASK_FAILED,
    HANDLER_FAILURE,
)
"""What :func:`attach_logger` logs unless told otherwise."""

logger = logging.getLogger("tinkex.telemetry")

_NO_CONFIG: Final = object()
_SECRET_WORDS: Final = frozenset(
    {"secret", "password", "passwd", "authorization", "cookie", "credential", "credentials"}
)
"""Words that make a key secret wherever they stand in it (``client_secret``, ``password``)."""
_SECRET_LAST_WORDS: Final = frozenset({"key", "token", "apikey"})
"""Words that make a key secret only as its last word (``api_key``, ``access_token``,
``token``), because ML data is full of ``token_count``, ``num_tokens`` and ``key_dim``."""
_WORD_BOUNDARY: Final = re.compile(r"[^0-9a-zA-Z]+|(?<=[a-z0-9])(?=[A-Z])")
_MASK: Final = "***"
_MAX_LOGGED_VALUE: Final = 200


class HandlerExistsError(ValueError):
    """A handler with this id is already attached (``{:error, :already_exists}``)."""


@dataclass(frozen=True)
class HandlerInfo:
    """What :func:`list_handlers` reports about one attached handler."""

    id: str
    events: tuple[str, ...]
    function: Callable[..., object]
    config: Any


@dataclass(eq=False)
class _Attachment:
    """One attached handler; its :meth:`receive` is what blinker calls (held strongly)."""

    info: HandlerInfo
    extra: tuple[Any, ...]
    """``(config,)`` for a handler attached with a config, else ``()``."""

    def receive(
        self, event: str, /, *, measurements: dict[str, Any], metadata: dict[str, Any]
    ) -> None:
        try:
            self.info.function(event, measurements, metadata, *self.extra)
        except Exception as exc:  # one bad handler must not break the emitter
            _handler_failed(self, event, exc)


# Signals live in a private namespace so that nothing else connected to blinker's default
# namespace can see or break them. Only attach() creates signals; execute() only looks them up.
_signals = blinker.Namespace()
_handlers: dict[str, _Attachment] = {}
_handlers_lock = threading.Lock()  # guards _handlers and connect/disconnect on _signals
_span_ids = itertools.count(1)


def _joined(event: EventName) -> str:
    return event if isinstance(event, str) else ".".join(event)


def _event_name(event: EventName) -> str:
    """The dotted form of ``event``, validated (attach time, not emit time: it is hot)."""
    name = _joined(event)
    if not name or any(not part for part in name.split(".")):
        msg = f"invalid event name {event!r}: expected dotted non-empty segments"
        raise ValueError(msg)
    return name


@overload
def attach(handler_id: str, event: EventName, handler: Handler) -> None: ...
@overload
def attach(handler_id: str, event: EventName, handler: ConfiguredHandler[C], config: C) -> None: ...
def attach(
    handler_id: str, event: EventName, handler: Callable[..., object], config: Any = _NO_CONFIG
) -> None:
    """Attach ``handler`` to one event under a unique ``handler_id``.

    Without ``config`` the handler is called as ``handler(event, measurements, metadata)``;
    with it, as ``handler(event, measurements, metadata, config)`` (``:telemetry``'s shape).
    The handler is held strongly until :func:`detach`, so lambdas and closures are fine.

    Raises:
        HandlerExistsError: ``handler_id`` is already attached.
        TypeError: ``handler`` is a coroutine function (handlers run synchronously).
    """
    attach_many(handler_id, [event], handler, config)


@overload
def attach_many(handler_id: str, events: Iterable[EventName], handler: Handler) -> None: ...
@overload
def attach_many(
    handler_id: str, events: Iterable[EventName], handler: ConfiguredHandler[C], config: C
) -> None: ...
def attach_many(
    handler_id: str,
    events: Iterable[EventName],
    handler: Callable[..., object],
    config: Any = _NO_CONFIG,
) -> None:
    """Attach ``handler`` to several events under one ``handler_id``; see :func:`attach`."""
    names = tuple(dict.fromkeys(_event_name(event) for event in events))
    if not names:
        msg = "attach_many() needs at least one event name"
        raise ValueError(msg)
    if inspect.iscoroutinefunction(handler):
        msg = "telemetry handlers run synchronously in the emitting thread; got a coroutine"
        raise TypeError(msg)
    has_config = config is not _NO_CONFIG
    attachment = _Attachment(
        HandlerInfo(handler_id, names, handler, config if has_config else None),
        (config,) if has_config else (),
    )
    with _handlers_lock:
        if handler_id in _handlers:
            msg = f"a telemetry handler with id {handler_id!r} is already attached"
            raise HandlerExistsError(msg)
        _handlers[handler_id] = attachment
        for name in names:
            _signals.signal(name).connect(attachment.receive, weak=False)


def detach(handler_id: str) -> bool:
    """Detach a handler from all its events. Returns ``False`` if no such handler was attached.

    A handler being called in another thread at that moment may still finish that call.
    """
    with _handlers_lock:
        attachment = _handlers.get(handler_id)
        if attachment is None:
            return False
        _detach_locked(attachment)
        return True


def _detach_locked(attachment: _Attachment) -> None:
    del _handlers[attachment.info.id]
    for name in attachment.info.events:
        _signals[name].disconnect(attachment.receive)


def list_handlers(prefix: EventName = "") -> list[HandlerInfo]:
    """Handlers attached to any event at or under ``prefix`` (whole dotted segments).

    ``list_handlers("tinkex.http")`` matches ``"tinkex.http.request.stop"`` but not
    ``"tinkex.httpx"``; the empty prefix lists every handler.
    """
    wanted = _event_name(prefix) if prefix else ""
    with _handlers_lock:
        infos = [attachment.info for attachment in _handlers.values()]
    if not wanted:
        return infos
    return [info for info in infos if any(_under(name, wanted) for name in info.events)]


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def execute(
    event: EventName,
    measurements: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> None:
    """Emit an event to every handler attached to it, synchronously, in this thread.

    Never raises because of a handler: a handler that raises is detached and logged (see the
    module docs). Costs one dict lookup when nobody listens.
    """
    name = _joined(event)
    signal = _signals.get(name)
    if signal is None or not signal.receivers:
        return
    signal.send(
        name,
        measurements={} if measurements is None else measurements,
        metadata={} if metadata is None else metadata,
    )


def _handler_failed(attachment: _Attachment, event: str, exc: Exception) -> None:
    with _handlers_lock:
        if _handlers.get(attachment.info.id) is not attachment:
            return  # another thread already detached (and logged) it
        _detach_locked(attachment)
    logger.error(
        "Telemetry handler %r raised on %s and was detached",
        attachment.info.id,
        event,
        exc_info=exc,
    )
    execute(
        HANDLER_FAILURE,
        {"system_time": time.time_ns()},
        {
            "handler_id": attachment.info.id,
            "handler_config": attachment.info.config,
            "event_name": event,
            "kind": "error",
            "reason": exc,
            "stacktrace": exc.__traceback__,
        },
    )


class Span:
    """The body's handle on a running :func:`span`: add stop metadata and measurements."""

    __slots__ = ("context", "measurements", "metadata")

    def __init__(self, metadata: dict[str, Any], context: int) -> None:
        self.metadata = metadata
        """Metadata of the stop/exception events; starts as a copy of the start metadata."""
        self.measurements: dict[str, Any] = {}
        """Extra measurements for the stop event (``duration`` is added by the span)."""
        self.context = context
        """``telemetry_span_context``: the same value on all three events of this span."""


@contextmanager
def span(prefix: EventName, metadata: Mapping[str, Any] | None = None) -> Iterator[Span]:
    """Time a block as ``prefix.start`` / ``prefix.stop`` / ``prefix.exception`` events.

    ``start`` carries ``system_time`` and ``monotonic_time``; ``stop`` carries ``duration``
    and ``monotonic_time`` plus whatever the body put in ``span.measurements``; on an exception
    the ``exception`` event carries ``duration`` and ``monotonic_time`` and metadata ``kind``
    (``"error"`` for an :class:`Exception`, ``"exit"`` for other :class:`BaseException`),
    ``reason`` (the exception) and ``stacktrace``, and the exception is re-raised. All three
    share ``telemetry_span_context`` in their metadata::

        with telemetry.span("tinkex.http.request", {"path": path}) as s:
            response = send(request)
            s.metadata["status"] = response.status_code
    """
    name = _event_name(prefix)
    context = next(_span_ids)
    start_metadata = {**(metadata or {}), "telemetry_span_context": context}
    started = time.monotonic_ns()
    execute(
        name + ".start",
        {"system_time": time.time_ns(), "monotonic_time": started},
        start_metadata,
    )
    body = Span(dict(start_metadata), context)
    try:
        yield body
    except BaseException as exc:
        ended = time.monotonic_ns()
        execute(
            name + ".exception",
            {"duration": ended - started, "monotonic_time": ended},
            {
                **start_metadata,
                "kind": "error" if isinstance(exc, Exception) else "exit",
                "reason": exc,
                "stacktrace": exc.__traceback__,
            },
        )
        raise
    ended = time.monotonic_ns()
    execute(
        name + ".stop",
        {**body.measurements, "duration": ended - started, "monotonic_time": ended},
        {**body.metadata, "telemetry_span_context": context},
    )


@contextmanager
def capture(*events: EventName) -> Iterator[list[tuple[str, dict[str, Any], dict[str, Any]]]]:
    """Collect ``(event, measurements, metadata)`` of ``events`` while the block runs.

    Meant for tests: the collecting handler is detached when the block exits.
    """
    collected: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    handler_id = f"tinkex.telemetry.capture-{id(collected)}"

    def collect(event: str, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        collected.append((event, measurements, metadata))

    attach_many(handler_id, events, collect)
    try:
        yield collected
    finally:
        detach(handler_id)


def attach_logger(
    level: int = logging.INFO,
    *,
    events: Iterable[EventName] = DEFAULT_LOG_EVENTS,
    log: logging.Logger | None = None,
    handler_id: str = "tinkex.telemetry.logger",
) -> str:
    """Log every event in ``events`` at ``level``; returns the handler id for :func:`detach`.

    Each record reads ``<event> duration=1.234ms key=value ...``. Metadata whose key names a
    secret (:func:`looks_secret`, at any nesting depth of dicts) is masked, and long values
    are truncated.
    Secrets hidden inside other objects' reprs cannot be detected: emit plain values.
    """
    target = logger if log is None else log

    def log_event(event: str, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        if target.isEnabledFor(level):
            target.log(level, "%s %s", event, _describe(measurements, metadata))

    attach_many(handler_id, events, log_event)
    return handler_id


def _describe(measurements: Mapping[str, Any], metadata: Mapping[str, Any]) -> str:
    parts = [
        f"{key}={_format_measurement(key, value)}"
        for key, value in measurements.items()
        if key not in ("monotonic_time", "system_time")
    ]
    parts.extend(f"{key}={_shorten(repr(value))}" for key, value in _masked(metadata).items())
    return " ".join(parts)


def _format_measurement(key: str, value: Any) -> str:
    if key == "duration" and isinstance(value, int):
        return f"{value / 1_000_000:.3f}ms"
    return _shorten(repr(value))


def _masked(metadata: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: _MASK if looks_secret(key) else _masked(value) if isinstance(value, Mapping) else value
        for key, value in metadata.items()
    }


def looks_secret(key: object) -> bool:
    """Whether a value under ``key`` is a credential, judged by the words of the key.

    Words are separated by anything but letters and digits, and at a camelCase step:
    ``api_key``, ``X-API-Key``, ``apiKey``, ``access_token``, ``token``, ``client_secret``,
    ``Authorization`` and ``db_password`` are secret; ``num_tokens``, ``token_count``,
    ``tokenizer_id``, ``keys_seen`` and ``monkey`` are not.
    """
    words = [word.lower() for word in _WORD_BOUNDARY.split(str(key)) if word]
    if not words:
        return False
    return words[-1] in _SECRET_LAST_WORDS or any(word in _SECRET_WORDS for word in words)


def _shorten(text: str) -> str:
    if len(text) <= _MAX_LOGGED_VALUE:
        return text
    return text[: _MAX_LOGGED_VALUE - 3] + "..."
