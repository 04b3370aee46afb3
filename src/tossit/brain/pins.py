"""Keeps the garbage collector away from chunks an upload is using.

An upload may write a chunk (or reuse one already stored) that a concurrent
delete has just dropped to zero references. Before an upload touches a chunk it
pins it; the collector skips pinned chunks, and an upload waits while the
collector is deleting that chunk, then writes it afresh.
"""

from __future__ import annotations

import asyncio
from collections import Counter


class ChunkPins:
    def __init__(self) -> None:
        self._pins: Counter[str] = Counter()
        self._deleting: dict[str, asyncio.Event] = {}

    async def pin(self, chunk_id: str) -> None:
        while (ev := self._deleting.get(chunk_id)) is not None:
            await ev.wait()
        self._pins[chunk_id] += 1

    def unpin(self, chunk_id: str) -> None:
        self._pins[chunk_id] -= 1
        if self._pins[chunk_id] <= 0:
            del self._pins[chunk_id]

    def is_pinned(self, chunk_id: str) -> bool:
        return self._pins.get(chunk_id, 0) > 0

    def is_deleting(self, chunk_id: str) -> bool:
        return chunk_id in self._deleting

    def begin_delete(self, chunk_id: str) -> bool:
        """Claim a chunk for deletion; False if an upload holds it."""
        if self.is_pinned(chunk_id) or chunk_id in self._deleting:
            return False
        self._deleting[chunk_id] = asyncio.Event()
        return True

    def end_delete(self, chunk_id: str) -> None:
        ev = self._deleting.pop(chunk_id, None)
        if ev:
            ev.set()
