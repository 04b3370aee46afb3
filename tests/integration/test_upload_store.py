"""Multipart uploads in the metadata store (brain/store/uploads.py), on SQLite
and PostgreSQL: parts hold chunk references, replacing/aborting/completing
release them in the same transaction, listings sort keys by code point."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator

import pytest

from stores import N1, one_node_store
from tossit.brain.multipart_rules import PartInfo, new_upload_id
from tossit.brain.store import NewObject, Store
from tossit.errors import InvalidPart, NoSuchUpload
from tossit.manifests import PutEntry, decode_pack, pack_key

KEY = pack_key("upload store secret")


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    async with one_node_store(db_url, KEY) as s:
        yield s


def cid(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


async def add_part(store: Store, uid: str, number: int, *chunks: str) -> list[str]:
    part = PartInfo(number, 10 * len(chunks), hashlib.md5(",".join(chunks).encode()).hexdigest())
    return await store.record_part(uid, part, [(cid(c), 10) for c in chunks],
                                   {cid(c): [N1] for c in chunks})


async def refs(store: Store, *names: str) -> dict[str, int]:
    known = await store.known_chunks([cid(n) for n in names])
    return {n: known.get(cid(n), -1) for n in names}


async def test_parts_hold_references_and_a_replaced_part_releases_its_own(
        store: Store) -> None:
    up = await store.create_upload(new_upload_id(), "b", "k", "text/plain", {"a": "1"})
    assert await add_part(store, up.id, 1, "x", "y", "x") == []
    assert await add_part(store, up.id, 2, "y") == []
    assert await refs(store, "x", "y") == {"x": 2, "y": 2}
    # Part 1 again with other bytes: x is garbage, y is still part 2's.
    assert await add_part(store, up.id, 1, "z") == [cid("x")]
    assert await refs(store, "x", "y", "z") == {"x": 0, "y": 1, "z": 1}
    parts = await store.upload_parts(up.id)
    assert [(p.number, p.size) for p in parts] == [(1, 10), (2, 10)]
    assert await store.part_chunks(up.id, [1, 2]) == {1: [(cid("z"), 10)], 2: [(cid("y"), 10)]}
    with pytest.raises(NoSuchUpload):
        await add_part(store, "no-such-upload", 1, "q")
    assert await refs(store, "q") == {"q": -1}  # nothing recorded


async def test_dropping_uploads_releases_every_part(store: Store) -> None:
    a = await store.create_upload(new_upload_id(), "b", "a", "x", None)
    b = await store.create_upload(new_upload_id(), "b", "b", "x", None)
    await add_part(store, a.id, 1, "p", "shared")
    await add_part(store, b.id, 1, "shared")
    found, garbage = await store.drop_uploads([a.id, "gone"])
    assert found == [a.id] and garbage == [cid("p")]
    assert await refs(store, "p", "shared") == {"p": 0, "shared": 1}
    assert await store.get_upload(a.id) is None and await store.upload_parts(a.id) == []
    assert await store.uploads_started_before(time.time() + 1) == [b.id]
    assert await store.uploads_started_before(time.time() - 60) == []


async def test_completion_moves_the_references_to_the_object_in_one_commit(
        store: Store) -> None:
    up = await store.create_upload(new_upload_id(), "b", "k", "text/plain", {"m": "v"})
    await add_part(store, up.id, 1, "c1", "c2")
    await add_part(store, up.id, 2, "c3")
    await add_part(store, up.id, 3, "left-out")
    chunks = [(cid("c1"), 10), (cid("c2"), 10), (cid("c3"), 10)]
    done = await store.apply([NewObject(
        bucket="b", key="k", size=30, sha256=cid("whole"), content_type="text/plain",
        chunk_size=10, chunks=chunks, replicas={}, user_meta={"m": "v"}, etag="abc-2",
        completes_upload=up.id)], ())
    (obj,) = done.objects
    assert obj.etag == "abc-2" and done.garbage == [cid("left-out")]
    assert await refs(store, "c1", "c2", "c3", "left-out") == {
        "c1": 1, "c2": 1, "c3": 1, "left-out": 0}
    assert await store.get_upload(up.id) is None
    found = await store.object_with_chunks(obj.id)
    assert found is not None
    assert [(p.chunk_id, p.ok_nodes()) for p in found[1]] == [(c, [N1]) for c, _ in chunks]
    # Its manifest carries the ETag, for a rebuild from the nodes.
    assert done.pack is not None
    (entry,) = [e for e in decode_pack(done.pack.data, KEY) if isinstance(e, PutEntry)]
    assert entry.etag == "abc-2" and list(entry.chunks) == [c for c, _ in chunks]
    # Completing it again, or with chunks it no longer holds, is refused.
    with pytest.raises(NoSuchUpload):
        await store.apply([NewObject(
            bucket="b", key="k", size=30, sha256=cid("whole"), content_type="x", chunk_size=10,
            chunks=chunks, replicas={}, completes_upload=up.id)], ())
    other = await store.create_upload(new_upload_id(), "b", "k2", "x", None)
    await add_part(store, other.id, 1, "d1")
    with pytest.raises(InvalidPart):
        await store.apply([NewObject(
            bucket="b", key="k2", size=10, sha256=cid("d"), content_type="x", chunk_size=10,
            chunks=[(cid("d0"), 10)], replicas={}, completes_upload=other.id)], ())
    with pytest.raises(NoSuchUpload):  # another key than the upload's
        await store.apply([NewObject(
            bucket="b", key="k3", size=10, sha256=cid("d"), content_type="x", chunk_size=10,
            chunks=[(cid("d1"), 10)], replicas={}, completes_upload=other.id)], ())
    assert await refs(store, "d1") == {"d1": 1}
    assert not await store.name_taken("b", "k2") and not await store.name_taken("b", "k3")


async def test_uploads_list_by_code_point_then_creation(store: Store) -> None:
    made = []
    for n, key in enumerate(("a0", "a/b", "B", "a/b", "é", "a")):  # ids in creation order
        made.append(await store.create_upload(new_upload_id(1000.0 + n), "b", key, "x", None))
    rows = await store.list_uploads("b", "", "", "", 10)
    # Byte order ("B" < "a" < "a/b" < "a0" < "é"), whatever the database's collation.
    assert [(u.key, u.id) for u in rows] == [
        ("B", made[2].id), ("a", made[5].id), ("a/b", made[1].id), ("a/b", made[3].id),
        ("a0", made[0].id), ("é", made[4].id)]
    assert [u.key for u in await store.list_uploads("b", "a/", "", "", 10)] == ["a/b", "a/b"]
    assert [u.id for u in await store.list_uploads("b", "", "a/b", made[1].id, 10)] == [
        made[3].id, made[0].id, made[4].id]
    assert [u.key for u in await store.list_uploads("b", "", "a/b", "", 2)] == ["a0", "é"]
    assert [u.key for u in await store.list_uploads("b", "a%", "", "", 10)] == []  # literal
