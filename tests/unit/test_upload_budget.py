"""The upload byte budget: never more held than the total, first come first
served, and nothing lost to a cancelled wait."""

from __future__ import annotations

import asyncio

import pytest

from tossit.brain.upload_budget import ByteBudget


async def spin() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_takes_within_the_budget_are_granted_at_once() -> None:
    b = ByteBudget(10)
    assert await b.take(4) == 4
    assert await b.take(6) == 6
    assert (b.held, b.free, b.peak) == (10, 0, 10)
    b.give(10)
    assert (b.held, b.peak) == (0, 10)


async def test_a_take_past_the_budget_waits_for_bytes_given_back() -> None:
    b = ByteBudget(10)
    await b.take(8)
    waiting = asyncio.create_task(b.take(5))
    await spin()
    assert not waiting.done() and b.waiting == 1
    b.give(2)  # 4 free: still short
    await spin()
    assert not waiting.done()
    b.give(1)
    assert await asyncio.wait_for(waiting, 1) == 5
    assert b.held == 10 and b.peak == 10


async def test_first_come_first_served_a_small_take_does_not_pass_a_big_one() -> None:
    b = ByteBudget(10)
    await b.take(9)
    order: list[str] = []

    async def take(name: str, n: int) -> None:
        await b.take(n)
        order.append(name)

    big = asyncio.create_task(take("big", 8))
    await spin()
    small = asyncio.create_task(take("small", 1))  # 1 byte is free, but big is first
    await spin()
    assert order == []
    b.give(9)
    await asyncio.wait_for(asyncio.gather(big, small), 1)
    assert order == ["big", "small"]
    assert b.held == 9 and b.peak <= 10


async def test_more_than_the_whole_budget_is_clamped_to_it() -> None:
    b = ByteBudget(10)
    assert await b.take(25) == 10
    b.give(10)
    assert b.held == 0


async def test_a_cancelled_wait_takes_nothing_and_lets_the_next_in_line_through() -> None:
    b = ByteBudget(10)
    await b.take(6)
    first = asyncio.create_task(b.take(8))  # first in line, cannot be served
    await spin()
    second = asyncio.create_task(b.take(4))
    await spin()
    assert not second.done()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await asyncio.wait_for(second, 1) == 4  # 4 were free all along
    assert b.held == 10 and b.waiting == 0


async def test_a_grant_whose_waiter_was_cancelled_is_given_back() -> None:
    b = ByteBudget(10)
    await b.take(10)
    waiter = asyncio.create_task(b.take(5))
    await spin()
    b.give(5)  # granted (the future is set) ...
    waiter.cancel()  # ... but the task is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert b.held == 5  # the grant did not leak


async def test_overdraw_goes_past_the_budget_without_waiting() -> None:
    b = ByteBudget(10)
    await b.take(10)
    b.overdraw(3)
    assert b.held == 13 and b.peak == 13
    later = asyncio.create_task(b.take(1))
    b.give(3)
    await spin()
    assert not later.done()  # back at the budget: still nothing free
    b.give(1)
    assert await asyncio.wait_for(later, 1) == 1


def test_an_empty_budget_is_refused() -> None:
    with pytest.raises(ValueError):
        ByteBudget(0)
