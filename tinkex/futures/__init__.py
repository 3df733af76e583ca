"""Futures: :class:`APIFuture` (what every tinkex call returns) and the poller behind it.

* :mod:`.api_future` — :class:`APIFuture`, :func:`gather`
* :mod:`.polling` — :func:`poll_future` (the ``retrieve_future`` loop), :class:`ByteBudget`
* :mod:`.decoders` — result decoders for :func:`poll_future`
* :mod:`.queue_state` — queue states and :class:`QueueStateLogger`
* :mod:`.events` — the telemetry event names

See ``docs/futures.md``.
"""

from .api_future import APIFuture, gather
from .decoders import decode_forward_backward, decode_json, decode_sample
from .events import (
    FUTURE_API_ERROR,
    FUTURE_COMPLETE,
    FUTURE_POLL,
    FUTURE_REQUEST_FAILED,
    FUTURE_RETRY,
    FUTURE_TIMEOUT,
    FUTURE_VALIDATION_ERROR,
    QUEUE_STATE_CHANGE,
)
from .polling import (
    BILLING_PAUSE_SECONDS,
    DEFAULT_BYTE_BUDGET,
    DEFAULT_MAX_BILLING_PAUSE,
    DEFAULT_POLL_TIMEOUT,
    FREE_SERVER_ERROR_RETRIES,
    MAX_BACKOFF_SECONDS,
    MAX_BAD_REQUEST_RETRIES,
    ByteBudget,
    QueueStateObserver,
    RetrieveSender,
    default_byte_budget,
    poll_future,
)
from .queue_state import (
    QUEUE_STATES,
    QueueStateKind,
    QueueStateLogger,
    QueueStateName,
    default_queue_state_reason,
    normalize_queue_state,
)

__all__ = [
    "BILLING_PAUSE_SECONDS",
    "DEFAULT_BYTE_BUDGET",
    "DEFAULT_MAX_BILLING_PAUSE",
    "DEFAULT_POLL_TIMEOUT",
    "FREE_SERVER_ERROR_RETRIES",
    "FUTURE_API_ERROR",
    "FUTURE_COMPLETE",
    "FUTURE_POLL",
    "FUTURE_REQUEST_FAILED",
    "FUTURE_RETRY",
    "FUTURE_TIMEOUT",
    "FUTURE_VALIDATION_ERROR",
    "MAX_BACKOFF_SECONDS",
    "MAX_BAD_REQUEST_RETRIES",
    "QUEUE_STATES",
    "QUEUE_STATE_CHANGE",
    "APIFuture",
    "ByteBudget",
    "QueueStateKind",
    "QueueStateLogger",
    "QueueStateName",
    "QueueStateObserver",
    "RetrieveSender",
    "decode_forward_backward",
    "decode_json",
    "decode_sample",
    "default_byte_budget",
    "default_queue_state_reason",
    "gather",
    "normalize_queue_state",
    "poll_future",
]
