"""``APIFuture``: what every public tinkex call returns.

The work behind a future (submitting a request, polling ``retrieve_future``, decoding the
result) runs on the client's private asyncio I/O loop thread and completes a
:class:`concurrent.futures.Future`. ``APIFuture`` wraps that future so it can be used from
any kind of code:

* sync code: ``future.result(timeout)`` blocks the calling thread;
* asyncio code: ``await future`` / ``await future.result_async(timeout)`` never block the
  caller's event loop, whichever loop that is;
* callbacks and derived futures: ``add_done_callback``, ``map``, :func:`gather`.

Waiting is not owning: a timeout or a cancelled awaiting task stops *waiting*, never the
work, which other waiters may share. Only :meth:`APIFuture.cancel` stops the work.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Callable, Coroutine, Generator
from typing import Any, Final, Generic, TypeVar

from tinkex import telemetry
from tinkex.errors import FutureTimeoutError

from .events import FUTURE_TIMEOUT

__all__ = ["APIFuture", "gather"]

T = TypeVar("T")
U = TypeVar("U")

logger = logging.getLogger("tinkex.futures")

_warn_lock = threading.Lock()
_warned_inside_loop = False

_LOOP_THREAD_MESSAGE: Final = (
    "APIFuture.{method}() was called on the tinkex I/O loop's own thread. Blocking there "
    "would deadlock, because that loop is what completes the future. Use "
    "`await future` (or `future.add_done_callback` / `future.map`) in code running on that "
    "loop instead."
)


class APIFuture(Generic[T]):
    """The eventual result of a tinkex call. Thread-safe.

    Create one with :meth:`submit` (a coroutine run on the I/O loop), by wrapping a
    :class:`concurrent.futures.Future`, or with :meth:`completed` / :meth:`failed`.
    ``io_loop`` is the loop that completes the future; blocking calls made on it raise
    :class:`RuntimeError` instead of deadlocking.
    """

    def __init__(
        self,
        future: concurrent.futures.Future[T] | None = None,
        *,
        io_loop: asyncio.AbstractEventLoop | None = None,
        request_id: str | None = None,
        request_type: str | None = None,
    ) -> None:
        self._future: concurrent.futures.Future[T] = (
            future if future is not None else concurrent.futures.Future()
        )
        self._io_loop = io_loop
        self._request_id = request_id
        self._request_type = request_type
        self._parent: APIFuture[Any] | None = None
        self._lock = threading.Lock()

    # construction -------------------------------------------------------------------------

    @classmethod
    def submit(
        cls,
        coro: Coroutine[Any, Any, T],
        io_loop: asyncio.AbstractEventLoop,
        *,
        request_id: str | None = None,
        request_type: str | None = None,
    ) -> APIFuture[T]:
        """Run ``coro`` on ``io_loop`` (from any thread); the future completes with it.

        :meth:`cancel` cancels the coroutine's task.
        """
        return cls(
            asyncio.run_coroutine_threadsafe(coro, io_loop),
            io_loop=io_loop,
            request_id=request_id,
            request_type=request_type,
        )

    @classmethod
    def completed(cls, value: T, *, request_id: str | None = None) -> APIFuture[T]:
        """A future that already holds ``value``."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        future.set_result(value)
        return cls(future, request_id=request_id)

    @classmethod
    def failed(cls, error: BaseException, *, request_id: str | None = None) -> APIFuture[T]:
        """A future that already failed with ``error``."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        future.set_exception(error)
        return cls(future, request_id=request_id)

    # identity -----------------------------------------------------------------------------

    @property
    def request_id(self) -> str | None:
        """The server's request id, once the request was submitted (``None`` before).

        Besides :meth:`set_request`, a wrapped future that has a ``request_id`` attribute
        (those of the client's jobs do) provides it.
        """
        with self._lock:
            own, parent = self._request_id, self._parent
        if own is None and parent is not None:
            return parent.request_id
        return own if own is not None else _attribute(self._future, "request_id")

    @property
    def request_type(self) -> str | None:
        """The request type (``ForwardBackward``, ``Sample``, ...), if known."""
        with self._lock:
            own, parent = self._request_type, self._parent
        if own is None and parent is not None:
            return parent.request_type
        return own if own is not None else _attribute(self._future, "request_type")

    def set_request(self, request_id: str, request_type: str | None = None) -> None:
        """Record the request id (and type) once the submission returned its promise."""
        with self._lock:
            self._request_id = request_id
            if request_type is not None:
                self._request_type = request_type

    # state --------------------------------------------------------------------------------

    def done(self) -> bool:
        """Whether the future has a result, an error, or was cancelled."""
        return self._future.done()

    def cancelled(self) -> bool:
        return self._future.cancelled()

    def cancel(self) -> bool:
        """Cancel the work (for :meth:`submit` futures, the coroutine's task).

        Returns ``False`` if the future is already done. Futures derived with :meth:`map`
        or :func:`gather` are cancelled with their source; cancelling a derived future does
        not cancel its sources.
        """
        return self._future.cancel()

    def future(self) -> concurrent.futures.Future[T]:
        """The underlying :class:`concurrent.futures.Future` (cancelling it cancels the work)."""
        return self._future

    # waiting from sync code ---------------------------------------------------------------

    def result(self, timeout: float | None = None) -> T:
        """Block until the result is there and return it (or raise the call's error).

        Raises:
            FutureTimeoutError: not done within ``timeout`` seconds. Polling goes on in the
                background; call ``result()`` again to keep waiting, or :meth:`cancel`.
            RuntimeError: called on the I/O loop's own thread before the future is done
                (it would deadlock).
            concurrent.futures.CancelledError: the future was cancelled.
        """
        self._check_may_block("result")
        try:
            return self._future.result(timeout)
        except TimeoutError:
            if self._future.done():  # the call itself failed with a TimeoutError
                raise
            raise self._timeout_error(timeout) from None

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Block like :meth:`result`; return the call's error, or ``None`` if it succeeded."""
        self._check_may_block("exception")
        try:
            return self._future.exception(timeout)
        except TimeoutError:
            raise self._timeout_error(timeout) from None

    def _check_may_block(self, method: str) -> None:
        """Refuse to block the I/O loop; warn (once) about blocking any other loop.

        A future that is already done never blocks, so it is always fine (e.g. ``result()``
        in a done-callback, which runs on the I/O loop thread).
        """
        if self._future.done():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._io_loop is not None and running is self._io_loop:
            raise RuntimeError(_LOOP_THREAD_MESSAGE.format(method=method))
        global _warned_inside_loop
        with _warn_lock:
            if _warned_inside_loop:
                return
            _warned_inside_loop = True
        logger.warning(
            "APIFuture.%s() was called from inside a running event loop; it blocks that loop "
            "until the result arrives. Use `await future` or `await future.result_async()` "
            "in async code. (This warning is shown once.)",
            method,
        )

    # waiting from asyncio code ------------------------------------------------------------

    async def result_async(self, timeout: float | None = None) -> T:
        """Wait without blocking the running event loop (any loop, any thread).

        Cancelling the awaiting task, or running out of ``timeout``, stops waiting but does
        not cancel the work; only :meth:`cancel` does.

        Raises:
            FutureTimeoutError: not done within ``timeout`` seconds.
        """
        waiter = self._waiter()
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                return await waiter
        except TimeoutError:
            if deadline.expired():
                raise self._timeout_error(timeout) from None
            raise

    def __await__(self) -> Generator[Any, None, T]:
        return self.result_async().__await__()

    def _waiter(self) -> asyncio.Future[T]:
        """An asyncio future on the running loop that follows this one, one way only."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[T] = loop.create_future()
        source = self._future

        def transfer(_: concurrent.futures.Future[T]) -> None:
            # A closed waiting loop raises RuntimeError: nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_copy_state, source, waiter)

        source.add_done_callback(transfer)
        return waiter

    def _timeout_error(self, timeout: float | None) -> FutureTimeoutError:
        request_id, request_type = self.request_id, self.request_type
        what = f"request {request_id}" if request_id else "the request (not submitted yet)"
        if request_type:
            what += f" ({request_type})"
        telemetry.execute(
            FUTURE_TIMEOUT,
            {"timeout": timeout},
            {"request_id": request_id, "request_type": request_type},
        )
        return FutureTimeoutError(
            f"{what} did not complete within {_seconds(timeout)}. It is still running and being "
            "polled in the background: call result() again to keep waiting, or cancel() "
            "to stop it.",
            request_id=request_id,
            timeout=timeout,
        )

    # callbacks and derived futures --------------------------------------------------------

    def add_done_callback(self, fn: Callable[[APIFuture[T]], object]) -> None:
        """Call ``fn(self)`` when the future is done (at once if it already is).

        ``fn`` runs in the thread that completes the future, usually the I/O loop's: keep it
        quick and non-blocking. An exception in ``fn`` is logged and does not affect other
        callbacks.
        """

        def run(_: concurrent.futures.Future[T]) -> None:
            try:
                fn(self)
            except Exception:
                logger.exception("Done-callback %r of %r raised", fn, self)

        self._future.add_done_callback(run)

    def map(self, fn: Callable[[T], U]) -> APIFuture[U]:
        """A future of ``fn(result)``, computed when this one succeeds, without blocking.

        Errors (and cancellation) of this future pass through; an exception raised by ``fn``
        fails the derived future. ``fn`` runs in the completing thread, like callbacks.
        """
        derived: APIFuture[U] = APIFuture(io_loop=self._io_loop)
        derived._parent = self
        target = derived._future

        def settle(source: concurrent.futures.Future[T]) -> None:
            if source.cancelled():
                target.cancel()
                return
            if not target.set_running_or_notify_cancel():
                return
            error = source.exception()
            if error is not None:
                target.set_exception(error)
                return
            try:
                value = fn(source.result())
            except BaseException as exc:  # handed to whoever waits
                target.set_exception(exc)
            else:
                target.set_result(value)

        self._future.add_done_callback(settle)
        return derived

    def __repr__(self) -> str:
        future = self._future
        if not future.done():
            state = "pending"
        elif future.cancelled():
            state = "cancelled"
        else:
            error = future.exception()
            state = "done" if error is None else f"failed: {type(error).__name__}"
        parts = [state]
        request_id, request_type = self.request_id, self.request_type
        if request_type:
            parts.append(f"request_type={request_type}")
        if request_id:
            parts.append(f"request_id={request_id}")
        return f"<APIFuture {' '.join(parts)}>"


def gather(*futures: APIFuture[T]) -> APIFuture[list[T]]:
    """A future of all results, in argument order.

    It fails as soon as any input fails (with that error) and is cancelled when any input
    is cancelled; the other inputs keep running. Cancelling it cancels none of the inputs.
    """
    loop = next((f._io_loop for f in futures if f._io_loop is not None), None)
    combined: APIFuture[list[T]] = APIFuture(io_loop=loop)
    target = combined._future
    if not futures:
        target.set_result([])
        return combined
    lock = threading.Lock()
    remaining = len(futures)
    settled = False

    def on_done(source: concurrent.futures.Future[T]) -> None:
        nonlocal remaining, settled
        with lock:
            if settled:
                return
            remaining -= 1
            failed = source.cancelled() or source.exception() is not None
            if not failed and remaining:
                return
            settled = True
        if source.cancelled():
            target.cancel()
            return
        if not target.set_running_or_notify_cancel():
            return
        error = source.exception()
        if error is not None:
            target.set_exception(error)
        else:
            target.set_result([f._future.result() for f in futures])

    for future in futures:
        future._future.add_done_callback(on_done)
    return combined


def _copy_state(source: concurrent.futures.Future[T], waiter: asyncio.Future[T]) -> None:
    if waiter.done():  # the waiting task gave up (timeout or cancellation)
        return
    if source.cancelled():
        waiter.cancel()
        return
    error = source.exception()
    if error is not None:
        waiter.set_exception(error)
    else:
        waiter.set_result(source.result())


def _attribute(future: concurrent.futures.Future[Any], name: str) -> str | None:
    value = getattr(future, name, None)
    return value if isinstance(value, str) else None


def _seconds(timeout: float | None) -> str:
    return "the timeout" if timeout is None else f"{timeout:g} s"
