"""ByteBudget (FIFO, no deadlock on oversized payloads, cancellation) and QueueStateLogger."""

from __future__ import annotations

import asyncio

import pytest

from tinkex.futures import (
    ByteBudget,
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
