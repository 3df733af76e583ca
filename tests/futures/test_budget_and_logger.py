"""ByteBudget (FIFO, no deadlock on oversized payloads, cancellation) and QueueStateLogger."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tinkex import telemetry
from tinkex.futures import (
    QUEUE_STATE_CHANGE,
    ByteBudget,
    QueueStateLogger,
    default_byte_budget,
    default_queue_state_reason,
    normalize_queue_state,
)


async def settle() -> None:
    """Let every ready task run up to its next wait."""
    for _ in range(10):
        await asyncio.sleep(0)


# --- ByteBudget ------------------------------------------------------------------------------


async def test_reservations_that_fit_are_granted_at_once() -> None:
    budget = ByteBudget(100)
    await budget.reserve(60)
    await budget.reserve(40)
    await budget.reserve(0)
    assert budget.in_use == 100 and budget.waiting == 0
    budget.release(100)
    assert budget.in_use == 0


async def test_reservations_wait_and_are_granted_first_come_first_served() -> None:
    budget = ByteBudget(100)
    await budget.reserve(90)
    order: list[str] = []

    async def take(name: str, size: int) -> None:
        await budget.reserve(size)
        order.append(name)

    big = asyncio.create_task(take("big", 50))
    await settle()
    small = asyncio.create_task(take("small", 5))  # fits, but must not overtake "big"
    await settle()
    assert budget.waiting == 2 and order == []
    budget.release(90)
    await asyncio.gather(big, small)
    assert order == ["big", "small"] and budget.in_use == 55


async def test_an_oversized_reservation_goes_through_alone() -> None:
    budget = ByteBudget(100)
    await budget.reserve(500)  # empty budget: granted although larger than the capacity
    assert budget.in_use == 500
    waiter = asyncio.create_task(budget.reserve(1))
    await settle()
    assert budget.waiting == 1
    budget.release(500)
    await waiter
    assert budget.in_use == 1

    await budget.reserve(10)
    huge = asyncio.create_task(budget.reserve(10_000))
    await settle()
    assert budget.waiting == 1
    budget.release(11)
    await huge  # the budget drained: the huge payload runs alone
    assert budget.in_use == 10_000


async def test_a_cancelled_waiter_does_not_hold_up_the_queue() -> None:
    budget = ByteBudget(100)
    await budget.reserve(60)
    blocked = asyncio.create_task(budget.reserve(80))
    await settle()
    behind = asyncio.create_task(budget.reserve(30))
    await settle()
    assert budget.waiting == 2
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked
    await behind
    assert budget.in_use == 90 and budget.waiting == 0


async def test_a_grant_to_a_task_cancelled_before_it_resumes_is_given_back() -> None:
    budget = ByteBudget(100)
    await budget.reserve(100)
    waiter = asyncio.create_task(budget.reserve(50))
    await settle()
    budget.release(100)  # grants the 50 bytes ...
    waiter.cancel()  # ... to a task cancelled before it could run
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert budget.in_use == 0


async def test_budget_argument_checks_and_default() -> None:
    with pytest.raises(ValueError, match="positive capacity"):
        ByteBudget(0)
    budget = ByteBudget(10)
    with pytest.raises(ValueError, match="negative"):
        await budget.reserve(-1)
    with pytest.raises(ValueError, match="negative"):
        budget.release(-1)
    budget.release(5)  # more than reserved: clamps at zero
    assert budget.in_use == 0
    assert default_byte_budget() is default_byte_budget()
    assert default_byte_budget().capacity == 50 * 1024 * 1024


# --- queue states ----------------------------------------------------------------------------


def test_normalize_queue_state() -> None:
    assert normalize_queue_state("active") == "active"
    assert normalize_queue_state(" Paused_Capacity ") == "paused_capacity"
    assert normalize_queue_state("PAUSED_RATE_LIMIT") == "paused_rate_limit"
    assert normalize_queue_state("melting") == "unknown"
    assert normalize_queue_state(None) == "unknown"
    assert normalize_queue_state(3) == "unknown"


def test_default_reasons() -> None:
    assert (
        default_queue_state_reason("paused_rate_limit", "training")
        == "concurrent training clients rate limit hit"
    )
    assert (
        default_queue_state_reason("paused_rate_limit", "sampling")
        == "concurrent sampler weights limit hit"
    )
    assert default_queue_state_reason("paused_capacity", "sampling") == (
        "Tinker backend is running short on capacity, please wait"
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_training_is_silent_for_15_minutes_then_warns_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    log = QueueStateLogger("training", clock=clock)
    with caplog.at_level(logging.WARNING, logger="tinkex.queue"):
        assert not log.observe("paused_capacity")
        clock.now += 899
        assert not log.observe("paused_capacity")
        clock.now += 1
        assert log.observe("paused_rate_limit", subject="model m-1")  # still one pause
        clock.now += 59
        assert not log.observe("paused_capacity")
        clock.now += 1
        assert log.observe("paused_capacity", "server says wait")
    assert warnings_of(caplog) == [
        "Training is paused for model m-1 (paused_rate_limit): concurrent training clients "
        "rate limit hit; waited 900 s so far",
        "Training is paused (paused_capacity): server says wait; waited 960 s so far",
    ]


def test_active_ends_a_pause(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    log = QueueStateLogger("training", clock=clock)
    with caplog.at_level(logging.WARNING, logger="tinkex.queue"):
        log.observe("paused_capacity")
        clock.now += 800
        assert not log.observe("active")
        log.observe("paused_capacity")  # a new pause starts the 15 minutes again
        clock.now += 800
        assert not log.observe("paused_capacity")
        clock.now += 100
        assert log.observe("paused_capacity")
    assert len(warnings_of(caplog)) == 1


def test_sampling_warns_at_once_then_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    log = QueueStateLogger("sampling", clock=clock)
    with caplog.at_level(logging.WARNING, logger="tinkex.queue"):
        assert log.observe("paused_rate_limit")
        clock.now += 30
        assert not log.observe("paused_rate_limit")
        assert not log.observe("active")
        assert not log.observe("paused_rate_limit")  # within 60 s of the last warning
        clock.now += 30
        assert log.observe("unknown", "odd")
    assert warnings_of(caplog) == [
        "Sampling is paused (paused_rate_limit): concurrent sampler weights limit hit; "
        "waited 0 s so far",
        "Sampling is paused (unknown): odd; waited 30 s so far",
    ]


def test_as_a_telemetry_handler_the_kind_follows_the_request_type(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    log = QueueStateLogger(clock=clock, logger=logging.getLogger("tests.queue"))
    telemetry.attach("tests.futures.queue-logger", QUEUE_STATE_CHANGE, log)
    try:
        with caplog.at_level(logging.WARNING, logger="tests.queue"):
            telemetry.execute(
                QUEUE_STATE_CHANGE,
                {"polls": 1},
                {
                    "request_type": "Sample",
                    "queue_state": "paused_capacity",
                    "queue_state_reason": None,
                    "sampling_session_id": "s:sample:0",
                },
            )
            telemetry.execute(
                QUEUE_STATE_CHANGE,
                {"polls": 1},
                {
                    "request_type": "ForwardBackward",
                    "queue_state": "paused_capacity",
                    "queue_state_reason": "busy",
                    "model_id": "m-1",
                },
            )
    finally:
        telemetry.detach("tests.futures.queue-logger")
    assert warnings_of(caplog) == [
        "Sampling is paused for s:sample:0 (paused_capacity): Tinker backend is running short "
        "on capacity, please wait; waited 0 s so far"
    ]
