"""The metadata store and its migrations, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, text

from tossit.brain.activity import DELETED, UPLOADED, ActivityLog
from tossit.brain.db import make_engine, migrate
from tossit.brain.manifest_rows import PackRecord
from tossit.brain.models import Base, ManifestEntry, Object
from tossit.brain.registry import Registry, shared_fates
from tossit.brain.states import EventKind
from tossit.brain.store import NewObject, ReplaceOnly, Store
from tossit.errors import ObjectChanged
from tossit.manifests import PutEntry, decode_pack, needed_versions, pack_key

KEY = pack_key("test cluster secret")


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    await migrate(db_url)
    s = Store(make_engine(db_url), KEY)
    try:
        yield s
    finally:
        await s.close()


def cid(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def node_report(i: int, **over: Any) -> dict[str, Any]:
    r = {
        "id": f"{i:032x}", "name": f"node-{i}", "address": f"http://127.0.0.1:{8080 + i}",
        "zone": "default", "capacity": 1000, "used": 0, "free": 1000, "disk_total": 2000,
        "disk_free": 1500, "chunk_count": 0, "load": 0.0, "version": "test",
    }
    r.update(over)
    return r


N1, N2, N3 = (f"{i:032x}" for i in (1, 2, 3))


async def add_nodes(store: Store, n: int = 3) -> None:
    for i in range(1, n + 1):
        await store.upsert_node(node_report(i), "online")


def new_object(key: str, chunks: list[str], *, size: int = 10,
               nodes: tuple[str, ...] = (N1, N2, N3), bucket: str = "default") -> NewObject:
    return NewObject(
        bucket=bucket, key=key, size=size * len(chunks), sha256=cid("obj:" + key),
        content_type="application/octet-stream", chunk_size=size,
        chunks=[(cid(c), size) for c in chunks],
        replicas={cid(c): list(nodes) for c in chunks},
    )


async def commit_one(store: Store, item: NewObject) -> tuple[Any, list[str]]:
    objs, garbage = await store.commit_objects([item])
    assert len(objs) == 1
    return objs[0], garbage


async def put(store: Store, key: str, chunks: list[str], *, size: int = 10,
              nodes: tuple[str, ...] = (N1, N2, N3), bucket: str = "default",
              ) -> tuple[Any, list[str]]:
    """Commit one object whose chunks are named (ids are their names' hashes)."""
    return await commit_one(store, new_object(key, chunks, size=size, nodes=nodes,
                                              bucket=bucket))


async def refcounts(store: Store, *names: str) -> dict[str, int]:
    known = await store.known_chunks([cid(n) for n in names])
    return {n: known.get(cid(n), -1) for n in names}  # -1: no row


# -- migrations --------------------------------------------------------------------

TABLES = {"buckets", "objects", "object_chunks", "chunks", "replicas", "nodes", "events"}


async def test_migrations_from_empty_are_idempotent(db_url: str) -> None:
    await migrate(db_url)
    await migrate(db_url)  # a restart runs it again: a no-op
    engine = make_engine(db_url)
    try:
        async with engine.connect() as conn:
            names = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
            assert names >= TABLES | {"alembic_version"}
            version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
            assert len(version) == 1
            # The migrations produce exactly what the models describe.
            diff = await conn.run_sync(
                lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata)
            )
            assert diff == []
    finally:
        await engine.dispose()


async def test_a_database_from_the_first_0005_gets_the_outbox_column_it_lacks(
        db_url: str) -> None:
    """Migration 0005 was edited after it shipped (pack_outbox.first_version added):
    a database that had run the first one reached the newest revision without
    the column, and the trash, key changes and the collector failed on it. 0015
    adds it, with each waiting pack's oldest version."""
    await migrate(db_url)
    engine = make_engine(db_url)
    try:
        async with engine.begin() as conn:  # the schema the first 0005 made
            await conn.execute(text("DROP INDEX ix_pack_outbox_first_version"))
            await conn.execute(text("ALTER TABLE pack_outbox DROP COLUMN first_version"))
            await conn.execute(text("UPDATE alembic_version SET version_num = '0014'"))
            await conn.execute(text(
                "INSERT INTO pack_outbox (pack_id, data, created_at) VALUES ('p1', :d, 1.0)"),
                {"d": b"x"})
            for v in (7, 5):
                await conn.execute(text(
                    "INSERT INTO manifest_log (version, op, key, needed, pack, created_at) "
                    "VALUES (:v, 'key', 'k', true, 'p1', 1.0)"), {"v": v})
    finally:
        await engine.dispose()
    await migrate(db_url)
    engine = make_engine(db_url)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text(
                "SELECT first_version FROM pack_outbox WHERE pack_id = 'p1'"))).scalar() == 5
            diff = await conn.run_sync(
                lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata))
            assert diff == []
    finally:
        await engine.dispose()


async def test_buckets_made_before_0016_are_logged_and_packed_on_their_own(
        db_url: str) -> None:
    """0016 logs every bucket there is (deleted ones too, not the brain's own),
    in no pack: the brain packs them from the metadata, apart from other entries
    (a brain older than bucket entries must still read the others' packs)."""
    await migrate(db_url)
    engine = make_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = '0015'"))
            await conn.execute(text(
                "INSERT INTO buckets (name, created_at, deleted_at) VALUES "
                "('photos', 1.0, NULL), ('old', 2.0, 3.0), ('.tossit', 4.0, NULL)"))
    finally:
        await engine.dispose()
    await migrate(db_url)
    store = Store(make_engine(db_url), pack_key=KEY)
    try:
        await add_nodes(store)
        store.pack_key = None  # a file logged in no pack either
        await store.apply([new_object("f", ["a"])], [])
        store.pack_key = KEY
        packs = [await store.log.pack_unpacked(KEY) for _ in range(3)]
        assert packs[2] is None
        contents = [decode_pack(p.data, KEY) for p in packs if p is not None]
        assert [[(e.op, getattr(e, "name", None), getattr(e, "deleted", None))
                 for e in entries] for entries in contents] == [
            [("bucket", "photos", None), ("bucket", "old", 3.0)], [("put", None, None)]]
    finally:
        await store.close()


async def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'wal.db'}"
    await migrate(url)
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
    finally:
        await engine.dispose()


# -- objects, chunks, refcounts ---------------------------------------------------


async def test_commit_and_read_back_chunks_in_order(store: Store) -> None:
    await add_nodes(store)
    chunks = [cid(f"c{i}") for i in range(12)]
    obj, garbage = await commit_one(store, NewObject(
        bucket="default", key="dir/file.bin", size=115, sha256=cid("whole"),
        content_type="application/pdf", chunk_size=10,
        chunks=[(c, 10) for c in chunks[:-1]] + [(chunks[-1], 5)],
        replicas={c: [N1, N2] if i % 2 else [N3] for i, c in enumerate(chunks)},
        user_meta={"owner": "ann", "tags": ["x"]},
    ))
    assert garbage == []
    got = await store.get_object(obj.id)
    assert got is not None
    assert (got.key, got.size, got.sha256, got.content_type, got.chunk_count) == (
        "dir/file.bin", 115, cid("whole"), "application/pdf", 12)
    assert got.user_meta == {"owner": "ann", "tags": ["x"]}
    assert await store.bucket_name(got.bucket_id) == "default"
    placements = await store.object_chunks(obj.id)
    assert [p.seq for p in placements] == list(range(12))
    assert [p.chunk_id for p in placements] == chunks
    assert [p.size for p in placements] == [10] * 11 + [5]
    for i, p in enumerate(placements):
        want = {N1, N2} if i % 2 else {N3}
        assert set(p.ok_nodes()) == want
        assert {s for _, s in p.replicas} == {"ok"}
    assert await store.object_chunks(10**6) == []
    assert await store.get_object(10**6) is None


async def test_the_download_reads_match_the_general_ones(store: Store) -> None:
    """``get_object``, ``object_with_chunks`` and ``object_by_key`` (the download
    paths: on SQLite straight from the file, in one read transaction) give what
    the ORM's reads give: every column, user metadata decoded, chunks in order
    with their replica states; None for what is not there."""
    await add_nodes(store)
    obj, _ = await commit_one(store, NewObject(
        bucket="default", key="a/b c.bin", size=25, sha256=cid("w"), content_type="text/plain",
        chunk_size=10, chunks=[(cid("x"), 10), (cid("y"), 10), (cid("x"), 5)],
        replicas={cid("x"): [N1, N2], cid("y"): [N3]}, user_meta={"k": ["v", 1]}, etag="e"))
    plain, _ = await put(store, "plain", ["p"])
    await store.set_replica_state(cid("y"), N3, "corrupt")
    if store.dialect == "sqlite":
        assert store.fast_reads is not None
    for oid in (obj.id, plain.id):
        async with store.read() as s:  # the ORM's read, as the reference
            expected = await s.get(Object, oid)
        assert expected is not None
        plain_read = await store.get_object(oid)
        assert plain_read is not None
        found = await store.object_with_chunks(oid)
        assert found is not None
        got, placements = found
        columns = [c.name for c in Object.__table__.columns]
        assert [getattr(got, c) for c in columns] == [getattr(expected, c) for c in columns]
        assert [getattr(plain_read, c) for c in columns] == [
            getattr(expected, c) for c in columns]
        assert placements == await store.object_chunks(oid)
        by_key = await store.object_by_key(expected.bucket_id, expected.key)
        assert by_key is not None and by_key[1] == placements
        assert [getattr(by_key[0], c) for c in columns] == [getattr(expected, c) for c in columns]
        bare = await store.object_by_key(expected.bucket_id, expected.key, chunks=False)
        assert bare is not None and bare[1] == [] and bare[0].id == oid
    found = await store.object_with_chunks(obj.id)
    assert found is not None
    assert found[0].user_meta == {"k": ["v", 1]}
    assert [(p.chunk_id, p.size, dict(p.replicas)) for p in found[1]] == [
        (cid("x"), 10, {N1: "ok", N2: "ok"}), (cid("y"), 10, {N3: "corrupt"}),
        (cid("x"), 5, {N1: "ok", N2: "ok"})]
    assert await store.object_with_chunks(10**6) is None
    assert await store.object_by_key(obj.bucket_id, "no such name") is None
    await store.delete_object(obj.id)
    assert await store.object_with_chunks(obj.id) is None  # the delete is seen at once


async def test_empty_object_has_no_chunks(store: Store) -> None:
    obj, garbage = await put(store, "empty.txt", [])
    assert garbage == [] and obj.size == 0 and obj.chunk_count == 0
    assert await store.object_chunks(obj.id) == []
    assert await store.delete_object(obj.id) == []


async def test_replica_states_are_reported(store: Store) -> None:
    await add_nodes(store)
    obj, _ = await put(store, "f", ["a", "b"])
    await store.set_replica_state(cid("a"), N2, "corrupt")
    await store.remove_replica(cid("b"), N3)
    p = await store.object_chunks(obj.id)
    assert dict(p[0].replicas) == {N1: "ok", N2: "corrupt", N3: "ok"}
    assert set(p[0].ok_nodes()) == {N1, N3}
    assert set(p[1].ok_nodes()) == {N1, N2}
    assert set(await store.ok_replicas(cid("a"))) == {N1, N3}
    await store.add_replicas(cid("a"), [N2])  # repaired: ok again
    assert set(await store.ok_replicas(cid("a"))) == {N1, N2, N3}
    per_obj = await store.ok_replica_nodes([obj.id])
    assert per_obj == {obj.id: [{N1, N2, N3}, {N1, N2}]}
    assert await store.replicas_on_node(N3, [cid("a"), cid("b"), cid("zzz")]) == {cid("a")}


async def test_repairer_pages_all_chunks_or_only_the_flagged_ones(store: Store) -> None:
    await add_nodes(store, 4)
    n4 = f"{4:032x}"
    await put(store, "ok", ["fine1", "fine2"])
    await put(store, "short", ["short"], nodes=(N1, N2))
    await put(store, "extra", ["extra"], nodes=(N1, N2, N3, n4))
    await put(store, "bad", ["bad"])
    await store.set_replica_state(cid("bad"), N3, "corrupt")
    await put(store, "elsewhere", ["elsewhere"], nodes=(N1, N2, n4))  # n4 not counted
    await put(store, "gone", ["gone"])
    for n in (N1, N2, N3):
        await store.remove_replica(cid("gone"), n)  # no replica row at all
    obj, _ = await put(store, "deleted", ["deleted"], nodes=(N1,))
    await store.delete_object(obj.id)  # unreferenced: the collector's, not the repairer's

    everything = [c for c, _, _ in await store.chunk_replica_page("", 100)]
    assert sorted(everything) == sorted(cid(n) for n in (
        "fine1", "fine2", "short", "extra", "bad", "elsewhere", "gone"))
    flagged: list[str] = []
    after = ""
    while page := await store.suspect_chunk_page(after, 2, [N1, N2, N3], 3):
        flagged += [c for c, _, _ in page]
        after = page[-1][0]
    assert flagged == sorted(cid(n) for n in ("short", "extra", "bad", "elsewhere", "gone"))
    by_id = {c: (size, reps) for c, size, reps in
             await store.suspect_chunk_page("", 100, [N1, N2, N3], 3)}
    assert by_id[cid("bad")] == (10, {N1: "ok", N2: "ok", N3: "corrupt"})
    assert by_id[cid("gone")] == (10, {})

    # n4 dead: its copy beside R good ones waits for it to return or be removed
    # (either changes the nodes and brings a full pass); a missing row there is
    # still flagged, for the plan to forget it.
    await put(store, "forgotten", ["forgotten"], nodes=(N1, N2, N3, n4))
    await store.set_replica_state(cid("forgotten"), n4, "missing")
    flagged = [c for c, _, _ in await store.suspect_chunk_page("", 100, [N1, N2, N3], 3, [n4])]
    assert flagged == sorted(cid(n) for n in ("short", "bad", "elsewhere", "gone", "forgotten"))


async def test_refcounts_with_dedup(store: Store) -> None:
    await add_nodes(store)
    # The same chunk twice in one object, and chunks shared between objects.
    a, _ = await put(store, "a", ["x", "y", "x"])
    b, _ = await put(store, "b", ["y", "z"])
    assert await refcounts(store, "x", "y", "z") == {"x": 2, "y": 2, "z": 1}
    assert [p.chunk_id for p in await store.object_chunks(a.id)] == [cid("x"), cid("y"), cid("x")]
    # Deleting a frees only x: y is still used by b.
    assert sorted(await store.delete_object(a.id) or []) == [cid("x")]
    assert await refcounts(store, "x", "y", "z") == {"x": 0, "y": 1, "z": 1}
    assert sorted(await store.delete_object(b.id) or []) == sorted([cid("y"), cid("z")])
    assert await refcounts(store, "x", "y", "z") == {"x": 0, "y": 0, "z": 0}
    assert await store.delete_object(a.id) is None  # already gone


async def test_overwrite_returns_only_chunks_no_longer_used(store: Store) -> None:
    await add_nodes(store)
    other, _ = await put(store, "other", ["shared"])
    first, g = await put(store, "k", ["old1", "keep", "shared", "old2"])
    assert g == []
    second, garbage = await put(store, "k", ["keep", "new", "keep"])
    assert second.id != first.id
    assert await store.get_object(first.id) is None
    assert sorted(garbage) == sorted([cid("old1"), cid("old2")])
    assert await refcounts(store, "old1", "old2", "keep", "new", "shared") == {
        "old1": 0, "old2": 0, "keep": 2, "new": 1, "shared": 1}
    objs, total = await store.list_objects()
    assert total == 2 and {o.key for o in objs} == {"k", "other"}
    assert other.id in {o.id for o in objs}
    # Same key in another bucket is another object.
    third, g = await put(store, "k", ["new"], bucket="photos")
    assert g == [] and third.id != second.id
    assert await refcounts(store, "new") == {"new": 2}
    assert (await store.list_objects(bucket="photos"))[1] == 1
    assert (await store.list_objects(bucket="nope")) == ([], 0)


async def test_batched_commit(store: Store) -> None:
    await add_nodes(store)
    old, _ = await put(store, "replaced", ["gone", "kept"])
    other, _ = await put(store, "other", ["o"])
    objs, garbage = await store.commit_objects([
        new_object("n1", ["a", "shared", "a"]),
        new_object("replaced", ["kept", "shared"], nodes=(N2,)),
        new_object("n2", ["shared", "b"]),
        new_object("n1", [], bucket="second-bucket"),  # same key, other bucket
    ])
    assert [o.key for o in objs] == ["n1", "replaced", "n2", "n1"]
    assert len({o.id for o in objs} | {other.id}) == 5
    assert garbage == [cid("gone")]
    assert await store.get_object(old.id) is None
    assert await refcounts(store, "a", "shared", "b", "kept", "gone", "o") == {
        "a": 2, "shared": 3, "b": 1, "kept": 1, "gone": 0, "o": 1}
    for o, names in zip(objs, (["a", "shared", "a"], ["kept", "shared"], ["shared", "b"], []),
                        strict=True):
        got = await store.get_object(o.id)
        assert got is not None and (got.key, got.chunk_count) == (o.key, len(names))
        assert [p.chunk_id for p in await store.object_chunks(o.id)] == [cid(n) for n in names]
    assert set(await store.ok_replicas(cid("kept"))) == {N1, N2, N3}
    assert (await store.list_objects())[1] == 4
    assert (await store.list_objects(bucket="second-bucket"))[1] == 1
    with pytest.raises(ValueError, match="distinct keys"):
        await store.commit_objects([new_object("x", []), new_object("x", ["a"])])
    assert await store.commit_objects([]) == ([], [])


async def test_garbage_collection_rows(store: Store) -> None:
    await add_nodes(store)
    a, _ = await put(store, "a", ["g1", "g2", "live"], nodes=(N1, N2))
    await put(store, "b", ["live"], nodes=(N3,))
    garbage = await store.delete_object(a.id)
    assert sorted(garbage or []) == sorted([cid("g1"), cid("g2")])
    listed = dict(await store.garbage_chunks())
    assert set(listed) == {cid("g1"), cid("g2")}
    assert sorted(listed[cid("g1")]) == sorted([N1, N2])
    assert len(await store.garbage_chunks(limit=1)) == 1
    # g2 is uploaded again before the collector gets to it: it must survive.
    await put(store, "c", ["g2"], nodes=(N3,))
    assert await store.drop_unreferenced([cid("g1"), cid("g2"), cid("live")]) == 1
    assert await refcounts(store, "g1", "g2", "live") == {"g1": -1, "g2": 1, "live": 1}
    assert await store.ok_replicas(cid("g1")) == []
    assert set(await store.ok_replicas(cid("g2"))) == {N1, N2, N3}
    assert await store.garbage_chunks() == []
    assert await store.drop_unreferenced([]) == 0


async def test_list_objects(store: Store) -> None:
    keys = ["b/report.pdf", "a/notes.txt", "b/photo_1.jpg", "b/photo%1.jpg", "c.txt",
            "résumé.pdf"]
    sizes = {k: (i + 1) * 100 for i, k in enumerate(keys)}
    ids = {}
    for k in keys:
        obj, _ = await commit_one(store, NewObject(
            bucket="default", key=k, size=sizes[k], sha256=cid(k), content_type="x/y",
            chunk_size=1, chunks=[], replicas={},
        ))
        ids[k] = obj.id
    objs, total = await store.list_objects()
    assert total == 6
    assert [o.key for o in objs] == list(reversed(keys))  # newest first
    objs, _ = await store.list_objects(descending=False)
    assert [o.key for o in objs] == keys
    objs, _ = await store.list_objects(sort="name", descending=False)
    assert [o.key for o in objs] == sorted(keys)
    objs, _ = await store.list_objects(sort="size")
    assert [o.key for o in objs] == sorted(keys, key=lambda k: -sizes[k])
    objs, _ = await store.list_objects(sort="id", descending=False)
    assert [o.id for o in objs] == sorted(ids.values())
    objs, total = await store.list_objects(prefix="b/", sort="name", descending=False)
    assert total == 3 and [o.key for o in objs] == ["b/photo%1.jpg", "b/photo_1.jpg",
                                                    "b/report.pdf"]
    # LIKE wildcards in the search are literal characters.
    objs, total = await store.list_objects(search="_1")
    assert total == 1 and objs[0].key == "b/photo_1.jpg"
    objs, total = await store.list_objects(search="%")
    assert total == 1 and objs[0].key == "b/photo%1.jpg"
    objs, total = await store.list_objects(search="sum")
    assert total == 1 and objs[0].key == "résumé.pdf"
    objs, total = await store.list_objects(search=".pdf", prefix="b/")
    assert total == 1 and objs[0].key == "b/report.pdf"
    # The files browser's search ignores case (ASCII), on SQLite and PostgreSQL.
    objs, total = await store.list_objects(search="REPORT.PDF")
    assert total == 1 and objs[0].key == "b/report.pdf"
    assert await store.list_objects(search="nothing-like-this") == ([], 0)
    # Paging: pages are disjoint, complete, and the total ignores the page.
    seen = []
    for offset in range(0, 6, 4):
        page, total = await store.list_objects(sort="name", descending=False, limit=4,
                                               offset=offset)
        assert total == 6
        seen += [o.key for o in page]
    assert seen == sorted(keys)
    for sort in ("created", "size", "name"):
        for desc in (True, False):
            whole, _ = await store.list_objects(sort=sort, descending=desc)
            pages = []
            for offset in range(0, 6, 2):
                page, _ = await store.list_objects(sort=sort, descending=desc, limit=2,
                                                   offset=offset)
                pages += [o.id for o in page]
            assert pages == [o.id for o in whole], (sort, desc)
    page, total = await store.list_objects(limit=2, offset=10)
    assert page == [] and total == 6


# -- nodes and events ----------------------------------------------------------------


async def test_nodes(store: Store) -> None:
    assert await store.list_nodes() == []
    assert await store.upsert_node(node_report(2, name="beta"), "online") is True
    assert await store.upsert_node(node_report(1, name="alpha", zone="rack-1"), "online") is True
    assert await store.upsert_node(node_report(2, name="beta", used=50, chunk_count=5),
                                   "online") is False
    nodes = await store.list_nodes()
    assert [n.name for n in nodes] == ["alpha", "beta"]
    beta = nodes[1]
    assert (beta.used, beta.chunk_count, beta.state) == (50, 5, "online")
    assert nodes[0].zone == "rack-1"
    before = beta.last_heartbeat
    await asyncio.sleep(0.01)
    ok = await store.save_heartbeat(N2, {"used": 70, "free": 930, "chunk_count": 7,
                                         "load": 0.5, "capacity": 1000, "ignored": 1})
    assert ok is True
    assert await store.save_heartbeat("f" * 32, {"used": 1}) is False
    beta = (await store.list_nodes())[1]
    assert (beta.used, beta.free, beta.chunk_count, beta.load) == (70, 930, 7, 0.5)
    assert beta.last_heartbeat > before
    await store.set_node_state(N2, "offline", 12.5)
    beta = (await store.list_nodes())[1]
    assert (beta.state, beta.latency_ms) == ("offline", 12.5)
    # A very large disk fits (BigInteger on both engines).
    await store.upsert_node(node_report(3, name="gamma", capacity=40 * 2**40,
                                        disk_total=80 * 2**40), "online")
    assert (await store.list_nodes())[2].capacity == 40 * 2**40


async def test_a_follower_sees_what_the_nodes_report_of_their_disks(store: Store) -> None:
    """A follower brain's view of the nodes is the table (``Registry.mirror``):
    which disk a node is on, and that its disk refuses writes, must be there, or
    the follower's ``/ready`` and node listing count a broken node as writable."""
    await store.upsert_node(node_report(1, disk_id="host-a:sda1"), "online")
    await store.upsert_node(node_report(2, disk_id="host-a:sda1"), "online")
    await store.save_heartbeat(N2, {"used": 1, "write_error": "OSError: [Errno 30] Read-only"})
    follower = Registry(replicas=2, high_water=0.95)
    follower.mirror(await store.list_nodes())
    one, two = follower.nodes[f"{1:032x}"], follower.nodes[N2]
    assert (one.disk_id, one.write_error) == ("host-a:sda1", None)
    assert two.write_error == "OSError: [Errno 30] Read-only"
    assert [n.id for n in follower.writable(1)] == [one.id]
    assert [f.nodes for f in shared_fates(list(follower.nodes.values()))] == [
        ("node-1", "node-2")]
    await store.save_heartbeat(N2, {"used": 1, "write_error": None})  # the disk came back
    follower.mirror(await store.list_nodes())
    assert sorted(n.id for n in follower.writable(1)) == sorted([one.id, two.id])


async def test_events(store: Store) -> None:
    await store.add_event(EventKind.NODE_JOINED, "node-1 joined", node_id=N1, data={"n": 1})
    await store.add_event(EventKind.GC, "freed 3 chunks", data={"chunks": [1, 2, 3]})
    await store.add_event(EventKind.NODE_OFFLINE, "node-1 is offline", severity="warning",
                          node_id=N1)
    events = await store.list_events()
    assert [e.kind for e in events] == ["node_offline", "gc", "node_joined"]  # newest first
    assert events[0].severity == "warning" and events[1].severity == "info"
    assert events[1].data == {"chunks": [1, 2, 3]} and events[0].data is None
    assert events[2].node_id == N1
    assert [e.kind for e in await store.list_events(limit=1)] == ["node_offline"]
    assert [e.message for e in await store.list_events(kind="gc")] == ["freed 3 chunks"]
    assert await store.list_events(kind="nothing") == []
    # Paging forward: the events right after an id, newest first, without gaps.
    first = events[2].id
    assert [e.kind for e in await store.list_events(limit=1, after_id=first)] == ["gc"]
    assert [e.kind for e in await store.list_events(limit=5, after_id=first)] == [
        "node_offline", "gc"]
    assert await store.list_events(after_id=events[0].id) == []


# -- statistics --------------------------------------------------------------------------


async def test_totals_histogram(store: Store) -> None:
    await add_nodes(store)
    empty = await store.totals([N1, N2, N3])
    assert empty == {"objects": 0, "object_bytes": 0, "system_objects": 0, "system_bytes": 0,
                     "chunks": 0, "chunk_bytes": 0, "trash": {"files": 0, "bytes": 0},
                     "replica_histogram": {},
                     "manifests": {"packs": 0, "bytes": 0, "replica_histogram": {}}}
    await put(store, "three", ["r3a", "r3b"], nodes=(N1, N2, N3))  # 2 chunks x 3 copies
    await put(store, "two", ["r2"], nodes=(N1, N2))
    await put(store, "one", ["r1", "r3a"], nodes=(N3,))  # r3a already has 3
    await store.set_replica_state(cid("r3b"), N1, "corrupt")  # r3b: 2 good copies
    gone, _ = await put(store, "gone", ["dead"], nodes=(N1,))
    await store.delete_object(gone.id)  # refcount 0: not counted
    t = await store.totals([N1, N2, N3])
    assert t["objects"] == 3
    assert t["object_bytes"] == 20 + 10 + 20
    assert t["chunks"] == 4 and t["chunk_bytes"] == 40  # r3a r3b r2 r1
    assert t["replica_histogram"] == {
        1: {"chunks": 1, "bytes": 10},  # r1
        2: {"chunks": 2, "bytes": 20},  # r2, r3b
        3: {"chunks": 1, "bytes": 10},  # r3a
    }
    # N3 is down: only live copies count; r1 has none left.
    t = await store.totals([N1, N2])
    assert t["replica_histogram"] == {
        0: {"chunks": 1, "bytes": 10},  # r1
        1: {"chunks": 1, "bytes": 10},  # r3b (N2; N1's copy is corrupt)
        2: {"chunks": 2, "bytes": 20},  # r2, r3a
    }
    t = await store.totals([])
    assert t["replica_histogram"] == {0: {"chunks": 4, "bytes": 40}}


# -- concurrency ----------------------------------------------------------------------------


async def test_concurrent_commits_keep_exact_refcounts(store: Store) -> None:
    await add_nodes(store)
    shared = [f"s{i}" for i in range(6)]

    def chunks_of(i: int) -> list[str]:
        # Shared chunks in varying orders (and one repeated), plus private ones.
        return [shared[i % 6], f"own{i}", shared[(i + 3) % 6], shared[(i + 1) % 6],
                shared[i % 6], f"own{i}b"]

    async def one(i: int) -> None:
        nodes = (N1, N2, N3) if i % 2 else (N3, N1)
        await put(store, f"obj-{i}", chunks_of(i), nodes=nodes)

    await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(50))), 60)
    expected: dict[str, int] = {}
    for i in range(50):
        for c in chunks_of(i):
            expected[c] = expected.get(c, 0) + 1
    assert await refcounts(store, *expected) == expected
    objs, total = await store.list_objects(limit=100)
    assert total == 50
    for o in objs:
        i = int(o.key.split("-")[1])
        assert [p.chunk_id for p in await store.object_chunks(o.id)] == [
            cid(c) for c in chunks_of(i)]
    assert set(await store.ok_replicas(cid("s0"))) == {N1, N2, N3}
    # And concurrent deletes release exactly what they held.
    results = await asyncio.gather(*(store.delete_object(o.id) for o in objs))
    assert all(r is not None for r in results)
    assert await refcounts(store, *expected) == {c: 0 for c in expected}
    released = sorted(c for r in results for c in r or [])
    assert released == sorted(cid(c) for c in expected)


async def test_concurrent_delete_and_overwrite_release_once(store: Store) -> None:
    """A delete racing an overwrite of the same object must release its chunks
    once: a double release would free a chunk another object still uses."""
    await add_nodes(store)
    await put(store, "anchor", ["shared"])
    ids = []
    for i in range(20):
        obj, _ = await put(store, f"k{i}", ["shared", f"u{i}"])
        ids.append(obj.id)
    assert await refcounts(store, "shared") == {"shared": 21}

    async def overwrite(i: int) -> None:
        await store.commit_objects([new_object(f"k{i}", [f"v{i}"])])

    results = await asyncio.gather(
        *(store.delete_object(oid) for oid in ids), *(overwrite(i) for i in range(20)),
        return_exceptions=True,
    )
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert await refcounts(store, "shared") == {"shared": 1}
    assert await refcounts(store, *(f"u{i}" for i in range(20))) == {
        f"u{i}": 0 for i in range(20)}
    _, total = await store.list_objects(limit=100)
    assert total == 21


async def test_racing_writes_replacing_one_object_one_wins(store: Store) -> None:
    """S3's If-Match: writers that saw the same object commit at once, each in
    its own transaction (in parallel on PostgreSQL): exactly one replaces it, the
    others fail with ObjectChanged and leave nothing behind."""
    await add_nodes(store)
    seen, _ = await put(store, "doc", ["v0"])

    async def write(i: int) -> Any:
        item = dataclasses.replace(new_object("doc", [f"v{i}"]), on_conflict=ReplaceOnly(seen.id))
        return await commit_one(store, item)

    results = await asyncio.gather(*(write(i) for i in range(1, 11)), return_exceptions=True)
    won = [r[0] for r in results if not isinstance(r, BaseException)]
    assert len(won) == 1, results
    assert all(isinstance(r, ObjectChanged) and r.found for r in results
               if isinstance(r, BaseException)), results
    listed, total = await store.list_objects()
    assert total == 1 and listed[0].id == won[0].id != seen.id
    counts = await refcounts(store, *(f"v{i}" for i in range(11)))
    assert sorted(counts.values()) == [-1] * 9 + [0, 1]  # v0 released, one new, 9 never


async def test_deletes_and_uploads_in_one_transaction(store: Store) -> None:
    """The group commit applies deletes, then uploads; a delete of the old id and
    an upload of the same name in one batch leave the new object."""
    await add_nodes(store)
    old, _ = await put(store, "k", ["a", "shared"])
    other, _ = await put(store, "other", ["shared", "b"])
    done = await store.apply(
        [new_object("k", ["c"]), new_object("fresh", ["b"])], [old.id, other.id, 999_999])
    objs, deleted, garbage = done.objects, done.deleted, done.garbage
    assert deleted == {old.id, other.id}
    assert [o.key for o in objs] == ["k", "fresh"]
    assert sorted(garbage) == sorted([cid("a"), cid("shared")])  # b is used by "fresh"
    assert await refcounts(store, "a", "shared", "b", "c") == {
        "a": 0, "shared": 0, "b": 1, "c": 1}
    listed, total = await store.list_objects()
    assert total == 2 and {o.key for o in listed} == {"k", "fresh"}
    again = await store.apply([], [old.id])  # already gone: nothing logged
    assert (again.objects, again.deleted, again.garbage, again.entries) == ([], set(), [], [])


# -- the manifest log --------------------------------------------------------------


async def log_rows(store: Store) -> dict[int, tuple[str, str, bool, str | None]]:
    async with store.read() as s:
        rows = (await s.execute(select(ManifestEntry))).scalars().all()
    return {r.version: (r.op, r.key, r.needed, r.pack) for r in rows}


async def outbox_entries(store: Store) -> dict[str, list[Any]]:
    return {p.id: decode_pack(p.data, KEY) for p in await store.log.outbox()}


async def record_all(store: Store) -> list[str]:
    return await store.log.record_packs([
        PackRecord(p.id, len(p.data), (N1, N2, N3)) for p in await store.log.outbox()])


async def test_every_change_is_logged_packed_and_kept_while_needed(store: Store) -> None:
    """Commits log their changes as manifest entries, packed in their transaction;
    the database's ``needed`` flags and pack refcounts follow
    ``tossit.manifests.needed_versions``, and packs go once nothing needs them."""
    await add_nodes(store)
    both = await store.apply([new_object("a", ["x"]), new_object("b", ["y"])], [])
    pack1 = both.pack
    assert pack1 is not None and [e.version for e in both.entries] == [1, 2]
    assert decode_pack(pack1.data, KEY) == both.entries
    first = both.entries[0]
    assert isinstance(first, PutEntry) and first.chunks == (cid("x"),) and first.key == "a"
    again = await store.apply([new_object("a", ["z"])], [])  # overwrite
    gone = await store.apply([], [both.objects[1].id])  # delete b
    assert [type(e).__name__ for e in gone.entries] == ["DelEntry"]
    packs = await outbox_entries(store)
    assert set(packs) == {pack1.id, again.pack.id, gone.pack.id}  # type: ignore[union-attr]
    everything = [e for es in packs.values() for e in es]
    rows = await log_rows(store)
    assert {v for v, (_, _, needed, _) in rows.items() if needed} == needed_versions(
        everything) == {3, 4}
    assert {v: p for v, (*_, p) in rows.items()} == {
        1: pack1.id, 2: pack1.id, 3: again.pack.id, 4: gone.pack.id}  # type: ignore[union-attr]

    # On the nodes: each pack's refcount is its needed entries; pack 1 needs none.
    assert await record_all(store) == [pack1.id]
    assert await store.log.outbox_count() == 0
    assert await store.meta_ids([pack1.id, again.pack.id, cid("x")]) == {  # type: ignore[union-attr]
        pack1.id, again.pack.id}  # type: ignore[union-attr]
    known = await store.known_chunks([pack1.id, again.pack.id, gone.pack.id])  # type: ignore[union-attr]
    assert known == {pack1.id: 0, again.pack.id: 1, gone.pack.id: 1}  # type: ignore[union-attr]
    # Pack 1 deleted from the nodes: its entries go, and b's tombstone has nothing
    # older left to hide, so its pack is garbage too.
    assert await store.drop_unreferenced([pack1.id]) == 1
    assert sorted(await log_rows(store)) == [3, 4]
    assert await store.log.expire_tombstones() == [gone.pack.id]  # type: ignore[union-attr]
    assert (await log_rows(store))[4][2] is False
    t = await store.totals([N1, N2, N3])
    assert t["manifests"]["packs"] == 1 and t["manifests"]["replica_histogram"] == {
        3: {"chunks": 1, "bytes": len(again.pack.data)}}  # type: ignore[union-attr]


async def test_a_name_deleted_and_uploaded_in_one_batch_needs_only_the_upload(
        store: Store) -> None:
    await add_nodes(store)
    first, _ = await put(store, "k", ["a"])
    done = await store.apply([new_object("k", ["b"])], [first.id])
    assert [type(e).__name__ for e in done.entries] == ["DelEntry", "PutEntry"]
    rows = await log_rows(store)
    assert {v for v, r in rows.items() if r[2]} == {done.entries[1].version}


async def test_entries_without_a_pack_are_packed_from_the_metadata(store: Store) -> None:
    """What an upgraded cluster has (the migration logs every existing file with no
    pack): the brain packs them from the metadata, the same entries a commit writes."""
    await add_nodes(store)
    store.pack_key = None  # as if committed before manifests existed
    kept = await store.apply([new_object("kept", ["a", "b"]), new_object("moot", ["c"])], [])
    await store.apply([], [kept.objects[1].id])
    store.pack_key = KEY
    pack = await store.log.pack_unpacked(KEY)
    assert pack is not None and await store.log.pack_unpacked(KEY) is None
    entries = decode_pack(pack.data, KEY)
    assert entries[0] == kept.entries[0]  # rebuilt identical to what the commit logged
    assert [(type(e).__name__, getattr(e, "key", None)) for e in entries] == [
        ("PutEntry", "kept"), ("DelEntry", "moot")]
    assert sorted(await log_rows(store)) == [1, 3]  # the moot put never reached a node


async def test_a_repeating_event_is_one_row_with_a_count(store: Store) -> None:
    await store.add_event(EventKind.REPAIR_STUCK, "stuck: 3 chunks", severity="warning",
                          repeat_key="since 1")
    first = (await store.list_events())[0]
    await store.add_event(EventKind.GC, "an event of another kind in between")
    await store.add_event(EventKind.REPAIR_STUCK, "stuck: 5 chunks", severity="warning",
                          repeat_key="since 1", node_id=None)
    await store.add_event(EventKind.REPAIR_STUCK, "stuck: 4 chunks", severity="warning",
                          repeat_key="since 1")
    rows = await store.list_events()
    stuck = [e for e in rows if e.kind == "repair_stuck"]
    assert len(stuck) == 1 and len(rows) == 2
    e = stuck[0]
    assert (e.count, e.message) == (3, "stuck: 4 chunks")  # the last words
    assert e.first_at == first.ts and e.ts >= first.ts
    assert e.id > rows[1].id > first.id  # a new id: newest first, and live readers see it
    assert [x.id for x in await store.list_events(after_id=first.id)] == [e.id, rows[1].id]
    # Another episode (a new key), another node, or no key: rows of their own.
    await store.add_event(EventKind.REPAIR_STUCK, "stuck again", repeat_key="since 2")
    await store.add_event(EventKind.REPAIR_STUCK, "on a node", repeat_key="since 2", node_id=N1)
    await store.add_event(EventKind.REPAIR_STUCK, "no key")
    await store.add_event(EventKind.REPAIR_STUCK, "no key")
    counts = [(x.message, x.count) for x in await store.list_events(kind="repair_stuck")]
    assert counts == [("no key", 1), ("no key", 1), ("on a node", 1), ("stuck again", 1),
                      ("stuck: 4 chunks", 3)]


async def test_events_are_pruned_by_age_and_count(store: Store) -> None:
    for i in range(30):
        await store.add_event(EventKind.GC, f"event {i}")
    async with store.write() as s:  # the ten oldest happened 40 days ago
        await s.execute(text("UPDATE events SET ts = ts - 40 * 86400 WHERE id IN "
                             "(SELECT id FROM events ORDER BY id LIMIT 10)"))
    import time

    gone = await store.prune_events(time.time() - 30 * 86400, keep=1000, batch=3)
    assert gone == 10
    left = [e.message for e in await store.list_events()]
    assert left == [f"event {i}" for i in range(29, 9, -1)]
    gone = await store.prune_events(time.time() - 30 * 86400, keep=7, batch=4)
    assert gone == 13
    assert [e.message for e in await store.list_events()] == [
        f"event {i}" for i in range(29, 22, -1)]
    assert await store.prune_events(time.time() - 30 * 86400, keep=7) == 0


async def test_activity_gathers_changes_into_one_event_per_person_and_kind(
        store: Store) -> None:
    """Uploads and deletes are tallied per (kind, who, bucket) and written as one
    event each, in one transaction; a single file reads as itself."""
    activity = ActivityLog(store, window=3600)  # flushed by hand below
    for i in range(5):
        activity.note(UPLOADED, "by laptop (TK1, readwrite)", "TK1", "default",
                      f"photo-{i}.jpg", 1024, 100 + i)
    activity.note(UPLOADED, "by phone (TK2, readwrite)", "TK2", "default", "a.txt", 3, 200)
    activity.note(DELETED, "by laptop (TK1, readwrite)", "TK1", "default", "old.txt", 10, 7)
    assert await activity.flush() == 3
    assert await activity.flush() == 0  # nothing noted since
    events = {(e.kind, (e.data or {})["key_id"]): e for e in await store.list_events()}
    assert len(events) == 3
    laptop = events[(UPLOADED, "TK1")]
    assert laptop.message == ("5 files (5.0 KiB) uploaded by laptop (TK1, readwrite): "
                              "photo-0.jpg, photo-1.jpg, photo-2.jpg and 2 more")
    assert laptop.data is not None and laptop.data["count"] == 5
    assert laptop.data["ids"] == [100, 101, 102, 103, 104]
    assert events[(UPLOADED, "TK2")].message == "a.txt (3 B) uploaded by phone (TK2, readwrite)"
    assert events[(DELETED, "TK1")].message == "old.txt (10 B) deleted by laptop (TK1, readwrite)"
    trashing = ActivityLog(store, window=3600, to_trash=True)  # deletes go to the trash
    trashing.note(DELETED, "by phone (TK2, readwrite)", "TK2", "default", "b.txt", 5, 9)
    await trashing.flush()
    assert (await store.list_events(limit=1))[0].message == (
        "b.txt (5 B) moved to the trash by phone (TK2, readwrite)")
