"""The garbage collector (Collector.run_once) on in-memory nodes and a real
store: what it frees, and what it must not (pinned chunks, chunks a concurrent
upload uses again, copies on nodes that are away)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete as sql_delete
from sqlalchemy import func, select, update

from memnodes import Core, KiB, blob, memcore, until
from tossit.brain.ingest import UploadResult
from tossit.brain.models import Chunk, ManifestEntry, PackOutbox
from tossit.brain.registry import OFFLINE, ONLINE
from tossit.chunking import DATA, chunk_id

CHUNK = 64 * KiB


async def delete(core: Core, object_id: int) -> None:
    assert await core.commits.delete(object_id)


async def gc(core: Core) -> dict[str, int]:
    stats: dict[str, int] = await core.collector.run_once(sweep_orphans=False)
    return stats


async def test_a_deleted_files_chunks_are_freed_everywhere(tmp_path: Path) -> None:
    async with memcore(tmp_path, nodes=4) as core:
        shared, own = blob(41, CHUNK), blob(42, CHUNK)
        keep = await core.upload("keep", shared)
        drop = await core.upload("drop", shared + own)
        await delete(core, drop.obj.id)
        stats = await gc(core)
        assert stats["replicas_deleted"] == 3 and stats["chunks_dropped"] == 1
        assert stats["bytes_freed"] == 3 * CHUNK
        assert core.holders(chunk_id(own)) == set()
        assert await core.refcount(chunk_id(own)) is None
        assert await core.replicas(chunk_id(own)) == {}
        # The chunk another file still uses stays, whole.
        assert await core.refcount(chunk_id(shared)) == 1
        assert len(core.holders(chunk_id(shared))) == 3
        assert await core.download(keep.obj.id) == shared
        (event,) = await core.store.list_events(kind="gc")
        assert "3 copies of 1 chunk no file uses any more" in event.message


async def test_a_pinned_chunk_is_not_freed_until_unpinned(tmp_path: Path) -> None:
    async with memcore(tmp_path, nodes=3) as core:
        data = blob(43, CHUNK)
        cid = chunk_id(data)
        res = await core.upload("a", data)
        await delete(core, res.obj.id)
        await core.pins.pin(cid)  # an upload (or a repair) is using it
        stats = await gc(core)
        assert stats["replicas_deleted"] == 0
        assert len(core.holders(cid)) == 3 and await core.refcount(cid) == 0
        core.pins.unpin(cid)
        stats = await gc(core)
        assert stats["replicas_deleted"] >= 3 and core.holders(cid) == set()


async def test_copies_on_an_offline_node_wait_for_it(tmp_path: Path) -> None:
    async with memcore(tmp_path, nodes=3) as core:
        data = blob(44, CHUNK)
        cid = chunk_id(data)
        res = await core.upload("a", data)
        away = core.nodes[0]
        away.view.state = OFFLINE
        await delete(core, res.obj.id)
        stats = await gc(core)
        assert stats["replicas_deleted"] == 2 and stats["chunks_dropped"] == 0
        assert core.holders(cid) == {away.view.id}
        assert await core.replicas(cid) == {away.view.id: "ok"}  # still to delete
        assert away.count("deletes") == 0  # not even asked while away
        away.view.state = ONLINE
        stats = await gc(core)
        assert stats["replicas_deleted"] == 1 and stats["chunks_dropped"] == 1
        assert core.holders(cid) == set() and await core.refcount(cid) is None


async def test_garbage_used_again_before_the_pass_is_kept(tmp_path: Path) -> None:
    async with memcore(tmp_path, nodes=3) as core:
        data = blob(45, CHUNK)
        cid = chunk_id(data)
        old = await core.upload("old", data)
        await delete(core, old.obj.id)
        assert await core.refcount(cid) == 0
        new = await core.upload("new", data)  # deduplicated: nothing sent again
        assert sum(n.count("put", cid) for n in core.nodes) == 3
        await gc(core)
        # (The pass may drop the superseded manifest pack of "old": count the chunk.)
        assert not [b for n in core.nodes for o, b in n.calls
                    if o in ("delete", "deletes") and cid in b]
        assert await core.refcount(cid) == 1 and len(core.holders(cid)) == 3
        assert await core.download(new.obj.id) == data


async def test_garbage_used_again_during_the_pass_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An upload reuses a garbage chunk and commits after the collector listed
    the garbage but before it claimed the chunk: the claim checks again."""
    async with memcore(tmp_path, nodes=3) as core:
        data = blob(51, CHUNK)
        cid = chunk_id(data)
        old = await core.upload("old", data)
        await delete(core, old.obj.id)
        listing = core.store.garbage_chunks
        uploads: list[UploadResult] = []

        async def listing_then_upload(limit: int = 1000) -> list[tuple[str, list[str]]]:
            garbage = await listing(limit)
            if not uploads:
                uploads.append(await core.upload("new", data))
            return garbage

        monkeypatch.setattr(core.store, "garbage_chunks", listing_then_upload)
        stats = await gc(core)
        assert stats["replicas_deleted"] == 0 and stats["chunks_dropped"] == 0
        assert await core.refcount(cid) == 1 and len(core.holders(cid)) == 3
        assert await core.download(uploads[0].obj.id) == data


async def test_an_upload_in_flight_keeps_the_garbage_it_reuses(tmp_path: Path) -> None:
    """The collector runs while an upload that reuses a garbage chunk is still
    placing its other chunk: the reused one is pinned, so it survives, and the
    upload commits pointing at copies that exist."""
    async with memcore(tmp_path, nodes=3) as core:
        reused, fresh = blob(46, CHUNK), blob(47, CHUNK)
        old = await core.upload("old", reused)
        await delete(core, old.obj.id)
        slow = core.nodes[0]
        slow.pause()
        upload = asyncio.create_task(core.upload("new", reused + fresh))
        await slow.arrived.wait()  # `fresh` is on its way; `reused` is pinned
        assert core.pins.is_pinned(chunk_id(reused))
        # (Counted by the data chunk's copies, not the pass's deletions: the old
        # file's manifest pack is garbage too, deleted by whichever pass comes
        # after its recording, a moment after it was written.)
        await gc(core)
        assert len(core.holders(chunk_id(reused))) == 3
        slow.resume()
        new = await upload
        assert await core.refcount(chunk_id(reused)) == 1
        await gc(core)
        for cid in (chunk_id(reused), chunk_id(fresh)):
            assert core.holders(cid) >= set(await core.replicas(cid))
            assert len(await core.replicas(cid)) == 3
        assert await core.download(new.obj.id) == reused + fresh


async def test_an_upload_during_the_delete_waits_and_writes_afresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The collector has claimed a garbage chunk and is deleting its copies when
    an upload of the same bytes arrives: the upload waits for the delete to end,
    then writes the chunk again. No committed object points at a deleted copy."""
    async with memcore(tmp_path, nodes=3) as core:
        data = blob(48, CHUNK)
        cid = chunk_id(data)
        old = await core.upload("old", data)
        await delete(core, old.obj.id)
        slow = core.nodes[0]
        slow.pause()
        collect = asyncio.create_task(gc(core))
        await slow.arrived.wait()  # the collector's delete is under way
        assert core.pins.is_deleting(cid)
        pinning: list[str] = []
        pin = core.pins.pin

        async def watched_pin(c: str) -> None:
            pinning.append(c)
            await pin(c)

        monkeypatch.setattr(core.pins, "pin", watched_pin)
        upload = asyncio.create_task(core.upload("new", data))
        await until(lambda: cid in pinning)
        puts_before = sum(n.count("put", cid) for n in core.nodes)
        assert not upload.done()
        slow.resume()
        stats = await collect
        assert stats["replicas_deleted"] == 3 and stats["chunks_dropped"] == 1
        new = await upload
        assert sum(n.count("put", cid) for n in core.nodes) == puts_before + 3
        reps = await core.replicas(cid)
        assert len(reps) == 3 and core.holders(cid) == set(reps)
        assert await core.refcount(cid) == 1
        assert await core.download(new.obj.id) == data


async def test_the_sweep_marks_lost_copies_and_keeps_unknown_ones(tmp_path: Path) -> None:
    async with memcore(tmp_path, nodes=3) as core:
        data = blob(49, CHUNK)
        cid = chunk_id(data)
        await core.upload("a", data)
        careless = core.nodes[1]
        careless.lose(cid)
        # A blob no metadata knows and no intent names (another brain's? an
        # old backup's?): absence from the metadata alone deletes nothing.
        stray = blob(50, 1000)
        careless.store(chunk_id(stray), stray, DATA)
        careless.mtimes[chunk_id(stray)] -= 10 * core.settings.gc_grace
        stats = await core.collector.run_once(sweep_orphans=True)
        assert stats["missing"] == 1 and stats["orphans_deleted"] == 0
        assert stats["unknown_kept"] == 1
        assert (await core.replicas(cid))[careless.view.id] == "missing"
        assert core.degraded == ["collector"]  # the repairer is woken
        assert chunk_id(stray) in careless.blobs
        assert hashlib.sha256(careless.blobs[chunk_id(stray)]).hexdigest() == chunk_id(stray)


async def test_a_manifest_packed_during_the_check_still_holds_the_garbage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A delete whose manifest entry is in no pack yet (its brain stopped before
    writing it) holds its garbage back. The writer packs that entry into the
    outbox while the collector checks: the check must still see it, in the one
    place or the other, and keep the garbage until the pack is on the nodes."""
    async with memcore(tmp_path, nodes=3) as core:
        data = blob(61, CHUNK)
        cid = chunk_id(data)
        res = await core.upload("a", data)
        await delete(core, res.obj.id)
        await core.manifests.record_written()
        async with core.store.write() as s:  # as a brain that stopped left it
            await s.execute(update(ManifestEntry).where(ManifestEntry.op == "del")
                            .values(pack=None))
        log = core.store.log
        key = core.store.pack_key
        assert key is not None
        moved: list[object] = []

        def then_pack(read: Callable[..., Awaitable[set[Any]]]) -> Callable[..., Any]:
            async def wrapped(*args: Any, **kw: Any) -> set[Any]:
                got = await read(*args, **kw)
                if not moved:  # the writer's flush, between the collector's reads
                    moved.append(await log.pack_unpacked(key))
                return got
            return wrapped

        monkeypatch.setattr(log, "unpacked", then_pack(log.unpacked))
        monkeypatch.setattr(log, "outbox_ids", then_pack(log.outbox_ids))
        stats = await gc(core)
        assert moved and await log.outbox_count() == 1
        assert stats["replicas_deleted"] == 0 and stats["held_for_manifests"] >= 1
        assert len(core.holders(cid)) == 3
        assert await core.manifests.flush() == 1  # the pack is out: now it may go
        stats = await gc(core)
        assert stats["replicas_deleted"] >= 3 and core.holders(cid) == set()


async def test_a_pack_still_in_use_is_never_dropped_with_its_entries(
        tmp_path: Path) -> None:
    """A pack row at refcount 0 whose entries are needed (packed again under the
    same id), or that the outbox holds, keeps its row and its entries; the
    refcount is set right."""
    async with memcore(tmp_path, nodes=3) as core:
        await core.upload("a", blob(62, CHUNK))
        await core.manifests.record_written()
        async with core.store.read() as s:
            (pack,) = (await s.execute(select(ManifestEntry.pack).where(
                ManifestEntry.op == "put"))).scalars().all()
        assert pack is not None and await core.refcount(pack) == 1
        async with core.store.write() as s:
            await s.execute(update(Chunk).where(Chunk.id == pack).values(refcount=0))
        assert await core.store.drop_unreferenced([pack]) == 0
        assert await core.refcount(pack) == 1
        async with core.store.read() as s:
            assert await s.scalar(select(func.count()).select_from(ManifestEntry).where(
                ManifestEntry.pack == pack)) == 1
        # In the outbox (written again, not recorded yet): kept too.
        async with core.store.write() as s:
            await s.execute(update(ManifestEntry).where(ManifestEntry.pack == pack)
                            .values(needed=False))
            await s.execute(update(Chunk).where(Chunk.id == pack).values(refcount=0))
            s.add(PackOutbox(pack_id=pack, data=b"x", created_at=0.0, first_version=1))
        assert await core.store.drop_unreferenced([pack]) == 0
        async with core.store.write() as s:
            await s.execute(sql_delete(PackOutbox))
        assert await core.store.drop_unreferenced([pack]) == 1
        assert await core.refcount(pack) is None


async def test_a_dropped_pack_goes_from_nodes_the_metadata_does_not_list(
        tmp_path: Path) -> None:
    """A pack write that timed out on a paused node can land after the brain gave
    up on it: a copy the metadata does not list. Once its entries are superseded
    and the pack dropped, that copy must go too: left there, after the tombstones
    expire a rebuild would take its old entries for the newest."""
    def no_trash(s: Any) -> None:
        s.trash_keep = 0

    async with memcore(tmp_path, nodes=4, tune=no_trash) as core:
        old = await core.upload("a", blob(50, CHUNK))
        await core.manifests.record_written()
        async with core.store.read() as s:
            (pack,) = (await s.execute(select(ManifestEntry.pack).where(
                ManifestEntry.object_id == old.obj.id))).scalars().all()
        assert pack is not None
        listed = set(await core.replicas(pack))
        stray = next(n for n in core.nodes if n.view.id not in listed)
        stray.blobs[pack] = core.node(next(iter(listed))).blobs[pack]  # landed late
        await core.upload("a", blob(51, CHUNK))  # the old entry is superseded
        await core.manifests.record_written()
        await until_dropped(core, pack)
        assert [n.view.name for n in core.nodes if pack in n.blobs] == []


async def until_dropped(core: Core, pack: str) -> None:
    for _ in range(5):
        await gc(core)
        if await core.refcount(pack) is None:
            return
    raise AssertionError(f"pack {pack[:12]} never dropped")


async def test_a_pack_write_that_may_have_landed_holds_the_drop_until_that_node_answers(
        tmp_path: Path) -> None:
    """A pack write that failed on a node (a timeout: the bytes may land later) is
    recorded ``doubtful`` there. When the pack is dropped while that node is
    away, the drop waits for it: the copy it may hold is deleted once it is back,
    so no tombstone expires while an old entry can still be on a node."""
    def no_trash(s: Any) -> None:
        s.trash_keep = 0

    async with memcore(tmp_path, nodes=3, tune=no_trash) as core:
        flaky = core.nodes[2]
        flaky.fail()  # every write to it "times out"
        old = await core.upload("a", b"")  # no chunk: the pack is its first write
        await core.manifests.record_written()
        async with core.store.read() as s:
            (pack,) = (await s.execute(select(ManifestEntry.pack).where(
                ManifestEntry.object_id == old.obj.id))).scalars().all()
        assert pack is not None
        assert (await core.replicas(pack))[flaky.view.id] == "doubtful"
        flaky.heal()
        flaky.blobs[pack] = core.node(core.nodes[0].view.id).blobs[pack]  # it landed
        flaky.kinds[pack] = "meta"
        flaky.view.state = OFFLINE  # and then the node went away
        await core.upload("a", blob(61, CHUNK))  # the old entry is superseded
        await core.manifests.record_written()
        for _ in range(3):
            await gc(core)
        assert await core.refcount(pack) == 0, "dropped while a copy may be on an away node"
        assert [n.view.name for n in core.nodes if pack in n.blobs] == [flaky.view.name]
        flaky.view.state = ONLINE
        flaky.view.unreachable_until = 0.0  # (what its first report after the absence does)
        await until_dropped(core, pack)
        assert [n.view.name for n in core.nodes if pack in n.blobs] == []
