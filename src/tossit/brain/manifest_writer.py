"""Writes manifest packs to the nodes, so the metadata can be rebuilt from them.

Uploads and deletes (``CommitBatcher``): a commit logs its changes as entries,
in no pack, in its own transaction (``Store.apply``). The batcher then hands
the entries here (``publish``) and its clients get their answer only once a
pack holding them is fsynced on at least ``write_quorum`` nodes (R when they
can take it). Packs are made after the commits, so the entries of every commit
that ends while earlier packs are on their way share the next pack: under load
one pack (one write per node) serves many commit batches, not one each. The
pack is recorded later (``record_in``: the log then points at it).

Other changes (trash, keys) pack their entries in their own transaction and
put the pack in the outbox; ``write`` puts it on the nodes.

Entries that did not reach the nodes (too few nodes, or the brain stopped
first) are in no pack in the log, or in a pack of the outbox: ``flush`` packs
the first into the outbox, at start and whenever woken, and writes the outbox
until it is empty. Meanwhile the collector deletes nothing (``Collector``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from tossit import failpoints
from tossit.brain.manifest_rows import Pack, PackRecord, new_pack
from tossit.brain.metrics import MANIFEST_PACKS
from tossit.brain.pins import ChunkPins
from tossit.brain.store import Store
from tossit.chunking import META
from tossit.errors import MetadataFull
from tossit.manifests import AnyEntry

log = logging.getLogger("tossit.brain.manifests")
# Stores a blob (id, bytes, kind) on the nodes placement picks; returns the nodes,
# and adds to the set it is given the nodes whose write may still land
# (``Ingest.place``).
Place = Callable[[str, bytes, str, set[str]], Awaitable[list[str]]]
RETRY_EVERY = 5.0  # seconds between attempts while packs wait in the outbox
# A pack nobody waits for (written at start, or after a failure) waits this long for
# R nodes to take it, rather than land on W now and need a repair (a fresh cluster's
# first pack would otherwise go to the first node or two that registered).
PATIENCE = 30.0
RECORD_AFTER = 0.25  # seconds written packs wait to be recorded with others
RECORD_MANY = 16  # ... or until this many have gathered
PUBLISHING = 2  # packs of committed entries on their way to the nodes at once
PACK_MOST = 4096  # entries in one such pack


@dataclass
class _Publish:
    """One commit's entries, and its batcher waiting for them to be on the nodes."""

    entries: Sequence[AnyEntry]
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


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
        # Taken by a commit that has not ended yet.
        self._recording: dict[str, PackRecord] = {}
        self._first_written = 0.0
        self._writing: set[str] = set()  # packs on their way to the nodes
        # Nodes each pack's writes failed on in a way that may still land (kept
        # across attempts until the pack is recorded: see ``PackRecord.doubtful``).
        self._doubtful: dict[str, set[str]] = {}
        self._to_record = asyncio.Event()
        # Committed entries waiting for a pack, and those in packs on their way.
        self._queue: list[_Publish] = []
        self._publishing: set[asyncio.Task[None]] = set()
        self._unwritten: set[int] = set()  # versions queued or on their way

    def wake(self) -> None:
        self._wake.set()

    def publish(self, entries: Sequence[AnyEntry]) -> asyncio.Future[None]:
        """Put a commit's entries (logged in no pack) on the nodes, in a pack with
        those of the other commits waiting. Call it as soon as the commit is
        done (from then on ``flush`` leaves them alone); the future is done once
        they are fsynced there. It fails as ``write`` does; the entries are then
        packed into the outbox and written from there (``flush``)."""
        item = _Publish(entries)
        if not entries or self.store.pack_key is None:
            item.done.set_result(None)
            return item.done
        self._unwritten.update(e.version for e in entries)
        self._queue.append(item)
        self._launch()
        return item.done

    def _launch(self) -> None:
        """Start packs for the queued entries while fewer than PUBLISHING fly."""
        while self._queue and len(self._publishing) < PUBLISHING:
            group: list[_Publish] = []
            size = 0
            while self._queue and (not group or size + len(self._queue[0].entries) <= PACK_MOST):
                group.append(self._queue.pop(0))
                size += len(group[-1].entries)
            task = asyncio.create_task(self._publish(group))
            self._publishing.add(task)
            task.add_done_callback(self._published)

    def _published(self, task: asyncio.Task[None]) -> None:
        self._publishing.discard(task)
        self._launch()

    async def _publish(self, group: list[_Publish]) -> None:
        """One pack of the entries of ``group``'s commits, onto the nodes."""
        entries = [e for item in group for e in item.entries]
        versions = tuple(e.version for e in entries)
        failure: Exception | None = None
        try:
            assert self.store.pack_key is not None
            pack = new_pack(entries, self.store.pack_key, time.time())
            await self.write(pack, versions=versions)
        except asyncio.CancelledError:
            for item in group:
                item.done.cancel()
            raise
        except Exception as exc:
            failure = exc
            self.wake()  # flush packs them into the outbox and retries from there
        finally:
            self._unwritten.difference_update(versions)
        for item in group:
            if not item.done.done():
                if failure is None:
                    item.done.set_result(None)
                else:
                    item.done.set_exception(failure)

    async def write(self, pack: Pack, record_now: bool = False,
                    versions: tuple[int, ...] = ()) -> None:
        """Put a pack on the nodes (raises NotEnoughNodes if too few take it; a
        pack of the outbox stays there). It is fsynced on them when this returns;
        the recorder then records it (now, with ``record_now``). ``versions``:
        the entries it holds that the log points at no pack yet."""
        await self.pins.pin(pack.id)  # until recorded: the collector leaves it alone
        self._writing.add(pack.id)
        try:
            doubtful = self._doubtful.setdefault(pack.id, set())
            nodes = await self.place(pack.id, pack.data, META, doubtful)
            failpoints.hit("commit.after_pack", lambda: [pack.data.decode(errors="replace")])
        except BaseException:
            self.pins.unpin(pack.id)
            raise
        finally:
            self._writing.discard(pack.id)
        MANIFEST_PACKS.inc()
        doubtful = self._doubtful.pop(pack.id, set()) - set(nodes)
        done = PackRecord(pack.id, len(pack.data), tuple(nodes), versions,
                          tuple(sorted(doubtful)))
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
        return {r.pack_id for r in self._written} | set(self._recording)

    def in_hand(self) -> set[str]:
        """Packs of the outbox this brain is writing or has written: ``flush``
        leaves them alone (writing one twice is harmless, but wasted)."""
        return self._writing | self.written_ids()

    def written_versions(self) -> set[int]:
        """Entries on the nodes (fsynced) that the log does not point at a pack yet."""
        return {v for r in self._written for v in r.versions} | {
            v for r in self._recording.values() for v in r.versions}

    def busy_versions(self) -> set[int]:
        """Entries this brain is putting on the nodes: not for ``flush`` to pack."""
        return self._unwritten | self.written_versions()

    def take_written(self) -> list[PackRecord]:
        """Packs written and not recorded yet, for the next commit to record in
        its own transaction (``Store.apply``); pass them back to ``recorded``.
        Only once a few have gathered (or waited a little): recording is a few
        statements whatever their number."""
        if len(self._written) < RECORD_MANY and (
                not self._written or time.monotonic() - self._first_written < RECORD_AFTER):
            return []
        out, self._written = self._written, []
        self._recording.update((r.pack_id, r) for r in out)
        return out

    def recorded(self, records: Sequence[PackRecord], ok: bool) -> None:
        """The commit that took these is over: unpin them (or, if it failed, let
        the recorder try again)."""
        for r in records:
            self._recording.pop(r.pack_id, None)
        if not ok:
            self._written[:0] = records
            self._to_record.set()
            return
        for r in records:
            self.pins.unpin(r.pack_id)

    async def stop_publishing(self) -> None:
        """The brain stops (or stops leading): drop what is on its way; the
        entries stay in no pack in the log, for the next start to pack."""
        for item in self._queue:
            if not item.done.done():
                item.done.set_exception(RuntimeError("the brain is shutting down"))
                item.done.exception()  # (retrieved: nobody may wait for it any more)
        self._queue = []
        tasks = list(self._publishing)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._unwritten.clear()

    async def record_written(self) -> None:
        """Record now the packs written and not recorded yet (the brain stops):
        else the next start packs their entries again, and these copies wait as
        orphans for the sweep."""
        records, self._written = self._written, []
        if records:
            try:
                await self._record(records)
            except Exception as exc:
                log.warning("could not record %d manifest packs before stopping: %s",
                            len(records), exc)

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
            self._recording.update((r.pack_id, r) for r in records)
            try:
                await self._record(records)
            except Exception as exc:  # they stay in the outbox: the flush writes them again
                log.warning("could not record %d manifest packs yet: %s", len(records), exc)
                self.wake()
            finally:
                for r in records:
                    self._recording.pop(r.pack_id, None)

    async def flush(self) -> int:
        """Pack the entries that have no pack yet (after an upgrade), then write
        every pack in the outbox; returns how many packs were written."""
        assert self.store.pack_key is not None
        while (await self.store.log.pack_unpacked(
                self.store.pack_key, skip=self.busy_versions())) is not None:
            pass
        written = 0
        while packs := await self.store.log.outbox(skip=self.in_hand()):
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
                if not isinstance(exc, MetadataFull):  # (the store says that once a minute)
                    log.warning("manifest packs still waiting for the nodes: %s; retrying "
                                "in %.0f s", exc, RETRY_EVERY)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), retry)
            self._wake.clear()
