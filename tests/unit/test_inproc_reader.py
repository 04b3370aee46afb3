"""The read path (Reader) on in-memory nodes: fallback to other copies, and how
a missing or corrupt copy is reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from memnodes import Core, KiB, blob, memcore
from tossit.brain.registry import NodeView
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
