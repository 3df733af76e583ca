"""Names for actors whose ``ActorRef`` changes on every restart.

A restart starts a new actor with a new ``ActorRef``; a reference cached before the crash
points at a dead actor forever. Supervisors given a :class:`Registry` keep ``child id ->
current ActorRef`` in it, so callers resolve the name on every use instead::

    registry = Registry()
    sup = Supervisor.start([ChildSpec("cache", Cache)], registry=registry)
    registry.lookup("cache").ask(...)

A name whose actor died is *not* removed until its supervisor decides: it either registers
the new incarnation (a restart) or unregisters the name (the child is gone for good). A
:meth:`Registry.lookup` in that window waits, bounded by its timeout, instead of failing.
Registries are plain objects, not a process-wide table: create one per application.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pykka

from tinkex.supervision.errors import NameNotFoundError, NameTakenError

__all__ = ["Registry"]

DEFAULT_LOOKUP_TIMEOUT = 5.0


class Registry:
    """A thread-safe map from names to the current incarnation of an actor."""

    def __init__(self) -> None:
        self._refs: dict[str, pykka.ActorRef[Any]] = {}
        self._changed = threading.Condition()  # guards _refs; notified on every change

    def register(self, name: str, ref: pykka.ActorRef[Any]) -> None:
        """Point ``name`` at ``ref``, replacing a dead actor.

        Raises:
            NameTakenError: ``name`` belongs to another actor that is still alive.
        """
        with self._changed:
            current = self._refs.get(name)
            if current is not None and current is not ref and current.is_alive():
                msg = f"name {name!r} is taken by {current}"
                raise NameTakenError(msg)
            self._refs[name] = ref
            self._changed.notify_all()

    def unregister(self, name: str, ref: pykka.ActorRef[Any] | None = None) -> bool:
        """Remove ``name`` (only if it still points at ``ref``, when given); True if removed."""
        with self._changed:
            current = self._refs.get(name)
            if current is None or (ref is not None and current is not ref):
                return False
            del self._refs[name]
            self._changed.notify_all()
            return True

    def whereis(self, name: str) -> pykka.ActorRef[Any] | None:
        """The live actor registered under ``name`` right now, or ``None``. Never waits."""
        with self._changed:
            ref = self._refs.get(name)
        return ref if ref is not None and ref.is_alive() else None

    def lookup(self, name: str, timeout: float = DEFAULT_LOOKUP_TIMEOUT) -> pykka.ActorRef[Any]:
        """The live actor registered under ``name``, waiting out a restart in progress.

        Raises:
            NameNotFoundError: nothing is registered under ``name`` (now, or after the actor
                died and its supervisor gave the name up).
            TimeoutError: the registered actor is dead and no new one came within ``timeout``.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                ref = self._refs.get(name)
                if ref is None:
                    msg = f"no actor is registered under {name!r}"
                    raise NameNotFoundError(msg)
                if ref.is_alive():
                    return ref
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    msg = f"{name!r} was not restarted within {timeout}s"
                    raise TimeoutError(msg)
                self._changed.wait(remaining)

    def names(self) -> list[str]:
        """Every registered name, including those whose actor is being restarted."""
        with self._changed:
            return list(self._refs)

    def __contains__(self, name: object) -> bool:
        with self._changed:
            return name in self._refs

    def __len__(self) -> int:
        with self._changed:
            return len(self._refs)

    def __repr__(self) -> str:
        return f"<Registry names={self.names()!r}>"
