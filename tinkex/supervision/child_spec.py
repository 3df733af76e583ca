"""How a supervisor starts, restarts and stops one child, and what it reports about it."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, cast

from tinkex.supervision.supervised_actor import SupervisedActor

if TYPE_CHECKING:
    import pykka

__all__ = [
    "DEFAULT_SHUTDOWN",
    "DEFAULT_START_TIMEOUT",
    "ChildCounts",
    "ChildInfo",
    "ChildSpec",
    "ChildType",
    "Restart",
]

DEFAULT_SHUTDOWN = 5.0
"""Seconds a child gets to stop before it is abandoned (OTP's default 5000 ms for workers)."""

DEFAULT_START_TIMEOUT = 5.0
"""Seconds a child's ``init()`` may take before its start counts as failed."""


class Restart(StrEnum):
    """When a child is restarted after it exits."""

    PERMANENT = "permanent"
    """Always, whatever the exit reason."""
    TRANSIENT = "transient"
    """Only after a crash; a normal exit or a shutdown leaves it stopped."""
    TEMPORARY = "temporary"
    """Never; its spec is deleted when it exits, even when a sibling's restart stopped it."""


class ChildType(StrEnum):
    WORKER = "worker"
    SUPERVISOR = "supervisor"


@dataclass(frozen=True)
class ChildSpec:
    """A recipe for one child of a supervisor (OTP's child specification).

    ``start`` is a :class:`SupervisedActor` subclass, or any callable that starts exactly one
    and returns its ``ActorRef`` (``functools.partial(Cache.start, size=10)``); it is called
    with ``args`` and ``kwargs`` in the supervisor's thread for every incarnation.

    ``shutdown`` and ``start_timeout`` are in seconds and must be finite: a Python thread
    cannot be killed, so every wait on a child is bounded and a child that overruns is
    abandoned rather than waited for forever.
    """

    id: str
    start: type[SupervisedActor] | Callable[..., pykka.ActorRef[Any]]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    restart: Restart = Restart.PERMANENT
    shutdown: float = DEFAULT_SHUTDOWN
    start_timeout: float = DEFAULT_START_TIMEOUT
    type: ChildType = ChildType.WORKER

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            msg = f"a child id must be a non-empty string, got {self.id!r}"
            raise ValueError(msg)
        for name in ("shutdown", "start_timeout"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 < value < math.inf):
                msg = f"{name} of child {self.id!r} must be a positive finite number of seconds"
                raise ValueError(msg)

    def start_function(self) -> Callable[..., pykka.ActorRef[Any]]:
        """The callable that starts one incarnation."""
        if isinstance(self.start, type) and issubclass(self.start, SupervisedActor):
            return self.start.start
        # Any other class is a plain callable here; launch() rejects what it returns.
        return cast("Callable[..., pykka.ActorRef[Any]]", self.start)


@dataclass(frozen=True)
class ChildInfo:
    """One row of ``which_children()``."""

    id: str
    ref: pykka.ActorRef[Any] | None
    """The running incarnation, or ``None`` if the child is not running."""
    type: ChildType
    restart: Restart
    generation: int
    """The latest incarnation's generation (unique in the process); 0 if never started."""


@dataclass(frozen=True)
class ChildCounts:
    """``count_children()``: like OTP's ``specs``/``active``/``supervisors``/``workers``."""

    specs: int
    active: int
    supervisors: int
    workers: int
