"""Group commit (CommitBatcher, with the manifest writer) on a real store and
in-memory nodes: one transaction and one manifest pack per burst, and one bad
request does not fail the others."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from memnodes import Core, memcore, until
from tossit.brain.commits import LINGER
from tossit.brain.manifest_rows import PackRecord
from tossit.brain.manifest_writer import PUBLISHING, Waiting
from tossit.brain.models import Object
from tossit.brain.store import Applied, NameTaken, NewObject, ReplaceOnly
from tossit.chunking import META, chunk_id
from tossit.errors import ManifestNotStored, ObjectChanged, http_status

T = TypeVar("T")


def item(core: Core, key: str, content: str,
         on_conflict: str | ReplaceOnly = "replace") -> NewObject:
    """A ready upload of one small chunk said to be on every node (the commit
    path does not read the nodes)."""
    data = content.encode()
    cid = chunk_id(data)
    return NewObject(bucket="default", key=key, size=len(data), sha256=cid,
                     content_type="text/plain", chunk_size=len(data),
                     chunks=[(cid, len(data))],
                     replicas={cid: [n.view.id for n in core.nodes]},
                     on_conflict=on_conflict)


async def settled(aw: Awaitable[T]) -> T:
    """A burst's answers, or a clear failure: a request the batcher never
    answers would otherwise hang the test."""
    return await asyncio.wait_for(aw, 10)


def count_transactions(core: Core) -> list[list[str]]:
    """Record the keys of every Store.apply call (one call: one transaction)."""
    calls: list[list[str]] = []
    apply = core.store.apply

    async def counted(items: Sequence[NewObject], deletes: Sequence[int],
                      written: Sequence[PackRecord] = (), defer_pack: bool = False) -> Applied:
        calls.append([i.key for i in items] + [f"-{d}" for d in deletes])
        return await apply(items, deletes, written, defer_pack)

    core.store.apply = counted  # type: ignore[method-assign]
    return calls


async def names(core: Core) -> dict[str, Object]:
    """The files in the default bucket now, by name."""
    objs, _ = await core.store.list_objects(bucket="default")
    return {o.key: o for o in objs}


def pack_puts(core: Core) -> int:
    return sum(1 for n in core.nodes for op, c in n.calls
               if op == "put" and n.kinds.get(c) == META)


async def test_a_burst_of_commits_shares_one_transaction_and_pack(tmp_path: Path) -> None:
    async with memcore(tmp_path, nodes=3) as core:
        calls = count_transactions(core)
        keys = [f"f{i}" for i in range(10)]
        objs = await settled(asyncio.gather(*(core.commits.commit(item(core, k, k)) for k in keys)))
        assert calls == [keys]
        assert [o.key for o in objs] == keys and len({o.id for o in objs}) == 10
        assert pack_puts(core) == 3  # one pack, on R nodes, for the ten of them
        assert sorted(await names(core)) == keys


async def test_the_same_name_twice_in_a_burst_commits_in_order(tmp_path: Path) -> None:
    async with memcore(tmp_path, nodes=3) as core:
        calls = count_transactions(core)
        first, _, second = await settled(asyncio.gather(
            core.commits.commit(item(core, "x", "one")),
            core.commits.commit(item(core, "y", "y")),
            core.commits.commit(item(core, "x", "two"))))
        assert calls == [["x", "y"], ["x"]]
        listed = await names(core)
        assert listed["x"].id == second.id != first.id
        assert listed["x"].sha256 == chunk_id(b"two")
        # The first "x" was replaced: its chunk is garbage now.
        assert await core.refcount(chunk_id(b"one")) == 0


async def test_one_bad_request_does_not_fail_its_batch(tmp_path: Path) -> None:
    async with memcore(tmp_path, nodes=3) as core:
        await core.commits.commit(item(core, "taken", "old"))
        calls = count_transactions(core)
        results: tuple[Any, ...] = await settled(asyncio.gather(
            core.commits.commit(item(core, "a", "a")),
            core.commits.commit(item(core, "taken", "new", on_conflict="fail")),
            core.commits.commit(item(core, "b", "b")),
            return_exceptions=True))
        assert isinstance(results[1], NameTaken)
        assert [r.key for r in (results[0], results[2])] == ["a", "b"]
        # The batch failed as a whole and was rolled back, then retried one by one.
        assert calls == [["a", "taken", "b"], ["a"], ["taken"], ["b"]]
        listed = await names(core)
        assert sorted(listed) == ["a", "b", "taken"]
        assert listed["taken"].sha256 == chunk_id(b"old")
        assert await core.refcount(chunk_id(b"new")) is None


async def test_a_write_replacing_one_object_is_refused_once_it_is_gone(tmp_path: Path) -> None:
    """S3's If-Match: two writers that saw the same object, in one burst, and the
    first writing the very same bytes (the same ETag): the first replaces it, the
    second is refused by the commit's transaction and changes nothing."""
    async with memcore(tmp_path, nodes=3) as core:
        seen = await core.commits.commit(item(core, "doc", "v1"))
        first, second = await settled(asyncio.gather(
            core.commits.commit(item(core, "doc", "v1", on_conflict=ReplaceOnly(seen.id))),
            core.commits.commit(item(core, "doc", "v2", on_conflict=ReplaceOnly(seen.id))),
            return_exceptions=True))
        assert isinstance(first, Object) and first.id != seen.id
        assert isinstance(second, ObjectChanged) and second.found
        assert http_status(second) == 412
        listed = await names(core)
        assert listed["doc"].id == first.id and listed["doc"].sha256 == chunk_id(b"v1")
        assert await core.refcount(chunk_id(b"v2")) is None
        # None: whichever object is there (If-Match: *), but one must be.
        anyone = await settled(core.commits.commit(
            item(core, "doc", "v3", on_conflict=ReplaceOnly(None))))
        with pytest.raises(ObjectChanged) as exc:
            await settled(core.commits.commit(
                item(core, "new", "v1", on_conflict=ReplaceOnly(None))))
        assert exc.value.found is False
        # Deleted since it was seen: nothing to replace.
        assert await settled(core.commits.delete(anyone.id)) is True
        with pytest.raises(ObjectChanged) as exc:
            await settled(core.commits.commit(
                item(core, "doc", "v4", on_conflict=ReplaceOnly(anyone.id))))
        assert exc.value.found is False
        assert await names(core) == {}


async def test_a_delete_and_uploads_share_a_transaction(tmp_path: Path) -> None:
    async with memcore(tmp_path, nodes=3) as core:
        old = await core.commits.commit(item(core, "old", "old"))
        calls = count_transactions(core)
        released: list[str] = []
        release = core.commits.on_garbage

        def on_garbage(ids: list[str]) -> None:
            released.extend(ids)
            release(ids)

        core.commits.on_garbage = on_garbage
        found, new = await settled(asyncio.gather(core.commits.delete(old.id),
                                          core.commits.commit(item(core, "new", "new"))))
        assert found is True and new.key == "new"
        assert calls == [["new", f"-{old.id}"]]
        assert chunk_id(b"old") in released  # handed to the collector
        assert await core.commits.delete(old.id) is False  # gone already


async def test_no_node_for_the_pack_is_not_acknowledged(tmp_path: Path) -> None:
    """The metadata commits, but the client is told the change is not safe yet
    (its manifest is on no node), and the writer is woken to retry."""
    async with memcore(tmp_path, nodes=3, quorum=2) as core:
        for n in core.nodes[1:]:
            n.fail()
        with pytest.raises(ManifestNotStored) as err:
            await core.commits.commit(item(core, "k", "k"))
        assert http_status(err.value) == 503
        assert await core.store.name_taken("default", "k")
        assert core.manifests._wake.is_set()
        # Its entry is logged in no pack: the writer's flush packs it into the
        # outbox and writes it once enough nodes take it.
        top = await core.store.log.max_version()
        assert await core.store.log.unpacked(top) == {top}
        assert core.manifests.busy_versions() == set()
        with pytest.raises(Waiting):  # (for the nodes to be back)
            await core.manifests.flush()
        assert await core.store.log.unpacked(top) == set()
        assert len(await core.store.log.outbox_ids()) == 1


async def test_a_commit_waits_for_uploads_on_their_way(tmp_path: Path) -> None:
    """An upload announced as coming (its chunks are being stored) joins the
    commit that would otherwise have left just before it: one transaction."""
    async with memcore(tmp_path, nodes=3) as core:
        calls = count_transactions(core)
        coming = core.commits.coming()
        first = asyncio.ensure_future(core.commits.commit(item(core, "a", "a")))
        await asyncio.sleep(LINGER / 5)  # the batcher is waiting for "b"
        assert not first.done()
        second = core.commits.commit(item(core, "b", "b"), coming)
        objs = await settled(asyncio.gather(first, second))
        assert [o.key for o in objs] == ["a", "b"]
        assert calls == [["a", "b"]]


async def test_a_commit_waits_for_a_late_upload_no_longer_than_linger(tmp_path: Path) -> None:
    async with memcore(tmp_path, nodes=3) as core:
        calls = count_transactions(core)
        late = core.commits.coming()  # never arrives
        obj = await settled(core.commits.commit(item(core, "a", "a")))
        assert obj.key == "a" and calls == [["a"]]
        late.close()
        late.close()  # (closing twice counts once)
        assert core.commits._coming == 0


async def test_commits_ending_while_packs_fly_share_the_next_pack(tmp_path: Path) -> None:
    """Packs are made after the commits: the entries of the commits that end
    while PUBLISHING packs are on their way go out together, in one pack."""
    async with memcore(tmp_path, nodes=3) as core:
        for n in core.nodes:
            n.pause()
        flying: list[asyncio.Future[Object]] = []
        for i in range(PUBLISHING):  # one commit, one pack, each
            flying.append(asyncio.ensure_future(core.commits.commit(item(core, f"f{i}", "f"))))
            await until(lambda: len(core.manifests._publishing) == len(flying))
        waiting = [asyncio.ensure_future(core.commits.commit(item(core, f"w{i}", f"w{i}")))
                   for i in range(5)]
        await until(lambda: len(core.manifests._queue) > 0 and not core.commits._queue)
        await asyncio.sleep(2 * LINGER)  # every one of them committed, none on a node
        assert not any(f.done() for f in flying + waiting)
        top = await core.store.log.max_version()
        assert core.manifests.busy_versions() == set(range(1, top + 1))
        # The flush (woken by anything) leaves the entries on their way alone.
        assert await core.manifests.flush() == 0
        assert await core.store.log.outbox_ids() == set()
        for n in core.nodes:
            n.resume()
        objs = await settled(asyncio.gather(*flying, *waiting))
        assert len(objs) == PUBLISHING + 5
        assert pack_puts(core) == 3 * (PUBLISHING + 1)  # 3 packs, each on R=3 nodes
        # Once recorded, the log points every entry at a pack on the nodes.
        records, core.manifests._written = core.manifests._written, []
        await core.manifests._record(records)  # (what run_recorder does)
        assert await core.store.log.unpacked(top) == set()
        assert core.manifests.busy_versions() == set()


async def test_the_flush_leaves_alone_the_packs_a_write_has_in_hand(tmp_path: Path) -> None:
    """A pack of the outbox that another write (a key change's) is putting on
    the nodes, or has put there and not recorded yet, is not written twice."""
    async with memcore(tmp_path, nodes=3, quorum=2) as core:
        for n in core.nodes[1:]:
            n.fail()
        with pytest.raises(ManifestNotStored):
            await core.commits.commit(item(core, "k", "k"))
        with pytest.raises(Waiting):
            await core.manifests.flush()  # packs the entry into the outbox
        (pack,) = await core.store.log.outbox()
        for n in core.nodes:
            n.heal()
            n.view.unreachable_until = 0.0

        # On its way: the nodes hold the write at their gate.
        def puts() -> int:
            return sum(n.count("put", pack.id) for n in core.nodes)

        before = puts()
        for n in core.nodes:
            n.pause()
        writing = asyncio.create_task(core.manifests.write(pack))
        await until(lambda: any(n.waiting for n in core.nodes))
        assert await settled(core.manifests.flush()) == 0
        for n in core.nodes:
            n.resume()
        await settled(writing)
        assert puts() == before + 3

        # Written, not recorded yet.
        assert await settled(core.manifests.flush()) == 0
        await core.manifests.record_written()
        assert await core.store.log.outbox_ids() == set()
        assert await settled(core.manifests.flush()) == 0
        assert puts() == before + 3
