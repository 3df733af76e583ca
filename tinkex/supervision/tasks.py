"""TaskSupervisor: background work whose failures are reported, not lost.

A bare thread that raises prints a traceback to stderr and is forgotten; an asyncio task
that raises is reported only when garbage-collected, if ever. Work started through a
:class:`TaskSupervisor` returns a :class:`concurrent.futures.Future` *and* has its failure
logged at ERROR and emitted as ``tinkex.supervisor.task_failed``, whether or not anyone
looks at the future::

    tasks = TaskSupervisor.start(name="uploads")
    future = tasks.run(upload, path)                     # in its own (daemon) thread
    result = tasks.run_coroutine(fetch(url)).result(10)  # on the supervisor's asyncio loop
    tasks.stop()

Tasks are never restarted (Elixir's ``Task.Supervisor`` children are temporary). At
shutdown, coroutines are cancelled and awaited and threads are waited for, together within
``shutdown`` seconds; what is still running then is abandoned and reported (threads cannot
be killed, which is why task threads are daemon threads). The TaskSupervisor is itself a
supervised actor: put ``TaskSupervisor.child_spec(...)`` in a tree and find it through a
:class:`Registry`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from functools import partial
from typing import Any, ParamSpec, TypeVar, cast

import pykka

from tinkex import telemetry
from tinkex.supervision.child_spec import ChildSpec, Restart
from tinkex.supervision.errors import MaxChildrenError, as_exception
from tinkex.supervision.exits import ExitReason
from tinkex.supervision.handle import CALL_TIMEOUT, SHUTDOWN_MARGIN, ActorHandle
from tinkex.supervision.supervised_actor import SupervisedActor

__all__ = ["TaskSupervisor", "TaskSupervisorActor"]

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_TASK_SHUTDOWN = 5.0
"""Seconds running tasks get to finish when their supervisor stops."""

logger = logging.getLogger("tinkex.supervision")


class TaskSupervisorActor(SupervisedActor):
    """The actor behind :class:`TaskSupervisor`; use the facade."""

    def __init__(self, *, max_tasks: int | None, shutdown: float) -> None:
        super().__init__()
        self._max_tasks = max_tasks
        self._shutdown = shutdown
        self._tasks: dict[Future[Any], str] = {}
        self._tasks_lock = threading.Lock()  # _tasks shrinks from the threads finishing tasks
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None

    def run(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Future[Any]:
        self._admit()
        name = _name_of(fn)
        future: Future[Any] = Future()
        thread = threading.Thread(
            target=_run_in_thread,
            args=(future, name, fn, args, kwargs),
            name=f"{self.child_id}:{name}",
            daemon=True,
        )
        self._track(future, name)
        try:
            thread.start()
        except RuntimeError as exc:  # out of threads: fail this task, visibly
            future.set_exception(exc)
        return future

    def run_coroutine(self, coro: Coroutine[Any, Any, Any]) -> Future[Any]:
        self._admit()
        future = asyncio.run_coroutine_threadsafe(coro, self._event_loop())
        self._track(future, _name_of(coro))
        return future

    def count(self) -> int:
        with self._tasks_lock:
            return len(self._tasks)

    def _admit(self) -> None:
        # Only this actor's thread adds tasks, so the check cannot go stale before _track.
        if self._max_tasks is not None and self.count() >= self._max_tasks:
            msg = f"task supervisor {self.child_id!r} is full ({self._max_tasks} tasks)"
            raise MaxChildrenError(msg)

    def _track(self, future: Future[Any], name: str) -> None:
        with self._tasks_lock:
            self._tasks[future] = name
        future.add_done_callback(partial(self._finished, time.monotonic_ns()))

    def _finished(self, began: int, future: Future[Any]) -> None:
        with self._tasks_lock:
            name = self._tasks.pop(future)
        error = None if future.cancelled() else future.exception()
        if error is None:
            return
        logger.error("Task %r of %r failed", name, self.child_id, exc_info=error)
        telemetry.execute(
            telemetry.SUPERVISOR_TASK_FAILED,
            {"duration": time.monotonic_ns() - began},
            {"supervisor": self.child_id, "task": name, "error": error},
        )

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._loop_thread = threading.Thread(
                target=_serve, args=(self._loop,), name=f"{self.child_id}:asyncio", daemon=True
            )
            self._loop_thread.start()
        return self._loop

    def terminate(self, reason: ExitReason) -> None:
        deadline = time.monotonic() + self._shutdown
        if self._loop is not None:
            cancelling = asyncio.run_coroutine_threadsafe(_cancel_all(), self._loop)
            concurrent.futures.wait([cancelling], timeout=self._shutdown)
        with self._tasks_lock:
            pending = dict(self._tasks)
        _, laggards = concurrent.futures.wait(
            pending, timeout=max(0.0, deadline - time.monotonic())
        )
        for future in laggards:
            logger.error("Task %r of %r abandoned at shutdown", pending[future], self.child_id)
            telemetry.execute(
                telemetry.SUPERVISOR_CHILD_ABANDONED,
                {"timeout": self._shutdown},
                {"supervisor": self.child_id, "child_id": pending[future], "generation": None},
            )
        if self._loop is not None and self._loop_thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop_thread.join(max(0.0, deadline - time.monotonic()))


def _name_of(task: object) -> str:
    return str(getattr(task, "__qualname__", repr(task)))


def _run_in_thread(
    future: Future[Any],
    name: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = fn(*args, **kwargs)
    except BaseException as exc:
        future.set_exception(as_exception(exc, f"task {name!r}"))
    else:
        future.set_result(result)


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


async def _cancel_all() -> None:
    tasks = asyncio.all_tasks() - {asyncio.current_task()}
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class TaskSupervisor(ActorHandle):
    """Runs background work in threads or on an asyncio loop and reports its failures."""

    @classmethod
    def start(
        cls,
        *,
        name: str = "tasks",
        max_tasks: int | None = None,
        shutdown: float = DEFAULT_TASK_SHUTDOWN,
    ) -> TaskSupervisor:
        """Start a root task supervisor. ``max_tasks`` bounds the tasks running at once."""
        return cls._start_root(cls.child_spec(name, max_tasks=max_tasks, shutdown=shutdown), None)

    @staticmethod
    def child_spec(
        id: str,
        *,
        max_tasks: int | None = None,
        shutdown: float = DEFAULT_TASK_SHUTDOWN,
        restart: Restart = Restart.PERMANENT,
    ) -> ChildSpec:
        """The spec of a task supervisor in a supervision tree."""
        return ChildSpec(
            id,
            TaskSupervisorActor,
            kwargs={"max_tasks": max_tasks, "shutdown": shutdown},
            restart=restart,
            shutdown=shutdown + SHUTDOWN_MARGIN,
        )

    def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Run ``fn(*args, **kwargs)`` in a new daemon thread.

        A :class:`BaseException` such as ``SystemExit`` reaches the future as a ``Crash``.

        Raises:
            MaxChildrenError: ``max_tasks`` tasks are running.
        """
        return cast("Future[T]", self._call("run", fn, args, kwargs, timeout=CALL_TIMEOUT))

    def run_coroutine(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Run ``coro`` on the supervisor's event loop thread (``asyncio.wrap_future`` the
        result to await it from another loop).

        Raises:
            MaxChildrenError: ``max_tasks`` tasks are running (``coro`` is closed).
        """
        try:
            return cast("Future[T]", self._call("run_coroutine", coro, timeout=CALL_TIMEOUT))
        except (MaxChildrenError, pykka.ActorDeadError):
            coro.close()  # it was never scheduled: spare the "never awaited" warning
            raise

    def count(self, timeout: float = CALL_TIMEOUT) -> int:
        """Tasks running now."""
        return cast("int", self._call("count", timeout=timeout))
