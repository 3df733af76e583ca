"""Queue states reported by ``retrieve_future`` and the logger that tells users about them.

The server answers a pending future with ``{"type": "try_again", "queue_state": ...,
"queue_state_reason": ...}``. ``active`` is normal; ``paused_capacity`` and
``paused_rate_limit`` mean the request waits for the service or for one of the user's limits.
:class:`QueueStateLogger` turns those observations into warnings at the pace of PROTOCOL
§4.8 -- training stays silent until a pause has lasted 15 minutes, sampling warns at once,
and neither warns more than once a minute for the same model or sampler -- such as::

    Sampling is paused for sampler s-1:sample:0. Reason: concurrent sampler weights limit hit
    Training is paused for model s-1:train:0. Reason: Tinker backend is running short on ...

The runtime installs one for the whole process (:func:`install_default_logger`), fed by the
``tinkex.queue.state_change`` and ``tinkex.future.*`` signals.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

from tinkex import telemetry

from .events import (
    FUTURE_API_ERROR,
    FUTURE_COMPLETE,
    FUTURE_POLL,
    FUTURE_REQUEST_FAILED,
    FUTURE_VALIDATION_ERROR,
    QUEUE_STATE_CHANGE,
)

__all__ = [
    "DEFAULT_LOGGER_ID",
    "QUEUE_STATES",
    "QueueStateKind",
    "QueueStateLogger",
    "QueueStateName",
    "default_queue_state_reason",
    "install_default_logger",
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

DEFAULT_LOGGER_ID: Final = "tinkex.queue_state.logger"
MAX_TRACKED: Final = 10_000
"""Subjects and requests remembered at most (the oldest are forgotten first)."""

_CAPACITY_REASON: Final = "Tinker backend is running short on capacity, please wait"
_FINISHED: Final = frozenset(
    {FUTURE_COMPLETE, FUTURE_REQUEST_FAILED, FUTURE_API_ERROR, FUTURE_VALIDATION_ERROR}
)
_SIGNALS: Final = (QUEUE_STATE_CHANGE, FUTURE_POLL, *_FINISHED)


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


def subject_of(metadata: Mapping[str, Any], kind: QueueStateKind) -> str | None:
    """What a signal's queue belongs to, as named in warnings: ``"model <id>"`` for
    training, ``"sampler <id>"`` for sampling, else ``"session <id>"``."""
    preferred = ("model_id", "model") if kind == "training" else ("sampling_session_id", "sampler")
    for key, label in (preferred, ("session_id", "session")):
        value = metadata.get(key)
        if value:
            return f"{label} {value}"
    return None


@dataclass
class _Pause:
    since: float | None = None
    """Clock time of the first non-active observation of the current pause (``None``: the
    queue is active)."""
    last_logged: float | None = None
    """Kept across pauses: the debounce holds even when the queue flaps."""


@dataclass(frozen=True)
class _Waiting:
    """The last known queue state of one request still being polled."""

    state: QueueStateName
    reason: str | None
    kind: QueueStateKind
    subject: str | None


class QueueStateLogger:
    """Warns about paused queues without flooding the log (PROTOCOL §4.8).

    Pauses are tracked per subject (a model, a sampler, or a session when the request names
    neither), and so is the debounce:

    * ``training`` (training and model-creation futures): silent until a non-active state
      has lasted ``training_grace_seconds`` (15 min), then at most one warning per
      ``interval_seconds`` (60 s);
    * ``sampling``: warns at the first non-active observation, then at most once per
      ``interval_seconds``.

    An ``active`` observation ends the subject's pause (the next one starts the 15 minutes
    again) and never logs; the once-a-minute limit holds across pauses. A non-empty server
    reason is shown as is, otherwise a default for the state and kind. A new reason within
    a pause does not log by itself (the limit holds), but the next warning gives it: a
    request's ``tinkex.queue.state_change`` signals carry each new reason, and its later
    polls are observations with the newest one.

    Feed it in either way:

    * call :meth:`observe` for every queue-state observation (e.g. as the poller's
      ``observer``);
    * attach it as a telemetry handler with :meth:`attach`: it follows each request from
      its ``tinkex.queue.state_change`` events and counts each later ``tinkex.future.poll``
      of a paused request as one more observation (the 15-minute rule needs those: the state
      does not *change* while a pause goes on), until the request finishes.

    ``clock`` (seconds, default :func:`time.monotonic`) is read once per non-active
    observation; inject one in tests. Thread-safe.
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
        if training_grace_seconds < 0 or interval_seconds < 0:
            raise ValueError("training_grace_seconds and interval_seconds must not be negative")
        self.kind = kind
        """Forces the kind of every observation; ``None``: from each signal's request type."""
        self.logger = logger if logger is not None else logging.getLogger("tinkex.queue")
        self._clock = clock
        self.training_grace_seconds = training_grace_seconds
        self.interval_seconds = interval_seconds
        self._pauses: OrderedDict[tuple[QueueStateKind, str | None], _Pause] = OrderedDict()
        self._requests: OrderedDict[str, _Waiting] = OrderedDict()
        self._lock = threading.Lock()

    def observe(
        self,
        queue_state: object,
        reason: str | None = None,
        *,
        kind: QueueStateKind | None = None,
        subject: str | None = None,
    ) -> bool:
        """Record one observation of ``subject``'s queue; returns whether it warned.

        ``subject`` names what waits, as it should read in the warning (``"model m-1"``,
        ``"sampler s-1"``); observations without one share a single pause.
        """
        resolved: QueueStateKind = kind or self.kind or "training"
        state = normalize_queue_state(queue_state)
        key = (resolved, subject)
        with self._lock:
            pause = self._pauses.get(key)
            if state == "active":
                if pause is not None:
                    pause.since = None
                return False
            now = self._clock()
            if pause is None:
                pause = self._pauses[key] = _Pause()
                _bound(self._pauses)
            if pause.since is None:
                pause.since = now
            if resolved == "training" and now - pause.since < self.training_grace_seconds:
                return False
            if pause.last_logged is not None and now - pause.last_logged < self.interval_seconds:
                return False
            pause.last_logged = now
        text = reason.strip() if isinstance(reason, str) and reason.strip() else None
        what = "Training" if resolved == "training" else "Sampling"
        where = f" for {subject}" if subject else ""
        self.logger.warning(
            "%s is paused%s. Reason: %s",
            what,
            where,
            text or default_queue_state_reason(state, resolved),
        )
        return True

    # as a telemetry handler -------------------------------------------------------------

    def attach(self, handler_id: str = DEFAULT_LOGGER_ID) -> None:
        """Attach :meth:`handle` to the queue-state and future signals under ``handler_id``."""
        telemetry.attach_many(handler_id, _SIGNALS, self.handle)

    def handle(
        self, event: str, measurements: Mapping[str, Any], metadata: Mapping[str, Any]
    ) -> None:
        """Telemetry handler: see the class docs."""
        request_id = metadata.get("request_id")
        if event == QUEUE_STATE_CHANGE:
            kind = self.kind or kind_of_request(metadata.get("request_type"))
            raw_reason = metadata.get("queue_state_reason")
            waiting = _Waiting(
                normalize_queue_state(metadata.get("queue_state")),
                raw_reason if isinstance(raw_reason, str) else None,
                kind,
                subject_of(metadata, kind),
            )
            self._follow(request_id, waiting)
        elif event == FUTURE_POLL:
            with self._lock:
                tracked = self._requests.get(request_id) if isinstance(request_id, str) else None
            if tracked is None:
                return
            waiting = tracked
        else:
            self._follow(request_id, None)
            return
        self.observe(waiting.state, waiting.reason, kind=waiting.kind, subject=waiting.subject)

    def _follow(self, request_id: object, waiting: _Waiting | None) -> None:
        if not isinstance(request_id, str):
            return
        with self._lock:
            if waiting is None or waiting.state == "active":
                self._requests.pop(request_id, None)
            else:
                self._requests[request_id] = waiting
                _bound(self._requests)


def _bound(table: OrderedDict[Any, Any]) -> None:
    while len(table) > MAX_TRACKED:
        table.popitem(last=False)


_default_installed = False
_default_lock = threading.Lock()


def install_default_logger() -> None:
    """Attach the process-wide :class:`QueueStateLogger` (logger ``tinkex.queue``), once per
    process: the runtime calls it when it starts. ``telemetry.detach(DEFAULT_LOGGER_ID)``
    silences the warnings for good."""
    global _default_installed
    with _default_lock:
        if not _default_installed:
            QueueStateLogger().attach()
            _default_installed = True
