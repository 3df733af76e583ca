"""Queue states reported by ``retrieve_future`` and the logger that tells users about them.

The server answers a pending future with ``{"type": "try_again", "queue_state": ...,
"queue_state_reason": ...}``. ``active`` is normal; ``paused_capacity`` and
``paused_rate_limit`` mean the request waits for the service or for one of the user's limits.
:class:`QueueStateLogger` turns those observations into warnings at the pace of PROTOCOL
§4.8: training stays silent until a pause has lasted 15 minutes, sampling warns at once, and
neither warns more than once a minute.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

__all__ = [
    "QUEUE_STATES",
    "QueueStateKind",
    "QueueStateLogger",
    "QueueStateName",
    "default_queue_state_reason",
    "normalize_queue_state",
]

QueueStateName: TypeAlias = Literal["active", "paused_rate_limit", "paused_capacity", "unknown"]
QueueStateKind: TypeAlias = Literal["training", "sampling"]

QUEUE_STATES: Final[tuple[QueueStateName, ...]] = (
    "active",
    "paused_rate_limit",
    "paused_capacity",
    "unknown",
)

SAMPLING_REQUEST_TYPES: Final = frozenset({"Sample"})
"""``X-Tinker-Request-Type`` values whose queue belongs to sampling (the rest is training)."""

_CAPACITY_REASON: Final = "Tinker backend is running short on capacity, please wait"


def normalize_queue_state(value: object) -> QueueStateName:
    """``value`` as one of :data:`QUEUE_STATES` (case-insensitive); anything else is unknown."""
    if isinstance(value, str):
        lowered = value.strip().lower()
        for state in QUEUE_STATES:
            if lowered == state:
                return state
    return "unknown"


def kind_of_request(request_type: object) -> QueueStateKind:
    """Whether a request type waits in the sampling or the training queue."""
    return "sampling" if request_type in SAMPLING_REQUEST_TYPES else "training"


def default_queue_state_reason(state: QueueStateName, kind: QueueStateKind) -> str:
    """What to tell the user about ``state`` when the server gave no reason."""
    if state == "paused_rate_limit":
        if kind == "sampling":
            return "concurrent sampler weights limit hit"
        return "concurrent training clients rate limit hit"
    if state == "paused_capacity":
        return _CAPACITY_REASON
    if state == "unknown":
        return "the queue is in an unknown state"
    return "the queue is active"


@dataclass
class _Pause:
    since: float | None = None
    """Clock time of the first non-active observation of the current pause."""
    last_logged: float | None = None


class QueueStateLogger:
    """Warns about paused queues without flooding the log (PROTOCOL §4.8).

    * ``training`` (training and model-creation futures): silent until a non-active state
      has lasted ``training_grace_seconds`` (15 min), then at most one warning per
      ``interval_seconds`` (60 s).
    * ``sampling``: warns at the first non-active observation, then at most once per
      ``interval_seconds``.

    An ``active`` observation ends the pause (and never logs). A non-empty server reason is
    shown as is; otherwise a default for the state and kind.

    Feed it in either (or both) ways:

    * as the poller's ``observer``: ``poll_future(..., observer=logger.observe)`` reports
      every try-again answer, which is what the 15-minute rule needs;
    * as a telemetry handler: ``telemetry.attach("my-id", QUEUE_STATE_CHANGE, logger)``
      sees the state *changes* of every future. With ``kind=None`` the kind of each event
      comes from its ``request_type`` (``Sample`` is sampling, the rest training).

    ``clock`` (default :func:`time.monotonic`) is injectable for tests. Thread-safe.
    """

    def __init__(
        self,
        kind: QueueStateKind | None = None,
        *,
        logger: logging.Logger | None = None,
        clock: Callable[[], float] = time.monotonic,
        training_grace_seconds: float = 900.0,
        interval_seconds: float = 60.0,
    ) -> None:
        self.kind = kind
        self.logger = logger if logger is not None else logging.getLogger("tinkex.queue")
        self._clock = clock
        self.training_grace_seconds = training_grace_seconds
        self.interval_seconds = interval_seconds
        self._pauses: dict[QueueStateKind, _Pause] = {}
        self._lock = threading.Lock()

    def observe(
        self,
        queue_state: object,
        reason: str | None = None,
        *,
        kind: QueueStateKind | None = None,
        subject: str | None = None,
    ) -> bool:
        """Record one observation; returns whether it logged a warning.

        ``subject`` (e.g. a model or sampling session id) is named in the warning.
        """
        resolved_kind: QueueStateKind = kind or self.kind or "training"
        state = normalize_queue_state(queue_state)
        with self._lock:
            pause = self._pauses.setdefault(resolved_kind, _Pause())
            if state == "active":
                pause.since = None
                return False
            now = self._clock()
            if pause.since is None:
                pause.since = now
            paused_for = now - pause.since
            if resolved_kind == "training" and paused_for < self.training_grace_seconds:
                return False
            if pause.last_logged is not None and now - pause.last_logged < self.interval_seconds:
                return False
            pause.last_logged = now
        text = reason.strip() if isinstance(reason, str) and reason.strip() else None
        what = "Training" if resolved_kind == "training" else "Sampling"
        where = f" for {subject}" if subject else ""
        self.logger.warning(
            "%s is paused%s (%s): %s; waited %.0f s so far",
            what,
            where,
            state,
            text or default_queue_state_reason(state, resolved_kind),
            paused_for,
        )
        return True

    def __call__(
        self, event: str, measurements: Mapping[str, Any], metadata: Mapping[str, Any]
    ) -> None:
        """Telemetry handler for ``tinkex.queue.state_change`` (or any event with the same
        metadata keys: ``queue_state``, ``queue_state_reason``, ``request_type``)."""
        kind = self.kind or kind_of_request(metadata.get("request_type"))
        subject = next(
            (
                str(metadata[key])
                for key in ("model_id", "sampling_session_id", "session_id")
                if metadata.get(key)
            ),
            None,
        )
        reason = metadata.get("queue_state_reason")
        self.observe(
            metadata.get("queue_state"),
            reason if isinstance(reason, str) else None,
            kind=kind,
            subject=subject,
        )
