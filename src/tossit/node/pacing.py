"""A byte-rate limit shared by concurrent transfers (repairs, scrubbing).

Background work must not starve users: each transfer asks for its bytes before
(or after) moving them, and waits until the budget allows. One bucket per kind
of work per node; a rate of 0 means unlimited.
"""

from __future__ import annotations

import asyncio
import time


class Pacer:
    def __init__(self, bytes_per_s: int, burst_s: float = 1.0) -> None:
        self.rate = bytes_per_s
        self.burst = max(1.0, bytes_per_s * burst_s)
        self._tokens = self.burst
        self._last = time.monotonic()
        self._lock = asyncio.Lock()

    def set_rate(self, bytes_per_s: int, burst_s: float = 1.0) -> None:
        """A new rate from now on (an operator's change at run time); a transfer
        already waiting finishes its wait at the old rate."""
        self.rate = bytes_per_s
        self.burst = max(1.0, bytes_per_s * burst_s)
        self._tokens = min(self._tokens, self.burst)

    async def take(self, nbytes: int) -> None:
        """Wait until ``nbytes`` fit in the rate (big requests may borrow ahead)."""
        if self.rate <= 0:
            return
        async with self._lock:  # first come, first served
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= nbytes
            if self._tokens < 0:
                await asyncio.sleep(-self._tokens / self.rate)
