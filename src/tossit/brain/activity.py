"""Who uploaded and who deleted what: people's changes in the activity log.

An event per file would be a row written for every 4 KiB upload, doubling the
database work of the smallest (and most frequent) uploads, and a log a
person cannot read after a backup job. So changes are tallied in memory per
(action, who, bucket) and written every few seconds, all tallies in one
transaction: "laptop (TK…, readwrite) uploaded 37 files (12.3 MiB): a.jpg,
b.jpg, c.jpg and 34 more". A single file reads as itself.

The cost is that a brain killed outright loses at most the last few seconds of
*this log*; the files themselves are committed and on the nodes as before. The
log is for people, not a ledger: the metadata is the record of what exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from tossit.brain.states import EventKind
from tossit.brain.store import NewEvent, Store
from tossit.config import format_size, plural
from tossit.errors import MetadataFull
from tossit.periodic import Periodic

log = logging.getLogger("tossit.brain.activity")
WINDOW = 5.0  # seconds changes are gathered before they are written
NAMES_SHOWN = 3  # names written in the message
NAMES_KEPT = 20  # names (and ids) kept in the event's data
UPLOADED = EventKind.FILES_UPLOADED
DELETED = EventKind.FILES_DELETED
_VERBS = {UPLOADED: "uploaded", DELETED: "deleted"}


@dataclass
class Tally:
    """One person's changes of one kind in one bucket within a window."""

    action: EventKind
    who: str
    key_id: str | None
    bucket: str
    count: int = 0
    size: int = 0
    names: list[str] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    first_at: float = 0.0
    last_at: float = 0.0
    verb: str = ""  # "uploaded", "deleted", "moved to the trash" (default: by action)

    def add(self, name: str, size: int, obj_id: int, now: float) -> None:
        if not self.count:
            self.first_at = now
        self.count += 1
        self.size += size
        self.last_at = now
        if len(self.names) < NAMES_KEPT:
            self.names.append(name)
            self.ids.append(obj_id)

    def absorb(self, later: Tally) -> None:
        """Take in a later tally of the same kind (a write that failed is retried
        with what came after it)."""
        self.count += later.count
        self.size += later.size
        self.last_at = max(self.last_at, later.last_at)
        room = NAMES_KEPT - len(self.names)
        self.names += later.names[:room]
        self.ids += later.ids[:room]

    def message(self) -> str:
        """"report.pdf (1.2 MiB) uploaded by laptop (TK1…, readwrite)", or
        "37 files (12.3 MiB) uploaded by …: a, b, c and 34 more"."""
        verb = self.verb or _VERBS[self.action]
        where = "" if self.bucket == "default" else f" in bucket {self.bucket}"
        if self.count == 1:
            return f"{self.names[0]} ({format_size(self.size)}) {verb}{where} {self.who}"
        shown = ", ".join(self.names[:NAMES_SHOWN])
        more = self.count - min(self.count, NAMES_SHOWN)
        tail = f" and {more} more" if more else ""
        return (f"{plural(self.count, 'file')} ({format_size(self.size)}) {verb}{where} "
                f"{self.who}: {shown}{tail}")

    def event(self) -> NewEvent:
        data: dict[str, Any] = {"count": self.count, "bytes": self.size,
                                "bucket": self.bucket, "names": self.names,
                                "ids": self.ids, "key_id": self.key_id,
                                "first_at": self.first_at}
        return NewEvent(ts=self.last_at, kind=self.action, message=self.message(), data=data)


class ActivityLog(Periodic):
    """Gathers uploads and deletes and writes them as events every ``window`` s."""

    name = "activity log"
    wait_first = True

    def __init__(self, store: Store, window: float = WINDOW, to_trash: bool = False) -> None:
        """``to_trash``: deletes go to the trash (the words say so)."""
        super().__init__()
        self.store = store
        self.window = window
        self.delete_verb = "moved to the trash" if to_trash else "deleted"
        self._tallies: dict[tuple[EventKind, str, str], Tally] = {}
        self._task: asyncio.Task[None] | None = None

    def note(self, action: EventKind, who: str, key_id: str | None, bucket: str, name: str,
             size: int, obj_id: int) -> None:
        """Count one change (no I/O: called on the request path)."""
        tally = self._tallies.get((action, who, bucket))
        if tally is None:
            tally = self._tallies[(action, who, bucket)] = Tally(
                action, who, key_id, bucket, verb=self.delete_verb if action == DELETED else "")
        tally.add(name, size, obj_id, time.time())

    async def flush(self) -> int:
        """Write what was gathered; returns how many events."""
        tallies, self._tallies = self._tallies, {}
        if not tallies:
            return 0
        try:
            await self.store.add_events([t.event() for t in tallies.values()])
        except BaseException:
            for k, later in self._tallies.items():  # noted while this write ran
                if k in tallies:
                    tallies[k].absorb(later)
                else:
                    tallies[k] = later
            self._tallies = tallies
            raise
        return len(tallies)

    async def run_once(self) -> int:
        return await self.flush()

    async def next_delay(self) -> float:
        return self.window

    def failed(self, exc: Exception) -> None:  # the log must not stop the brain
        if not isinstance(exc, MetadataFull):  # (the store says that once a minute)
            log.warning("could not write the activity log: %s", exc)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run_forever(), name="activity")

    async def stop(self) -> None:
        """Write what is left (a clean stop loses nothing)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self.flush()
