"""How the recovery tree's threads reach its actors: by name, never by a cached ref.

Results of fetches, attempts and timers arrive from other threads, possibly while the actor
they are for is being restarted; resolving the name at delivery time hands them to the
incarnation that is alive then.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pykka
from pykka.messages import ProxyCall

from tinkex.futures import APIFuture
from tinkex.supervision import NameNotFoundError, Registry

T = TypeVar("T")

MONITOR = "monitor"
EXECUTOR = "executor"
TASKS = "tasks"
"""The names of the recovery tree's children in its registry."""

RESTART_WAIT = 5.0
"""How long a delivery that may block waits for an actor that is being restarted."""


def tell(registry: Registry, name: str, message: object, *, wait: bool) -> bool:
    """Send ``message`` to the actor named ``name``; ``False`` if there is none.

    With ``wait`` the sender waits out a restart in progress (bounded); without it, it
    never blocks, which is what the I/O loop thread and telemetry handlers need.
    """
    try:
        ref = registry.lookup(name, timeout=RESTART_WAIT) if wait else registry.whereis(name)
        if ref is None:
            return False
        ref.tell(message)
    except (NameNotFoundError, TimeoutError, pykka.ActorDeadError):
        return False
    return True


def call(registry: Registry, name: str, method: str, *args: Any, timeout: float) -> Any:
    """Call ``method`` on the actor named ``name`` and wait, at most ``timeout`` seconds.

    The actor's exception is re-raised as is.
    """
    ref = registry.lookup(name, timeout=timeout)
    try:
        return ref.ask(ProxyCall((method,), args, {}), timeout=timeout)
    except pykka.Timeout:
        raise TimeoutError(f"the recovery {name} did not answer {method} in {timeout} s") from None


def after(delay: float, action: Callable[[], object], name: str) -> threading.Timer:
    """Run ``action`` in a daemon timer thread after ``delay`` seconds (cancel to drop it).

    Actors schedule their future work this way so that no handler ever sleeps.
    """
    timer = threading.Timer(delay, action)
    timer.name = name
    timer.daemon = True
    timer.start()
    return timer


class StopLatch:
    """Set once when the tree is being stopped; wakes worker threads waiting on futures.

    A worker waiting for a restore that takes minutes would otherwise hold the tree's
    shutdown until its task supervisor gives up on it and abandons the thread.
    """

    def __init__(self) -> None:
        self._stopping = False
        self._changed = threading.Condition()

    def set(self) -> None:
        with self._changed:
            self._stopping = True
            self._changed.notify_all()

    @property
    def is_set(self) -> bool:
        with self._changed:
            return self._stopping

    def result(self, future: APIFuture[T], timeout: float) -> T:
        """``future.result(timeout)``, except that it gives up as soon as the latch is set.

        Raises:
            StoppedError: the latch was set first.
            TimeoutError: neither happened within ``timeout`` seconds.
        """

        def wake(_: APIFuture[T]) -> None:
            with self._changed:
                self._changed.notify_all()

        future.add_done_callback(wake)
        deadline = time.monotonic() + timeout
        with self._changed:
            while not future.done() and not self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            if self._stopping and not future.done():
                raise StoppedError("the recovery monitor was stopped")
        if not future.done():
            raise TimeoutError(f"no answer within {timeout} s")
        return future.result(0)


class StoppedError(Exception):
    """A worker's wait ended because the recovery tree is stopping."""
