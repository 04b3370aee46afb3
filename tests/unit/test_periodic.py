"""The background-loop base: passes on a timer, sooner when woken, a failure
retried after retry_after without ending the loop (no servers)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from tossit.periodic import Periodic


class Loop(Periodic):
    name = "test loop"
    retry_after = 0.05

    def __init__(self, delay: float | None, fail: int = 0, wait_first: bool = False) -> None:
        super().__init__()
        self.delay = delay
        self.fail = fail  # the first N passes raise
        self.wait_first = wait_first
        self.passes: list[float] = []
        self.results: list[int] = []
        self.failures: list[str] = []

    async def run_once(self) -> int:
        self.passes.append(time.monotonic())
        if len(self.passes) <= self.fail:
            raise RuntimeError(f"pass {len(self.passes)} failed")
        return len(self.passes)

    async def next_delay(self) -> float | None:
        return self.delay

    def after_pass(self, result: int) -> None:
        self.results.append(result)

    def failed(self, exc: Exception) -> None:
        self.failures.append(str(exc))


async def _until(check: Callable[[], bool]) -> None:
    """Wait for a condition (the machine may be busy: no fixed short sleeps)."""
    async with asyncio.timeout(5.0):
        while not check():  # noqa: ASYNC110 - polls what the loop under test counts
            await asyncio.sleep(0.005)


async def _running(loop: Loop, seconds: float) -> None:
    task = asyncio.create_task(loop.run_forever())
    await asyncio.sleep(seconds)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_passes_follow_the_timer_and_a_wake_comes_sooner() -> None:
    async def go() -> None:
        timed = Loop(delay=0.05)
        await _running(timed, 0.28)
        n = len(timed.passes)
        assert 2 <= n <= 7 and timed.results == list(range(1, n + 1))
        waiting = Loop(delay=None)  # only when woken
        task = asyncio.create_task(waiting.run_forever())
        await _until(lambda: len(waiting.passes) == 1)  # the first pass runs at once
        waiting.wake()
        await _until(lambda: len(waiting.passes) == 2)
        await asyncio.sleep(0.1)
        assert len(waiting.passes) == 2  # not woken: no pass
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    asyncio.run(go())


def test_a_failing_pass_is_retried_after_retry_after_and_the_loop_goes_on() -> None:
    async def go() -> None:
        loop = Loop(delay=None, fail=2)
        loop.wake()  # a wake does not shorten the retry wait
        task = asyncio.create_task(loop.run_forever())
        await _until(lambda: loop.results == [3])
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert loop.failures == ["pass 1 failed", "pass 2 failed"]
        assert len(loop.passes) == 3 and loop.results == [3]
        gaps = [b - a for a, b in zip(loop.passes, loop.passes[1:], strict=False)]
        assert all(g >= 0.045 for g in gaps), gaps
    asyncio.run(go())


def test_wait_first_waits_for_the_delay_or_a_wake() -> None:
    async def go() -> None:
        loop = Loop(delay=10.0, wait_first=True)
        task = asyncio.create_task(loop.run_forever())
        await asyncio.sleep(0.05)
        assert loop.passes == []
        loop.wake()
        await _until(lambda: len(loop.passes) == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    asyncio.run(go())
