"""DynamicSupervisor: one_for_one children added and removed at run time.

::

    clients = DynamicSupervisor.start(max_children=100, name="clients")
    ref = clients.start_child(ChildSpec(f"training:{model_id}", TrainingActor,
                                        args=(model_id,), restart=Restart.TRANSIENT))
    ...
    clients.terminate_child(f"training:{model_id}")

Like Elixir's ``DynamicSupervisor``: no start order, so no strategy other than one_for_one;
a child that exits without being restarted is removed (spec, name and store); at shutdown
all children are stopped at once and waited for concurrently, each within its own
``shutdown``. Unlike Elixir's, children are addressed by their spec id, which must be unique
among the running children, because names and stores are keyed by it.
"""

from __future__ import annotations

from tinkex.supervision.child_spec import ChildSpec, ChildType, Restart
from tinkex.supervision.errors import MaxChildrenError
from tinkex.supervision.handle import SHUTDOWN_MARGIN, SupervisorHandle
from tinkex.supervision.registry import Registry
from tinkex.supervision.store import Store
from tinkex.supervision.supervising import Child, SupervisorCore

__all__ = ["DynamicSupervisor", "DynamicSupervisorActor"]

DEFAULT_DYNAMIC_SHUTDOWN = 10.0
"""Seconds a parent waits for a dynamic supervisor to stop all its children concurrently."""


class DynamicSupervisorActor(SupervisorCore):
    """The actor behind :class:`DynamicSupervisor`; use the facade."""

    def __init__(
        self,
        *,
        max_children: int | None,
        max_restarts: int,
        max_seconds: float,
        registry: Registry | None,
    ) -> None:
        super().__init__(max_restarts=max_restarts, max_seconds=max_seconds, registry=registry)
        self._max_children = max_children

    def _restart_scope(self, failed: Child) -> list[Child]:
        return [failed]

    def _exited_for_good(self, child: Child) -> None:
        self._remove(child)

    def _stop_children(self) -> None:
        self._terminate([child for child in self._children.values() if child.running])

    def _admit(self, spec: ChildSpec) -> None:
        super()._admit(spec)
        if self._max_children is not None and len(self._children) >= self._max_children:
            msg = f"dynamic supervisor {self.name!r} is full ({self._max_children} children)"
            raise MaxChildrenError(msg)


class DynamicSupervisor(SupervisorHandle):
    """A supervisor of children started on demand (see the module docs)."""

    @classmethod
    def start(
        cls,
        *,
        max_children: int | None = None,
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        name: str = "dynamic_supervisor",
        registry: Registry | None = None,
        store: Store | None = None,
        shutdown: float = DEFAULT_DYNAMIC_SHUTDOWN,
    ) -> DynamicSupervisor:
        """Start a root dynamic supervisor with no children.

        ``shutdown`` bounds :meth:`stop`: children are stopped concurrently, so it should
        exceed the longest ``shutdown`` of the children you will add.
        """
        spec = cls.child_spec(
            name,
            max_children=max_children,
            max_restarts=max_restarts,
            max_seconds=max_seconds,
            registry=registry,
            shutdown=shutdown,
        )
        return cls._start_root(spec, store)

    @staticmethod
    def child_spec(
        id: str,
        *,
        max_children: int | None = None,
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        registry: Registry | None = None,
        restart: Restart = Restart.PERMANENT,
        shutdown: float = DEFAULT_DYNAMIC_SHUTDOWN,
    ) -> ChildSpec:
        """The spec of a dynamic supervisor nested in another supervisor."""
        if max_children is not None and max_children < 0:
            msg = "max_children must be None (no limit) or >= 0"
            raise ValueError(msg)
        return ChildSpec(
            id,
            DynamicSupervisorActor,
            kwargs={
                "max_children": max_children,
                "max_restarts": max_restarts,
                "max_seconds": max_seconds,
                "registry": registry,
            },
            restart=restart,
            shutdown=shutdown + SHUTDOWN_MARGIN,
            type=ChildType.SUPERVISOR,
        )
