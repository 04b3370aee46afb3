"""The metadata the S3 API reads, on SQLite and PostgreSQL: buckets made,
deleted and made again, keys in UTF-8 byte order whatever the database's
collation, and listings served by a range of the (bucket, key) index."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from tossit.brain.db import make_engine, migrate
from tossit.brain.s3.listing import list_page
from tossit.brain.store import NewObject, Store

# Keys whose byte order differs from a linguistic collation's (en_US puts "a/b"
# after "a0", "B" after "a", and "é" before "f").
KEYS = ["a", "a/b", "a0", "B", "b", "é", "f", "z", "日本", "\U0001f600", "a b", "a-b", "A"]


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    await migrate(db_url)
    s = Store(make_engine(db_url))
    try:
        yield s
    finally:
        await s.close()


async def put(store: Store, bucket: str, keys: list[str]) -> None:
    cid = hashlib.sha256(b"shared").hexdigest()
    for start in range(0, len(keys), 400):
        await store.commit_objects([
            NewObject(bucket=bucket, key=k, size=1, sha256=cid, content_type="x",
                      chunk_size=1, chunks=[(cid, 1)], replicas={cid: []})
            for k in keys[start:start + 400]])


async def test_buckets_made_deleted_and_made_again(store: Store) -> None:
    assert await store.make_bucket("photos")
    assert not await store.make_bucket("photos")
    bucket = await store.live_bucket("photos")
    assert bucket is not None and [b.name for b in await store.live_buckets()] == ["photos"]
    await put(store, "photos", ["x"])
    assert await store.drop_bucket("photos") is False  # not empty
    found = await store.object_by_key(bucket.id, "x")
    assert found is not None
    await store.apply([], [found[0].id])
    assert await store.drop_bucket("photos") is True
    assert await store.drop_bucket("photos") is None
    assert await store.live_bucket("photos") is None and await store.live_buckets() == []
    assert await store.make_bucket("photos")
    again = await store.live_bucket("photos")
    assert again is not None and again.id == bucket.id  # the same row, its history kept
    assert await store.live_bucket(".tossit") is None  # the brain's own bucket is not S3's


async def test_keys_list_in_utf8_byte_order(store: Store) -> None:
    await put(store, "order", KEYS)
    bid = await store.bucket_id("order")
    assert bid is not None
    listed = [o.key for o in await store.keys_in_order(bid, limit=100)]
    assert listed == sorted(KEYS, key=lambda k: k.encode())
    assert [o.key for o in await store.keys_in_order(bid, prefix="a", limit=100)] == \
        ["a", "a b", "a-b", "a/b", "a0"]
    assert [o.key for o in await store.keys_in_order(bid, after="b", limit=3)] == \
        ["f", "z", "é"]
    assert [o.key for o in await store.keys_in_order(bid, start="z", limit=2)] == ["z", "é"]


async def test_a_folder_of_many_keys_is_skipped_with_a_seek(store: Store) -> None:
    keys = [f"logs/{i:05d}" for i in range(3000)] + ["m", "zz"]
    await put(store, "big", keys)
    bid = await store.bucket_id("big")
    assert bid is not None
    calls = []

    async def fetch(after: str | None, start: str | None, limit: int) -> list[object]:
        calls.append((after, start, limit))
        return list(await store.keys_in_order(bid, after=after, start=start, limit=limit))

    page = await list_page(fetch, "", "/", None, 1000)  # type: ignore[arg-type]
    assert page.prefixes == ["logs/"] and [o.key for o in page.contents] == ["m", "zz"]
    assert len(calls) <= 3


async def test_listing_reads_the_key_index(store: Store) -> None:
    """No scan, no sort: a page is a range of the (bucket_id, key) index,
    whatever the bucket's size."""
    await put(store, "plan", [f"k{i:04d}" for i in range(500)])
    bid = await store.bucket_id("plan")
    assert bid is not None
    stmt = store.keys_query(bid, prefix="k", after="k0100", limit=1001)
    sql = str(stmt.compile(store.engine, compile_kwargs={"literal_binds": True}))
    async with store.engine.connect() as conn:
        if store.dialect == "sqlite":
            plan = " ".join(str(r[-1]) for r in (await conn.execute(
                text("EXPLAIN QUERY PLAN " + sql))).all())
            assert "USING INDEX sqlite_autoindex_objects_1" in plan, plan
            assert "TEMP B-TREE" not in plan, plan
        else:
            await conn.execute(text("SET enable_seqscan = off"))
            plan = " ".join(r[0] for r in (await conn.execute(text("EXPLAIN " + sql))).all())
            assert "uq_objects_bucket_key" in plan and "Sort" not in plan, plan
