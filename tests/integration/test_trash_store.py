"""The trash in the metadata store, on SQLite and PostgreSQL: the rows move, the
references stay, the log says what happened (brain/store/, manifest_rows.py)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import pytest

from stores import N1, one_node_store
from tossit.brain.manifest_rows import DEL, PURGE, PUT, TRASH
from tossit.brain.models import ManifestEntry
from tossit.brain.store import NameTaken, NewObject, Store, TrashNotFound
from tossit.manifests import (
    SYSTEM_BUCKET,
    PurgeEntry,
    PutEntry,
    TrashEntry,
    decode_pack,
    pack_key,
)

KEY = pack_key("trash store secret")


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    async with one_node_store(db_url, KEY) as s:
        s.trash_keep = 3600.0
        yield s


def cid(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def obj(key: str, chunks: list[str], bucket: str = "default") -> NewObject:
    return NewObject(bucket=bucket, key=key, size=10 * len(chunks),
                     sha256=cid("o:" + ",".join(chunks)),
                     content_type="x", chunk_size=10, chunks=[(cid(c), 10) for c in chunks],
                     replicas={cid(c): [N1] for c in chunks})


async def refs(store: Store, *names: str) -> dict[str, int]:
    known = await store.known_chunks([cid(n) for n in names])
    return {n: known.get(cid(n), -1) for n in names}


async def log(store: Store) -> list[tuple[str, int | None, bool]]:
    async with store.read() as s:
        rows = (await s.execute(ManifestEntry.__table__.select().order_by(
            ManifestEntry.version))).all()
    return [(r.op, r.object_id, r.needed) for r in rows]


async def test_delete_trash_restore_purge(store: Store) -> None:
    (a,), _ = await store.commit_objects([obj("a", ["x", "y"])])
    done = await store.apply((), [a.id])
    assert done.deleted == {a.id} and done.garbage == [] and [t.id for t in done.trashed] == [a.id]
    assert await refs(store, "x", "y") == {"x": 1, "y": 1}  # still referenced
    assert await store.get_object(a.id) is None and not await store.name_taken("default", "a")
    assert done.pack is not None
    entries = decode_pack(done.pack.data, KEY)
    trashed = [e for e in entries if isinstance(e, TrashEntry)]
    assert len(trashed) == 1 and trashed[0].chunks == (cid("x"), cid("y"))
    assert await log(store) == [(PUT, a.id, False), (DEL, a.id, True), (TRASH, a.id, True)]
    rows, total = await store.list_trash()
    assert total == 1 and rows[0].why == "deleted" and rows[0].purge_at > rows[0].deleted_at
    assert await store.trash_totals() == (1, 20)

    # The name is taken by a new file: restore fails, or renames.
    (b,), _ = await store.commit_objects([obj("a", ["z"])])
    with pytest.raises(NameTaken):
        await store.restore(a.id)
    back = await store.restore(a.id, on_conflict="rename")
    assert back.obj.id == a.id and back.obj.key == "a (2)"
    assert [c.chunk_id for c in await store.object_chunks(a.id)] == [cid("x"), cid("y")]
    assert back.done.pack is not None
    kinds = [type(e) for e in decode_pack(back.done.pack.data, KEY)]
    assert kinds == [PurgeEntry, PutEntry]
    with pytest.raises(TrashNotFound):
        await store.restore(a.id)

    # Overwrite: the old one goes to the trash; purge frees what only it used.
    (_c,), garbage = await store.commit_objects([obj("a", ["x"])])
    assert garbage == [] and (await store.list_trash())[0][0].id == b.id
    assert (await store.list_trash())[0][0].why == "overwritten"
    found, purged = await store.purge_trash([b.id])
    assert [f.id for f in found] == [b.id] and purged.garbage == [cid("z")]
    assert await refs(store, "x", "y", "z") == {"x": 2, "y": 1, "z": 0}
    assert (await log(store))[-1] == (PURGE, b.id, True)
    assert await store.trash_totals() == (0, 0)


async def test_trash_off_and_the_system_bucket_free_at_once(store: Store) -> None:
    (s1,), _ = await store.commit_objects([obj("snap", ["s"], bucket=SYSTEM_BUCKET)])
    done = await store.apply((), [s1.id])
    assert done.trashed == [] and done.garbage == [cid("s")]
    store.trash_keep = 0
    (a,), _ = await store.commit_objects([obj("a", ["q"])])
    done = await store.apply((), [a.id])
    assert done.trashed == [] and done.garbage == [cid("q")]
    assert await store.list_trash() == ([], 0)


async def test_restore_replacing_sends_the_other_file_to_the_trash(store: Store) -> None:
    (a,), _ = await store.commit_objects([obj("f", ["1"])])
    await store.apply((), [a.id])
    (b,), _ = await store.commit_objects([obj("f", ["2"])])
    back = await store.restore(a.id, on_conflict="replace")
    assert back.replaced == b.id and [t.id for t in back.done.trashed] == [b.id]
    rows, _ = await store.list_trash()
    assert [(r.id, r.why) for r in rows] == [(b.id, "overwritten")]
    assert await refs(store, "1", "2") == {"1": 1, "2": 1}


async def test_the_same_bytes_again_leave_nothing_in_the_trash(store: Store) -> None:
    (a,), _ = await store.commit_objects([obj("same", ["s1"])])
    (b,), garbage = await store.commit_objects([obj("same", ["s1"])])  # same SHA-256
    assert b.id != a.id and garbage == [] and await store.list_trash() == ([], 0)
    assert await refs(store, "s1") == {"s1": 1}
    changed = obj("same", ["s2"])
    await store.commit_objects([changed])
    assert [r.id for r in (await store.list_trash())[0]] == [b.id]
