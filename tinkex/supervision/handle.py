"""The Python-side face of a supervisor actor: bounded calls, stop, wait, ``with``."""

from __future__ import annotations

from concurrent.futures import Future
from types import TracebackType
from typing import Any, Self, cast

import pykka
from pykka.messages import ProxyCall

from tinkex.supervision.child_spec import ChildCounts, ChildInfo, ChildSpec
from tinkex.supervision.exits import ExitReason
from tinkex.supervision.store import Store
from tinkex.supervision.supervised_actor import Incarnation, next_generation
from tinkex.supervision.supervising import launch

__all__ = ["CALL_TIMEOUT", "SHUTDOWN_MARGIN", "ActorHandle", "SupervisorHandle"]

CALL_TIMEOUT = 30.0
"""Default bound on a call to a supervisor, which may be busy restarting children."""

SHUTDOWN_MARGIN = 1.0
"""Seconds a supervisor's own bounds add to the sum of its children's."""


class ActorHandle:
    """A handle on a running supervisor actor (or task supervisor).

    Handles returned by ``start()`` own the root of a tree: :meth:`stop` it (or use ``with``)
    and :meth:`wait` for it. A handle built from a ref (``Supervisor(ref)``, e.g. for a nested
    supervisor from ``which_children()`` or a :class:`Registry`) can call and stop, but only
    the actor's supervisor learns how it exited.
    """

    def __init__(self, ref: pykka.ActorRef[Any], *, shutdown: float = CALL_TIMEOUT) -> None:
        """Wrap a running actor; ``shutdown`` is the default bound of :meth:`stop`."""
        self._ref = ref
        self._shutdown = shutdown
        self._exited: Future[ExitReason] | None = None

    @classmethod
    def _start_root(cls, spec: ChildSpec, store: Store | None) -> Self:
        """Start an unsupervised root from ``spec``; its exit resolves :meth:`wait`."""
        exited: Future[ExitReason] = Future()
        incarnation = Incarnation(
            spec.id, next_generation(), Store() if store is None else store, exited.set_result
        )
        handle = cls(launch(spec, incarnation), shutdown=spec.shutdown)
        handle._exited = exited
        return handle

    @property
    def ref(self) -> pykka.ActorRef[Any]:
        return self._ref

    def is_alive(self) -> bool:
        return self._ref.is_alive()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the actor and (for a supervisor) its children in reverse start order.

        Waits at most ``timeout`` seconds (default: the sum of the children's shutdown
        timeouts plus a margin). Stopping an actor that already exited does nothing.

        Raises:
            TimeoutError: it is still stopping; it will finish in the background.
        """
        try:
            self._ref.stop(block=True, timeout=self._shutdown if timeout is None else timeout)
        except pykka.Timeout as exc:
            msg = f"{self._ref} did not stop within {timeout or self._shutdown}s"
            raise TimeoutError(msg) from exc

    def wait(self, timeout: float | None = None) -> ExitReason:
        """Block until the root exits (it gave up, or was stopped) and return why.

        Raises:
            TimeoutError: still running after ``timeout`` seconds.
            TypeError: this handle was not returned by ``start()``.
        """
        if self._exited is None:
            msg = "only the handle returned by start() can wait() for the actor's exit"
            raise TypeError(msg)
        return self._exited.result(timeout)

    def _call(self, method: str, *args: Any, timeout: float) -> Any:
        """Call ``method`` on the actor (in its thread) and return its result."""
        try:
            return self._ref.ask(ProxyCall((method,), args, {}), timeout=timeout)
        except pykka.Timeout as exc:
            msg = f"{self._ref} did not answer {method}() within {timeout}s"
            raise TimeoutError(msg) from exc

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "alive" if self.is_alive() else "dead"
        return f"<{type(self).__name__} {self._ref.actor_urn} {state}>"


class SupervisorHandle(ActorHandle):
    """The calls static and dynamic supervisors share."""

    def which_children(self, timeout: float = CALL_TIMEOUT) -> list[ChildInfo]:
        """Every child (in start order for a static supervisor), running or not."""
        return cast("list[ChildInfo]", self._call("which_children", timeout=timeout))

    def count_children(self, timeout: float = CALL_TIMEOUT) -> ChildCounts:
        return cast("ChildCounts", self._call("count_children", timeout=timeout))

    def start_child(self, spec: ChildSpec, timeout: float = CALL_TIMEOUT) -> pykka.ActorRef[Any]:
        """Add a child (after the others) and start it; returns its ref.

        Raises:
            DuplicateChildError: a child with this id exists.
            MaxChildrenError: a dynamic supervisor's ``max_children`` children exist.
            ChildStartError: it failed to start (it is not added).
        """
        return cast("pykka.ActorRef[Any]", self._call("start_child", spec, timeout=timeout))

    def terminate_child(self, child_id: str, timeout: float = CALL_TIMEOUT) -> None:
        """Stop a child without restarting it.

        A static supervisor keeps its spec (for ``restart_child``) unless it is temporary;
        a dynamic supervisor forgets it.
        """
        self._call("terminate_child", child_id, timeout=timeout)
