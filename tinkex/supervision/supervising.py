"""What every supervisor does: start children with a handshake, stop them within a bound,
act on their exit reports, count restarts, keep names and stores, and emit signals.

:class:`SupervisorCore` is the shared base of the static and dynamic supervisors. It is an
actor, so everything below runs in the supervisor's own thread, one message at a time; the
only blocking it does is waiting for a child's start or stop, always with a timeout.
Children talk to it with ``tell`` only (their exit report), so a child can never deadlock it.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pykka

from tinkex import telemetry
from tinkex.supervision.child_spec import ChildCounts, ChildInfo, ChildSpec, ChildType, Restart
from tinkex.supervision.errors import (
    ChildNotFoundError,
    ChildStartError,
    DuplicateChildError,
    MaxRestartsExceeded,
)
from tinkex.supervision.exits import ExitKind, ExitReason
from tinkex.supervision.intensity import RestartIntensity
from tinkex.supervision.registry import Registry
from tinkex.supervision.supervised_actor import (
    Incarnation,
    Shutdown,
    SupervisedActor,
    launching,
    next_generation,
)

__all__ = ["Child", "SupervisorCore", "launch"]

logger = logging.getLogger("tinkex.supervision")


def launch(spec: ChildSpec, incarnation: Incarnation) -> pykka.ActorRef[Any]:
    """Start one incarnation of ``spec`` and wait for its ``init()``, like OTP's start_link.

    Raises what ``init()`` raised, :class:`TimeoutError` if it did not return within
    ``spec.start_timeout`` (the actor is then asked to stop and left to finish on its own),
    or :class:`TypeError` if ``spec.start`` did not start a :class:`SupervisedActor`.
    """
    token = launching.set(incarnation)
    try:
        ref = spec.start_function()(*spec.args, **spec.kwargs)
    finally:
        launching.reset(token)
    if not isinstance(ref, pykka.ActorRef) or ref.actor_urn != incarnation.urn:
        if isinstance(ref, pykka.ActorRef):
            ref.stop(block=False)
        msg = f"start of child {spec.id!r} must start one SupervisedActor, got {ref!r}"
        raise TypeError(msg)
    try:
        incarnation.started.result(timeout=spec.start_timeout)
    except TimeoutError:
        ref.stop(block=False)
        msg = f"init() of child {spec.id!r} did not finish within {spec.start_timeout}s"
        raise TimeoutError(msg) from None
    return ref


@dataclass(frozen=True)
class ChildExit:
    """A child's exit report: the only message children send their supervisor."""

    child_id: str
    generation: int
    reason: ExitReason


@dataclass(frozen=True)
class RetryRestart:
    """Sent to itself when a restart failed to start a child: try again (and count it)."""

    child_id: str


def _reporter(
    supervisor: pykka.ActorRef[Any], child_id: str, generation: int
) -> Callable[[ExitReason], None]:
    def report(reason: ExitReason) -> None:
        # A dead supervisor took everyone who would care about this exit with it.
        with contextlib.suppress(pykka.ActorDeadError):
            supervisor.tell(ChildExit(child_id, generation, reason))

    return report


@dataclass(eq=False)
class Child:
    """The supervisor's record of one child across its incarnations."""

    spec: ChildSpec
    ref: pykka.ActorRef[Any] | None = None
    """The latest incarnation (kept after it stops, to unregister its name)."""
    generation: int = 0
    running: bool = False

    def info(self) -> ChildInfo:
        return ChildInfo(
            self.spec.id,
            self.ref if self.running else None,
            self.spec.type,
            self.spec.restart,
            self.generation,
        )


class SupervisorCore(SupervisedActor):
    """Shared machinery of :class:`~tinkex.supervision.supervisor.SupervisorActor` and
    :class:`~tinkex.supervision.dynamic.DynamicSupervisorActor`.

    Subclasses decide which children a restart touches (:meth:`_restart_scope`), what an exit
    without restart leaves behind (:meth:`_exited_for_good`) and the shutdown order
    (:meth:`_stop_children`). Children are kept in start order in ``_children``.
    """

    def __init__(self, *, max_restarts: int, max_seconds: float, registry: Registry | None) -> None:
        super().__init__()
        self.name = self.child_id
        self._intensity = RestartIntensity(max_restarts, max_seconds)
        self._registry = registry
        self._children: dict[str, Child] = {}

    # --- subclass policy ----------------------------------------------------------------

    @abc.abstractmethod
    def _restart_scope(self, failed: Child) -> list[Child]:
        """The children, in start order, that the restart of ``failed`` stops and starts."""

    @abc.abstractmethod
    def _exited_for_good(self, child: Child) -> None:
        """``child`` exited (or was terminated) and will not be restarted."""

    @abc.abstractmethod
    def _stop_children(self) -> None:
        """Stop every running child at shutdown."""

    # --- queries, called through ``ask`` by the facades -------------------------------------

    def which_children(self) -> list[ChildInfo]:
        return [child.info() for child in self._children.values()]

    def count_children(self) -> ChildCounts:
        children = list(self._children.values())
        supervisors = sum(child.spec.type is ChildType.SUPERVISOR for child in children)
        return ChildCounts(
            specs=len(children),
            active=sum(child.running for child in children),
            supervisors=supervisors,
            workers=len(children) - supervisors,
        )

    # --- changes, called through ``ask`` by the facades ------------------------------------

    def start_child(self, spec: ChildSpec) -> pykka.ActorRef[Any]:
        self._admit(spec)
        child = Child(spec)
        try:
            ref = self._start(child)
        except ChildStartError:
            self.store.pop(spec.id, None)
            raise
        self._children[spec.id] = child
        return ref

    def _admit(self, spec: ChildSpec) -> None:
        """Refuse ``spec`` if it cannot be added; subclasses add their own limits."""
        if spec.id in self._children:
            msg = f"supervisor {self.name!r} already has a child {spec.id!r}"
            raise DuplicateChildError(msg)

    def terminate_child(self, child_id: str) -> None:
        child = self._find(child_id)
        if child.running:
            self._terminate([child])
        self._exited_for_good(child)

    # --- lifecycle ------------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, ChildExit):
            self._child_exited(message)
        elif isinstance(message, RetryRestart):
            child = self._children.get(message.child_id)
            if child is not None and not child.running:
                self._restart(child)
        else:
            super().on_receive(message)

    def terminate(self, reason: ExitReason) -> None:
        began = time.monotonic_ns()
        self._stop_children()
        if not reason.abnormal:
            # A deliberate shutdown: forget the names. After a crash they stay, pointing at
            # dead actors, so that lookups wait for a parent that may restart this subtree.
            for child in self._children.values():
                self._unregister(child)
        self._emit(
            telemetry.SUPERVISOR_SHUTDOWN,
            {"duration": time.monotonic_ns() - began, "children": len(self._children)},
            reason=reason.kind.value,
            error=reason.error,
        )

    def _find(self, child_id: str) -> Child:
        child = self._children.get(child_id)
        if child is None:
            msg = f"supervisor {self.name!r} has no child {child_id!r}"
            raise ChildNotFoundError(msg)
        return child

    def _start(self, child: Child, *, restart_of: str | None = None) -> pykka.ActorRef[Any]:
        """Start a new incarnation of ``child``; raises :class:`ChildStartError`."""
        spec = child.spec
        generation = next_generation()
        incarnation = Incarnation(
            spec.id,
            generation,
            self.store.substore(spec.id),
            _reporter(self.actor_ref, spec.id, generation),
        )
        began = time.monotonic_ns()
        try:
            ref = launch(spec, incarnation)
        except Exception as exc:
            raise ChildStartError(spec.id, exc) from exc
        child.ref, child.generation, child.running = ref, generation, True
        if self._registry is not None:
            try:
                self._registry.register(spec.id, ref)
            except Exception as exc:
                self._terminate([child])
                raise ChildStartError(spec.id, exc) from exc
        measurements = {"duration": time.monotonic_ns() - began}
        self._emit(telemetry.SUPERVISOR_CHILD_STARTED, measurements, **self._about(child))
        if restart_of is not None:
            self._emit(
                telemetry.SUPERVISOR_CHILD_RESTARTED,
                measurements,
                **self._about(child),
                restart_of=restart_of,
            )
        return ref

    def _terminate(self, children: Sequence[Child]) -> None:
        """Shut ``children`` down concurrently, each within its ``shutdown``; abandon laggards.

        Their generations are retired first, so their own exit reports arrive stale.
        """
        began = time.monotonic()
        stopping = []
        for child in children:
            assert child.ref is not None and child.running
            child.running = False
            stopping.append((child, child.ref.ask(Shutdown(), block=False)))
        for child, reply in stopping:
            remaining = began + child.spec.shutdown - time.monotonic()
            try:
                reply.get(timeout=max(0.0, remaining))
            except pykka.ActorDeadError:
                pass  # it exited meanwhile, on its own; its report is stale now
            except pykka.Timeout:
                self._abandon(child)
                continue
            self._emit(
                telemetry.SUPERVISOR_CHILD_EXITED,
                {},
                **self._about(child),
                reason=ExitKind.SHUTDOWN.value,
                error=None,
            )

    def _abandon(self, child: Child) -> None:
        logger.error(
            "Supervisor %r abandoned child %r (generation %d): it did not stop within %ss; "
            "its thread keeps running",
            self.name,
            child.spec.id,
            child.generation,
            child.spec.shutdown,
        )
        self._unregister(child)  # so that a new incarnation can take the name
        self._emit(
            telemetry.SUPERVISOR_CHILD_ABANDONED,
            {"timeout": child.spec.shutdown},
            **self._about(child),
        )

    def _child_exited(self, report: ChildExit) -> None:
        child = self._children.get(report.child_id)
        if child is None or not child.running or child.generation != report.generation:
            logger.debug("Supervisor %r ignores a stale exit report %r", self.name, report)
            return
        child.running = False
        reason = report.reason
        self._emit(
            telemetry.SUPERVISOR_CHILD_EXITED,
            {},
            **self._about(child),
            reason=reason.kind.value,
            error=reason.error,
        )
        restart = child.spec.restart
        if restart is Restart.PERMANENT or (restart is Restart.TRANSIENT and reason.abnormal):
            self._restart(child)
        else:
            self._exited_for_good(child)

    def _restart(self, failed: Child) -> None:
        """Restart ``failed`` and the siblings its strategy takes along, or give up."""
        if not self._intensity.add_restart():
            self._emit(
                telemetry.SUPERVISOR_MAX_RESTARTS_EXCEEDED,
                {"restarts": len(self._intensity)},
                child_id=failed.spec.id,
                max_restarts=self._intensity.max_restarts,
                max_seconds=self._intensity.max_seconds,
            )
            raise MaxRestartsExceeded(
                self.name, self._intensity.max_restarts, self._intensity.max_seconds
            )
        scope = self._restart_scope(failed)
        for child in reversed(scope):
            if child.running:
                self._terminate([child])
        for child in scope:
            if child.spec.restart is Restart.TEMPORARY:
                self._remove(child)
        for child in scope:
            if child.spec.restart is Restart.TEMPORARY:
                continue
            try:
                self._start(child, restart_of=failed.spec.id)
            except ChildStartError:
                logger.exception("Supervisor %r will retry the restart", self.name)
                self.actor_ref.tell(RetryRestart(child.spec.id))
                return

    def _remove(self, child: Child) -> None:
        """Forget ``child`` entirely: spec, name and store."""
        del self._children[child.spec.id]
        self._unregister(child)
        self.store.pop(child.spec.id, None)

    def _unregister(self, child: Child) -> None:
        if self._registry is not None and child.ref is not None:
            self._registry.unregister(child.spec.id, child.ref)

    def _about(self, child: Child) -> dict[str, Any]:
        return {"child_id": child.spec.id, "generation": child.generation}

    def _emit(self, event: str, measurements: dict[str, Any], **metadata: Any) -> None:
        telemetry.execute(event, measurements, {"supervisor": self.name, **metadata})
