"""Building the telemetry events a reporter sends (wire models: :mod:`tinkex.types.telemetry`).

Everything that goes into an event passes through :func:`sanitize`: only JSON values leave
the process, exceptions become ``"Type: message"``, headers are dropped, values whose key
names a secret are masked (:func:`tinkex.telemetry.looks_secret`), long values and deep
structures are cut, and the configured credentials (:attr:`tinkex.Config.secrets`) are
scrubbed out of every string. An error that is the caller's fault (:func:`is_user_error`)
is reported as a ``user_error`` event instead of an unhandled exception, as the official SDK
does, so that the service's error dashboards count only its own failures.
"""

from __future__ import annotations

import math
import platform
import traceback
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, Final, get_args

from tinkex.errors import RequestFailedError
from tinkex.telemetry import looks_secret
from tinkex.types import (
    GenericEvent,
    SessionEndEvent,
    SessionStartEvent,
    Severity,
    UnhandledExceptionEvent,
)

__all__ = [
    "PLATFORM",
    "PROCESS_UUID",
    "SEVERITIES",
    "USER_ERROR_EVENT",
    "check_severity",
    "exception_event",
    "generic_event",
    "is_user_error",
    "now",
    "sanitize",
    "session_end_event",
    "session_start_event",
    "signal_event",
]

PROCESS_UUID: Final = str(uuid.uuid4())
"""Identifies this process in every batch, whatever the session."""
PLATFORM: Final = platform.system() or "unknown"
USER_ERROR_EVENT: Final = "user_error"
SEVERITIES: Final[tuple[Severity, ...]] = get_args(Severity)

RETRYABLE_CLIENT_STATUSES: Final = frozenset({408, 410, 429})
"""4xx statuses that are not the caller's fault: timeouts, expiry, rate limits."""

MAX_STRING: Final = 500
MAX_TRACEBACK: Final = 10_000
MAX_ITEMS: Final = 50
MAX_DEPTH: Final = 4
_SIGNAL_NOISE: Final = frozenset(
    {"session_id", "telemetry_span_context", "stacktrace", "monotonic_time", "system_time"}
)
"""Signal data not worth sending: the batch names the session, the event has a timestamp,
and tracebacks and monotonic clocks mean nothing outside this process."""
_MASK: Final = "***"


def check_severity(severity: str) -> Severity:
    """``severity`` as a wire severity (case-insensitive), or a ``ValueError`` naming them."""
    upper = severity.upper() if isinstance(severity, str) else None
    for known in SEVERITIES:
        if upper == known:
            return known
    raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}; got {severity!r}")


def now() -> datetime:
    """The current time as events carry it (UTC); taken when an event is queued."""
    return datetime.now(UTC)


def _event_id() -> str:
    return str(uuid.uuid4())


def session_start_event(index: int, *, timestamp: datetime | None = None) -> SessionStartEvent:
    return SessionStartEvent(
        event_id=_event_id(),
        event_session_index=index,
        severity="INFO",
        timestamp=timestamp or now(),
    )


def session_end_event(
    index: int, duration: timedelta, *, timestamp: datetime | None = None
) -> SessionEndEvent:
    return SessionEndEvent(
        event_id=_event_id(),
        event_session_index=index,
        severity="INFO",
        timestamp=timestamp or now(),
        duration=str(duration),
    )


def generic_event(
    index: int,
    name: str,
    data: Mapping[str, Any],
    severity: Severity,
    secrets: Iterable[str] = (),
    *,
    timestamp: datetime | None = None,
) -> GenericEvent:
    """A ``GENERIC_EVENT`` with ``data`` sanitized."""
    return GenericEvent(
        event_id=_event_id(),
        event_session_index=index,
        severity=severity,
        timestamp=timestamp or now(),
        event_name=name,
        event_data=_as_object(sanitize(data, tuple(secrets))),
    )


def exception_event(
    index: int,
    error: BaseException,
    severity: Severity,
    secrets: Iterable[str] = (),
    *,
    timestamp: datetime | None = None,
) -> GenericEvent | UnhandledExceptionEvent:
    """``user_error`` (a ``WARNING`` generic event) for a user error, else an unhandled one."""
    hidden = tuple(secrets)
    if is_user_error(error):
        data = _describe_error(error)
        return generic_event(index, USER_ERROR_EVENT, data, "WARNING", hidden, timestamp=timestamp)
    text = "".join(traceback.format_exception(error))
    return UnhandledExceptionEvent(
        event_id=_event_id(),
        event_session_index=index,
        severity=severity,
        timestamp=timestamp or now(),
        error_type=type(error).__name__,
        error_message=_scrub(str(error), hidden),
        traceback=_scrub(text, hidden)[-MAX_TRACEBACK:],
    )


def signal_event(
    index: int,
    event: str,
    measurements: Mapping[str, Any],
    metadata: Mapping[str, Any],
    secrets: Iterable[str] = (),
    *,
    timestamp: datetime | None = None,
) -> GenericEvent:
    """A forwarded telemetry signal as a ``GENERIC_EVENT`` named after it.

    Severity: ``ERROR`` for ``*.exception`` events and failed futures, ``WARNING`` for an
    HTTP status of 400 or more and for a paused queue, else ``INFO``. A failed future whose
    error is the user's fault becomes a ``user_error`` event instead.
    """
    hidden = tuple(secrets)
    error = metadata.get("error")
    if isinstance(error, BaseException) and is_user_error(error):
        data = {**_describe_error(error), "signal": event}
        return generic_event(index, USER_ERROR_EVENT, data, "WARNING", hidden, timestamp=timestamp)
    payload = {"measurements": _without_noise(measurements), "metadata": _without_noise(metadata)}
    severity = _signal_severity(event, metadata)
    return generic_event(index, event, payload, severity, hidden, timestamp=timestamp)


def _without_noise(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if key not in _SIGNAL_NOISE}


def _signal_severity(event: str, metadata: Mapping[str, Any]) -> Severity:
    if event.endswith(".exception") or isinstance(metadata.get("error"), BaseException):
        return "ERROR"
    status = metadata.get("status")
    if isinstance(status, int) and status >= 400:
        return "WARNING"
    state = metadata.get("queue_state")
    if isinstance(state, str) and state != "active":
        return "WARNING"
    return "INFO"


def is_user_error(error: BaseException) -> bool:
    """Whether ``error`` (or an exception it was raised from) is the caller's fault.

    A user error is a :class:`~tinkex.errors.RequestFailedError` of category ``"user"`` or an
    error carrying an HTTP ``status_code`` in 400-499 other than 408, 410 and 429. The chain
    of ``__cause__`` / ``__context__`` is followed, cycles included.
    """
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, RequestFailedError) and current.category == "user":
            return True
        status = getattr(current, "status_code", None)
        if (
            isinstance(status, int)
            and 400 <= status < 500
            and status not in RETRYABLE_CLIENT_STATUSES
        ):
            return True
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return False


def _describe_error(error: BaseException) -> dict[str, Any]:
    described: dict[str, Any] = {"error_type": type(error).__name__, "message": str(error)}
    for attribute in ("status_code", "category", "request_id"):
        value = getattr(error, attribute, None)
        if value is not None:
            described[attribute] = value
    return described


def sanitize(value: Any, secrets: tuple[str, ...] = (), depth: int = 0) -> Any:
    """``value`` as plain JSON data that is safe to send (see the module docs)."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Enum):
        return sanitize(value.value, secrets, depth)
    if isinstance(value, str):
        return _cut(_scrub(value, secrets))
    if isinstance(value, BaseException):
        return _cut(_scrub(f"{type(value).__name__}: {value}", secrets))
    if depth >= MAX_DEPTH:
        return _cut(_scrub(repr(value), secrets))
    if isinstance(value, Mapping):
        kept: dict[str, Any] = {}
        for key, item in value.items():
            name = str(key)
            if name.lower() == "headers":
                continue
            if len(kept) >= MAX_ITEMS:
                break
            kept[name] = _MASK if looks_secret(name) else sanitize(item, secrets, depth + 1)
        return kept
    if isinstance(value, list | tuple | set | frozenset):
        return [sanitize(item, secrets, depth + 1) for item in list(value)[:MAX_ITEMS]]
    return _cut(_scrub(repr(value), secrets))


def _as_object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {"value": value}


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, _MASK)
    return text


def _cut(text: str) -> str:
    return text if len(text) <= MAX_STRING else text[: MAX_STRING - 3] + "..."
