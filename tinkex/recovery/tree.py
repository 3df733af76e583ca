"""RecoveryMonitor: the handle on a recovery tree the user starts, and its public calls.

```
recovery (Supervisor, one_for_one, 3 restarts in 5 s)
├── tasks      TaskSupervisor: recovery attempts and user callbacks, in worker threads
├── executor   ExecutorActor: the recovery queue, attempts, backoff timers
└── monitor    MonitorActor: the watched runs, polling, the supervisor-gave-up trigger
```

The tree is not part of the runtime's: recovery is opt-in, carries the user's policy and
callbacks, and must outlive the runtime's clients supervisor giving up (one of the things
it reacts to). Its actors find each other through the tree's own
:class:`~tinkex.supervision.Registry`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from types import TracebackType
from typing import Any, cast

from tinkex.actors.runtime import at_exit
from tinkex.clients import ServiceClient, TrainingClient
from tinkex.supervision import (
    ChildSpec,
    NameNotFoundError,
    Registry,
    Strategy,
    Supervisor,
    TaskSupervisor,
)

from ._mail import EXECUTOR, MONITOR, TASKS, StopLatch, call
from .errors import RecoveryDisabledError, RecoveryError
from .executor import ExecutorActor, RunFetcher
from .monitor import MonitorActor, WatchedRun, fetch_with_rest
from .policy import RecoveryPolicy

__all__ = ["RecoveryMonitor"]

CALL_TIMEOUT = 30.0
"""Bound on a call into the tree (its actors answer at once unless they are restarting)."""


class _Running:
    """The monitors not stopped yet, all stopped by one exit hook.

    An exit hook per monitor could never be removed: a daemon that starts and stops
    monitors would keep every one of them (and its policy's callbacks) alive for ever.
    """

    def __init__(self) -> None:
        self._monitors: set[RecoveryMonitor] = set()
        self._lock = threading.Lock()
        self._hooked = False

    def add(self, monitor: RecoveryMonitor) -> None:
        with self._lock:
            self._monitors.add(monitor)
            if not self._hooked:
                at_exit(self.stop_all)
                self._hooked = True

    def discard(self, monitor: RecoveryMonitor) -> None:
        with self._lock:
            self._monitors.discard(monitor)

    def stop_all(self) -> None:
        with self._lock:
            monitors = list(self._monitors)
        for monitor in monitors:
            monitor.stop()


_running = _Running()


class RecoveryMonitor:
    """Watches training runs and recovers the corrupted ones from a checkpoint.

    ::

        policy = RecoveryPolicy(enabled=True, on_recovery=use_new_client)
        with RecoveryMonitor.start(policy) as recovery:
            recovery.monitor_run(training_client, service)
            ...  # train; if the run gets corrupted, use_new_client(old, new, path) is called

    Recovery starts a *new* training client (a new run) from the chosen checkpoint; it does
    not replay the steps taken since, and it does not touch the old client. Thread-safe.
    """

    def __init__(
        self, supervisor: Supervisor, registry: Registry, policy: RecoveryPolicy, latch: StopLatch
    ) -> None:
        """Use :meth:`start`."""
        self._supervisor = supervisor
        self.registry = registry
        """Where the tree's actors are registered: ``"monitor"``, ``"executor"``, ``"tasks"``."""
        self.policy = policy
        self._latch = latch

    @classmethod
    def start(
        cls,
        policy: RecoveryPolicy,
        *,
        fetch_run: RunFetcher | None = None,
        name: str = "recovery",
    ) -> RecoveryMonitor:
        """Start a recovery tree that recovers runs by ``policy``.

        ``fetch_run(service, run_id)`` returns the run's record as an APIFuture; the default
        asks the REST API (:meth:`~tinkex.clients.rest.RestClient.get_training_run`). The
        tree is stopped by :meth:`stop`, the ``with`` block, or at interpreter exit.
        """
        if not isinstance(policy, RecoveryPolicy):
            raise TypeError(f"policy must be a RecoveryPolicy, got {type(policy).__name__}")
        registry = Registry()
        latch = StopLatch()
        common = {"policy": policy, "registry": registry, "fetch_run": fetch_run or fetch_with_rest}
        supervisor = Supervisor.start(
            [
                TaskSupervisor.child_spec(TASKS),
                ChildSpec(EXECUTOR, ExecutorActor, kwargs={**common, "latch": latch}),
                ChildSpec(MONITOR, MonitorActor, kwargs=common),
            ],
            strategy=Strategy.ONE_FOR_ONE,
            registry=registry,
            name=name,
        )
        handle = cls(supervisor, registry, policy, latch)
        _running.add(handle)
        return handle

    def __repr__(self) -> str:
        state = "running" if self.is_alive() else "stopped"
        return f"<RecoveryMonitor {state} enabled={self.policy.enabled}>"

    def monitor_run(
        self,
        target: TrainingClient | str,
        service: ServiceClient,
        *,
        metadata: Mapping[str, Any] | None = None,
    ) -> str:
        """Watch a training run (a :class:`TrainingClient`'s, or one given by id).

        ``service`` is the :class:`ServiceClient` that will create the recovered client;
        ``metadata`` is added to every ``tinkex.recovery.*`` event about this run. Returns
        the run id.

        Raises:
            RecoveryDisabledError: the policy's ``enabled`` is False.
            DuplicateRunError: the run is watched already, or being recovered.
            TypeError: ``target``, ``service`` or ``metadata`` has the wrong type.
            RecoveryError: the monitor is stopped.
        """
        if not self.policy.enabled:
            raise RecoveryDisabledError(
                "recovery is disabled in this monitor's policy; start the monitor with "
                "RecoveryPolicy(enabled=True, ...) to have runs recovered"
            )
        run_id = _run_id(target, "target")
        if not isinstance(service, ServiceClient):
            raise TypeError(
                f"service must be the ServiceClient that creates the recovered client, got "
                f"{type(service).__name__}"
            )
        if metadata is not None and not isinstance(metadata, Mapping):
            raise TypeError(f"metadata must be a mapping or None, got {type(metadata).__name__}")
        client = target if isinstance(target, TrainingClient) else None
        watch = WatchedRun(run_id, service, client, dict(metadata or {}))
        self._call(MONITOR, "monitor_run", watch)
        return run_id

    def stop_monitoring(self, target: TrainingClient | str) -> bool:
        """Stop watching a run; ``False`` if it was not watched.

        A recovery already handed to the executor goes on.
        """
        run_id = _run_id(target, "target")
        return cast(bool, self._call(MONITOR, "stop_monitoring", run_id))

    def watched_runs(self) -> list[str]:
        """The runs being watched (not those handed over for recovery)."""
        return cast(list[str], self._call(MONITOR, "watched"))

    def pending_recoveries(self) -> list[str]:
        """The runs whose recovery is queued, running or waiting to retry."""
        return cast(list[str], self._call(EXECUTOR, "pending"))

    def is_alive(self) -> bool:
        return self._supervisor.is_alive()

    def _call(self, name: str, method: str, *args: Any) -> Any:
        try:
            return call(self.registry, name, method, *args, timeout=CALL_TIMEOUT)
        except NameNotFoundError:
            raise RecoveryError(
                "this RecoveryMonitor is stopped (by stop(), its with block, or after its "
                "actors kept crashing); start a new one with RecoveryMonitor.start(policy)"
            ) from None

    def stop(self, timeout: float | None = None) -> None:
        """Stop polling and recovering; attempts in flight are given up. Idempotent."""
        self._latch.set()
        self._supervisor.stop(timeout)
        _running.discard(self)

    def __enter__(self) -> RecoveryMonitor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _run_id(target: object, argument: str) -> str:
    if isinstance(target, TrainingClient):
        return target.model_id
    if isinstance(target, str) and target.strip():
        return target
    raise TypeError(
        f"{argument} must be a TrainingClient or a non-empty training run id, got {target!r}"
    )
