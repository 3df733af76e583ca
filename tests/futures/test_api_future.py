"""APIFuture: sync and async waiting, timeouts, cancellation, callbacks, map/gather, guards."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Iterator
from typing import Any, TypeVar

import pytest

from tinkex import telemetry
from tinkex.errors import FutureTimeoutError, TinkexError
from tinkex.futures import FUTURE_TIMEOUT, APIFuture, gather
from tinkex.futures import api_future as api_future_module

T = TypeVar("T")


@pytest.fixture
def io_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A loop running in its own thread, like the client's private I/O loop."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-io-loop", daemon=True)
    thread.start()
    yield loop

    async def cancel_rest() -> None:
        current = asyncio.current_task()
        rest = [t for t in asyncio.all_tasks() if t is not current]
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    asyncio.run_coroutine_threadsafe(cancel_rest(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(30)
    loop.close()


class Gate:
    """An asyncio.Event living on the I/O loop that any thread can open."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

        async def make() -> asyncio.Event:
            return asyncio.Event()

        self.event = asyncio.run_coroutine_threadsafe(make(), loop).result(30)
        self.started = threading.Event()

    def open(self) -> None:
        self.loop.call_soon_threadsafe(self.event.set)

    async def then(self, value: T) -> T:
        self.started.set()
        await self.event.wait()
        return value


# --- sync waiting ----------------------------------------------------------------------------


def test_result_returns_the_value_computed_on_the_io_loop(
    io_loop: asyncio.AbstractEventLoop,
) -> None:
    async def work() -> int:
        await asyncio.sleep(0)
        return 42

    future = APIFuture.submit(work(), io_loop, request_id="req-1", request_type="OptimStep")
    assert future.result(timeout=30) == 42
    assert future.done() and not future.cancelled()
    assert future.exception() is None
    assert repr(future) == "<APIFuture done request_type=OptimStep request_id=req-1>"


def test_result_timeout_names_the_request_and_polling_goes_on(
    io_loop: asyncio.AbstractEventLoop,
) -> None:
    gate = Gate(io_loop)
    future = APIFuture.submit(gate.then(7), io_loop, request_id="req-9", request_type="Sample")
    with telemetry.capture(FUTURE_TIMEOUT) as events, pytest.raises(FutureTimeoutError) as info:
        future.result(timeout=0.01)
    error = info.value
    assert isinstance(error, TimeoutError) and isinstance(error, TinkexError)
    assert error.request_id == "req-9" and error.timeout == 0.01
    assert "request req-9 (Sample)" in str(error) and "0.01 s" in str(error)
    assert "still running" in str(error)
    assert events == [
        (FUTURE_TIMEOUT, {"timeout": 0.01}, {"request_id": "req-9", "request_type": "Sample"})
    ]
    assert not future.done()
    gate.open()
    assert future.result(timeout=30) == 7


def test_a_timeout_error_of_the_call_itself_is_not_relabelled() -> None:
    inner = TimeoutError("the call's own timeout")
    future: APIFuture[int] = APIFuture.failed(inner)
    with pytest.raises(TimeoutError) as info:
        future.result(timeout=5)
    assert info.value is inner


def test_exception_waits_and_times_out(io_loop: asyncio.AbstractEventLoop) -> None:
    gate = Gate(io_loop)
    future = APIFuture.submit(gate.then(1), io_loop)
    with pytest.raises(FutureTimeoutError, match="not submitted yet"):
        future.exception(timeout=0.01)
    error = ValueError("bad")
    assert APIFuture.failed(error).exception() is error
    assert APIFuture.completed(3).exception() is None
    gate.open()
    assert future.exception(timeout=30) is None


def test_blocking_on_the_io_loop_thread_raises_instead_of_deadlocking(
    io_loop: asyncio.AbstractEventLoop,
) -> None:
    gate = Gate(io_loop)
    future = APIFuture.submit(gate.then(1), io_loop)
    already_done = APIFuture.submit(asyncio.sleep(0, "d"), io_loop)
    assert already_done.result(timeout=30) == "d"

    async def misuse() -> list[str]:
        messages = []
        for call in (future.result, future.exception):
            with pytest.raises(RuntimeError, match="deadlock") as info:
                call()
            messages.append(str(info.value))
        assert already_done.result() == "d"  # done: blocking is not an issue
        return messages

    messages = asyncio.run_coroutine_threadsafe(misuse(), io_loop).result(30)
    assert "APIFuture.result()" in messages[0] and "await future" in messages[0]
    assert "APIFuture.exception()" in messages[1]
    derived = future.map(lambda x: x + 1)

    async def misuse_derived() -> None:
        with pytest.raises(RuntimeError, match="deadlock"):
            derived.result()

    asyncio.run_coroutine_threadsafe(misuse_derived(), io_loop).result(30)
    gate.open()
    assert derived.result(timeout=30) == 2


def test_blocking_inside_another_event_loop_warns_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api_future_module, "_warned_inside_loop", False)
    pending: APIFuture[str] = APIFuture()
    done = APIFuture.completed("x")

    async def main() -> str:
        for _ in range(3):
            with pytest.raises(FutureTimeoutError):
                pending.result(timeout=0.001)
        return done.result()  # done: does not block, no warning needed

    with caplog.at_level(logging.WARNING, logger="tinkex.futures"):
        assert asyncio.run(main()) == "x"
        with pytest.raises(FutureTimeoutError):
            pending.result(timeout=0.001)  # outside any loop: no warning
    warnings = [r for r in caplog.records if "inside a running event loop" in r.getMessage()]
    assert len(warnings) == 1


# --- async waiting ---------------------------------------------------------------------------


def test_await_from_another_loop_does_not_block_that_loop(
    io_loop: asyncio.AbstractEventLoop,
) -> None:
    gate = Gate(io_loop)
    first = APIFuture.submit(gate.then("a"), io_loop)
    second = APIFuture.submit(gate.then("b"), io_loop)

    async def main() -> list[Any]:
        async def open_gate() -> None:  # only runs if awaiting leaves this loop free
            gate.open()

        return list(await asyncio.gather(first, second.result_async(timeout=60), open_gate()))

    assert asyncio.run(main()) == ["a", "b", None]


def test_result_async_timeout_leaves_the_work_running(io_loop: asyncio.AbstractEventLoop) -> None:
    gate = Gate(io_loop)
    future = APIFuture.submit(gate.then(11), io_loop, request_id="req-2")

    async def main() -> int:
        with pytest.raises(FutureTimeoutError, match="req-2"):
            await future.result_async(timeout=0.01)
        assert not future.done() and not future.cancelled()
        gate.open()
        return await future

    assert asyncio.run(main()) == 11


def test_cancelling_the_awaiting_task_does_not_cancel_the_work(
    io_loop: asyncio.AbstractEventLoop,
) -> None:
    gate = Gate(io_loop)
    future = APIFuture.submit(gate.then(3), io_loop)

    async def main() -> int:
        waiter = asyncio.create_task(future.result_async())
        await asyncio.sleep(0)  # let it start waiting
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert not future.cancelled()
        gate.open()
        return await future

    assert asyncio.run(main()) == 3


def test_result_async_passes_errors_through() -> None:
    error = ValueError("nope")
    future: APIFuture[int] = APIFuture.failed(error)

    async def main() -> None:
        with pytest.raises(ValueError) as info:
            await future
        assert info.value is error

    asyncio.run(main())


def test_awaiting_on_the_io_loop_itself_is_fine(io_loop: asyncio.AbstractEventLoop) -> None:
    gate = Gate(io_loop)
    inner = APIFuture.submit(gate.then(4), io_loop)

    async def outer() -> int:
        gate.open()
        return await inner + 1

    assert APIFuture.submit(outer(), io_loop).result(timeout=30) == 5


# --- cancellation ----------------------------------------------------------------------------


def test_cancel_cancels_the_coroutine_on_the_io_loop(io_loop: asyncio.AbstractEventLoop) -> None:
    gate = Gate(io_loop)
    saw_cancel = threading.Event()

    async def work() -> int:
        try:
            return int(await gate.then(1))
        except asyncio.CancelledError:
            saw_cancel.set()
            raise

    future = APIFuture.submit(work(), io_loop)
    assert gate.started.wait(30)
    assert future.cancel()
    assert saw_cancel.wait(30)
    assert future.cancelled() and future.done()
    assert repr(future) == "<APIFuture cancelled>"
    with pytest.raises(concurrent.futures.CancelledError):
        future.result(timeout=30)
    assert not future.cancel() or future.cancelled()


def test_future_exposes_the_concurrent_future(io_loop: asyncio.AbstractEventLoop) -> None:
    gate = Gate(io_loop)
    saw_cancel = threading.Event()

    async def work() -> None:
        try:
            await gate.then(None)
        except asyncio.CancelledError:
            saw_cancel.set()
            raise

    future = APIFuture.submit(work(), io_loop)
    assert isinstance(future.future(), concurrent.futures.Future)
    assert gate.started.wait(30)
    future.future().cancel()
    assert saw_cancel.wait(30)
    assert future.cancelled()


# --- callbacks -------------------------------------------------------------------------------


def test_callbacks_get_the_future_and_a_failing_one_is_logged_not_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    future: APIFuture[int] = APIFuture(request_id="req-cb")
    seen: list[tuple[str, Any]] = []

    def failing(_: APIFuture[int]) -> None:
        raise ValueError("callback boom")

    future.add_done_callback(lambda f: seen.append(("first", f.result())))
    future.add_done_callback(failing)
    future.add_done_callback(lambda f: seen.append(("third", f is future)))
    with caplog.at_level(logging.ERROR, logger="tinkex.futures"):
        future.future().set_result(9)
    assert seen == [("first", 9), ("third", True)]
    [record] = [r for r in caplog.records if r.name == "tinkex.futures"]
    assert "req-cb" in record.getMessage()
    assert record.exc_info is not None and "callback boom" in str(record.exc_info[1])

    future.add_done_callback(lambda f: seen.append(("late", f.result())))
    assert seen[-1] == ("late", 9)


def test_callbacks_run_when_the_io_loop_completes_the_future(
    io_loop: asyncio.AbstractEventLoop,
) -> None:
    gate = Gate(io_loop)
    future = APIFuture.submit(gate.then("v"), io_loop)
    called = threading.Event()
    results: list[str] = []

    def on_done(f: APIFuture[Any]) -> None:
        results.append(f.result())
        called.set()

    future.add_done_callback(on_done)
    gate.open()
    assert called.wait(30)
    assert results == ["v"]


# --- map and gather --------------------------------------------------------------------------


def test_map_transforms_without_blocking(io_loop: asyncio.AbstractEventLoop) -> None:
    gate = Gate(io_loop)
    source = APIFuture.submit(gate.then(2), io_loop)
    derived = source.map(lambda x: x * 10).map(str)
    assert not derived.done()
    source.set_request("req-m", "Forward")
    assert derived.request_id == "req-m" and derived.request_type == "Forward"
    assert "pending" in repr(derived) and "req-m" in repr(derived)
    gate.open()
    assert derived.result(timeout=30) == "20"


def test_map_passes_errors_and_reports_its_own() -> None:
    error = KeyError("k")
    assert APIFuture.failed(error).map(lambda x: x).exception() is error

    def explode(_: int) -> int:
        raise ArithmeticError("in map")

    derived = APIFuture.completed(1).map(explode)
    with pytest.raises(ArithmeticError, match="in map"):
        derived.result()
    assert repr(derived) == "<APIFuture failed: ArithmeticError>"


def test_map_follows_cancellation_but_does_not_propagate_it() -> None:
    source: APIFuture[int] = APIFuture()
    derived = source.map(lambda x: x + 1)
    assert source.cancel()
    assert derived.cancelled()

    source2: APIFuture[int] = APIFuture()
    derived2 = source2.map(lambda x: x + 1)
    assert derived2.cancel()
    assert not source2.cancelled()
    source2.future().set_result(1)  # completing the source later is harmless
    assert source2.result() == 1 and derived2.cancelled()


def test_gather_keeps_argument_order() -> None:
    futures: list[APIFuture[int]] = [APIFuture() for _ in range(4)]
    combined = gather(*futures)
    for index in reversed(range(4)):
        assert not combined.done()
        futures[index].future().set_result(index * 10)
    assert combined.result() == [0, 10, 20, 30]
    assert gather().result() == []


def test_gather_fails_fast_and_leaves_the_others_running() -> None:
    futures: list[APIFuture[int]] = [APIFuture() for _ in range(3)]
    combined = gather(*futures)
    error = RuntimeError("second failed")
    futures[1].future().set_exception(error)
    assert combined.exception() is error
    assert not futures[0].done() and not futures[2].done()
    futures[0].future().set_result(1)  # later completions are ignored
    futures[2].future().set_exception(ValueError("later"))
    assert combined.exception() is error


def test_gather_cancellation() -> None:
    futures: list[APIFuture[int]] = [APIFuture() for _ in range(2)]
    combined = gather(*futures)
    assert futures[0].cancel()
    assert combined.cancelled()

    others: list[APIFuture[int]] = [APIFuture() for _ in range(2)]
    combined2 = gather(*others)
    assert combined2.cancel()
    assert not any(f.cancelled() for f in others)


def test_gather_of_io_loop_futures(io_loop: asyncio.AbstractEventLoop) -> None:
    gate = Gate(io_loop)
    futures = [APIFuture.submit(gate.then(i), io_loop) for i in range(5)]
    combined = gather(*futures)

    async def misuse() -> None:
        with pytest.raises(RuntimeError, match="deadlock"):
            combined.result()

    asyncio.run_coroutine_threadsafe(misuse(), io_loop).result(30)
    gate.open()
    assert combined.result(timeout=30) == [0, 1, 2, 3, 4]


# --- construction and threads ----------------------------------------------------------------


def test_completed_failed_and_repr() -> None:
    assert APIFuture.completed(1, request_id="r").result() == 1
    assert repr(APIFuture.completed(1, request_id="r")) == "<APIFuture done request_id=r>"
    failed: APIFuture[int] = APIFuture.failed(ValueError("x"), request_id="r2")
    assert repr(failed) == "<APIFuture failed: ValueError request_id=r2>"
    pending: APIFuture[int] = APIFuture(request_type="Sample")
    assert repr(pending) == "<APIFuture pending request_type=Sample>"
    pending.set_request("r3")
    assert pending.request_id == "r3" and pending.request_type == "Sample"


def test_many_threads_waiting_and_adding_callbacks() -> None:
    future: APIFuture[str] = APIFuture()
    threads = 8
    barrier = threading.Barrier(threads + 1)
    results: list[str] = []
    callbacks: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        future.add_done_callback(lambda f: callbacks.append(f.result()))
        barrier.wait()
        value = future.result(timeout=30)
        with lock:
            results.append(value)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    barrier.wait()
    future.future().set_result("ok")
    for thread in pool:
        thread.join(30)
    assert results == ["ok"] * threads
    assert callbacks == ["ok"] * threads
