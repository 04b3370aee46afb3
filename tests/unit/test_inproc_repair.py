"""The repairer (Repairer.run_once) on in-memory nodes and a real store: the
copies it re-makes, in which order, and what it skips."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from memnodes import Core, KiB, blob, memcore
from tossit.brain.models import ManifestEntry
from tossit.brain.registry import DEAD
from tossit.chunking import chunk_id

CHUNK = 64 * KiB


async def upload_chunks(core: Core, key: str, seeds: list[int]) -> list[str]:
    """One object of one chunk per seed; its chunk ids in that order."""
    parts = [blob(s, CHUNK) for s in seeds]
    res = await core.upload(key, b"".join(parts))
    assert res.under_replicated == 0
    return [chunk_id(p) for p in parts]


async def lose_copies(core: Core, cid: str, keep: int, state: str = "missing") -> list[str]:
    """Take the chunk down to ``keep`` good copies, as a node's inventory or a
    read would have found (the blob gone or rotten, its row marked); returns
    the nodes that lost it."""
    holders = sorted(await core.replicas(cid))
    lost = holders[keep:]
    for node_id in lost:
        if state == "corrupt":
            core.node(node_id).rot(cid)
        else:
            core.node(node_id).lose(cid)
        await core.store.set_replica_state(cid, node_id, state)
    return lost


async def assert_whole(core: Core, cid: str, r: int = 3) -> None:
    """R good copies, each on a node that really holds the right bytes."""
    reps = await core.replicas(cid)
    assert set(reps.values()) == {"ok"}, reps
    assert len(reps) == r
    assert core.holders(cid) >= set(reps)


async def test_fewest_copies_are_repaired_first(tmp_path: Path) -> None:
    async with memcore(tmp_path, nodes=5) as core:
        one, two, whole = await upload_chunks(core, "a", [21, 22, 23])
        await lose_copies(core, one, keep=1)
        await lose_copies(core, two, keep=2)
        core.transport.log.clear()
        stats = await core.repairer.run_once(rebalance=False)
        assert stats["repair_order"] == [1, 2]
        assert stats["repaired"] == 3 and stats["failed"] == 0
        assert stats["chunks_below_target"] == 2
        copies = [cid for op, _, cid in core.transport.log if op == "replicate"]
        assert copies == [one, one, two]  # every 1-copy chunk before any 2-copy one
        for cid in (one, two, whole):
            await assert_whole(core, cid)
        (event,) = await core.store.list_events(kind="repair")
        # Three copies of two chunks: the event counts chunks, the bytes copied.
        assert event.message.startswith("re-made copies of 2 chunks (192.0 KiB)")
        assert "(missing copy)" in event.message and "(under-replicated)" in event.message
        # Nothing left to do: the next pass copies nothing.
        again = await core.repairer.run_once(rebalance=False, full=True)
        assert again["copies_planned"] == 0 and again["drops_done"] == 0


async def test_a_corrupt_copy_is_replaced_and_its_row_dropped(tmp_path: Path) -> None:
    async with memcore(tmp_path, nodes=3) as core:
        (cid,) = await upload_chunks(core, "b", [24])
        (rotten,) = await lose_copies(core, cid, keep=2, state="corrupt")
        stats = await core.repairer.run_once(rebalance=False)
        # Three nodes only: the copy goes where the rotten one was, which the
        # target sets aside before fetching a verified copy.
        assert stats["repaired"] == 1
        assert core.node(rotten).read(cid) == blob(24, CHUNK)
        await assert_whole(core, cid)


async def test_a_dead_nodes_copies_are_made_elsewhere(tmp_path: Path) -> None:
    async with memcore(tmp_path, nodes=4) as core:
        cids = await upload_chunks(core, "c", [25, 26, 27, 28])
        dead = core.nodes[0]
        dead.view.state = DEAD
        dead.fail()
        held = [c for c in cids if dead.view.id in await core.replicas(c)]
        assert held  # 4 chunks at 3 of 4 nodes: it holds some
        stats = await core.repairer.run_once(rebalance=False)
        assert stats["repaired"] == len(held) and stats["failed"] == 0
        assert dead.count("replicate") == 0  # never a target
        for c in cids:
            others = {n for n, st in (await core.replicas(c)).items()
                      if st == "ok" and n != dead.view.id}
            assert len(others) == 3 and core.holders(c) >= others


async def test_what_cannot_be_copied_is_skipped_and_the_rest_done(tmp_path: Path) -> None:
    async with memcore(tmp_path, nodes=4) as core:
        gone, unreadable, fine = await upload_chunks(core, "d", [31, 32, 33])
        # No copy left anywhere: unavailable, nothing to copy from.
        await lose_copies(core, gone, keep=0)
        # One copy left, on a node that does not answer: every order fails.
        (sole,) = [n for n in await core.replicas(unreadable)
                   if n not in await lose_copies(core, unreadable, keep=1)]
        core.node(sole).fail()
        # One copy short, healthy: repaired in the same pass.
        await lose_copies(core, fine, keep=2)
        core.transport.log.clear()
        stats = await core.repairer.run_once(rebalance=False)
        assert stats["unavailable"] == 1
        assert all(cid != gone for _, _, cid in core.transport.log)
        assert stats["failed"] == 2  # the two copies of `unreadable`
        assert stats["repaired"] == 1
        await assert_whole(core, fine)
        assert [n for n, st in (await core.replicas(unreadable)).items() if st == "ok"] == [sole]
        (event,) = await core.store.list_events(kind="repair_failed")
        assert "2 copies could not be made" in event.message
        # The node answers again: the next pass finishes the job.
        core.node(sole).heal()
        stats = await core.repairer.run_once(rebalance=False)
        assert stats["repaired"] == 2 and stats["failed"] == 0
        await assert_whole(core, unreadable)


async def test_a_full_target_fails_the_copy_until_it_has_room(
    tmp_path: Path,
) -> None:
    async with memcore(tmp_path, nodes=4) as core:
        (cid,) = await upload_chunks(core, "e", [34])
        (lost,) = await lose_copies(core, cid, keep=2)
        held = await core.replicas(cid)
        (spare,) = [n for n in core.nodes if n.view.id not in held]
        for n in (core.node(lost), spare):
            n.fill_up()
        stats = await core.repairer.run_once(rebalance=False)
        assert stats["failed"] == 1 and stats["repaired"] == 0
        assert len([st for st in (await core.replicas(cid)).values() if st == "ok"]) == 2
        # A full node is no target until a heartbeat says it has room (as for uploads):
        # each is asked once, then passes stop trying them.
        stats = await core.repairer.run_once(rebalance=False)
        assert stats["failed"] <= 1 and stats["repaired"] == 0
        assert spare.view.free == 0 and core.node(lost).view.free == 0
        stats = await core.repairer.run_once(rebalance=False)
        assert stats["failed"] == 0 and stats["repaired"] == 0
        spare.capacity = None
        core.node(lost).capacity = None
        for n in (spare, core.node(lost)):
            n.view.free = 10**12  # their next heartbeat
        stats = await core.repairer.run_once(rebalance=False)
        assert stats["repaired"] == 1
        await assert_whole(core, cid)


async def test_an_extra_copy_is_dropped_but_not_while_pinned(tmp_path: Path) -> None:
    async with memcore(tmp_path, nodes=4) as core:
        (cid,) = await upload_chunks(core, "f", [35])
        held = await core.replicas(cid)
        (spare,) = [n for n in core.nodes if n.view.id not in held]
        # A fourth copy (a node that was away came back with it, and was adopted).
        spare.store(cid, blob(35, CHUNK), "data")
        await core.store.add_replicas(cid, [spare.view.id])
        await core.pins.pin(cid)  # an upload is using the chunk right now
        stats = await core.repairer.run_once(rebalance=False)
        assert stats["drops_planned"] == 1 and stats["drops_done"] == 0
        assert len(core.holders(cid)) == 4
        core.pins.unpin(cid)
        stats = await core.repairer.run_once(rebalance=False)
        assert stats["drops_done"] == 1 and stats["copies_done"] == 0
        await assert_whole(core, cid)
        assert core.holders(cid) == set(await core.replicas(cid))
        # The copy placement wants least is the one that went.
        assert set(await core.replicas(cid)) == set(core.registry.desired(cid))


async def upload_packed(core: Core, name: str, data: bytes) -> str:
    """Upload a file and write its manifest pack; returns the pack's id."""
    res = await core.upload(name, data)
    await core.manifests.record_written()
    async with core.store.read() as s:
        (pack,) = (await s.execute(select(ManifestEntry.pack).where(
            ManifestEntry.object_id == res.obj.id))).scalars().all()
    assert pack is not None
    return str(pack)


async def test_the_repair_event_counts_manifest_packs_apart_from_chunks(
        tmp_path: Path) -> None:
    async with memcore(tmp_path, nodes=4) as core:
        pack = await upload_packed(core, "a", blob(32, CHUNK))
        (cid,) = await upload_chunks(core, "b", [33])
        await lose_copies(core, pack, keep=2)
        await lose_copies(core, cid, keep=2)
        stats = await core.repairer.run_once(rebalance=False)
        assert stats["repaired"] == 2, stats
        (event,) = await core.store.list_events(kind="repair")
        assert event.message.startswith("re-made copies of 1 chunk and 1 manifest pack ("), \
            event.message


async def test_a_pack_with_no_copy_left_is_written_again_from_the_metadata(
        tmp_path: Path) -> None:
    """A manifest pack is not data: with every copy gone, its entries are still
    in the metadata. The repairer queues them again; the collector leaves the
    pack alone while they are on their way (the same entries make the same
    pack, under the same id); the writer puts it back on R nodes."""
    async with memcore(tmp_path, nodes=3) as core:
        pack = await upload_packed(core, "a", blob(31, CHUNK))
        await lose_copies(core, pack, keep=0)
        stats = await core.repairer.run_once(rebalance=False)
        assert stats["packs_rewritten"] == 1 and stats["copies_done"] == 0
        (event,) = await core.store.list_events(kind="manifests_rewritten")
        assert "1 manifest pack had no readable copy left" in event.message
        gc = await core.collector.run_once(sweep_orphans=False)
        assert gc["chunks_dropped"] == 0 and gc.get("held_for_manifests", 0) >= 1, gc
        again = await core.repairer.run_once(rebalance=False)  # on its way: not twice
        assert again["packs_rewritten"] == 0
        assert await core.manifests.flush() == 1
        reps = await core.replicas(pack)
        assert reps == dict.fromkeys(reps, "ok") and len(reps) == 3
        assert all(pack in core.node(n).blobs for n in reps)
        assert await core.refcount(pack) == 1
        gc = await core.collector.run_once(sweep_orphans=False)
        assert gc["chunks_dropped"] == 0 and await core.refcount(pack) == 1
        async with core.store.read() as s:
            assert (await s.execute(select(ManifestEntry.needed).where(
                ManifestEntry.pack == pack))).scalars().all() == [True]
        assert len(await core.store.list_events(kind="manifests_rewritten")) == 1


async def test_a_stuck_repair_is_in_the_status_with_what_to_do(tmp_path: Path) -> None:
    """R = 3 on 3 nodes, one dead: the 3rd copies have nowhere to go. The status
    (``replication.repair_stuck``) says so, as the event does, with what to do;
    a follower reads what the leader published; once a node can take the copies,
    it is gone. (The dashboard said "254 chunks wait for a repair pass".)"""
    from types import SimpleNamespace

    from tossit.brain.api.cluster import repair_stuck
    from tossit.brain.api.wire.cluster import RepairStuck

    async with memcore(tmp_path, nodes=3) as core:
        cids = await upload_chunks(core, "s", [31, 32, 33])
        core.repairer.publish = True  # several brains: the followers read it
        dead = core.nodes[2]
        dead.view.state = DEAD
        dead.fail()
        stats = await core.repairer.run_once(rebalance=False)
        assert stats["copies_planned"] == 0 and stats["chunks_below_target"] >= len(cids)
        leader = SimpleNamespace(leader=True, repairer=core.repairer, store=core.store)
        follower = SimpleNamespace(leader=False, repairer=None, store=core.store)
        stuck = await repair_stuck(leader, 3)  # type: ignore[arg-type]
        assert stuck is not None
        RepairStuck.model_validate(stuck)
        (event,) = await core.store.list_events(kind="repair_stuck")
        assert stuck["message"] == event.message
        name = dead.view.name
        assert stuck["message"].endswith(f"but only 2 nodes can take them ({name} is dead)")
        assert stuck["chunks"] == stats["chunks_below_target"]
        assert stuck["nodes_can_take"] == 2 and stuck["replicas"] == 3
        assert stuck["why"] == [f"{name} is dead"]
        assert stuck["advice"] == f"add a node, or bring back {name}"
        assert await repair_stuck(follower, 3) == stuck  # type: ignore[arg-type]
        # Nothing below R (the status's own count): nothing stuck, whatever the pass saw.
        assert await repair_stuck(leader, 0) is None  # type: ignore[arg-type]

        # The node comes back: the next pass makes the copies and the status clears.
        dead.view.state = "online"
        dead.heal()
        await core.repairer.run_once(rebalance=False)
        assert core.repairer.stuck is None
        assert await repair_stuck(leader, 3) is None  # type: ignore[arg-type]
        assert await repair_stuck(follower, 3) is None  # type: ignore[arg-type]


async def test_removing_a_silent_node_says_it_waits_for_its_death_not_a_drain(
        tmp_path: Path) -> None:
    """Draining needs the node to answer: telling the operator to drain an
    offline node (whose drain is refused too) sends them in a circle."""
    from tossit.brain.api.nodes import _removal_refusal
    from tossit.brain.registry import OFFLINE, ONLINE

    async with memcore(tmp_path, nodes=3) as core:
        await upload_chunks(core, "a", [41])
        view = core.registry.nodes[core.nodes[0].view.id]
        brain: Any = core  # what _removal_refusal reads: store, registry, settings
        view.state = ONLINE
        online = await _removal_refusal(brain, view)
        assert online is not None and "drain it first" in online.message
        view.state = OFFLINE
        offline = await _removal_refusal(brain, view)
        assert offline is not None and offline.code == "not_drained"
        assert "once it is declared dead" in offline.message, offline.message
        assert "drain it first" not in offline.message
