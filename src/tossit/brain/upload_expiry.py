"""The leader's loop that aborts multipart uploads left incomplete too long.

A client that starts an upload and never completes nor aborts it (a crash, a
killed backup) leaves parts whose chunks hold space and references for ever.
After ``multipart_keep`` (7 days by default) the upload is aborted as if the
client had asked: its parts go, their chunks become garbage, and the collector
frees those nothing else uses. One event says what was freed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from tossit.brain.states import EventKind
from tossit.brain.store import Store
from tossit.config import BrainSettings, format_duration, format_size, plural
from tossit.periodic import Periodic

log = logging.getLogger("tossit.brain.upload_expiry")
EXPIRE_BATCH = 500  # uploads aborted per transaction
MAX_LOOK_EVERY = 3600.0  # seconds between two looks, at most


def look_every(keep: float) -> float:
    """A tenth of the time kept (a short one in a test expires on time), between
    half a second and an hour."""
    return max(0.5, min(MAX_LOOK_EVERY, keep / 10))


class UploadExpiry(Periodic):
    name = "multipart upload expiry"
    retry_after = 60.0

    def __init__(self, settings: BrainSettings, store: Store,
                 release: Callable[[list[str]], None]) -> None:
        super().__init__()
        self.settings = settings
        self.store = store
        self.release = release  # the collector's: chunks that may be garbage now

    async def run_once(self) -> list[str]:
        """Abort every upload started more than ``multipart_keep`` ago; returns
        their ids."""
        keep = self.settings.multipart_keep
        cutoff = time.time() - keep
        aborted: list[str] = []
        names: list[str] = []
        parts = size = 0
        while ids := await self.store.uploads_started_before(cutoff, EXPIRE_BATCH):
            for uid in ids:
                upload = await self.store.get_upload(uid)
                if upload is not None:
                    names.append(upload.key)
                    listed = await self.store.upload_parts(uid)
                    parts += len(listed)
                    size += sum(p.size for p in listed)
            found, garbage = await self.store.drop_uploads(ids)
            aborted += found
            if garbage:
                self.release(garbage)
            if len(ids) < EXPIRE_BATCH:
                break
        if aborted:
            shown = ", ".join(repr(n) for n in names[:5])
            more = f" and {len(names) - 5:,} more" if len(names) > 5 else ""
            msg = (f"aborted {plural(len(aborted), 'multipart upload')} left incomplete for "
                   f"more than {format_duration(keep)} ({plural(parts, 'part')}, "
                   f"{format_size(size)}): {shown}{more}")
            log.info("%s", msg)
            await self.store.add_event(EventKind.UPLOADS_EXPIRED, msg, data={
                "uploads": len(aborted), "parts": parts, "bytes": size, "names": names[:20]})
        return aborted

    async def next_delay(self) -> float:
        return look_every(self.settings.multipart_keep)
