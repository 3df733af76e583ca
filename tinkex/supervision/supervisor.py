"""Supervisor: a static, ordered list of children restarted by OTP's rules.

::

    from tinkex.supervision import ChildSpec, Restart, Strategy, Supervisor

    with Supervisor.start(
        [
            ChildSpec("limiter", RateLimiter),
            ChildSpec("cache", TokenizerCache, kwargs={"size": 16}),
            Supervisor.child_spec("sessions", [ChildSpec("heartbeat", Heartbeat)]),
        ],
        strategy=Strategy.ONE_FOR_ONE,
        max_restarts=3,
        max_seconds=5.0,
    ) as sup:
        ...

Children start in order, each waiting for its ``init()``; if one fails, those already
started are stopped in reverse order and ``start()`` raises :class:`ChildStartError`. When a
child exits, its restart type decides whether it is restarted and the strategy decides which
siblings go with it. More than ``max_restarts`` restarts within ``max_seconds`` make the
supervisor stop all its children (reverse order) and crash with :class:`MaxRestartsExceeded`,
which its own supervisor sees as a crashed child: that is how failures escalate.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any, cast

import pykka

from tinkex.supervision.child_spec import ChildSpec, ChildType, Restart
from tinkex.supervision.errors import ChildRunningError, ChildStartError
from tinkex.supervision.handle import (
    CALL_TIMEOUT,
    SHUTDOWN_MARGIN,
    SupervisorHandle,
)
from tinkex.supervision.registry import Registry
from tinkex.supervision.store import Store
from tinkex.supervision.supervising import Child, SupervisorCore

__all__ = ["Strategy", "Supervisor", "SupervisorActor"]


class Strategy(StrEnum):
    """Which children a supervisor restarts when one of them is to be restarted."""

    ONE_FOR_ONE = "one_for_one"
    """Only the child that exited."""
    ONE_FOR_ALL = "one_for_all"
    """All children: the others are stopped (reverse order), then all start (in order)."""
    REST_FOR_ONE = "rest_for_one"
    """The child that exited and those started after it, stopped and started the same way."""


class SupervisorActor(SupervisorCore):
    """The actor behind :class:`Supervisor`; use the facade."""

    def __init__(
        self,
        children: Sequence[ChildSpec],
        *,
        strategy: Strategy,
        max_restarts: int,
        max_seconds: float,
        registry: Registry | None,
    ) -> None:
        super().__init__(max_restarts=max_restarts, max_seconds=max_seconds, registry=registry)
        self._strategy = strategy
        self._children = {spec.id: Child(spec) for spec in _unique(children)}

    def init(self) -> None:
        started: list[Child] = []
        for child in self._children.values():
            try:
                self._start(child)
            except ChildStartError:
                for done in reversed(started):
                    self._terminate([done])
                    self._unregister(done)
                raise
            started.append(child)

    def _restart_scope(self, failed: Child) -> list[Child]:
        if self._strategy is Strategy.ONE_FOR_ONE:
            return [failed]
        children = list(self._children.values())
        if self._strategy is Strategy.ONE_FOR_ALL:
            return children
        return children[children.index(failed) :]

    def _exited_for_good(self, child: Child) -> None:
        if child.spec.restart is Restart.TEMPORARY:
            self._remove(child)
        else:
            self._unregister(child)  # the spec stays, for restart_child()

    def _stop_children(self) -> None:
        for child in reversed(list(self._children.values())):
            if child.running:
                self._terminate([child])

    # --- the live-tree API, called through ``ask`` by the facade ---------------------------

    def restart_child(self, child_id: str) -> pykka.ActorRef[Any]:
        return self._start(self._find_stopped(child_id))

    def delete_child(self, child_id: str) -> None:
        self._remove(self._find_stopped(child_id))

    def _find_stopped(self, child_id: str) -> Child:
        child = self._find(child_id)
        if child.running:
            msg = f"child {child_id!r} of supervisor {self.name!r} is running; terminate it first"
            raise ChildRunningError(msg)
        return child


def _unique(children: Sequence[ChildSpec]) -> Sequence[ChildSpec]:
    ids = [spec.id for spec in children]
    duplicates = sorted({child_id for child_id in ids if ids.count(child_id) > 1})
    if duplicates:
        msg = f"child ids must be unique within a supervisor; repeated: {duplicates}"
        raise ValueError(msg)
    return children


def _bound(given: float | None, children: list[float]) -> float:
    """``given``, or enough for the children's bounds one after the other."""
    return sum(children) + SHUTDOWN_MARGIN if given is None else given


class Supervisor(SupervisorHandle):
    """A supervisor of a static, ordered list of children (see the module docs).

    ``Supervisor.start(...)`` starts a root and returns its handle; ``Supervisor.child_spec``
    describes a nested supervisor; ``Supervisor(ref)`` wraps a running one. Every call is
    answered by the supervisor's own thread and bounded by ``timeout`` seconds.
    """

    @classmethod
    def start(
        cls,
        children: Sequence[ChildSpec],
        *,
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        name: str = "supervisor",
        registry: Registry | None = None,
        store: Store | None = None,
    ) -> Supervisor:
        """Start a root supervisor and its children; return once they all ran ``init()``.

        ``name`` names it in logs and signals; ``registry`` receives every child under its
        id; ``store`` holds the children's crash-surviving state (a fresh one by default).

        Raises:
            ChildStartError: a child failed to start (the others were stopped again).
        """
        spec = cls.child_spec(
            name,
            children,
            strategy=strategy,
            max_restarts=max_restarts,
            max_seconds=max_seconds,
            registry=registry,
        )
        return cls._start_root(spec, store)

    @staticmethod
    def child_spec(
        id: str,
        children: Sequence[ChildSpec],
        *,
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        registry: Registry | None = None,
        restart: Restart = Restart.PERMANENT,
        shutdown: float | None = None,
        start_timeout: float | None = None,
    ) -> ChildSpec:
        """The spec of a supervisor nested in another one.

        ``shutdown`` and ``start_timeout`` default to the sum of the children's plus a
        margin, so that the parent waits as long as this supervisor may need (OTP's default
        for supervisors is to wait forever; here every wait is bounded).
        """
        children = tuple(_unique(children))
        return ChildSpec(
            id,
            SupervisorActor,
            kwargs={
                "children": children,
                "strategy": strategy,
                "max_restarts": max_restarts,
                "max_seconds": max_seconds,
                "registry": registry,
            },
            restart=restart,
            shutdown=_bound(shutdown, [c.shutdown for c in children]),
            start_timeout=_bound(start_timeout, [c.start_timeout for c in children]),
            type=ChildType.SUPERVISOR,
        )

    def restart_child(self, child_id: str, timeout: float = CALL_TIMEOUT) -> pykka.ActorRef[Any]:
        """Start a stopped child again (does not count towards the restart intensity).

        Raises:
            ChildRunningError: it is running.
        """
        return cast("pykka.ActorRef[Any]", self._call("restart_child", child_id, timeout=timeout))

    def delete_child(self, child_id: str, timeout: float = CALL_TIMEOUT) -> None:
        """Remove a stopped child's spec and store.

        Raises:
            ChildRunningError: it is running.
        """
        self._call("delete_child", child_id, timeout=timeout)
