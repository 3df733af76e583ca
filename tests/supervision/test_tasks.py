"""TaskSupervisor: background work whose failures are reported, not lost."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from tinkex.supervision import (
    ChildSpec,
    Crash,
    MaxChildrenError,
    Registry,
    Supervisor,
    TaskSupervisor,
)

from .helpers import WAIT, Signals


def test_a_thread_task_returns_its_result() -> None:
    with TaskSupervisor.start() as tasks:
        assert tasks.run(pow, 2, 10).result(WAIT) == 1024


def test_a_failing_task_is_reported_even_if_nobody_looks(
    signals: Signals, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise KeyError("missing")

    with TaskSupervisor.start(name="uploads") as tasks:
        tasks.run(broken)

        [failed] = signals.wait_for("tinkex.supervisor.task_failed")

    assert failed["supervisor"] == "uploads"
    assert failed["task"].endswith("broken")
    assert isinstance(failed["error"], KeyError)
    assert any(r.levelno == logging.ERROR and "broken" in r.getMessage() for r in caplog.records)


def test_system_exit_in_a_task_reaches_the_future_as_a_crash() -> None:
    def leave() -> None:
        raise SystemExit(1)

    with TaskSupervisor.start() as tasks:
        error = tasks.run(leave).exception(WAIT)

    assert isinstance(error, Crash)
    assert isinstance(error.__cause__, SystemExit)


def test_coroutines_run_on_the_supervisor_loop_and_failures_are_reported(
    signals: Signals,
) -> None:
    async def double(x: int) -> int:
        return 2 * x

    async def broken() -> None:
        raise ValueError("async failure")

    with TaskSupervisor.start() as tasks:
        assert tasks.run_coroutine(double(21)).result(WAIT) == 42
        assert isinstance(tasks.run_coroutine(broken()).exception(WAIT), ValueError)

        [failed] = signals.wait_for("tinkex.supervisor.task_failed")
    assert failed["task"].endswith("broken")


def test_max_tasks_bounds_the_running_tasks() -> None:
    gate = threading.Event()

    async def refused() -> None:
        pass

    with TaskSupervisor.start(max_tasks=1) as tasks:
        running = tasks.run(gate.wait, WAIT)
        assert tasks.count() == 1
        with pytest.raises(MaxChildrenError):
            tasks.run(gate.wait, WAIT)
        with pytest.raises(MaxChildrenError):
            tasks.run_coroutine(refused())  # closed: no "never awaited" warning
        gate.set()
        assert running.result(WAIT) is True


def test_shutdown_cancels_coroutines_and_waits_for_threads() -> None:
    gate = threading.Event()

    async def forever() -> None:
        await asyncio.Future()

    tasks = TaskSupervisor.start(shutdown=WAIT)
    waiting = tasks.run_coroutine(forever())
    finishing = tasks.run(gate.wait, WAIT)
    gate.set()

    tasks.stop()

    assert waiting.cancelled()
    assert finishing.result(0) is True


def test_shutdown_abandons_a_thread_that_will_not_finish(signals: Signals) -> None:
    gate = threading.Event()
    tasks = TaskSupervisor.start(shutdown=0.05)
    stuck = tasks.run(gate.wait, WAIT)

    tasks.stop()

    [abandoned] = signals.matching("tinkex.supervisor.child_abandoned")
    assert abandoned["child_id"].endswith("wait")
    assert not stuck.done()
    gate.set()
    assert stuck.result(WAIT) is True


def test_a_task_supervisor_lives_in_a_tree() -> None:
    registry = Registry()
    children: list[ChildSpec] = [TaskSupervisor.child_spec("tasks")]
    with Supervisor.start(children, registry=registry):
        tasks = TaskSupervisor(registry.lookup("tasks"))

        assert tasks.run(sum, [1, 2, 3]).result(WAIT) == 6
