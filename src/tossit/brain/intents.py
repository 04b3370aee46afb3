"""The journal of blobs this brain asked nodes to store: what the orphan sweep
may delete.

The sweep used to delete any copy the metadata did not know, once older than
``gc_grace``: on an empty or old database that is the whole cluster. Now an
unknown copy is deleted only with positive knowledge that this brain wrote it
for something that never committed: its id in ``chunk_intents``.

Writing a row before every chunk write would cost the small-file rate a
transaction per chunk, so the journal is lazy: an id is noted in memory when
its first copy is sent, forgotten when its upload commits (the metadata then
knows it), and written to the table only if still pending ``FLUSH_AFTER``
seconds later (a failed upload, a long one, a pack). A brain that dies within
that window leaves a few copies no record names: they are kept and counted as
"unknown copies kept", never deleted. Leaking a little is the safe way to be
wrong.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Sequence

from sqlalchemy import delete, select

from tossit.brain.models import Chunk, ChunkIntent
from tossit.brain.sqlbatch import batches
from tossit.brain.store import Store
from tossit.periodic import Periodic

log = logging.getLogger("tossit.brain.intents")
FLUSH_AFTER = 2.0  # seconds an id stays pending in memory before it is written
FLUSH_EVERY = 1.0
PRUNE_EVERY = 600.0  # seconds between two prunes of the table
SETTLED_AFTER = 60.0  # the row of a chunk a file uses goes after this


class IntentJournal(Periodic):
    name = "chunk intent journal"
    wait_first = True
    retry_after = FLUSH_EVERY

    def __init__(self, store: Store, keep: float) -> None:
        """``keep``: seconds a row lives at most (a node away longer than that
        keeps the copies it missed the deletion of, counted as unknown)."""
        super().__init__()
        self.store = store
        self.keep = keep
        self._pending: dict[str, float] = {}  # chunk id -> monotonic time noted
        self._pruned_at = float("-inf")

    def note(self, chunk_id: str) -> None:
        """A copy of this blob is about to be sent to a node."""
        self._pending.setdefault(chunk_id, time.monotonic())

    def settled(self, chunk_ids: Iterable[str]) -> None:
        """These committed: the metadata knows them, no row is needed."""
        for cid in chunk_ids:
            self._pending.pop(cid, None)

    async def flush(self, everything: bool = False) -> int:
        """Write the ids pending for ``FLUSH_AFTER`` (or all of them); returns how many."""
        cutoff = time.monotonic() - (0 if everything else FLUSH_AFTER)
        due = [c for c, at in self._pending.items() if at <= cutoff]
        if not due:
            return 0
        now = time.time()
        ins = self.store.insert_stmt(ChunkIntent.__table__)
        async with self.store.write() as s:
            for batch in batches(due):
                await s.execute(ins.on_conflict_do_update(
                    index_elements=["chunk_id"], set_={"at": ins.excluded.at}),
                    [{"chunk_id": c, "at": now} for c in batch])
        for c in due:
            self._pending.pop(c, None)
        return len(due)

    async def known(self, chunk_ids: Sequence[str]) -> set[str]:
        """Which of these ids the journal names (pending ones included)."""
        out = {c for c in chunk_ids if c in self._pending}
        rest = [c for c in chunk_ids if c not in out]
        async with self.store.read() as s:
            for batch in batches(rest):
                out.update((await s.execute(select(ChunkIntent.chunk_id).where(
                    ChunkIntent.chunk_id.in_(batch)))).scalars())
        return out

    async def prune(self) -> None:
        """Drop rows past ``keep``, and those of chunks that committed."""
        now = time.time()
        async with self.store.write() as s:
            await s.execute(delete(ChunkIntent).where(ChunkIntent.at < now - self.keep))
            await s.execute(delete(ChunkIntent).where(
                ChunkIntent.at < now - SETTLED_AFTER,
                ChunkIntent.chunk_id.in_(select(Chunk.id).where(Chunk.refcount > 0))))
        self._pruned_at = time.monotonic()

    async def run_once(self) -> None:
        """Write what waited long enough; prune now and then."""
        await self.flush()
        if time.monotonic() - self._pruned_at >= PRUNE_EVERY:
            await self.prune()

    async def next_delay(self) -> float:
        return FLUSH_EVERY

    async def close(self) -> None:
        """On a clean stop, write everything pending (nothing leaks)."""
        with contextlib.suppress(Exception):
            await self.flush(everything=True)
