"""Background scrubbing: re-hash every stored chunk at a bounded rate.

Disks rot silently (bit flips, bad sectors, a careless ``dd``). Each pass reads
every chunk, throttled to ``scrub_rate`` bytes/s so users do not notice, and
checks it against its id. A corrupt chunk is moved to ``quarantine/`` at once
(it is never served again) and reported to the brain with the next heartbeat;
the brain then copies a good replica back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from tossit.node.pacing import Pacer
from tossit.node.storage import ChunkStore

log = logging.getLogger("tossit.node.scrub")
PAGE = 1000


class Scrubber:
    def __init__(self, store: ChunkStore, rate: int, interval: float) -> None:
        self.store = store
        self.rate = rate
        self.interval = interval
        self.pacer = Pacer(rate)
        self._unreported: set[str] = set()
        self._lock = asyncio.Lock()
        self.last: dict[str, Any] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.rate > 0:
            self._task = asyncio.create_task(self._run(), name="scrub")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def unreported(self) -> list[str]:
        """Corrupt chunks the brain has not acknowledged yet (at most 1000)."""
        return sorted(self._unreported)[:1000]

    def acknowledge(self, chunk_ids: list[str]) -> None:
        self._unreported.difference_update(chunk_ids)

    def found_corrupt(self, chunk_id: str) -> None:
        """Quarantine a chunk that failed its check and remember to report it."""
        if self.store.quarantine(chunk_id):
            log.warning("chunk %s is corrupt on disk: quarantined", chunk_id[:12])
        self._unreported.add(chunk_id)

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.run_once(paced=True)
            except Exception:
                log.exception("scrub pass failed")
            await asyncio.sleep(max(60.0, self.interval - (time.monotonic() - started)))

    async def run_once(self, paced: bool = True) -> dict[str, Any]:
        """One full pass over the chunks; returns what it found."""
        async with self._lock:
            t0 = time.time()
            checked = nbytes = 0
            corrupt: list[str] = []
            after = ""
            while True:
                page = await asyncio.to_thread(self.store.inventory, after, PAGE)
                if not page:
                    break
                for cid, size, _mtime, _kind in page:
                    if paced:
                        await self.pacer.take(size)
                    ok = await asyncio.to_thread(self.store.verify, cid)
                    if ok is None:
                        continue  # deleted meanwhile
                    checked += 1
                    nbytes += size
                    if not ok:
                        corrupt.append(cid)
                        await asyncio.to_thread(self.found_corrupt, cid)
                after = page[-1][0]
            self.last = {"started": t0, "seconds": round(time.time() - t0, 2),
                         "chunks": checked, "bytes": nbytes, "corrupt": corrupt}
            if corrupt:
                log.warning("scrub found %d corrupt chunks of %d", len(corrupt), checked)
            return self.last
