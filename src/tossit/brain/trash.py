"""The trash: deleted and overwritten files kept ``trash_keep`` before they go.

A delete, or an upload that replaces a file, moves the old file to the trash in
the commit itself (``Store.apply``): it leaves its name (a new upload may take
it) and the listings, its chunks keep their references, and a ``trash`` entry
in the manifest log keeps it through a brain loss. This module is the rest:

* restore a file (``Store.restore``), purge one, or empty the whole trash: each
  a transaction of its own whose manifest pack is on the nodes before the
  caller gets an answer, as for an upload;
* the leader's loop purging files whose time is up: their chunks become
  garbage, which the collector frees as usual.

Every step is an event, naming who asked when a key did.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from tossit.brain.commits import ManifestNotStored
from tossit.brain.manifest_writer import ManifestWriter
from tossit.brain.models import TrashedObject
from tossit.brain.states import EventKind
from tossit.brain.store import Applied, Restored, Store
from tossit.config import BrainSettings, format_duration, format_size, plural
from tossit.periodic import Periodic

log = logging.getLogger("tossit.brain.trash")
PURGE_BATCH = 500  # files purged per transaction (emptying a big trash takes several)
MAX_PURGE_EVERY = 60.0  # seconds between looks for expired files, at most


def purge_every(keep: float) -> float:
    """How often the leader looks for expired files: a tenth of the time kept
    (a short trash in a test expires on time), between 0.5 s and a minute."""
    return max(0.5, min(MAX_PURGE_EVERY, keep / 10))


def _names(files: Sequence[TrashedObject], n: int = 5) -> str:
    shown = ", ".join(repr(f.key) for f in files[:n])
    return shown + (f" and {len(files) - n:,} more" if len(files) > n else "")


class TrashService(Periodic):
    """The trash's actions, and (the leader's ``run_forever``) the loop that
    purges expired files. With the trash off it still looks now and then: files
    trashed while it was on expire on their own schedule."""

    name = "trash purge"
    retry_after = 30.0

    def __init__(self, settings: BrainSettings, store: Store, writer: ManifestWriter,
                 release: Callable[[list[str]], None]) -> None:
        super().__init__()
        self.settings = settings
        self.store = store
        self.writer = writer
        self.release = release  # the collector's: chunks that may be garbage now

    @property
    def keep(self) -> float:
        return self.settings.trash_keep

    async def _publish(self, done: Applied, must_store: bool) -> None:
        """Garbage to the collector, the pack to the nodes. ``must_store``: a
        pack the nodes do not take fails the request (503, the change holds and
        the pack goes from the outbox); else it is only retried."""
        if done.garbage:
            self.release(done.garbage)  # (nothing is deleted while the pack waits)
        if done.pack is None:
            return
        try:
            await self.writer.write(done.pack)
        except Exception as exc:
            log.warning("manifest pack of a trash change not stored yet: %s", exc)
            self.writer.wake()
            if must_store:
                raise ManifestNotStored(getattr(exc, "message", str(exc))) from None

    async def restore(self, trash_id: int, name: str | None, on_conflict: str,
                      by: str) -> Restored:
        done = await self.store.restore(trash_id, name, on_conflict)
        obj = done.obj
        bucket = await self.store.bucket_name(obj.bucket_id)
        replaced = ""
        if done.replaced is not None:
            replaced = (f"; the file that had the name (id {done.replaced}) went to the trash"
                        if done.done.trashed else
                        f"; it replaced the file that had the name (id {done.replaced})")
        await self.store.add_event(
            EventKind.TRASH_RESTORED,
            f"restored {obj.key!r} (id {obj.id}, {format_size(obj.size)}) from the trash "
            f"{by}{replaced}",
            data={"id": obj.id, "name": obj.key, "bucket": bucket, "replaced": done.replaced})
        await self._publish(done.done, must_store=True)
        return done

    async def purge(self, ids: Sequence[int], why: str = "purged") -> list[TrashedObject]:
        """Delete these files from the trash for good (a batch at a time)."""
        out: list[TrashedObject] = []
        todo = list(ids)
        while todo:
            batch, todo = todo[:PURGE_BATCH], todo[PURGE_BATCH:]
            found, done = await self.store.purge_trash(batch, why)
            out += found
            await self._publish(done, must_store=why != "expired")
        return out

    async def purge_one(self, trash_id: int, by: str) -> TrashedObject | None:
        found = await self.purge([trash_id])
        if not found:
            return None
        f = found[0]
        await self.store.add_event(
            EventKind.TRASH_PURGED, f"deleted {f.key!r} (id {f.id}, {format_size(f.size)}) from "
            f"the trash for good {by}", data={"id": f.id, "name": f.key, "bytes": f.size})
        return f

    async def empty(self, by: str) -> dict[str, Any]:
        """Purge everything in the trash now (what is moved there meanwhile stays)."""
        files: list[TrashedObject] = []
        seen: set[int] = set()
        while True:
            ids = [i for i in await self.store.trash_ids(PURGE_BATCH) if i not in seen]
            if not ids:
                break
            seen.update(ids)
            files += await self.purge(ids)
        size = sum(f.size for f in files)
        await self.store.add_event(
            EventKind.TRASH_EMPTIED, f"emptied the trash {by}: {plural(len(files), 'file')} "
            f"({format_size(size)}) deleted for good"
            + (f": {_names(files)}" if files else ""),
            data={"files": len(files), "bytes": size})
        return {"purged": len(files), "bytes": size}

    async def run_once(self, now: float | None = None) -> int:
        """Purge the files whose time in the trash is over; returns how many."""
        files: list[TrashedObject] = []
        while True:
            ids = await self.store.trash_due(time.time() if now is None else now,
                                             PURGE_BATCH)
            if not ids:
                break
            files += await self.purge(ids, "expired")
            if len(ids) < PURGE_BATCH:
                break
        if files:
            size = sum(f.size for f in files)
            await self.store.add_event(
                EventKind.TRASH_EXPIRED, f"{plural(len(files), 'file')} ({format_size(size)}) "
                f"purged from the trash after {format_duration(self.keep)}: {_names(files)}",
                data={"files": len(files), "bytes": size, "ids": [f.id for f in files[:100]]})
        return len(files)

    async def next_delay(self) -> float:
        return purge_every(self.keep) if self.keep else MAX_PURGE_EVERY

    def failed(self, exc: Exception) -> None:  # a bad pass must not stop the brain
        log.warning("could not purge the trash: %s", exc)
