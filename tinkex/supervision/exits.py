"""Why an actor exited: normally, because it was shut down, or because it crashed."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["ExitKind", "ExitReason"]


class ExitKind(StrEnum):
    """The three kinds of exit OTP distinguishes (``normal``, ``shutdown``, anything else)."""

    NORMAL = "normal"
    """The actor stopped itself, or someone other than its supervisor stopped it."""
    SHUTDOWN = "shutdown"
    """Its supervisor shut it down (a restart of siblings, ``terminate_child``, a shutdown)."""
    CRASH = "crash"
    """An exception escaped a handler, ``init()`` failed, or :class:`Crash` was raised."""


@dataclass(frozen=True)
class ExitReason:
    """The reason an actor exited, as reported to its supervisor and to ``terminate()``."""

    kind: ExitKind
    error: BaseException | None = None
    """The exception, for a crash."""

    @classmethod
    def normal(cls) -> ExitReason:
        return cls(ExitKind.NORMAL)

    @classmethod
    def shutdown(cls) -> ExitReason:
        return cls(ExitKind.SHUTDOWN)

    @classmethod
    def crashed(cls, error: BaseException) -> ExitReason:
        return cls(ExitKind.CRASH, error)

    @property
    def abnormal(self) -> bool:
        """True for a crash: the only kind after which a ``TRANSIENT`` child is restarted."""
        return self.kind is ExitKind.CRASH

    def __str__(self) -> str:
        return self.kind.value if self.error is None else f"{self.kind.value}: {self.error!r}"
