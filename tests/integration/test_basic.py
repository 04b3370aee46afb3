"""The seed's REST API against a real 3-node cluster."""

from __future__ import annotations

import hashlib
import os
from typing import Any

from cluster import Cluster
from tossit.config import MiB


def test_upload_list_download_delete(shared_cluster: Cluster) -> None:
    c = shared_cluster
    data = os.urandom(3 * 1024 * 1024 + 17)
    up = c.upload("photo.jpg", data)
    assert up["size"] == len(data)
    assert up["sha256"] == hashlib.sha256(data).hexdigest()
    assert up["chunks"] == 4
    assert up["replication"]["state"] == "healthy"
    listed = {f["id"]: f for f in c.http.get("/api/files").json()}
    assert listed[up["id"]]["name"] == "photo.jpg"
    assert c.download(up["id"]) == data
    info = c.http.get(f"/api/files/{up['id']}/info").json()
    assert [ch["size"] for ch in info["chunk_map"]] == [1 << 20] * 3 + [17]
    assert all(len(ch["nodes"]) == 3 for ch in info["chunk_map"])
    # Every chunk is on every node's disk (R=3 on 3 nodes).
    for i in range(3):
        files = c.chunk_files(i)
        for ch in info["chunk_map"]:
            assert hashlib.sha256(files[ch["id"]].read_bytes()).hexdigest() == ch["id"]
    assert c.http.delete(f"/api/files/{up['id']}").status_code == 200
    assert up["id"] not in {f["id"] for f in c.http.get("/api/files").json()}
    assert c.http.get(f"/api/files/{up['id']}/download").status_code == 404
    c.gc(orphans=False)
    for i in range(3):
        assert not set(c.chunk_files(i)) & {ch["id"] for ch in info["chunk_map"]}


def test_usable_capacity_with_uneven_nodes(make_cluster: Any) -> None:
    """Every chunk needs a copy on each of 3 nodes when there are 3: two 256 MiB
    nodes and a 64 MiB one hold 64 MiB of files, not (256 + 256 + 64) / 3."""
    c = make_cluster(nodes=2, replicas=3, node_capacity="256MiB")
    c.node_capacity = "64MiB"
    c.add_node()
    c.wait_online(3)
    cap = c.http.get("/api/status").json()["capacity"]
    assert cap["raw"] == 576 * MiB
    assert cap["usable"] == 64 * MiB


def test_status_counts_a_shared_disk_once(shared_cluster: Cluster) -> None:
    """The test nodes share one filesystem: raw capacity and free space must not
    add up to more than that disk holds."""
    nodes = shared_cluster.http.get("/api/nodes").json()
    assert len({n["disk_id"] for n in nodes}) == 1
    status = shared_cluster.http.get("/api/status").json()
    assert status["capacity"]["raw"] <= nodes[0]["disk_total"]
    assert status["capacity"]["free"] <= max(n["disk_free"] for n in nodes) * 1.01
    assert status["capacity"]["raw"] == min(sum(n["capacity"] for n in nodes),
                                            nodes[0]["disk_total"])
