"""A node whose disk refuses writes (read-only after an error, a dying drive):
uploads go on at full strength on the other nodes, the node says why with its
heartbeats and gets no new copies, its copies are still read, and once its disk
writes again it takes copies again by itself. Real brain and node processes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from typing import Any

import httpx

from cluster import Cluster, wait_until

KiB = 1024


def tossit_nodes(c: Cluster) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tossit", "nodes", "--brain", c.url],
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, TOSSIT_KEY=c.admin_key, COLUMNS="200"))


def node0(c: Cluster) -> dict[str, Any]:
    return next(n for n in c.http.get("/api/nodes").json() if n["name"] == "node-0")


def test_a_node_whose_disk_refuses_writes_gets_no_copies_until_it_writes_again(
        make_cluster: Any) -> None:
    c: Cluster = make_cluster(nodes=4, replicas=3)
    stored: dict[int, bytes] = {}

    def upload_some(tag: str, n: int = 6) -> None:
        for i in range(n):
            data = os.urandom(200 * KiB + i)
            up = c.upload(f"{tag}-{i}.bin", data)
            assert up["replication"]["state"] == "healthy", up  # 3 copies, from the start
            stored[up["id"]] = data

    upload_some("before")
    held_before = set(c.chunk_files(0))
    assert held_before  # node 0 holds copies of earlier files: they stay readable

    # Chunk writes fail (ENOTDIR): the folder where writes start is now a file.
    tmp = c.node_dir(0) / "tmp"
    shutil.rmtree(tmp)
    tmp.write_bytes(b"")
    upload_some("during")  # a copy refused by node 0 goes to another node at once
    wait_until(lambda: node0(c)["write_error"] == "Not a directory", 15,
               what="node 0's heartbeat saying its disk refuses writes")

    def disk_events(kind: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = c.http.get("/api/events", params={"kind": kind}).json()
        return found

    # (Written by the same heartbeat's handler, just after the registry changed.)
    wait_until(lambda: disk_events("node_disk_error"), 10, what="the node_disk_error event")
    events = disk_events("node_disk_error")
    assert len(events) == 1 and events[0]["severity"] == "error"
    assert "node-0's disk refuses writes (Not a directory)" in events[0]["message"]
    listed = tossit_nodes(c)
    assert "! node-0 refuses writes: its disk says 'Not a directory'" in listed.stdout
    assert c.http.get("/ready").json()["nodes_writable"] == 3
    # A repair copy ordered there anyway is refused the same way (not a traceback).
    missing = next(iter(set(c.chunk_files(1)) - set(c.chunk_files(0))))
    copy = c.node_http(0).post("/replicate", json={"chunk_id": missing, "sources": [
        {"id": c.node_id(1), "address": f"http://127.0.0.1:{c.node_ports[1]}"}]})
    assert copy.status_code == 500 and copy.json()["error"] == "disk_error", copy.text
    assert "Traceback" not in c.log("node0")

    # While it lasts, no copy is even offered to node 0.
    refused = _refused_puts(c)
    assert refused >= 1
    upload_some("flagged")
    assert _refused_puts(c) == refused
    assert set(c.chunk_files(0)) == held_before

    # Every file reads back whole, node 0's old copies included.
    for file_id, data in stored.items():
        assert c.download(file_id) == data

    # The disk is fixed: the node's test write before its next heartbeat works.
    tmp.unlink()
    tmp.mkdir()
    wait_until(lambda: node0(c)["write_error"] is None, 15,
               what="node 0's heartbeat saying its disk writes again")
    wait_until(lambda: disk_events("node_disk_ok"), 10, what="the node_disk_ok event")
    (ok,) = disk_events("node_disk_ok")
    assert "node-0's disk takes writes again" in ok["message"]
    upload_some("after")  # with 4 nodes and 3 copies, node 0 gets its share again
    assert set(c.chunk_files(0)) > held_before
    for file_id, data in stored.items():
        assert c.download(file_id) == data


def _refused_puts(c: Cluster) -> float:
    """Chunk writes node 0 answered with disk_error, from its own metrics."""
    text = httpx.get(f"http://127.0.0.1:{c.node_ports[0]}/metrics", timeout=10).text
    m = re.search(r'^tossit_node_chunk_ops_total\{op="put",result="disk_error"\} (\S+)$',
                  text, re.M)
    return float(m.group(1)) if m else 0.0


def test_a_full_cluster_frees_space_when_files_are_deleted(make_cluster: Any) -> None:
    """Every node past its high-water mark: uploads are refused (503), but
    deletes are not. Each delete's manifest pack goes into the room a node keeps
    for packs over its limit; until it is on the nodes the collector frees
    nothing, so without that room a full cluster could never be emptied."""
    c: Cluster = make_cluster(nodes=3, replicas=3, node_capacity="6MiB",
                              brain_args=["--snapshot-interval", "0"])
    ids = []
    for size in (900 * KiB, 64 * KiB, 2 * KiB):  # up to the last few KiB under the mark
        for i in range(200):
            up = c.http.put(f"/api/files/fill-{size}-{i}.bin", content=os.urandom(size))
            if up.status_code != 201:
                assert up.status_code in (503, 507), up.text
                break
            ids.append(up.json()["id"])
        else:
            raise AssertionError(f"the cluster never filled up with {size} B files")
    assert [n["full"] for n in c.http.get("/api/nodes").json()] == [True] * 3
    listed = tossit_nodes(c).stdout
    assert all(f"! node-{i} is full" in listed for i in range(3)), listed
    for file_id in ids:
        gone = c.http.delete(f"/api/files/{file_id}")
        assert gone.status_code == 200, gone.text  # not 503 manifest_not_stored
    wait_until(lambda: c.gc(orphans=False)["bytes_freed"] == 0
               and all(n["used"] < 1024 * KiB for n in c.http.get("/api/nodes").json()),
               60, interval=0.5, what="the deleted files' space freed on every node")
    assert c.http.get("/api/status").json()["manifests"]["waiting"] == 0
    assert [n["full"] for n in c.http.get("/api/nodes").json()] == [False] * 3
    data = os.urandom(900 * KiB)
    again = c.upload("after.bin", data)  # room again
    assert c.download(again["id"]) == data
