"""Background scrubbing: re-hash every stored chunk at a bounded rate.

Disks rot silently (bit flips, bad sectors, a careless ``dd``). Each pass reads
every chunk, throttled to the scrub rate (bytes/s) so users do not notice, and
checks it against its id. A corrupt chunk is moved to ``quarantine/`` at once
(it is never served again) and reported to the brain with the next heartbeat;
the brain then copies a good replica back.

Copies nobody reads are only checked here, so a pass must come round often: a
pass starts every ``scrub_interval`` (1 day by default) and the default rate
(32 MiB/s) gets through 1 TiB in about 9 hours. An operator can start, pause and
resume passes and change the rate while the node runs (``tossit scrub``, through
the brain). Those choices and the position of an unfinished pass are kept in
``DATA_DIR/scrub.json``: a restarted node resumes its pass where it stopped
instead of starting over (on a big disk a pass takes hours), and keeps the rate
set at run time until the configured rate itself is changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

from tossit.node.pacing import Pacer
from tossit.node.storage import ChunkStore

log = logging.getLogger("tossit.node.scrub")
PAGE = 1000
SAVE_EVERY = 5.0  # seconds: how much of a pass a crash may make the node re-check
STATE_FILE = "scrub.json"
SCANNING, PAUSED, WAITING, OFF = "scanning", "paused", "waiting", "off"


class Scrubber:
    def __init__(self, store: ChunkStore, rate: int, interval: float,
                 state_dir: Path | None = None) -> None:
        self.store = store
        self.configured_rate = rate
        self.interval = interval
        self._path = state_dir / STATE_FILE if state_dir is not None else None
        self._override: int | None = None  # a rate set at run time
        self.paused = False
        # The pass in progress: the last chunk id checked ("" = not begun), or None.
        self.cursor: str | None = None
        self.pass_started = 0.0
        self.pass_bytes = self.pass_chunks = self.pass_corrupt = 0
        self._pass_active = 0.0  # seconds spent scanning (not paused) in this pass
        self.last_pass: dict[str, Any] | None = None
        self.corrupt_total = 0
        self._start_now = False
        self._changed = asyncio.Event()
        self._saved_at = 0.0
        self._load()
        self.pacer = Pacer(self.rate)
        self._unreported: set[str] = set()
        self._lock = asyncio.Lock()
        self.last: dict[str, Any] = {}
        self._task: asyncio.Task[None] | None = None

    # -- what the operator controls -------------------------------------------

    @property
    def rate(self) -> int:
        return self._override if self._override is not None else self.configured_rate

    def set_rate(self, rate: int) -> None:
        """Change the rate now (a pass in progress goes on at the new pace) and
        keep it across restarts."""
        if rate <= 0:
            raise ValueError("a scrub rate is positive (to stop scrubbing, pause it)")
        self._override = rate
        self.pacer.set_rate(rate)
        log.info("scrub rate set to %d bytes/s", rate)
        self._touch()

    def pause(self) -> None:
        self.paused = True
        self._touch()

    def resume(self) -> None:
        self.paused = False
        self._touch()

    def start_pass(self) -> bool:
        """Begin a pass now (and resume if paused); False if one is already in
        progress (it simply goes on)."""
        if self.rate <= 0:
            raise ValueError("scrubbing is off on this node (scrub_rate 0): set a rate "
                             "first (tossit scrub rate 32MiB/s)")
        self.paused = False
        started = self.cursor is None
        if started:
            self._start_now = True
        self._touch()
        return started

    def _touch(self) -> None:
        self._changed.set()

    async def persist(self, strict: bool = False) -> None:
        """Keep the operator's choices (rate, pause) across restarts. ``strict``:
        raise the OSError when they could not be kept (an operator's order must
        not be answered as done when it will be lost at the next restart)."""
        await asyncio.to_thread(self._save, strict)

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="scrub")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._save()

    def unreported(self) -> list[str]:
        """Corrupt chunks the brain has not acknowledged yet (at most 1000)."""
        return sorted(self._unreported)[:1000]

    def acknowledge(self, chunk_ids: list[str]) -> None:
        self._unreported.difference_update(chunk_ids)

    def found_corrupt(self, chunk_id: str) -> None:
        """Quarantine a chunk that failed its check (or could not be read) and
        remember to report it: reported even when it cannot be moved aside."""
        try:
            if self.store.quarantine(chunk_id):
                log.warning("chunk %s is corrupt on disk: quarantined", chunk_id[:12])
        except OSError as exc:
            log.error("chunk %s is corrupt on disk and could not be quarantined: %s",
                      chunk_id[:12], exc)
        self._unreported.add(chunk_id)

    def _verify(self, chunk_id: str) -> bool | None:
        """``store.verify``, except that an error that says nothing about the bytes
        (permissions, say) skips the chunk, logged, rather than ending the pass:
        a pass that stops there would stop there again at every start."""
        try:
            return self.store.verify(chunk_id)
        except OSError as exc:
            log.error("cannot check chunk %s: %s; skipped", chunk_id[:12], exc)
            return None

    # -- status ---------------------------------------------------------------------

    def state(self) -> str:
        if self.paused:
            return PAUSED
        if self.rate <= 0:
            return OFF
        return SCANNING if self.cursor is not None else WAITING

    def next_pass_at(self) -> float | None:
        if self.cursor is not None or self.paused or self.rate <= 0:
            return None
        if self._start_now or self.last_pass is None:
            return time.time()
        return float(self.last_pass["started"]) + self.interval

    def status(self) -> dict[str, Any]:
        """What ``tossit scrub status`` shows for this node (and the brain's
        metrics): where the pass is, how fast it goes, what the last one found."""
        used = max(1, self.store.usage().used)
        scanning = self.cursor is not None
        return {
            "state": self.state(),
            "rate": self.rate,
            "configured_rate": self.configured_rate,
            "rate_set_at_run_time": self._override is not None,
            "interval_s": self.interval,
            "pass_started": self.pass_started if scanning else None,
            "progress": round(min(0.999, self.pass_bytes / used), 4) if scanning else None,
            "bytes_checked": self.pass_bytes if scanning else 0,
            "chunks_checked": self.pass_chunks if scanning else 0,
            "corrupt_this_pass": self.pass_corrupt if scanning else 0,
            "measured_rate": (round(self.pass_bytes / self._pass_active)
                              if scanning and self._pass_active > 1 else None),
            "last_full_pass": self.last_pass,
            "next_pass_at": self.next_pass_at(),
            "corrupt_found": self.corrupt_total,
        }

    # -- the background loop ----------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await self._until_due()
            try:
                await self._scan_paced()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scrub pass failed; trying again in a minute")
                await asyncio.sleep(60)

    async def _until_due(self) -> None:
        """Wait until a pass is to run: one is unfinished, one was asked for, or
        the interval since the last one began has gone by."""
        while True:
            self._changed.clear()
            due = self.next_pass_at()
            if self.paused or self.rate <= 0:
                pass  # wait for an order
            elif self.cursor is not None or due is None or due <= time.time():
                return
            timeout = None if due is None or self.paused else max(0.0, due - time.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)

    async def _scan_paced(self) -> None:
        if self.cursor is None:
            self._start_now = False
            self.cursor = ""
            self.pass_started = time.time()
            self.pass_bytes = self.pass_chunks = self.pass_corrupt = 0
            self._pass_active = 0.0
            self._save()
        while True:
            page = await asyncio.to_thread(self.store.inventory, self.cursor, PAGE)
            if not page:
                break
            for cid, size, _mtime, _kind in page:
                while self.paused or self.rate <= 0:
                    await self.persist()
                    self._changed.clear()
                    await self._changed.wait()
                t0 = time.monotonic()
                await self.pacer.take(size)
                ok = await asyncio.to_thread(self._verify, cid)
                self._pass_active += time.monotonic() - t0
                self.cursor = cid
                if ok is None:
                    continue  # deleted meanwhile
                self.pass_chunks += 1
                self.pass_bytes += size
                if not ok:
                    self.pass_corrupt += 1
                    self.corrupt_total += 1
                    await asyncio.to_thread(self.found_corrupt, cid)
                if time.monotonic() - self._saved_at > SAVE_EVERY:
                    await asyncio.to_thread(self._save)
        self.last_pass = {"started": self.pass_started, "finished": time.time(),
                          "seconds": round(time.time() - self.pass_started, 1),
                          "chunks": self.pass_chunks, "bytes": self.pass_bytes,
                          "corrupt": self.pass_corrupt}
        self.cursor = None
        await asyncio.to_thread(self._save)
        log.log(logging.WARNING if self.pass_corrupt else logging.INFO,
                "scrub pass done: %d chunks (%d bytes) checked in %.0f s, %d corrupt",
                self.pass_chunks, self.pass_bytes, self.last_pass["seconds"], self.pass_corrupt)

    async def run_once(self, paced: bool = True) -> dict[str, Any]:
        """One full pass over the chunks now, apart from the background one
        (which keeps its place); returns what it found."""
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
                    ok = await asyncio.to_thread(self._verify, cid)
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
            # A full pass all the same: it counts as the last one.
            self.last_pass = {"started": t0, "finished": time.time(),
                              "seconds": self.last["seconds"], "chunks": checked,
                              "bytes": nbytes, "corrupt": len(corrupt)}
            self.corrupt_total += len(corrupt)
            await asyncio.to_thread(self._save)
            if corrupt:
                log.warning("scrub found %d corrupt chunks of %d", len(corrupt), checked)
            return self.last

    # -- persistence ----------------------------------------------------------------------

    def _load(self) -> None:
        if self._path is None or not self._path.exists():
            return
        try:
            saved = json.loads(self._path.read_text())
        except (OSError, ValueError) as exc:
            log.warning("ignoring %s (%s): scrubbing starts afresh", self._path, exc)
            return
        rate = saved.get("rate")
        if isinstance(rate, int) and rate > 0:
            if saved.get("configured_rate") == self.configured_rate:
                self._override = rate
            else:  # the configuration changed since: the newer decision wins
                log.info("scrub rate %d bytes/s from the configuration replaces the rate "
                         "set at run time (%d)", self.configured_rate, rate)
        self.paused = bool(saved.get("paused", False))
        cursor = saved.get("cursor")
        self.cursor = cursor if isinstance(cursor, str) else None
        self.pass_started = float(saved.get("pass_started") or 0.0)
        self.pass_bytes = int(saved.get("pass_bytes") or 0)
        self.pass_chunks = int(saved.get("pass_chunks") or 0)
        self.pass_corrupt = int(saved.get("pass_corrupt") or 0)
        last = saved.get("last_pass")
        self.last_pass = last if isinstance(last, dict) else None
        self.corrupt_total = int(saved.get("corrupt_total") or 0)

    def _save(self, strict: bool = False) -> None:
        """Write the state atomically (a torn file would lose the rate set at
        run time); small, and at most every few seconds during a pass."""
        self._saved_at = time.monotonic()
        if self._path is None:
            return
        state = {"rate": self._override, "configured_rate": self.configured_rate,
                 "paused": self.paused, "cursor": self.cursor,
                 "pass_started": self.pass_started, "pass_bytes": self.pass_bytes,
                 "pass_chunks": self.pass_chunks, "pass_corrupt": self.pass_corrupt,
                 "last_pass": self.last_pass, "corrupt_total": self.corrupt_total}
        # Written in the store's scratch folder (same disk, emptied at start), so a
        # crash mid-write leaves nothing beside the state file.
        tmp = self.store.tmp_dir / f"{STATE_FILE}.{uuid.uuid4().hex}"  # saved from threads
        try:
            tmp.write_text(json.dumps(state))
            os.replace(tmp, self._path)
        except OSError as exc:
            log.warning("could not save the scrub state to %s: %s", self._path, exc)
            with contextlib.suppress(OSError):
                tmp.unlink()
            if strict:
                raise
