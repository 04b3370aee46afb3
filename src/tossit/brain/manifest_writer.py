"""Writes manifest packs to the nodes, so the metadata can be rebuilt from them.

A commit logs its changes as entries and puts their pack in the outbox, all in
its own transaction (``Store.apply``, see ``manifest_rows``). The commit batcher
then hands the pack here, and its clients get their answer only once the pack
is fsynced on at least ``write_quorum`` nodes (R when they can take it): one
pack per commit batch, so the small uploads of a batch share one write per node.

A pack that could not be written (too few nodes, or the brain stopped between
its commit and the write) stays in the outbox; ``flush`` writes it at start and
every few seconds until it is out. Meanwhile the collector deletes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from tossit import failpoints
from tossit.brain.manifest_rows import Pack, PackRecord
from tossit.brain.pins import ChunkPins
from tossit.brain.store import Store
from tossit.chunking import META

log = logging.getLogger("tossit.brain.manifests")
# Stores a blob (id, bytes, kind) on the nodes placement picks; returns the nodes.
Place = Callable[[str, bytes, str], Awaitable[list[str]]]
RETRY_EVERY = 5.0  # seconds between attempts while packs wait in the outbox
# A pack nobody waits for (written at start, or after a failure) waits this long for
# R nodes to take it, rather than land on W now and need a repair (a fresh cluster's
# first pack would otherwise go to the first node or two that registered).
PATIENCE = 30.0
RECORD_AFTER = 0.25  # seconds written packs wait to be recorded with others
RECORD_MANY = 16  # ... or until this many have gathered


class Waiting(Exception):
    """Packs wait for nodes (not an error yet)."""


class ManifestWriter:
    def __init__(self, store: Store, place: Place, pins: ChunkPins,
                 on_garbage: Callable[[list[str]], None],
                 full_strength: Callable[[], bool] = lambda: True) -> None:
        """``full_strength()``: can R nodes take a write now?"""
        self.store = store
        self.place = place
        self.pins = pins
        self.on_garbage = on_garbage
        self.full_strength = full_strength
        self._wake = asyncio.Event()
        self.last_error: str | None = None
        # Packs on the nodes, waiting to be recorded in the metadata: recording is
        # not needed for durability (the outbox keeps them until it is done, and a
        # pack written twice is the same pack), so the recorder does it for many
        # packs in one transaction, off the commit's path.
        self._written: list[PackRecord] = []
        self._recording: set[str] = set()  # taken by a commit that has not ended yet
        self._first_written = 0.0
        self._to_record = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def write(self, pack: Pack, record_now: bool = False) -> None:
        """Put a pack from the outbox on the nodes (raises NotEnoughNodes, and the
        pack stays in the outbox, if too few take it). It is fsynced on them when
        this returns; the recorder then records it (now, with ``record_now``)."""
        await self.pins.pin(pack.id)  # until recorded: the collector leaves it alone
        try:
            nodes = await self.place(pack.id, pack.data, META)
            failpoints.hit("commit.after_pack", lambda: [pack.data.decode(errors="replace")])
        except BaseException:
            self.pins.unpin(pack.id)
            raise
        done = PackRecord(pack.id, len(pack.data), tuple(nodes))
        if record_now:
            await self._record([done])
        else:
            if not self._written:
                self._first_written = time.monotonic()
            self._written.append(done)
            self._to_record.set()

    async def _record(self, records: list[PackRecord]) -> None:
        try:
            empty = await self.store.log.record_packs(records)
        finally:
            for r in records:
                self.pins.unpin(r.pack_id)
        if empty:
            self.on_garbage(empty)

    def written_ids(self) -> set[str]:
        """Packs on the nodes (fsynced) whose recording is still pending."""
        return {r.pack_id for r in self._written} | self._recording

    def take_written(self) -> list[PackRecord]:
        """Packs written and not recorded yet, for the next commit to record in
        its own transaction (``Store.apply``); pass them back to ``recorded``.
        Only once a few have gathered (or waited a little): recording is a few
        statements whatever their number."""
        if len(self._written) < RECORD_MANY and (
                not self._written or time.monotonic() - self._first_written < RECORD_AFTER):
            return []
        out, self._written = self._written, []
        self._recording.update(r.pack_id for r in out)
        return out

    def recorded(self, records: Sequence[PackRecord], ok: bool) -> None:
        """The commit that took these is over: unpin them (or, if it failed, let
        the recorder try again)."""
        self._recording.difference_update(r.pack_id for r in records)
        if not ok:
            self._written[:0] = records
            self._to_record.set()
            return
        for r in records:
            self.pins.unpin(r.pack_id)

    def abandon(self) -> None:
        """This brain stops leading: what it did not record stays in the outbox
        (the next leader writes those packs again, the same bytes)."""
        for r in self._written:
            self.pins.unpin(r.pack_id)
        self._written = []

    async def run_recorder(self) -> None:
        """Record the packs no commit took (the cluster went quiet), together."""
        while True:
            await self._to_record.wait()
            self._to_record.clear()
            await asyncio.sleep(2 * RECORD_AFTER)  # a busy cluster's commits take them
            records, self._written = self._written, []
            if not records:
                continue
            self._recording.update(r.pack_id for r in records)
            try:
                await self._record(records)
            except Exception as exc:  # they stay in the outbox: the flush writes them again
                log.warning("could not record %d manifest packs yet: %s", len(records), exc)
                self.wake()
            finally:
                self._recording.difference_update(r.pack_id for r in records)

    async def flush(self) -> int:
        """Pack the entries that have no pack yet (after an upgrade), then write
        every pack in the outbox; returns how many packs were written."""
        assert self.store.pack_key is not None
        while (await self.store.log.pack_unpacked(self.store.pack_key)) is not None:
            pass
        written = 0
        while packs := await self.store.log.outbox():
            if not self.full_strength() and time.time() - packs[0].created_at < PATIENCE:
                raise Waiting("waiting for enough nodes to store manifest packs at full "
                              "strength")
            for pack in packs:
                await self.write(pack, record_now=True)
                written += 1
        if written:
            log.info("wrote %d waiting manifest pack(s) to the nodes", written)
        self.last_error = None
        return written

    async def run_forever(self) -> None:
        """Catch up now, then whenever woken (a write failed), and every few
        seconds while packs wait (the nodes that were away come back)."""
        while True:
            retry: float | None = None
            try:
                await self.flush()
            except Waiting:
                retry = 1.0
            except Exception as exc:
                self.last_error = str(exc)
                retry = RETRY_EVERY
                log.warning("manifest packs still waiting for the nodes: %s; retrying in "
                            "%.0f s", exc, RETRY_EVERY)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), retry)
            self._wake.clear()
