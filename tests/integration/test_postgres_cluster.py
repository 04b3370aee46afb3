"""A real cluster (brain + 3 nodes) with its metadata in PostgreSQL."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

from cluster import Cluster

MiB = 1 << 20


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_postgres_cluster_round_trip_gc_and_restart(
    make_cluster: Callable[..., Cluster], pg_url: str
) -> None:
    c = make_cluster(database_url=pg_url, nodes=3, replicas=3)
    big = os.urandom(3 * MiB + 12345)  # 4 chunks of 1 MiB (the cluster's chunk size)
    shares_first_chunk = big[:MiB] + b"tail of a different file"
    files = {
        "big.bin": big,
        "shares.bin": shares_first_chunk,
        "small.txt": b"hello postgres\n",
        "empty.dat": b"",
        "naïve résumé.txt": "unicode name ✓".encode(),
    }
    ids = {}
    for name, data in files.items():
        up = c.upload(name, data)
        assert up["size"] == len(data) and up["sha256"] == sha(data)
        assert up["chunks"] == -(-len(data) // MiB)
        ids[name] = up["id"]

    listing = {f["id"]: f for f in c.http.get("/api/files").json()}
    assert {listing[i]["name"] for i in ids.values()} == set(files)
    assert all(listing[i]["replication"]["state"] == "healthy" for i in ids.values())
    for name, data in files.items():
        assert sha(c.download(ids[name])) == sha(data), name

    # Ranged read across a chunk boundary.
    r = c.http.get(f"/api/files/{ids['big.bin']}/download",
                   headers={"Range": f"bytes={MiB - 10}-{MiB + 9}"})
    assert r.status_code == 206 and r.content == big[MiB - 10 : MiB + 10]

    info = c.http.get(f"/api/files/{ids['big.bin']}/info").json()
    big_chunks = [ch["id"] for ch in info["chunk_map"]]
    assert len(big_chunks) == 4 and big_chunks[0] == sha(big[:MiB])
    for i in range(3):
        on_disk = c.chunk_files(i)
        assert set(big_chunks) <= set(on_disk)

    # Delete: gone from the listing at once; gc frees only unshared chunks.
    assert c.http.delete(f"/api/files/{ids['big.bin']}").status_code == 200
    assert ids["big.bin"] not in {f["id"] for f in c.http.get("/api/files").json()}
    assert c.http.get(f"/api/files/{ids['big.bin']}/download").status_code == 404
    c.gc(orphans=False)
    for i in range(3):
        on_disk = c.chunk_files(i)
        assert big_chunks[0] in on_disk  # still used by shares.bin
        assert not set(big_chunks[1:]) & set(on_disk)
    assert c.download(ids["shares.bin"]) == shares_first_chunk

    # Restart the brain: files and nodes come back from PostgreSQL.
    nodes_before = {n["id"]: n["name"] for n in c.http.get("/api/nodes").json()}
    assert len(nodes_before) == 3
    c.stop_brain()
    c.start_brain()
    nodes_after = c.wait_online(3)
    assert {n["id"]: n["name"] for n in nodes_after} == nodes_before
    listing = {f["id"]: f for f in c.http.get("/api/files").json()}
    remaining = {n: i for n, i in ids.items() if n != "big.bin"}
    assert set(listing) == set(remaining.values())
    for name, file_id in remaining.items():
        assert listing[file_id]["name"] == name
        assert c.download(file_id) == files[name]
    # Still writable after the restart, and ids are not reused.
    up = c.upload("after-restart.bin", b"x" * (MiB + 1))
    assert up["id"] not in ids.values()
    assert c.download(up["id"]) == b"x" * (MiB + 1)
