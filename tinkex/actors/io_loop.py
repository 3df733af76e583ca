"""The I/O loop actor: one asyncio loop thread for all of the client's network traffic.

Every HTTP request of every client in the process runs as a coroutine on this loop, so a
thousand requests in flight cost a thousand coroutines, not a thousand threads. The actor
owns the loop thread and the connection pools; unfinished :mod:`jobs <.jobs>` live in its
supervisor-owned store, and a new incarnation after a crash runs them again.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from concurrent.futures import Future
from typing import Any, TypeVar

from tinkex import telemetry
from tinkex.config import Config
from tinkex.errors import TinkexError
from tinkex.supervision import ExitReason
from tinkex.transport import PoolRegistry, Transport

from .base import TinkexActor
from .jobs import Job, JobBoard, fail

log = logging.getLogger("tinkex.actors.io_loop")

T = TypeVar("T")

LOOP_STOP_TIMEOUT = 5.0


class ClientClosedError(TinkexError):
    """The operation was still running when its client (or the whole runtime) closed."""


class LoopStoppedError(TinkexError):
    """The I/O loop this handle belongs to has stopped; look the loop up again."""


class LoopContext:
    """What jobs get from the loop they run on: transports over its connection pools."""

    def __init__(self, pools: PoolRegistry) -> None:
        self.pools = pools
        self._transports: dict[tuple[Config, int], Transport] = {}
        self._locals: dict[Hashable, Any] = {}

    def transport(self, config: Config) -> Transport:
        # An injected http_client is not part of Config equality; keep those apart.
        key = (config, id(config.http_client))
        transport = self._transports.get(key)
        if transport is None:
            transport = self._transports[key] = Transport(config, self.pools)
        return transport

    def local(self, key: Hashable, factory: Callable[[], T]) -> T:
        """A per-loop singleton (asyncio primitives belong to one loop, so they live here)."""
        if key not in self._locals:
            self._locals[key] = factory()
        value: T = self._locals[key]
        return value


class LoopHandle:
    """A thread-safe way into one incarnation of the I/O loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, board: JobBoard, ctx: LoopContext) -> None:
        self.loop = loop
        self._board = board
        self._ctx = ctx
        self._incoming: deque[Job] = deque()
        self._wake_pending = False
        self._incoming_lock = threading.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def alive(self) -> bool:
        return self.loop.is_running() and not self.loop.is_closed()

    def spawn(self, job: Job) -> None:
        """Run ``job`` on the loop; it stays on the board until its result is set."""
        self._board.add(job)
        self._schedule(job)

    def _schedule(self, job: Job) -> None:
        # Jobs handed over in a burst share one wake-up of the loop: every wake-up is a write
        # to the loop's self-pipe, and under load each one costs a GIL hand-off (milliseconds).
        if not self.alive:
            raise LoopStoppedError("the I/O loop is restarting; the job will run on the next one")
        with self._incoming_lock:
            self._incoming.append(job)
            if self._wake_pending:
                return
            self._wake_pending = True
        try:
            self.loop.call_soon_threadsafe(self._start_incoming)
        except RuntimeError:  # closed meanwhile; the job stays on the board for the next loop
            raise LoopStoppedError(
                "the I/O loop stopped; the job will run on the next one"
            ) from None

    def _start_incoming(self) -> None:
        with self._incoming_lock:
            jobs = list(self._incoming)
            self._incoming.clear()
            self._wake_pending = False
        for job in jobs:
            task = self.loop.create_task(self._run(job))
            self._tasks.add(task)  # the loop only holds weak references to tasks
            task.add_done_callback(self._tasks.discard)

    async def _run(self, job: Job) -> None:
        try:
            await job.run(self._ctx)
        except asyncio.CancelledError:
            raise  # the loop is going away; the job stays on the board for the next one
        except Exception as exc:
            fail(job.result, exc)
        except BaseException as exc:
            fail(job.result, exc)
            raise
        finally:
            if job.result.done():
                self._board.remove(job.job_id)

    def call(self, make: Callable[[LoopContext], Awaitable[T]]) -> Future[T]:
        """Run a one-off coroutine (not restarted with the loop); wait on the returned future."""
        if not self.alive:
            raise LoopStoppedError("the I/O loop is not running")

        async def run() -> T:
            return await make(self._ctx)

        return asyncio.run_coroutine_threadsafe(run(), self.loop)


class IOLoop(TinkexActor):
    """Owns the loop thread and the pools; restarts unfinished jobs after a crash."""

    use_daemon_thread = True

    def init(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tinkex-io-loop", daemon=True
        )
        self._thread.start()
        self._pools = PoolRegistry()
        board: JobBoard = self.store.setdefault("jobs", JobBoard())
        self._handle = LoopHandle(self._loop, board, LoopContext(self._pools))
        resumed = list(board)
        for job in resumed:
            self._handle._schedule(job)
        if resumed:
            log.info("I/O loop restarted; resumed %d unfinished job(s)", len(resumed))
            telemetry.execute("tinkex.io_loop.resumed", {"jobs": len(resumed)}, {})

    def handle(self) -> LoopHandle:
        return self._handle

    def terminate(self, reason: ExitReason) -> None:
        future = asyncio.run_coroutine_threadsafe(self._wind_down(), self._loop)
        try:
            future.result(LOOP_STOP_TIMEOUT)
        except Exception:
            log.warning("the I/O loop did not wind down cleanly", exc_info=True)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(LOOP_STOP_TIMEOUT)
        if not self._thread.is_alive():
            self._loop.close()
        if not reason.abnormal:
            board: JobBoard = self.store["jobs"]
            for job in board:
                fail(job.result, ClientClosedError("the tinkex client closed before this finished"))
                board.remove(job.job_id)

    async def _wind_down(self) -> None:
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._pools.aclose()


def run_sync(handle: LoopHandle, make: Callable[[LoopContext], Awaitable[T]], timeout: float) -> T:
    """Run a coroutine on the loop and wait for it from a (non-loop) thread."""
    return handle.call(make).result(timeout)
