"""Promises: the server side of futures, completed by compute threads, long-polled over HTTP.

A request that takes time is answered with ``{"request_id": ...}`` at once. The compute
thread completes its :class:`Promise` later; ``retrieve_future`` waits on it from the event
loop without blocking that loop, and finished promises stay retrievable for a while.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from .errors import RequestFailed

QueueState = Literal["active", "paused_capacity", "paused_rate_limit"]


class ResultPayload(Protocol):
    """A finished result, encodable as JSON and, for some types, as protobuf."""

    def to_json(self) -> dict[str, Any]: ...

    def to_protobuf(self) -> bytes | None:
        """Protobuf bytes, or None for results the protocol carries only as JSON."""
        ...


@dataclass(frozen=True)
class JsonResult:
    body: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return self.body

    def to_protobuf(self) -> bytes | None:
        return None


@dataclass
class Promise:
    request_id: str
    request_type: str
    owner: str
    created_at: float = field(default_factory=time.monotonic)
    result: ResultPayload | None = None
    error: RequestFailed | None = None
    finished_at: float | None = None
    polls: int = 0
    queue_state: Callable[[], QueueState] = lambda: "active"
    _waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = field(
        default_factory=list, repr=False
    )
    _settled: threading.Event = field(default_factory=threading.Event, repr=False)

    def wait_settled(self, timeout: float) -> bool:
        """Block this thread until the promise is done or ``timeout`` passes."""
        return self._settled.wait(timeout)

    @property
    def done(self) -> bool:
        return self.finished_at is not None


class PromiseStore:
    """All promises of a server, keyed by request id; safe to use from any thread."""

    def __init__(self, ttl_seconds: float) -> None:
        self._ttl = ttl_seconds
        self._promises: dict[str, Promise] = {}
        self._lock = threading.Lock()

    def create(self, request_type: str, owner: str) -> Promise:
        promise = Promise(request_id=str(uuid.uuid4()), request_type=request_type, owner=owner)
        with self._lock:
            self._promises[promise.request_id] = promise
        return promise

    def get(self, request_id: str) -> Promise | None:
        with self._lock:
            return self._promises.get(request_id)

    def forget(self, request_id: str) -> None:
        with self._lock:
            self._promises.pop(request_id, None)

    def resolve(self, promise: Promise, result: ResultPayload) -> None:
        self._finish(promise, result=result, error=None)

    def fail(self, promise: Promise, error: RequestFailed) -> None:
        self._finish(promise, result=None, error=error)

    def _finish(
        self, promise: Promise, *, result: ResultPayload | None, error: RequestFailed | None
    ) -> None:
        with self._lock:
            if promise.done:
                return
            promise.result, promise.error = result, error
            promise.finished_at = time.monotonic()
            waiters, promise._waiters = promise._waiters, []
            promise._settled.set()
        for loop, waiter in waiters:
            loop.call_soon_threadsafe(_wake, waiter)

    async def wait(self, promise: Promise, timeout: float) -> bool:
        """Wait until ``promise`` is done or ``timeout`` passes; True when done."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if promise.done:
                return True
            promise._waiters.append((loop, waiter))
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                if (loop, waiter) in promise._waiters:
                    promise._waiters.remove((loop, waiter))
        return promise.done

    def expire(self) -> int:
        """Forget finished promises older than the TTL; returns how many went."""
        cutoff = time.monotonic() - self._ttl
        with self._lock:
            stale = [
                rid
                for rid, p in self._promises.items()
                if p.finished_at is not None and p.finished_at < cutoff
            ]
            for rid in stale:
                del self._promises[rid]
        return len(stale)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
