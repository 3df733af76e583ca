"""Wire models of ``POST /api/v1/telemetry`` (PROTOCOL §2.10).

A client reports what happened in a session as a batch of events; the server answers
``{"status": "accepted"}``. Events are a union discriminated by ``event``. They live here,
with the other wire types, because both sides need them: the client's telemetry reporter
builds them and the local server validates them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import Field

from ._base import WireModel

__all__ = [
    "GenericEvent",
    "SessionEndEvent",
    "SessionStartEvent",
    "Severity",
    "TelemetryEvent",
    "TelemetryResponse",
    "TelemetrySendRequest",
    "UnhandledExceptionEvent",
]

Severity: TypeAlias = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class _TelemetryEventBase(WireModel):
    event_id: str = Field(min_length=1)
    """A fresh UUID per event, so that a batch sent twice can be deduplicated."""
    event_session_index: int = Field(ge=0)
    """Position of the event in its session (monotonic per reporter)."""
    severity: Severity
    timestamp: datetime
    """When the event happened (ISO 8601 on the wire)."""


class SessionStartEvent(_TelemetryEventBase):
    event: Literal["SESSION_START"] = "SESSION_START"


class SessionEndEvent(_TelemetryEventBase):
    event: Literal["SESSION_END"] = "SESSION_END"
    duration: str
    """How long the session lasted, as ``str(timedelta)`` (``"0:01:02.345678"``)."""


class UnhandledExceptionEvent(_TelemetryEventBase):
    event: Literal["UNHANDLED_EXCEPTION"] = "UNHANDLED_EXCEPTION"
    error_type: str
    error_message: str
    traceback: str | None = None


class GenericEvent(_TelemetryEventBase):
    event: Literal["GENERIC_EVENT"] = "GENERIC_EVENT"
    event_name: str = Field(min_length=1)
    """Low-cardinality name, e.g. ``"user_error"`` or ``"tinkex.http.request.stop"``."""
    event_data: dict[str, Any] = Field(default_factory=dict)
    """Any JSON object."""


TelemetryEvent: TypeAlias = Annotated[
    SessionStartEvent | SessionEndEvent | UnhandledExceptionEvent | GenericEvent,
    Field(discriminator="event"),
]


class TelemetrySendRequest(WireModel):
    """One batch of events of one session."""

    events: list[TelemetryEvent]
    platform: str
    """Host platform name (``platform.system()``, e.g. ``"Linux"``)."""
    sdk_version: str
    session_id: str = Field(min_length=1)
    """The session the events belong to (``sessionless-<uuid>`` for REST-only clients)."""
    process_uuid: str = Field(min_length=1)
    """Identifies the client process; shared by all its sessions."""


class TelemetryResponse(WireModel):
    status: Literal["accepted"] = "accepted"
