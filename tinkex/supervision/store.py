"""State that outlives a crash: the ETS-table pattern.

An OTP process that must not lose state across a restart keeps it in an ETS table owned by
its supervisor. Here every supervisor keeps one :class:`Store` per child and hands the same
object to each new incarnation as ``self.store``; whatever the actor writes there survives
its crash, and whatever it keeps in attributes does not. The actor chooses.

A supervisor keeps its children's stores inside its own store, so the state also survives
the restart of that supervisor by its parent, up to the root. A store is dropped when its
child is removed for good (``delete_child``, a temporary child's exit, a dynamic child that
is not restarted).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

__all__ = ["Store"]


class Store(MutableMapping[str, Any]):
    """A thread-safe dict for state that must outlive one incarnation of an actor.

    Only one incarnation runs at a time, but an abandoned incarnation may still be running
    and tools may read the store from other threads, so every operation takes a lock. Store
    values other threads may see should be immutable (or copied).
    """

    def __init__(self, initial: Mapping[str, Any] | None = None) -> None:
        self._data: dict[str, Any] = dict(initial or {})
        self._lock = threading.RLock()

    def __getitem__(self, key: str) -> Any:
        with self._lock:
            return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        with self._lock:
            self._data[key] = value

    def __delitem__(self, key: str) -> None:
        with self._lock:
            del self._data[key]

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._data))

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def __repr__(self) -> str:
        with self._lock:
            return f"Store({self._data!r})"

    def setdefault(self, key: str, default: Any = None) -> Any:
        """Atomic, unlike the :class:`MutableMapping` mixin."""
        with self._lock:
            return self._data.setdefault(key, default)

    def substore(self, key: str) -> Store:
        """The nested store under ``key``, created on first use (atomically)."""
        with self._lock:
            value = self._data.setdefault(key, Store())
        if not isinstance(value, Store):
            msg = f"store key {key!r} holds a {type(value).__name__}, not a Store"
            raise TypeError(msg)
        return value
