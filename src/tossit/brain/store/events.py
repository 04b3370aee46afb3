"""The event log: adding (one or many, repeats folded), listing and pruning."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select

from tossit.brain.models import (
    Event,
)
from tossit.brain.states import EventKind
from tossit.brain.store.base import NewEvent, StoreBase


class EventStore(StoreBase):
    # -- events -------------------------------------------------------------

    async def add_event(
        self, kind: EventKind, message: str, *, severity: str = "info",
        node_id: str | None = None, data: dict[str, Any] | None = None,
        repeat_key: str | None = None,
    ) -> None:
        """Record an event. With ``repeat_key``: when the newest event of this kind
        (and node) carries the same key, this is that event happening again, so it
        replaces it (message and data updated, ``count`` + 1, ``first_at`` kept)
        rather than adding a row: a failure retried every pass stays one line of
        the log. The replacement gets a new id, so that it comes first in the
        newest-first list and live readers paging by id see it."""
        now = time.time()
        async with self.write() as s:
            last = None
            if repeat_key is not None:
                last = (await s.execute(
                    select(Event).where(Event.kind == kind, Event.node_id.is_(None)
                                        if node_id is None else Event.node_id == node_id)
                    .order_by(Event.id.desc()).limit(1))).scalar_one_or_none()
                if last is not None and last.repeat_key != repeat_key:
                    last = None
            s.add(Event(ts=now, kind=kind, severity=severity, message=message,
                        node_id=node_id, data=data, repeat_key=repeat_key,
                        count=last.count + 1 if last else 1,
                        first_at=(last.first_at or last.ts) if last else None))
            if last is not None:
                await s.flush()  # the new row takes its id before the old one goes
                await s.delete(last)

    async def add_events(self, events: Sequence[NewEvent]) -> None:
        """Record several events in one transaction (no repeat folding)."""
        if not events:
            return
        async with self.write() as s:
            s.add_all([Event(ts=e.ts, kind=e.kind, severity=e.severity, message=e.message,
                             node_id=e.node_id, data=e.data, count=1) for e in events])

    async def prune_events(self, older_than: float, keep: int, batch: int = 5000) -> int:
        """Delete events last seen before ``older_than`` (epoch seconds), then all
        but the newest ``keep``; in small transactions, so that a large backlog
        does not hold the (SQLite) write lock for long. Returns how many went."""
        gone = 0
        while True:
            async with self.write() as s:
                cut = await s.scalar(select(Event.id).order_by(Event.id.desc())
                                     .offset(keep).limit(1))
                ids = list((await s.execute(
                    select(Event.id).where((Event.ts < older_than) | (
                        Event.id <= (cut if cut is not None else -1)))
                    .order_by(Event.id).limit(batch))).scalars())
                if ids:
                    await s.execute(delete(Event).where(Event.id.in_(ids)))
            gone += len(ids)
            if len(ids) < batch:
                return gone

    async def list_events(self, limit: int = 100, kind: str | None = None,
                          after_id: int | None = None) -> list[Event]:
        """Newest first. ``after_id``: the ``limit`` events that came right after
        that one (so a reader can page forward without gaps), still newest first."""
        stmt = select(Event)
        if after_id is not None:
            stmt = stmt.where(Event.id > after_id).order_by(Event.id.asc())
        else:
            stmt = stmt.order_by(Event.id.desc())
        if kind:
            stmt = stmt.where(Event.kind == kind)
        async with self.read() as s:
            rows = list((await s.execute(stmt.limit(limit))).scalars().all())
        return rows[::-1] if after_id is not None else rows
