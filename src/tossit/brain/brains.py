"""The brains serving one metadata database, and which of them leads.

Each brain keeps a row in ``brains`` (its URL, role, when it last renewed the
row). Followers read it to know where to send changes (``forward.py``), the
status page and ``tossit status`` list it, and a brain that takes over after
another leader waits a moment before acting (``takeover_grace``). The row is
advisory: who leads is decided by the PostgreSQL lock alone (``brainlock.py``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select

from tossit import __version__
from tossit.auth.secretfile import write_atomic
from tossit.brain.models import BrainRow
from tossit.brain.store import Store

log = logging.getLogger("tossit.brain")
RENEW_EVERY = 2.0  # seconds between renewals of this brain's row
# Seconds a leader's row may go unrenewed (RENEW_EVERY) before a follower ends
# its lock session: a paused leader. Long enough for a busy database.
SILENT_AFTER = 30.0
FRESH = 15.0  # a row renewed less than this long ago belongs to a live brain
FORGET_AFTER = 7 * 86400.0  # rows of brains silent this long are dropped


def brain_id(data_dir: Path) -> str:
    """This brain's persistent id (``data_dir/brain.json``)."""
    path = data_dir / "brain.json"
    if path.exists():
        try:
            return str(json.loads(path.read_text())["id"])
        except (ValueError, KeyError, TypeError) as exc:
            # Only the brains' directory uses the id: a new one costs a stale row,
            # while refusing to start over it would cost the cluster its brain.
            log.warning("%s is unreadable (%s); this brain takes a new id", path, exc)
    bid = uuid.uuid4().hex[:16]
    write_atomic(path, json.dumps({"id": bid}) + "\n")
    return bid


class BrainDirectory:
    def __init__(self, store: Store, bid: str, url: str) -> None:
        self.store = store
        self.id = bid
        self.url = url
        self.started = time.time()
        self._leader: tuple[str | None, float] = (None, 0.0)  # (url, when read)
        # The leader row's last_seen as this brain last read it, and when (this
        # brain's monotonic clock) it last changed: ``leader_silent``.
        self._watched: tuple[float | None, float] = (None, time.monotonic())

    async def renew(self, role: str) -> None:
        now = time.time()
        values = {"url": self.url, "role": role, "version": __version__, "last_seen": now}
        async with self.store.write() as s:
            await s.execute(self.store.insert_stmt(BrainRow).values(
                id=self.id, started_at=self.started, **values).on_conflict_do_update(
                index_elements=["id"], set_=values))
            await s.execute(delete(BrainRow).where(BrainRow.last_seen < now - FORGET_AFTER))
        if role == "leader":
            self._leader = (self.url, time.monotonic())

    async def run_forever(self, role: Any) -> None:
        """Renew this brain's row; ``role()`` says what it is now."""
        while True:
            try:
                await self.renew(role())
            except Exception as exc:
                log.warning("could not renew this brain's row: %s", exc)
            await asyncio.sleep(RENEW_EVERY)

    async def listing(self) -> list[dict[str, Any]]:
        now = time.time()
        async with self.store.read() as s:
            rows = list((await s.execute(
                select(BrainRow).order_by(BrainRow.started_at))).scalars())
        # Two fresh rows saying "leader": one is a leader that died or stepped
        # down moments ago and has not said so (its row lasts FRESH seconds). The
        # one renewed last leads: a live leader renews, a dead one cannot.
        leading = max((r for r in rows if r.role == "leader" and now - r.last_seen < FRESH),
                      key=lambda r: r.last_seen, default=None)

        def role(r: BrainRow) -> str:
            if now - r.last_seen >= FRESH:
                return "silent"
            return "follower" if r.role == "leader" and r is not leading else r.role

        return [{"id": r.id, "url": r.url, "role": role(r), "version": r.version,
                 "this": r.id == self.id,
                 "seconds_since_seen": round(max(0.0, now - r.last_seen), 1)} for r in rows]

    async def leader_url(self) -> str | None:
        """Where the leader answers (cached for a second), or None while none does."""
        url, at = self._leader
        if time.monotonic() - at < 1.0:
            return url
        now = time.time()
        async with self.store.read() as s:
            row = (await s.execute(
                select(BrainRow.url).where(BrainRow.role == "leader",
                                           BrainRow.last_seen > now - FRESH,
                                           BrainRow.id != self.id)
                .order_by(BrainRow.last_seen.desc()).limit(1))).scalar_one_or_none()
        self._leader = (row, time.monotonic())
        return row

    async def leader_silent(self, after: float = SILENT_AFTER) -> bool:
        """Has the leader's row gone ``after`` seconds without being renewed? Timed
        on this brain's own clock from the last change it saw (the other brain's
        clock may be off), so a just-started follower waits the whole time."""
        async with self.store.read() as s:
            seen = await s.scalar(select(func.max(BrainRow.last_seen)).where(
                BrainRow.role == "leader", BrainRow.id != self.id))
        now = time.monotonic()
        if seen is None or seen != self._watched[0]:
            self._watched = (seen, now)
            return False
        return now - self._watched[1] > after

    async def another_led_recently(self) -> bool:
        """Did another brain lead a moment ago? (It may still be finishing a step.)"""
        now = time.time()
        async with self.store.read() as s:
            found = await s.scalar(select(BrainRow.id).where(
                BrainRow.role == "leader", BrainRow.id != self.id,
                BrainRow.last_seen > now - FRESH).limit(1))
        return found is not None
