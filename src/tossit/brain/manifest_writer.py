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
from collections.abc import Awaitable, Callable

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

    def wake(self) -> None:
        self._wake.set()

    async def write(self, pack: Pack) -> None:
        """Put a pack from the outbox on the nodes and record it there (raises
        NotEnoughNodes, and the pack stays in the outbox, if too few take it)."""
        await self.pins.pin(pack.id)
        try:
            nodes = await self.place(pack.id, pack.data, META)
            failpoints.hit("commit.after_pack", lambda: [pack.data.decode(errors="replace")])
            empty = await self.store.log.record_packs(
                [PackRecord(pack.id, len(pack.data), tuple(nodes))])
        finally:
            self.pins.unpin(pack.id)
        if empty:
            self.on_garbage(empty)

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
                await self.write(pack)
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
