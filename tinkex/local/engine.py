"""The request engine: per-model ordering by ``seq_id``, deduplication, one compute thread.

Every piece of model work (create, forward/backward, optimizer step, save, load, sample)
runs on one compute thread, never on the HTTP event loop; torch uses the cores inside it.
Requests for one training model run strictly in ``seq_id`` order: an early arrival is held
until the requests before it have run, and a retried submission (same model and
``seq_id``) gets the promise of the first one instead of running twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import BadRequest, RequestFailed, ServerError
from .model import ModelInputError
from .promises import Promise, PromiseStore, QueueState, ResultPayload

log = logging.getLogger("tinkex.local.engine")

Work = Callable[[], ResultPayload]


SEEN_LIMIT = 10_000
"""How many recent seq_ids per lane are remembered for deduplication."""


@dataclass
class _Job:
    promise: Promise
    work: Work
    seq_id: int | None
    on_crash: Callable[[BaseException], None] | None = None
    arrived: float = field(default_factory=time.monotonic)


LaneKind = Literal["model", "sampler"]


@dataclass
class ModelLane:
    """The queue of one training model or sampler, plus whatever the service keeps on it.

    A model's lane runs its requests in ``seq_id`` order; a sampler's lane runs them as
    they come. Both deduplicate on ``seq_id`` and count towards their owner's limit.
    """

    model_id: str
    owner: str
    kind: LaneKind = "model"
    next_seq: int = 0
    admitted: bool = True
    running: bool = False
    held: dict[int, _Job] = field(default_factory=dict)
    unordered: deque[_Job] = field(default_factory=deque)
    seen: dict[int, str] = field(default_factory=dict)
    """Recent seq_ids and the request ids they were answered with, oldest first."""
    last_progress: float = field(default_factory=time.monotonic)
    state: Any = None
    """The service's per-model object (the trainable model), set by the create job."""


class Engine:
    """Queues work, keeps per-model order, and reports queue states for try-again answers."""

    def __init__(
        self,
        promises: PromiseStore,
        *,
        capacity_limit: int,
        max_models_per_owner: int,
        max_samplers_per_owner: int,
        seq_gap_timeout: float,
    ) -> None:
        self._promises = promises
        self._capacity_limit = capacity_limit
        self._limits: dict[LaneKind, int] = {
            "model": max_models_per_owner,
            "sampler": max_samplers_per_owner,
        }
        self._seq_gap_timeout = seq_gap_timeout
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tinkex-compute")
        self._lock = threading.RLock()
        self._lanes: dict[str, ModelLane] = {}
        self._waiting_admission: deque[ModelLane] = deque()
        self._queued = 0

    # lanes ------------------------------------------------------------------------------

    def lane(self, model_id: str) -> ModelLane | None:
        with self._lock:
            return self._lanes.get(model_id)

    def open_lane(
        self, model_id: str, owner: str, kind: LaneKind = "model"
    ) -> tuple[ModelLane, bool]:
        """The lane of ``model_id``, created if new; the flag says whether it was created.

        A new lane beyond the owner's limit of concurrent models (or samplers) waits for
        admission: its promises answer ``paused_rate_limit`` until another lane of that
        owner and kind goes away.
        """
        with self._lock:
            existing = self._lanes.get(model_id)
            if existing is not None:
                return existing, False
            lane = ModelLane(model_id=model_id, owner=owner, kind=kind)
            if self._active(owner, kind) >= self._limits[kind]:
                lane.admitted = False
                self._waiting_admission.append(lane)
            self._lanes[model_id] = lane
            return lane, True

    def close_lane(self, model_id: str) -> ModelLane | None:
        with self._lock:
            lane = self._lanes.pop(model_id, None)
            if lane is None:
                return None
            if lane in self._waiting_admission:
                self._waiting_admission.remove(lane)
            for job in [*lane.held.values(), *lane.unordered]:
                self._queued -= 1
                self._promises.fail(
                    job.promise, RequestFailed(f"model {model_id} was unloaded", "user")
                )
            lane.held.clear()
            lane.unordered.clear()
            self._admit_waiting()
            return lane

    def lanes(self) -> list[ModelLane]:
        with self._lock:
            return list(self._lanes.values())

    def _active(self, owner: str, kind: LaneKind) -> int:
        return sum(
            1
            for lane in self._lanes.values()
            if lane.owner == owner and lane.kind == kind and lane.admitted
        )

    def _admit_waiting(self) -> None:
        for lane in list(self._waiting_admission):
            if self._active(lane.owner, lane.kind) < self._limits[lane.kind]:
                lane.admitted = True
                self._waiting_admission.remove(lane)
                self._pump(lane)

    # submission -------------------------------------------------------------------------

    def submit_ordered(
        self,
        lane: ModelLane,
        seq_id: int | None,
        request_type: str,
        work: Work,
        *,
        on_crash: Callable[[BaseException], None] | None = None,
    ) -> str:
        """Queue ``work`` on ``lane`` at ``seq_id``; returns the request id of its promise.

        On a model's lane ``seq_id=None`` means "after what is ready now"; on a sampler's
        lane ``seq_id`` only deduplicates. A seq_id seen before gets the first request id.
        """
        with self._lock:
            if seq_id is not None:
                if seq_id in lane.seen:
                    return lane.seen[seq_id]
                if lane.kind == "model" and seq_id < lane.next_seq:
                    raise BadRequest(
                        f"seq_id {seq_id} on model {lane.model_id} is in the past: the model "
                        f"has run every request before seq_id {lane.next_seq}"
                    )
            promise = self._new_promise(request_type, lane.owner, lane)
            job = _Job(promise=promise, work=work, seq_id=seq_id, on_crash=on_crash)
            if seq_id is None or lane.kind == "sampler":
                lane.unordered.append(job)
            else:
                lane.held[seq_id] = job
            if seq_id is not None:
                lane.seen[seq_id] = promise.request_id
                if len(lane.seen) > SEEN_LIMIT:
                    del lane.seen[next(iter(lane.seen))]
            self._queued += 1
            self._pump(lane)
            return promise.request_id

    def submit(self, request_type: str, owner: str, work: Work) -> Promise:
        """Queue unordered work (sampling) on the compute thread."""
        with self._lock:
            promise = self._new_promise(request_type, owner, None)
            self._queued += 1
            self._executor.submit(self._run, None, _Job(promise=promise, work=work, seq_id=None))
            return promise

    def _new_promise(self, request_type: str, owner: str, lane: ModelLane | None) -> Promise:
        promise = self._promises.create(request_type, owner)
        promise.queue_state = lambda: self._queue_state(lane)
        return promise

    def _queue_state(self, lane: ModelLane | None) -> QueueState:
        with self._lock:
            if lane is not None and not lane.admitted:
                return "paused_rate_limit"
            return "paused_capacity" if self._queued > self._capacity_limit else "active"

    # running ----------------------------------------------------------------------------

    def _pump(self, lane: ModelLane) -> None:
        if lane.running or not lane.admitted:
            return
        job = lane.held.pop(lane.next_seq, None)
        if job is None and lane.unordered:
            job = lane.unordered.popleft()
        if job is None:
            return
        lane.running = True
        self._executor.submit(self._run, lane, job)

    def _run(self, lane: ModelLane | None, job: _Job) -> None:
        result, error = self._execute(job)
        # The lane moves on before the promise settles, so whoever sees the result also
        # sees the model ready for the next seq_id.
        with self._lock:
            self._queued -= 1
            if lane is not None:
                lane.running = False
                if lane.kind == "model" and job.seq_id is not None and job.seq_id == lane.next_seq:
                    lane.next_seq += 1
                lane.last_progress = time.monotonic()
                self._pump(lane)
        if error is not None:
            self._promises.fail(job.promise, error)
        else:
            assert result is not None
            self._promises.resolve(job.promise, result)

    @staticmethod
    def _execute(job: _Job) -> tuple[ResultPayload | None, RequestFailed | None]:
        try:
            return job.work(), None
        except RequestFailed as exc:
            return None, exc
        except (ServerError, ModelInputError) as exc:
            return None, RequestFailed(str(exc), "user")
        except Exception as exc:
            log.exception("%s request %s crashed", job.promise.request_type, job.promise.request_id)
            if job.on_crash is not None:
                job.on_crash(exc)
            message = f"internal error in {job.promise.request_type}: {type(exc).__name__}: {exc}"
            return None, RequestFailed(message, "server")

    def skip_gaps(self) -> None:
        """Run past a missing ``seq_id`` that has not arrived within the gap timeout.

        The wait counts from the later of the lane's last progress and the arrival of the
        oldest request held behind the gap, so an idle model does not skip at once.
        """
        now = time.monotonic()
        with self._lock:
            for lane in self._lanes.values():
                if lane.running or not lane.held or lane.next_seq in lane.held:
                    continue
                waiting_since = max(
                    lane.last_progress, min(job.arrived for job in lane.held.values())
                )
                if now - waiting_since >= self._seq_gap_timeout:
                    missing = lane.next_seq
                    lane.next_seq = min(lane.held)
                    log.warning(
                        "model %s: seq_id %d..%d never arrived; running seq_id %d",
                        lane.model_id,
                        missing,
                        lane.next_seq - 1,
                        lane.next_seq,
                    )
                    self._pump(lane)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
