"""The exceptions of :mod:`tinkex.supervision`.

::

    Crash                          raise it in a handler to crash the actor ("let it crash")
    SupervisionError               base of everything the runtime itself raises
    ├── ChildStartError            a child's start (its ``init()``) failed or timed out
    ├── MaxRestartsExceeded        a supervisor gave up: the crash that escalates to its parent
    ├── MaxChildrenError           a dynamic or task supervisor is full
    ├── DuplicateChildError        a child with this id already exists
    ├── ChildRunningError          the operation needs the child to be stopped first
    ├── ChildNotFoundError         no child with this id (also a LookupError)
    ├── NameTakenError             the registry name belongs to another live actor
    └── NameNotFoundError          nothing is registered under this name (also a LookupError)

Waits that run out raise the built-in :class:`TimeoutError` (never ``pykka.Timeout``, which
is not a ``TimeoutError``).
"""

from __future__ import annotations

__all__ = [
    "ChildNotFoundError",
    "ChildRunningError",
    "ChildStartError",
    "Crash",
    "DuplicateChildError",
    "MaxChildrenError",
    "MaxRestartsExceeded",
    "NameNotFoundError",
    "NameTakenError",
    "SupervisionError",
    "as_exception",
]


class Crash(Exception):
    """Raise inside any handler of a :class:`SupervisedActor` to crash the actor.

    pykka returns an exception raised while handling an ``ask`` to the caller and keeps the
    actor running. When the exception means the actor's state can no longer be trusted, raise
    ``Crash`` instead (``raise Crash("ledger out of sync") from err``): the actor exits with a
    crash, its supervisor restarts it, and the caller of the ``ask`` receives this exception.

    Callers also receive a ``Crash`` (whose ``__cause__`` is the original) when the actor died
    from a :class:`BaseException` such as :class:`SystemExit` while handling their ``ask``.
    """


class SupervisionError(Exception):
    """Base class of the errors raised by the supervision runtime."""


class ChildStartError(SupervisionError):
    """A child could not be started; ``__cause__`` holds why (its ``init()`` error, a
    :class:`TimeoutError`, ...)."""

    def __init__(self, child_id: str, cause: BaseException) -> None:
        super().__init__(f"child {child_id!r} failed to start: {cause!r}")
        self.child_id = child_id
        self.__cause__ = cause


class MaxRestartsExceeded(SupervisionError):
    """A supervisor saw more than ``max_restarts`` restarts in ``max_seconds`` and gave up."""

    def __init__(self, supervisor: str, max_restarts: int, max_seconds: float) -> None:
        super().__init__(
            f"supervisor {supervisor!r} exceeded {max_restarts} restart(s) in {max_seconds}s"
        )
        self.supervisor = supervisor
        self.max_restarts = max_restarts
        self.max_seconds = max_seconds


class MaxChildrenError(SupervisionError):
    """The supervisor already runs ``max_children`` children (or ``max_tasks`` tasks)."""


class DuplicateChildError(SupervisionError):
    """The supervisor already has a child with this id."""


class ChildRunningError(SupervisionError):
    """The child is running; terminate it first."""


class ChildNotFoundError(SupervisionError, LookupError):
    """The supervisor has no child with this id."""


class NameTakenError(SupervisionError):
    """The name is registered to another actor that is still alive."""


class NameNotFoundError(SupervisionError, LookupError):
    """Nothing is registered under this name."""


def as_exception(exc: BaseException, context: object) -> Exception:
    """``exc`` if it is an :class:`Exception`; else a :class:`Crash` caused by it.

    Used wherever an error crosses to another thread: re-raising a ``SystemExit`` there would
    stop the wrong thread (or the whole program, if that thread is the main one).
    """
    if isinstance(exc, Exception):
        return exc
    crash = Crash(f"{context} crashed: {exc!r}")
    crash.__cause__ = exc
    return crash
