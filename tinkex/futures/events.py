"""Names of the telemetry events the futures layer emits (see ``docs/futures.md``)."""

from __future__ import annotations

from typing import Final

__all__ = [
    "FUTURE_API_ERROR",
    "FUTURE_COMPLETE",
    "FUTURE_POLL",
    "FUTURE_REQUEST_FAILED",
    "FUTURE_RETRY",
    "FUTURE_TIMEOUT",
    "FUTURE_VALIDATION_ERROR",
    "QUEUE_STATE_CHANGE",
]

QUEUE_STATE_CHANGE: Final = "tinkex.queue.state_change"
"""The observed queue state of a future changed (measurements ``polls``)."""

FUTURE_POLL: Final = "tinkex.future.poll"
"""One ``retrieve_future`` poll got an answer or a transport error (``duration`` in ns)."""

FUTURE_RETRY: Final = "tinkex.future.retry"
"""A poll failed transiently and is retried (``delay`` in seconds, ``attempt``)."""

FUTURE_COMPLETE: Final = "tinkex.future.complete"
"""A future's result was received and decoded (``duration`` in ns, ``polls``)."""

FUTURE_REQUEST_FAILED: Final = "tinkex.future.request_failed"
"""The server ran the request and reports it failed (:class:`~tinkex.errors.RequestFailedError`)."""

FUTURE_API_ERROR: Final = "tinkex.future.api_error"
"""Polling ended with an HTTP error (4xx other than 408/429, 410, billing give-up)."""

FUTURE_VALIDATION_ERROR: Final = "tinkex.future.validation_error"
"""The result could not be decoded (:class:`~tinkex.errors.APIResponseValidationError`)."""

FUTURE_TIMEOUT: Final = "tinkex.future.timeout"
"""A caller's ``result(timeout)`` / ``result_async(timeout)`` ran out (polling goes on)."""
