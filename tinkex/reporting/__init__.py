"""Telemetry to the server: a reporter per session batching events to ``/api/v1/telemetry``.

* :mod:`.reporter` — :class:`TelemetryReporter` (the API) and its supervised actor
* :mod:`.events` — building events: sanitizing data, classifying user errors
* :mod:`.buffer` — the bounded event queue that outlives the actor
* :mod:`.context` — attributing signals to the session whose job emitted them
* :mod:`.hooks` — reporting an unhandled exception and draining at interpreter exit

The wire models are in :mod:`tinkex.types.telemetry`. See ``docs/telemetry.md``.
"""

from . import context
from .buffer import EventBuffer, Outcome
from .events import USER_ERROR_EVENT, is_user_error, sanitize
from .reporter import DEFAULT_FORWARDED_EVENTS, ReporterSettings, TelemetryReporter

__all__ = [
    "DEFAULT_FORWARDED_EVENTS",
    "USER_ERROR_EVENT",
    "EventBuffer",
    "Outcome",
    "ReporterSettings",
    "TelemetryReporter",
    "context",
    "is_user_error",
    "sanitize",
]
