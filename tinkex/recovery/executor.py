"""The executor actor: turns a run to recover into a new TrainingClient, in bounded attempts.

A recovery is queued (FIFO), and at most ``policy.max_concurrent`` attempts run at once,
each in a worker thread of the tree's :class:`~tinkex.supervision.TaskSupervisor`: an
attempt waits for the network (fetching the run, restoring the checkpoint), which an actor
must never do. The worker reports back by name, so its result reaches whichever
incarnation of the executor is alive then. Between attempts a timer thread, not the actor,
waits out the backoff. The recoveries live in the actor's supervisor-owned store: after a
crash the new incarnation re-arms the backoff timers and keeps waiting for the attempts in
flight.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Final, Literal

from tinkex.actors.base import TinkexActor
from tinkex.clients import ServiceClient, TrainingClient
from tinkex.futures import APIFuture
from tinkex.supervision import ExitReason, Registry, TaskSupervisor
from tinkex.types import TrainingRun

from . import events
from ._mail import EXECUTOR, RESTART_WAIT, TASKS, StopLatch, StoppedError, after, tell
from .errors import DuplicateRunError, NoCheckpointError
from .policy import RecoveryPolicy

__all__ = ["ATTEMPT_TIMEOUT", "ExecutorActor", "RecoveryJob", "RunFetcher"]

log = logging.getLogger("tinkex.recovery")

RunFetcher = Callable[[ServiceClient, str], APIFuture[TrainingRun]]
"""``fetch_run(service, run_id)``: the run's current record, as the REST API reports it."""

ATTEMPT_TIMEOUT: Final = 600.0
"""Seconds one step of an attempt (fetching the run, restoring the checkpoint) may take
before the attempt counts as failed."""

Reason = Literal["corrupted", "actor_lost"]

_tokens = itertools.count(1)
"""Attempt and timer tokens, unique in the process so that no incarnation reuses one."""


@dataclass(frozen=True)
class RecoveryJob:
    """One run to recover, as the monitor hands it over."""

    run_id: str
    service: ServiceClient
    old_client: TrainingClient | None
    reason: Reason
    metadata: Mapping[str, Any]
    run: TrainingRun | None = None
    """The run's record when it was found corrupted (saves a fetch on the first attempt)."""
    handed_over: int = field(default_factory=time.monotonic_ns)


@dataclass(frozen=True)
class _Recovery:
    """A queued, running or backing-off recovery: the executor's unit of state."""

    job: RecoveryJob
    state: Literal["queued", "running", "waiting"]
    order: int
    """FIFO position among the queued."""
    attempts: int = 0
    """Attempts started so far."""
    token: int = 0
    """The current attempt or backoff timer; results carrying another token are stale."""
    due: float | None = None
    """``time.monotonic()`` at which a waiting recovery is queued again."""


@dataclass(frozen=True)
class _Recovered:
    """An attempt's report: it created ``client`` from ``checkpoint``."""

    run_id: str
    token: int
    checkpoint: str
    client: TrainingClient


@dataclass(frozen=True)
class _AttemptFailed:
    """An attempt's report: it failed (``checkpoint`` is ``None`` if none was chosen)."""

    run_id: str
    token: int
    checkpoint: str | None
    error: Exception


@dataclass(frozen=True)
class _RetryDue:
    run_id: str
    token: int


@dataclass(frozen=True)
class _Pump:
    """Start what the concurrency bound allows (sent to itself after a restart)."""


class ExecutorActor(TinkexActor):
    """Runs recoveries; see the module docs. Use :class:`~tinkex.recovery.RecoveryMonitor`."""

    def __init__(
        self,
        *,
        policy: RecoveryPolicy,
        registry: Registry,
        fetch_run: RunFetcher,
        latch: StopLatch,
    ) -> None:
        super().__init__()
        self._policy = policy
        self._registry = registry
        self._fetch_run = fetch_run
        self._latch = latch

    def init(self) -> None:
        self._recoveries: dict[str, _Recovery] = self.store.setdefault("recoveries", {})
        self._orders: itertools.count[int] = self.store.setdefault("orders", itertools.count())
        self._timers: dict[str, threading.Timer] = {}
        now = time.monotonic()
        for recovery in self._recoveries.values():
            if recovery.state == "waiting" and recovery.due is not None:
                self._arm(recovery, max(0.0, recovery.due - now))
        self.actor_ref.tell(_Pump())

    def terminate(self, reason: ExitReason) -> None:
        for timer in self._timers.values():
            timer.cancel()

    # calls ------------------------------------------------------------------------------

    def recover(self, job: RecoveryJob) -> None:
        """Queue ``job``.

        Raises:
            DuplicateRunError: a recovery of the same run is queued, running or backing off.
        """
        if job.run_id in self._recoveries:
            raise DuplicateRunError(f"a recovery of training run {job.run_id} is already pending")
        self._recoveries[job.run_id] = _Recovery(job, "queued", next(self._orders))
        self._pump()

    def pending(self) -> list[str]:
        """The runs whose recovery is queued, running or waiting to retry."""
        return list(self._recoveries)

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, _Recovered | _AttemptFailed):
            self._finished(message)
        elif isinstance(message, _RetryDue):
            self._retry(message)
        elif isinstance(message, _Pump):
            self._pump()
        else:
            return super().on_receive(message)
        return None

    # the queue --------------------------------------------------------------------------

    def _pump(self) -> None:
        recoveries = list(self._recoveries.values())
        running = sum(r.state == "running" for r in recoveries)
        queued = sorted((r for r in recoveries if r.state == "queued"), key=lambda r: r.order)
        for recovery in queued[: max(0, self._policy.max_concurrent - running)]:
            self._start(recovery)

    def _start(self, recovery: _Recovery) -> None:
        attempt = recovery.attempts + 1
        recovery = replace(
            recovery, state="running", attempts=attempt, token=next(_tokens), due=None
        )
        self._recoveries[recovery.job.run_id] = recovery
        self._emit(
            events.STARTED,
            {"attempt": attempt},
            recovery,
            attempt=attempt,
            strategy=self._policy.checkpoint_strategy,
        )
        try:
            self._tasks().run(
                _attempt,
                recovery.job,
                attempt,
                recovery.token,
                self._policy,
                self._fetch_run,
                self._registry,
                self._latch,
            )
        except Exception as exc:  # no worker thread to be had: that attempt failed
            self._failed(recovery, None, exc)

    def _finished(self, done: _Recovered | _AttemptFailed) -> None:
        recovery = self._recoveries.get(done.run_id)
        if recovery is None or recovery.state != "running" or recovery.token != done.token:
            log.warning(
                "Ignoring the report of a superseded recovery attempt of run %s%s",
                done.run_id,
                f" (its client {done.client.model_id} is unused)"
                if isinstance(done, _Recovered)
                else "",
            )
            return
        if isinstance(done, _Recovered):
            self._succeeded(recovery, done.client, done.checkpoint)
        else:
            self._failed(recovery, done.checkpoint, done.error)
        self._pump()

    def _succeeded(self, recovery: _Recovery, client: TrainingClient, checkpoint: str) -> None:
        job = recovery.job
        del self._recoveries[job.run_id]
        log.info("Recovered run %s from %s as %s", job.run_id, checkpoint, client.model_id)
        self._emit(
            events.SUCCEEDED,
            {"attempt": recovery.attempts, "duration": time.monotonic_ns() - job.handed_over},
            recovery,
            checkpoint=checkpoint,
            new_model_id=client.model_id,
        )
        if self._policy.on_recovery is not None:
            self._callback(
                "on_recovery", self._policy.on_recovery, job, job.old_client, client, checkpoint
            )

    def _failed(self, recovery: _Recovery, checkpoint: str | None, error: Exception) -> None:
        job = recovery.job
        if recovery.attempts >= self._policy.max_attempts:
            del self._recoveries[job.run_id]
            log.error(
                "Gave up recovering run %s after %d attempts: %s",
                job.run_id,
                recovery.attempts,
                error,
            )
            self._emit(
                events.EXHAUSTED,
                {"attempts": recovery.attempts, "duration": time.monotonic_ns() - job.handed_over},
                recovery,
                error=error,
            )
            if self._policy.on_failure is not None:
                self._callback("on_failure", self._policy.on_failure, job, job.run_id, error)
            return
        delay = self._policy.delay_after(recovery.attempts)
        recovery = replace(
            recovery, state="waiting", token=next(_tokens), due=time.monotonic() + delay
        )
        self._recoveries[job.run_id] = recovery
        self._arm(recovery, delay)
        log.warning(
            "Recovery attempt %d of run %s failed (%s); retrying in %.3g s",
            recovery.attempts,
            job.run_id,
            error,
            delay,
        )
        self._emit(
            events.FAILED,
            {"attempt": recovery.attempts, "delay": delay},
            recovery,
            checkpoint=checkpoint,
            error=error,
        )

    def _arm(self, recovery: _Recovery, delay: float) -> None:
        run_id = recovery.job.run_id
        due = _RetryDue(run_id, recovery.token)
        self._timers[run_id] = after(
            delay,
            partial(tell, self._registry, EXECUTOR, due, wait=True),
            f"recovery-retry:{run_id}",
        )

    def _retry(self, due: _RetryDue) -> None:
        recovery = self._recoveries.get(due.run_id)
        if recovery is None or recovery.state != "waiting" or recovery.token != due.token:
            return  # a timer of a previous incarnation, already acted upon
        self._timers.pop(due.run_id, None)
        self._recoveries[due.run_id] = replace(
            recovery, state="queued", order=next(self._orders), due=None
        )
        self._pump()

    # helpers ----------------------------------------------------------------------------

    def _tasks(self) -> TaskSupervisor:
        return TaskSupervisor(self._registry.lookup(TASKS, timeout=RESTART_WAIT))

    def _callback(
        self, name: str, callback: Callable[..., object], job: RecoveryJob, *args: Any
    ) -> None:
        try:
            self._tasks().run(_run_callback, name, callback, args, job)
        except Exception:
            log.exception("Could not run %s for run %s: no worker thread", name, job.run_id)

    def _emit(
        self, event: str, measurements: dict[str, float], recovery: _Recovery, **metadata: Any
    ) -> None:
        job = recovery.job
        events.emit(event, measurements, job.metadata, job.run_id, reason=job.reason, **metadata)


def _attempt(
    job: RecoveryJob,
    attempt: int,
    token: int,
    policy: RecoveryPolicy,
    fetch_run: RunFetcher,
    registry: Registry,
    latch: StopLatch,
) -> None:
    """One attempt, in a worker thread: pick the checkpoint, restore it, report back."""
    checkpoint: str | None = None
    try:
        checkpoint = _checkpoint(job, attempt, policy, fetch_run, latch)
        service = job.service
        restore = (
            service.create_training_client_from_state_with_optimizer
            if policy.restore_optimizer
            else service.create_training_client_from_state
        )
        client = latch.result(restore(checkpoint), ATTEMPT_TIMEOUT)
        done: _Recovered | _AttemptFailed = _Recovered(job.run_id, token, checkpoint, client)
    except StoppedError:
        return
    except Exception as exc:
        done = _AttemptFailed(job.run_id, token, checkpoint, exc)
    if not tell(registry, EXECUTOR, done, wait=True) and isinstance(done, _Recovered):
        log.warning(
            "Run %s was recovered as %s after the recovery monitor stopped; nobody uses it",
            job.run_id,
            done.client.model_id,
        )


def _checkpoint(
    job: RecoveryJob, attempt: int, policy: RecoveryPolicy, fetch_run: RunFetcher, latch: StopLatch
) -> str:
    """The path to restore: the policy's, or the run's newest training checkpoint."""
    if policy.checkpoint_path is not None:
        return policy.checkpoint_path
    run = job.run
    if run is None or attempt > 1:  # a retry reads the run again
        run = latch.result(fetch_run(job.service, job.run_id), ATTEMPT_TIMEOUT)
    if run.last_checkpoint is None:
        raise NoCheckpointError(
            f"training run {job.run_id} has no training checkpoint to recover from; save "
            "one with TrainingClient.save_state, or set RecoveryPolicy.checkpoint_strategy "
            "to a tinker:// path"
        )
    return run.last_checkpoint.tinker_path


def _run_callback(
    name: str, callback: Callable[..., object], args: tuple[Any, ...], job: RecoveryJob
) -> None:
    """Run a user callback in a worker thread; what it raises is logged and reported only."""
    try:
        callback(*args)
    except Exception as exc:
        log.exception("%s of the recovery of run %s raised", name, job.run_id)
        events.emit(
            events.CALLBACK_ERROR,
            {},
            job.metadata,
            job.run_id,
            reason=job.reason,
            callback=name,
            error=exc,
        )
