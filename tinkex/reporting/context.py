"""Which session the code running now works for, as seen by telemetry handlers.

The HTTP layer's signals (``tinkex.http.request.*``) know the method and path of a request
but not the session it belongs to, and a telemetry reporter must forward only its own
session's signals. Every job on the I/O loop runs in an asyncio task of its own, and a task
has its own copy of the context variables; so a job binds its ids once when it starts and
every signal emitted inside that task -- its requests, retries and polls -- can be
attributed. Plain data, no imports from the rest of tinkex, so the lowest layers may use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any, Final

__all__ = ["IDENTITY_KEYS", "bind", "current"]

IDENTITY_KEYS: Final = ("session_id", "model_id", "sampling_session_id")
"""The metadata keys that say whom a signal belongs to."""

_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})
_bound: ContextVar[Mapping[str, Any]] = ContextVar("tinkex_reporting_bound", default=_EMPTY)


def bind(metadata: Mapping[str, Any]) -> None:
    """Attribute the signals emitted later in this context (the current task) to ``metadata``.

    Only :data:`IDENTITY_KEYS` are kept. Call it at the start of a job's coroutine: the
    binding ends with the task. Binding again replaces the earlier one.
    """
    kept = {key: metadata[key] for key in IDENTITY_KEYS if metadata.get(key) is not None}
    _bound.set(MappingProxyType(kept))


def current() -> Mapping[str, Any]:
    """The ids bound in this context (empty outside any job)."""
    return _bound.get()
