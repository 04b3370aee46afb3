"""A real cluster (brain + 3 nodes) with its metadata in PostgreSQL."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

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


def test_postgres_brain_lost_rebuilt_into_postgres_from_a_snapshot(
    make_cluster: Callable[..., Cluster], pg_url: str, request: Any
) -> None:
    """A PostgreSQL brain's snapshot (a repeatable-read copy of every table) and
    manifests rebuild its metadata into a fresh PostgreSQL database."""
    c = make_cluster(database_url=pg_url, nodes=3, replicas=3)
    files = {"a.bin": os.urandom(MiB + 1), "b.txt": b"bee", "c.dat": b""}
    for name, data in files.items():
        c.upload(name, data)
    snap = c.http.post("/api/admin/snapshot").json()
    c.upload("late.bin", b"after the snapshot")
    files["late.bin"] = b"after the snapshot"
    before = {f["name"]: (f["id"], f["sha256"]) for f in c.http.get("/api/files").json()}
    c.stop_brain(signal.SIGKILL)
    shutil.rmtree(c.root / "brain")  # the secrets went with the brain's disk
    fresh = request.getfixturevalue("pg_url_2")
    out = subprocess.run(
        [sys.executable, "-m", "tossit", "recover", "--from-snapshot",
         "--cluster-secret-file", str(c.node_dir(0) / "cluster.secret"),
         "--data-dir", str(c.root / "brain"), "--database-url", fresh,
         *[arg for p in c.node_ports for arg in ("--node", f"http://127.0.0.1:{p}")]],
        capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"version {snap['as_of']:,})" in out.stdout, out.stdout
    c.database_url = fresh
    c.start_brain()
    after = {f["name"]: (f["id"], f["sha256"]) for f in c.http.get("/api/files").json()}
    assert after == before
    c.wait_online(3)
    for name, data in files.items():
        assert sha(c.download(after[name][0])) == sha(data), name
