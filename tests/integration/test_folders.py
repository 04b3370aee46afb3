"""Folder listings: ``prefix`` + ``delimiter=/`` on GET /api/files, and name order.

The store is tested on SQLite and on PostgreSQL (the queries differ: a key range
on one, LIKE on the other); the HTTP listing on a real brain.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cluster import Cluster
from tossit.brain.db import make_engine, migrate
from tossit.brain.store import NewObject, Store, prefix_end, sort_folders
from tossit.manifests import pack_key

KEY = pack_key("test cluster secret")
N1 = f"{1:032x}"

# name -> size
TREE = {
    "top.txt": 1,
    "Banana.txt": 2,
    "apple.txt": 3,
    "cherry.txt": 4,
    "photos/a.jpg": 10,
    "photos/2024/b.jpg": 20,
    "photos/2024/c.jpg": 30,
    "photos/2025/d.jpg": 40,
    "Photos/upper.jpg": 50,     # another folder: names are case-sensitive
    "pho%_to/x.bin": 60,        # LIKE wildcards in a folder name
    "photos0.txt": 70,          # right after "photos/" in byte order
    "docs/readme.md": 80,
}


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    await migrate(db_url)
    s = Store(make_engine(db_url), KEY)
    try:
        await s.upsert_node({
            "id": N1, "name": "node-1", "address": "http://127.0.0.1:8081", "zone": "default",
            "capacity": 1000, "used": 0, "free": 1000, "disk_total": 2000,
            "disk_free": 1500, "chunk_count": 0, "load": 0.0, "version": "test"}, "online")
        for name, size in TREE.items():
            chunk = hashlib.sha256(name.encode()).hexdigest()
            await s.commit_objects([NewObject(
                bucket="default", key=name, size=size, sha256=chunk,
                content_type="application/octet-stream", chunk_size=size,
                chunks=[(chunk, size)], replicas={chunk: [N1]})])
        yield s
    finally:
        await s.close()


def test_prefix_end_bounds_every_name_with_the_prefix() -> None:
    assert prefix_end("photos/") == "photos0"
    assert prefix_end("a\U0010ffff") == "b"
    assert prefix_end("\U0010ffff") is None
    assert prefix_end("x\ud7ff") == "x\ue000"
    end = prefix_end("photos/")
    assert end is not None
    for name in ("photos/", "photos/a", "photos/\U0010ffff\U0010ffff", "photos/é"):
        assert b"photos/" <= name.encode() < end.encode()  # UTF-8 order: SQLite's
    for name in ("photos0", "photos0/a", "photot"):
        assert not name.encode() < end.encode()


async def test_files_at_a_level_and_its_folders(store: Store) -> None:
    objs, total = await store.list_objects(delimiter="/", sort="name", descending=False)
    assert [o.key for o in objs] == ["apple.txt", "Banana.txt", "cherry.txt", "photos0.txt",
                                     "top.txt"]
    assert total == 5
    folders = sort_folders(await store.list_folders(), "name", False)
    assert [(f.name, f.files, f.size) for f in folders] == [
        ("docs/", 1, 80), ("pho%_to/", 1, 60), ("Photos/", 1, 50), ("photos/", 4, 100)]

    objs, total = await store.list_objects(prefix="photos/", delimiter="/", sort="name",
                                           descending=False)
    assert [o.key for o in objs] == ["photos/a.jpg"] and total == 1
    folders = sort_folders(await store.list_folders(prefix="photos/"), "size", True)
    assert [(f.name, f.files, f.size) for f in folders] == [
        ("photos/2024/", 2, 50), ("photos/2025/", 1, 40)]

    # Wildcards in the prefix are literal; case matters in a prefix.
    objs, total = await store.list_objects(prefix="pho%_to/", delimiter="/")
    assert [o.key for o in objs] == ["pho%_to/x.bin"]
    assert await store.list_folders(prefix="pho%_to/") == []
    objs, total = await store.list_objects(prefix="photos")
    assert sorted(o.key for o in objs) == ["photos/2024/b.jpg", "photos/2024/c.jpg",
                                           "photos/2025/d.jpg", "photos/a.jpg", "photos0.txt"]
    assert total == 5
    objs, _ = await store.list_objects(prefix="Photos/")
    assert [o.key for o in objs] == ["Photos/upper.jpg"]


async def test_name_order_ignores_case_and_pages_stably(store: Store) -> None:
    names = []
    for offset in range(0, len(TREE), 5):
        objs, _ = await store.list_objects(sort="name", descending=False, limit=5,
                                           offset=offset)
        names += [o.key for o in objs]
    assert names == sorted(TREE, key=lambda n: (n.lower(), n))
    objs, _ = await store.list_objects(sort="name", descending=True, limit=100)
    assert [o.key for o in objs] == names[::-1]


# -- over HTTP ------------------------------------------------------------------------


def _put(cl: Cluster, name: str, data: bytes) -> None:
    resp = cl.http.put("/api/files/" + name, content=data)
    assert resp.status_code == 201, resp.text


def _level(cl: Cluster, **params: Any) -> tuple[list[dict[str, Any]], int, int]:
    resp = cl.http.get("/api/files", params={"delimiter": "/", **params})
    assert resp.status_code == 200, resp.text
    return (resp.json(), int(resp.headers["X-Total-Count"]),
            int(resp.headers["X-Folder-Count"]))


def test_the_listing_api_browses_folders(shared_cluster: Cluster) -> None:
    cl = shared_cluster
    for name, size in {"fold/x/1.bin": 100, "fold/x/2.bin": 200, "fold/y/3.bin": 300,
                       "fold/Zeta.txt": 4, "fold/alpha.txt": 5}.items():
        _put(cl, name, b"z" * size)

    items, total, nfolders = _level(cl, prefix="fold/", sort="name", order="asc")
    assert (total, nfolders) == (4, 2)
    assert [(i.get("type"), i["name"]) for i in items] == [
        ("folder", "fold/x/"), ("folder", "fold/y/"), (None, "fold/alpha.txt"),
        (None, "fold/Zeta.txt")]
    assert items[0]["files"] == 2 and items[0]["size"] == 300
    assert items[1]["files"] == 1 and items[1]["size"] == 300
    assert items[2]["size"] == 5 and "id" in items[2]

    # Paging runs through the folders, then the files.
    pages = [_level(cl, prefix="fold/", sort="name", order="asc", limit=1, offset=i)[0]
             for i in range(5)]
    assert [p[0]["name"] if p else None for p in pages] == [
        "fold/x/", "fold/y/", "fold/alpha.txt", "fold/Zeta.txt", None]
    page, total, _ = _level(cl, prefix="fold/", sort="name", order="asc", limit=3)
    assert [i["name"] for i in page] == ["fold/x/", "fold/y/", "fold/alpha.txt"] and total == 4

    items, total, nfolders = _level(cl, prefix="fold/x/")
    assert (total, nfolders) == (2, 0)
    assert {i["name"] for i in items} == {"fold/x/1.bin", "fold/x/2.bin"}

    # Only "/" is a delimiter.
    assert cl.http.get("/api/files", params={"delimiter": "-"}).status_code == 400
