"""The bytes of upload data the brain may hold at once, whatever the number of uploads.

An upload holds a chunk in memory from its first byte until the chunk is on
its nodes: while the client sends it, while it is hashed, while the nodes
store it. Counting only the chunks on their way to the nodes (as a slot
semaphore did) leaves the chunk each upload is filling outside the bound, so
the brain's memory grew by a chunk per concurrent upload. Here an upload
reserves the bytes of its next chunk *before* reading them from the client,
and gives them back once the chunk is stored: the total held never exceeds the
budget, and an upload that finds it spent stops reading its socket (TCP slows
the client down) until another upload's chunk is stored.

Reservations are served first come, first served, so a big upload is not
starved by a stream of small ones. A slow sender's reservation is not held for
as long as it takes to send a whole chunk: once other uploads wait, a chunk that
has filled for ``ingest.SLOW_CHUNK_AFTER`` is handed over short and stored,
giving its bytes back, and the sender queues again for the next.

No deadlock: a reservation, once granted, needs nothing more from the budget
to be given back (the client sends the bytes, the nodes store them). The one
exception is a chunk longer than its reservation (a size hint that was too
small): its excess is taken at once, without waiting (``overdraw``), so it can
never wait on holders that wait too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque


class ByteBudget:
    def __init__(self, total: int) -> None:
        if total <= 0:
            raise ValueError("a budget needs at least one byte")
        self.total = total
        self.free = total
        self.peak = 0  # the most ever held at once (tests, benchmarks)
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def held(self) -> int:
        return self.total - self.free

    @property
    def waiting(self) -> int:
        """Reservations queued for bytes to be given back."""
        return sum(1 for _, fut in self._waiters if not fut.done())

    async def take(self, n: int) -> int:
        """Reserve ``n`` bytes (at most the whole budget: a chunk bigger than the
        budget still gets through, alone); returns the bytes reserved, to
        ``give`` back. Waits, in line, while the budget is spent."""
        n = max(0, min(n, self.total))
        if not self._waiters and n <= self.free:
            self._grant(n)
            return n
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (n, fut)
        self._waiters.append(entry)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.give(n)  # granted as the wait was cancelled: hand it on
            else:
                with contextlib.suppress(ValueError):  # (or already dropped by _serve)
                    self._waiters.remove(entry)
                self._serve()  # it may have been first in line
            raise
        return n

    def overdraw(self, n: int) -> None:
        """Take ``n`` more bytes now, even past the budget (never waits)."""
        self._grant(n)

    def give(self, n: int) -> None:
        """Give back bytes reserved by ``take`` or ``overdraw``."""
        self.free += n
        self._serve()

    def _grant(self, n: int) -> None:
        self.free -= n
        self.peak = max(self.peak, self.held)

    def _serve(self) -> None:
        while self._waiters:
            n, fut = self._waiters[0]
            if fut.done():  # cancelled while in line
                self._waiters.popleft()
                continue
            if n > self.free:
                return
            self._waiters.popleft()
            self._grant(n)
            fut.set_result(None)
