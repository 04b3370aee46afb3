"""The read path (Reader) on in-memory nodes: fallback to other copies, and how
a missing or corrupt copy is reported."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from memnodes import Core, KiB, MemNode, blob, memcore
from tossit.brain.metrics import READ_HEDGES
from tossit.brain.registry import NodeView
from tossit.config import BrainSettings
from tossit.errors import ChunkUnavailable, http_status

CHUNK = 64 * KiB


async def first_reader(core: Core, cid: str) -> NodeView:
    """The node the reader asks first for this chunk."""
    return core.registry.read_order(list(await core.replicas(cid)))[0]


async def events(core: Core, kind: str) -> list[str]:
    return [e.message for e in await core.store.list_events(kind=kind)]


async def test_a_failing_node_falls_back_to_another_copy(tmp_path: Path) -> None:
    async with memcore(tmp_path, nodes=3) as core:
        data = blob(11, 2 * CHUNK)
        res = await core.upload("a", data)
        cid = next(iter(res.replicas))
        first = await first_reader(core, cid)
        core.node(first.id).fail()
        assert await core.download(res.obj.id) == data
        assert core.node(first.id).count("get") >= 1
        # Unreachable is not bad data: nothing is marked, nobody is woken.
        assert set((await core.replicas(cid)).values()) == {"ok"}
        assert core.degraded == []


@pytest.mark.parametrize("fault", ["corrupt", "missing"])
async def test_a_bad_copy_is_skipped_and_reported(tmp_path: Path, fault: str) -> None:
    async with memcore(tmp_path, nodes=3) as core:
        data = blob(12, CHUNK + 100)
        res = await core.upload("b", data)
        cid = next(iter(res.replicas))
        first = await first_reader(core, cid)
        bad = core.node(first.id)
        if fault == "corrupt":
            bad.rot(cid)
        else:
            bad.lose(cid)
        assert await core.download(res.obj.id) == data  # never the bad bytes
        reps = await core.replicas(cid)
        assert reps[first.id] == fault
        assert sorted(reps.values()) == sorted([fault, "ok", "ok"])
        (msg,) = await events(core, f"replica_{fault}")
        assert cid[:12] in msg and first.name in msg
        assert core.degraded == ["reader"]  # the repairer is woken
        # The next read does not ask the bad copy again.
        assert bad.count("get", cid) == 1
        assert await core.download(res.obj.id) == data
        assert bad.count("get", cid) == 1


async def test_no_good_copy_is_a_clear_error_before_the_body(tmp_path: Path) -> None:
    async with memcore(tmp_path, nodes=3) as core:
        data = blob(13, CHUNK)
        res = await core.upload("c", data)
        cid = next(iter(res.replicas))
        for n in core.nodes:
            n.rot(cid)
        found = await core.store.object_with_chunks(res.obj.id)
        assert found is not None
        with pytest.raises(ChunkUnavailable) as err:
            await core.reader.open(found[1], None)
        assert http_status(err.value) == 503
        assert err.value.message.count("returned corrupt data") == 3
        assert set((await core.replicas(cid)).values()) == {"corrupt"}


async def test_every_holder_offline_fails_without_asking_them(tmp_path: Path) -> None:
    async with memcore(tmp_path, nodes=3) as core:
        res = await core.upload("d", blob(14, CHUNK))
        for n in core.nodes:
            n.view.state = "offline"
            n.calls.clear()
        found = await core.store.object_with_chunks(res.obj.id)
        assert found is not None
        with pytest.raises(ChunkUnavailable, match="every node holding it is offline"):
            await core.reader.open(found[1], None)
        assert all(n.calls == [] for n in core.nodes)


def hedges() -> float:
    """The read-hedge counter (process-wide: compare before and after)."""
    return READ_HEDGES._value.get()


def hedge_soon(s: BrainSettings) -> None:
    s.straggler_wait = 0.05


async def test_a_paused_copy_is_not_waited_for(tmp_path: Path) -> None:
    """A node that stops answering (a paused process, a hung disk) still holds
    the copy the reader asks first: past the straggler wait that request is
    cancelled and the next copy asked, and the next reads go elsewhere first."""
    async with memcore(tmp_path, nodes=3, tune=hedge_soon) as core:
        data = blob(21, 2 * CHUNK + 5)
        res = await core.upload("paused", data)
        cid = next(iter(res.replicas))
        first = await first_reader(core, cid)
        paused = core.node(first.id)
        paused.pause()
        before = hedges()
        assert await core.download(res.obj.id) == data
        assert paused.count("get") >= 1
        assert paused.waiting == 0  # its request was cancelled, not left hanging
        assert hedges() > before
        # Not bad data: nothing marked, nobody woken; only read last for a while.
        assert set((await core.replicas(cid)).values()) == {"ok"}
        assert core.degraded == []
        asked = paused.count("get")
        assert await core.download(res.obj.id) == data
        assert paused.count("get") == asked
        assert (await first_reader(core, cid)).id != first.id


async def test_the_last_copy_is_not_waited_for_once_its_node_is_offline(
        tmp_path: Path) -> None:
    """The only readable copy is on a paused node: the read waits while the node
    may still answer, and gives up (503 chunk_unavailable) as soon as the monitor
    calls it offline, not after the node timeout."""
    async with memcore(tmp_path, nodes=3, tune=hedge_soon) as core:
        data = blob(23, CHUNK)
        res = await core.upload("last", data)
        cid = next(iter(res.replicas))
        holders = [n for n in core.nodes if n.view.id in res.replicas[cid]]
        *away, last = holders
        for n in away:  # killed: they refuse at once
            n.view.state = "offline"
            n.fail()
        last.pause()
        found = await core.store.object_with_chunks(res.obj.id)
        assert found is not None
        t0 = asyncio.get_running_loop().time()
        reading = asyncio.ensure_future(core.reader.open(found[1], None))
        await asyncio.sleep(0.3)
        assert not reading.done()  # suspect or online: it may still answer
        last.view.state = "offline"
        with pytest.raises(ChunkUnavailable, match="is offline and did not answer"):
            await asyncio.wait_for(reading, 5)
        assert asyncio.get_running_loop().time() - t0 < 5
        assert last.waiting == 0  # its request was cancelled, not left hanging


async def test_the_hedge_goes_on_to_the_last_copy(tmp_path: Path) -> None:
    """Two copies paused: the third answers, and the second's request (still
    out when it did) is cancelled; one copy paused and the next one missing: the
    third answers too, and the missing one is reported."""
    async with memcore(tmp_path, nodes=3, tune=hedge_soon) as core:
        data = blob(22, CHUNK)
        res = await core.upload("two-paused", data)
        (cid,) = res.replicas
        order = core.registry.read_order(list(await core.replicas(cid)))
        core.node(order[0].id).pause()
        core.node(order[1].id).pause()
        assert await core.download(res.obj.id) == data
        assert core.node(order[2].id).count("get", cid) == 1
        await asyncio.sleep(0)  # (the cancelled request's task ends on the next turn)
        assert [core.node(n.id).waiting for n in order[:2]] == [0, 0]
        assert order[0].slow_until > 0 and order[1].slow_until > 0
        for n in order[:2]:
            core.node(n.id).resume()

        data = blob(23, CHUNK)
        res = await core.upload("paused-then-missing", data)
        (cid,) = res.replicas
        order = core.registry.read_order(list(await core.replicas(cid)))
        core.node(order[0].id).pause()
        core.node(order[1].id).lose(cid)
        assert await core.download(res.obj.id) == data
        assert (await core.replicas(cid))[order[1].id] == "missing"
        assert core.degraded == ["reader"]


async def test_a_late_copy_is_asked_again_when_the_others_fail(tmp_path: Path) -> None:
    """The first copy is late, the two others fail: the late one is asked again
    (last), without a deadline, and its answer is used."""
    async with memcore(tmp_path, nodes=3, tune=hedge_soon) as core:
        data = blob(24, CHUNK)
        res = await core.upload("late-then-failing", data)
        (cid,) = res.replicas
        order = core.registry.read_order(list(await core.replicas(cid)))
        late = core.node(order[0].id)
        late.pause()
        for n in order[1:]:
            core.node(n.id).fail()
        reading = asyncio.create_task(core.download(res.obj.id))
        await until_asked(late, cid, 2)
        late.resume()
        assert await reading == data
        assert late.count("get", cid) == 2


async def until_asked(node: MemNode, cid: str, times: int) -> None:
    for _ in range(500):
        if node.count("get", cid) >= times:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{node.name} was asked {node.count('get', cid)} times")


async def test_reads_at_once_spread_over_the_copies(tmp_path: Path) -> None:
    """Many chunks read at once go to all three copies' nodes alike (each node
    equally fast), not all to the one that answered fastest lately."""
    async with memcore(tmp_path, nodes=3) as core:
        data = blob(25, 30 * CHUNK)
        res = await core.upload("spread", data)
        found = await core.store.object_with_chunks(res.obj.id)
        assert found is not None
        placements = found[1]
        nodes = [core.node(n.id) for n in core.registry.nodes.values()]
        for n in nodes:
            n.pause()
        reads = [asyncio.create_task(core.reader.fetch_verified(p)) for p in placements]
        for _ in range(500):
            if sum(n.waiting for n in nodes) == len(placements):
                break
            await asyncio.sleep(0.001)
        assert sorted(n.waiting for n in nodes) == [10, 10, 10]
        for n in nodes:
            n.resume()
        assert b"".join(await asyncio.gather(*reads)) == data
        assert all(v.reads_out == 0 for v in core.registry.nodes.values())
