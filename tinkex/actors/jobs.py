"""Jobs: the restartable units of network work that run on the I/O loop.

A job is everything needed to finish one user-visible operation (submit, poll, decode) and
the ``concurrent.futures.Future`` the user's :class:`~tinkex.futures.APIFuture` wraps. Jobs
are kept in the I/O loop actor's supervisor-owned store while they run, so when that actor
crashes and restarts, its new incarnation runs every unfinished job again. A job must
therefore be safe to run twice: it resubmits with the same ``seq_id`` (the server returns
the original promise) or re-polls a request id it already knows.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from .io_loop import LoopContext

T = TypeVar("T")


class Job(Protocol):
    job_id: str

    @property
    def result(self) -> Future[Any]:
        """Completed by the job; the user's APIFuture wraps it."""
        ...

    async def run(self, ctx: LoopContext) -> None:
        """Do the work and complete ``result``; may be cancelled and run again later."""
        ...


class JobFuture(Future[T]):
    """A job's result, which also knows the server request the job is waiting on.

    ``request_id`` and ``request_type`` are set once a submission returned its promise (a
    job that must submit again updates them); :class:`~tinkex.futures.APIFuture` reports
    them as its own.
    """

    request_id: str | None = None
    request_type: str | None = None

    def submitted(self, request_id: str | None, request_type: str) -> None:
        self.request_id, self.request_type = request_id, request_type


def new_job_id(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:12]}"


@dataclass
class JobBoard:
    """The unfinished jobs, by id; lives in the I/O loop actor's store."""

    _jobs: dict[str, Job] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, job: Job) -> None:
        with self._lock:
            self._jobs[job.job_id] = job

    def remove(self, job_id: str) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)

    def __iter__(self) -> Iterator[Job]:
        with self._lock:
            return iter(list(self._jobs.values()))

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)


class Sequencer:
    """Makes submissions of one model happen in ``seq_id`` order across loop restarts.

    Plain data plus one ``asyncio.Condition`` per event loop, so it survives the I/O loop
    being replaced: a new loop gets a new condition, the counter carries over.
    """

    def __init__(self, first_seq_id: int) -> None:
        self._next = first_seq_id
        self._lock = threading.Lock()
        self._conditions: dict[int, asyncio.Condition] = {}

    @property
    def next_seq_id(self) -> int:
        with self._lock:
            return self._next

    def _condition(self) -> asyncio.Condition:
        loop_id = id(asyncio.get_running_loop())
        with self._lock:
            condition = self._conditions.get(loop_id)
            if condition is None:
                self._conditions = {loop_id: asyncio.Condition()}  # forget dead loops
                condition = self._conditions[loop_id]
            return condition

    async def wait_turn(self, seq_id: int) -> None:
        condition = self._condition()
        async with condition:
            await condition.wait_for(lambda: self.next_seq_id >= seq_id)

    async def advance_past(self, last_seq_id: int) -> None:
        """Mark every seq_id up to ``last_seq_id`` as submitted (or given up)."""
        with self._lock:
            self._next = max(self._next, last_seq_id + 1)
        condition = self._condition()
        async with condition:
            condition.notify_all()


def complete(result: Future[Any], value: Any) -> None:
    if not result.done():
        result.set_result(value)


def fail(result: Future[Any], exc: BaseException) -> None:
    if not result.done():
        result.set_exception(exc)
