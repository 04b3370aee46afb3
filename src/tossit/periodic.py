"""One shape for every background loop: ``run_once()`` and ``run_forever()``.

The brain's monitor, collector, repairer, snapshots, intent journal, event
pruner and activity log each do one *pass* now and then:
on a timer, sooner when something asks (``wake()``), and again after a failure
without ever letting an exception end the loop. Written once here, the rules
are the same everywhere and a test can drive any loop one pass at a time with
``run_once()`` instead of waiting for its timer.

A loop says only what differs: ``run_once()`` (the pass; its result goes to
``after_pass``), ``next_delay()`` (seconds until the next pass, None to wait
for ``wake()`` alone), ``tick()`` when the timed pass differs from one asked
for (the collector sweeps orphans only every so often) and, when a failure
needs more than a log line, ``failed()``.

Not built on it, on purpose: the commit batcher and the manifest writer are
driven by their queues (a request or a pack arrives), not by time; a node's
heartbeat backs off and fails over between brains, and its scrubber paces its
reads and persists a cursor, rules a fixed retry would blur.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from tossit.errors import MetadataBehind, MetadataFull, TossitError

log = logging.getLogger("tossit.periodic")
FULL_RETRY = 10.0  # seconds between passes while the metadata disk is full


class Periodic:
    """Base of the background loops (subclasses call ``super().__init__()``)."""

    name = "background loop"  # for the log: "<name> pass failed"
    retry_after = 5.0  # seconds after a failed pass (not sooner, even if woken)
    first_delay = 0.0  # seconds before the first pass
    wait_first = False  # True: the first pass waits for next_delay() (or a wake) too

    def __init__(self) -> None:
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Run a pass soon, without waiting for the timer."""
        self._wake.set()

    async def run_once(self) -> Any:
        """One pass (subclasses)."""
        raise NotImplementedError

    async def tick(self) -> Any:
        """The pass the loop runs (by default ``run_once()``)."""
        return await self.run_once()

    async def next_delay(self) -> float | None:
        """Seconds until the next pass unless woken; None: only when woken (async:
        a loop may need to look up when its last pass was)."""
        return 60.0

    def after_pass(self, result: Any) -> None:
        """A pass succeeded with ``result`` (e.g. ``wake()`` for more work)."""

    def failed(self, exc: Exception) -> None:
        """A pass raised: say so (the loop goes on after ``retry_after``). A full
        metadata disk is said by the store, once a minute, not by every loop."""
        if isinstance(exc, MetadataFull):
            return
        if isinstance(exc, TossitError):  # a condition with its own words: no traceback
            log.warning("%s pass failed: %s; retrying in %g s", self.name, exc.message,
                        self.retry_after)
            return
        log.exception("%s pass failed; retrying in %g s", self.name, self.retry_after,
                      exc_info=exc)

    async def pause(self, seconds: float | None) -> None:
        """Wait up to ``seconds`` (None: for ever) or until woken."""
        if seconds is not None and seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def run_forever(self) -> None:
        await asyncio.sleep(self.first_delay)
        if self.wait_first:
            await self.pause(await self.next_delay())
        while True:
            self._wake.clear()
            try:
                result = await self.tick()
            except Exception as exc:
                self.failed(exc)
                # A full metadata disk is not fixed in a second: no hot retries.
                await asyncio.sleep(max(self.retry_after, FULL_RETRY)
                                    if isinstance(exc, MetadataFull | MetadataBehind)
                                    else self.retry_after)
                continue
            self.after_pass(result)
            await self.pause(await self.next_delay())
