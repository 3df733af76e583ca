"""The monitor actor: watches training runs and hands those that need recovery over.

Every ``policy.poll_interval`` seconds a timer thread (never a sleeping handler) tells the
monitor to poll; it starts one fetch per watched run (``GET /api/v1/training_runs/{id}``
by default) without waiting, and the answers come back as messages. A run the server marks
``corrupted`` is handed to the executor and no longer watched.

The monitor also listens for the runtime's clients supervisor giving up on a training
actor (``tinkex.supervisor.max_restarts_exceeded`` for child ``training:<model_id>``): that
model's actor kept crashing, so its run is recovered the same way, from its checkpoint.

The watched runs live in the actor's supervisor-owned store, so a crash of the monitor
loses none of them: the next incarnation keeps polling them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

from tinkex import telemetry
from tinkex.actors.base import TinkexActor
from tinkex.actors.runtime import CLIENTS
from tinkex.clients import ServiceClient, TrainingClient
from tinkex.clients.rest import RestClient
from tinkex.futures import APIFuture
from tinkex.supervision import ExitReason, Registry
from tinkex.types import TrainingRun

from . import events
from ._mail import EXECUTOR, MONITOR, RESTART_WAIT, after, call, tell
from .errors import DuplicateRunError
from .executor import Reason, RecoveryJob, RunFetcher
from .policy import RecoveryPolicy

__all__ = ["MonitorActor", "WatchedRun", "fetch_with_rest"]

log = logging.getLogger("tinkex.recovery")

TRAINING_ACTOR_PREFIX: Final = "training:"
"""Training actors are named ``training:<model_id>`` (``tinkex.clients.TrainingClient``)."""


def fetch_with_rest(service: ServiceClient, run_id: str) -> APIFuture[TrainingRun]:
    """The default run fetcher: :meth:`RestClient.get_training_run` with the service's config."""
    return RestClient(config=service.config).get_training_run(run_id)


@dataclass(frozen=True)
class WatchedRun:
    """A run the monitor polls, and what its recovery will need."""

    run_id: str
    service: ServiceClient
    client: TrainingClient | None
    metadata: Mapping[str, Any]


@dataclass(frozen=True)
class _Tick:
    pass


@dataclass(frozen=True)
class _Fetched:
    run_id: str
    future: APIFuture[TrainingRun]


@dataclass(frozen=True)
class _ActorLost:
    run_id: str


class MonitorActor(TinkexActor):
    """Watches runs; see the module docs. Use :class:`~tinkex.recovery.RecoveryMonitor`."""

    def __init__(
        self, *, policy: RecoveryPolicy, registry: Registry, fetch_run: RunFetcher
    ) -> None:
        super().__init__()
        self._policy = policy
        self._registry = registry
        self._fetch_run = fetch_run

    def init(self) -> None:
        self._runs: dict[str, WatchedRun] = self.store.setdefault("runs", {})
        self._fetching: set[str] = set()
        self._timer: threading.Timer | None = None
        self._handler_id = f"tinkex.recovery.monitor:{self.actor_urn}"
        telemetry.attach(
            self._handler_id, telemetry.SUPERVISOR_MAX_RESTARTS_EXCEEDED, self._on_gave_up
        )
        self._schedule_poll()

    def terminate(self, reason: ExitReason) -> None:
        if self._timer is not None:
            self._timer.cancel()
        telemetry.detach(self._handler_id)

    # calls ------------------------------------------------------------------------------

    def monitor_run(self, watch: WatchedRun) -> None:
        """Start watching ``watch.run_id``.

        Raises:
            DuplicateRunError: it is watched already, or its recovery is pending.
        """
        run_id = watch.run_id
        if run_id in self._runs:
            raise DuplicateRunError(
                f"training run {run_id} is already monitored; call stop_monitoring first to "
                "change how it is watched"
            )
        if run_id in call(self._registry, EXECUTOR, "pending", timeout=RESTART_WAIT):
            raise DuplicateRunError(
                f"training run {run_id} is being recovered right now; monitor the new "
                "client from on_recovery instead"
            )
        self._runs[run_id] = watch

    def stop_monitoring(self, run_id: str) -> bool:
        """Stop watching ``run_id``; ``False`` if it was not watched."""
        return self._runs.pop(run_id, None) is not None

    def watched(self) -> list[str]:
        return list(self._runs)

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, _Tick):
            self._poll()
        elif isinstance(message, _Fetched):
            self._fetched(message)
        elif isinstance(message, _ActorLost):
            self._actor_lost(message)
        else:
            return super().on_receive(message)
        return None

    # polling ----------------------------------------------------------------------------

    def _schedule_poll(self) -> None:
        # One pending tick at a time: a stray tick (sent by a previous incarnation's timer)
        # must not start a second chain of polls.
        if self._timer is not None:
            self._timer.cancel()
        self._timer = after(
            self._policy.poll_interval,
            partial(tell, self._registry, MONITOR, _Tick(), wait=False),
            "recovery-poll",
        )

    def _poll(self) -> None:
        self._schedule_poll()
        for watch in list(self._runs.values()):
            if watch.run_id in self._fetching:
                continue  # the previous answer is still on its way
            try:
                future = self._fetch_run(watch.service, watch.run_id)
                future.add_done_callback(partial(self._deliver, watch.run_id))
            except Exception as exc:
                self._poll_error(watch, exc)
                continue
            # Marked after the callback was registered: its message is handled after this.
            self._fetching.add(watch.run_id)

    def _deliver(self, run_id: str, future: APIFuture[TrainingRun]) -> None:
        # Runs on the thread that completed the fetch (the I/O loop): must not block.
        tell(self._registry, MONITOR, _Fetched(run_id, future), wait=False)

    def _fetched(self, fetched: _Fetched) -> None:
        self._fetching.discard(fetched.run_id)
        watch = self._runs.get(fetched.run_id)
        if watch is None:
            return  # no longer watched
        try:
            run = fetched.future.result()
        except Exception as exc:  # the fetch failed (or was cancelled)
            self._poll_error(watch, exc)
            return
        if not isinstance(run, TrainingRun):
            error = TypeError(f"fetch_run answered a {type(run).__name__}, not a TrainingRun")
            self._poll_error(watch, error)
        elif run.corrupted:
            self._hand_over(watch, "corrupted", run)

    def _poll_error(self, watch: WatchedRun, error: BaseException) -> None:
        log.warning("Could not fetch training run %s: %s", watch.run_id, error)
        events.emit(events.POLL_ERROR, {}, watch.metadata, watch.run_id, error=error)

    # the other trigger: the runtime gave up on the run's training actor -----------------

    def _on_gave_up(
        self, event: str, measurements: dict[str, Any], metadata: dict[str, Any]
    ) -> None:
        # A telemetry handler, run in the giving-up supervisor's thread: only forward.
        child = metadata.get("child_id")
        if (
            metadata.get("supervisor") == CLIENTS
            and isinstance(child, str)
            and child.startswith(TRAINING_ACTOR_PREFIX)
        ):
            run_id = child.removeprefix(TRAINING_ACTOR_PREFIX)
            tell(self._registry, MONITOR, _ActorLost(run_id), wait=False)

    def _actor_lost(self, lost: _ActorLost) -> None:
        watch = self._runs.get(lost.run_id)
        if watch is not None:
            self._hand_over(watch, "actor_lost", None)

    # hand-over --------------------------------------------------------------------------

    def _hand_over(self, watch: WatchedRun, reason: Reason, run: TrainingRun | None) -> None:
        checkpoint = None
        if run is not None and run.last_checkpoint is not None:
            checkpoint = run.last_checkpoint.tinker_path
        log.warning("Training run %s needs recovery (%s)", watch.run_id, reason)
        events.emit(
            events.DETECTED,
            {},
            watch.metadata,
            watch.run_id,
            reason=reason,
            checkpoint=checkpoint,
        )
        job = RecoveryJob(watch.run_id, watch.service, watch.client, reason, watch.metadata, run)
        try:
            call(self._registry, EXECUTOR, "recover", job, timeout=RESTART_WAIT)
        except DuplicateRunError:
            log.info("Recovery of run %s is already pending", watch.run_id)
        except Exception:
            # The executor is not there (its tree is failing): keep watching, so that a
            # corrupted run is detected again at the next poll.
            log.exception("Could not hand run %s over for recovery", watch.run_id)
            return
        del self._runs[watch.run_id]
