"""A brain on an empty or wrong database never deletes the cluster's data.

The operator's mistakes, with real processes: a brain started on a new, empty
database with the old secrets (nodes refuse it: another cluster id), nodes that
never had a cluster id (from before ids existed: strangers, kept whole), a node
moved to another cluster on purpose, and the orphan sweep deleting only what this
brain knows it wrote.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from typing import Any

from cluster import Cluster, wait_until

MiB = 1024 * 1024


def on_disk(c: Cluster) -> dict[int, set[str]]:
    """Every chunk and pack on each node's disk."""
    return {i: set(c.chunk_files(i)) | set(c.pack_files(i)) for i in range(c.n_nodes)}


def empty_database(c: Cluster) -> None:
    """The brain's metadata is lost (or the brain points at a new path); its
    secrets and admin.key stay, as after a careless reinstall."""
    c.stop_brain()
    brain = c.root / "brain"
    (brain / "tossit.db").rename(brain / "real.db")
    for extra in ("tossit.db-wal", "tossit.db-shm"):
        (brain / extra).unlink(missing_ok=True)


def stop_as_nodes_from_before_cluster_ids(c: Cluster) -> None:
    """Stop every node and forget its cluster id, as a node of an older version."""
    for i in range(c.n_nodes):
        c.kill_node(i, signal.SIGTERM)
        ident = c.node_dir(i) / "node.json"
        doc = json.loads(ident.read_text())
        del doc["cluster"]
        ident.write_text(json.dumps(doc))


def use_new_admin_key(c: Cluster) -> None:
    c.http.headers["Authorization"] = \
        f"Bearer {(c.root / 'brain' / 'admin.key.new').read_text().strip()}"


def status(c: Cluster) -> dict[str, Any]:
    result: dict[str, Any] = c.http.get("/api/status").json()
    return result


def test_a_brain_on_an_empty_database_deletes_nothing_and_needs_recovery(
        make_cluster: Any) -> None:
    c: Cluster = make_cluster(nodes=3, replicas=3)
    for i in range(4):
        c.upload(f"precious-{i}.bin", os.urandom(MiB + 1000 * i))
    before = on_disk(c)
    old_key = (c.root / "brain" / "admin.key").read_text()
    cluster_id = status(c)["cluster_id"]
    empty_database(c)
    c.brain_args = ["--gc-grace", "0", "--gc-interval", "1"]  # orphans would go at once
    c.start_brain()
    # admin.key belongs to the real database: kept; the new one is beside it.
    assert (c.root / "brain" / "admin.key").read_text() == old_key
    use_new_admin_key(c)
    st = wait_until(lambda: (s := status(c))["needs_recovery"] and s, 20,
                    what="the needs-recovery alarm")
    assert st["cluster_id"] != cluster_id
    assert f"belongs to cluster {cluster_id}" in st["needs_recovery"]
    assert "tossit recover" in st["needs_recovery"]
    assert st["nodes"]["online"] == 0  # refused at the door
    assert c.gc()["orphans_deleted"] == 0
    assert on_disk(c) == before
    # Loud on both sides: the node logs each refusal, the brain each refused node.
    wait_until(lambda: c.log("node0").count("refused this node") >= 2, 20,
               what="repeated refusals in the node's log")
    assert "WARNING" in c.log("node0") and f"--adopt-cluster {st['cluster_id']}" in c.log("node0")
    assert "refused node node-0" in c.log("brain")
    events = c.http.get("/api/events", params={"kind": "node_refused"}).json()
    assert {e["severity"] for e in events} == {"error"} and len(events) == 3
    out = subprocess.run([sys.executable, "-m", "tossit", "status", "--brain", c.url],
                         capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, TOSSIT_KEY_FILE=str(
                             c.root / "brain" / "admin.key.new"), COLUMNS="200"))
    assert out.stdout.startswith("NEEDS RECOVERY:"), out.stdout + out.stderr
    # Back on the real database, everything is there and the nodes join again.
    c.stop_brain()
    (c.root / "brain" / "tossit.db").unlink()
    (c.root / "brain" / "real.db").rename(c.root / "brain" / "tossit.db")
    c.brain_args = []
    c.start_brain()
    c.wait_online(3)
    assert status(c)["needs_recovery"] is None
    for f in c.http.get("/api/files").json():
        assert len(c.download(f["id"])) == f["size"]


def test_nodes_from_before_cluster_ids_are_strangers_and_keep_their_data(
        make_cluster: Any) -> None:
    """Nodes with no cluster id join any brain; if their data is mostly unknown to
    it, they are strangers: nothing is deleted anywhere and the alarm says why."""
    c: Cluster = make_cluster(nodes=3, replicas=3)
    for i in range(20):
        c.upload(f"small-{i}.txt", os.urandom(3000 + i))
    stop_as_nodes_from_before_cluster_ids(c)
    before = on_disk(c)
    empty_database(c)
    c.brain_args = ["--gc-grace", "0"]
    c.start_brain()
    use_new_admin_key(c)
    for i in range(3):
        c.start_node(i)
    c.wait_online(3)
    assert c.gc()["orphans_deleted"] == 0
    st = status(c)
    assert st["needs_recovery"] and "never heard of" in st["needs_recovery"], st
    assert st["manifests"]["deletions_frozen"]
    after = on_disk(c)  # (plus the new brain's own packs: its admin key)
    assert all(before[i] <= after[i] for i in range(3))
    events = c.http.get("/api/events", params={"kind": "needs_recovery"}).json()
    assert len(events) == 3 and all("unknown to this brain's metadata" in e["message"]
                                    for e in events)
    assert "WARNING" in c.log("brain") and "never heard of" in c.log("brain")
    # They did not take this brain's cluster id: back on the real database, they join.
    assert not any("cluster" in json.loads((c.node_dir(i) / "node.json").read_text())
                   for i in range(3))


def test_a_node_of_another_cluster_joins_only_when_told_to(make_cluster: Any) -> None:
    c: Cluster = make_cluster(nodes=3, replicas=3)
    data = os.urandom(5000)
    fid = c.upload("kept.txt", data)["id"]
    ours = status(c)["cluster_id"]
    c.kill_node(0, signal.SIGTERM)
    ident = c.node_dir(0) / "node.json"
    doc = json.loads(ident.read_text())
    assert doc["cluster"] == ours
    ident.write_text(json.dumps({**doc, "cluster": "0123456789abcdef"}))
    c.start_node(0)
    wait_until(lambda: "belongs to cluster 0123456789abcdef" in c.log("node0"), 20,
               what="the refusal in the node's log")
    c.wait_node_state(0, "offline")  # refused: no heartbeat counts
    assert "refused" in (status(c)["needs_recovery"] or "")
    c.kill_node(0, signal.SIGTERM)
    c.node_args = ["--adopt-cluster", ours]
    c.start_node(0)
    c.wait_node_state(0, "online")
    wait_until(lambda: json.loads(ident.read_text())["cluster"] == ours, 10,
               what="the node remembering its new cluster")
    assert status(c)["needs_recovery"] is None
    assert c.download(fid) == data


def intents(c: Cluster, ids: set[str]) -> set[str]:
    """Which of these chunk ids the brain's intent journal holds (read from its
    SQLite file, read-only)."""
    db = sqlite3.connect(f"file:{c.root / 'brain' / 'tossit.db'}?mode=ro", uri=True)
    try:
        marks = ",".join("?" * len(ids))
        rows = db.execute(f"SELECT chunk_id FROM chunk_intents WHERE chunk_id IN ({marks})",
                          sorted(ids)).fetchall()
    finally:
        db.close()
    return {r[0] for r in rows}


def test_the_sweep_deletes_what_this_brain_wrote_and_keeps_the_rest(make_cluster: Any) -> None:
    """A brain killed mid-upload left chunks on the nodes: its intent journal names
    them, so the sweep deletes them (at most gc_sweep_max per sweep). A copy that
    no file and no record names is kept and counted, however old."""
    c: Cluster = make_cluster(nodes=3, replicas=3, brain_args=["--gc-grace", "0"],
                              brain_env={"TOSSIT_GC_SWEEP_MAX": "4"})
    c.upload("known.bin", os.urandom(5000))
    planted = os.urandom(7000)
    planted_id = hashlib.sha256(planted).hexdigest()
    with c.node_http(0) as node:
        assert node.put(f"/chunks/{planted_id}", content=planted).status_code == 201
    prefix = os.urandom(3 * MiB + 1000)
    ids = {hashlib.sha256(prefix[i:i + MiB]).hexdigest()
           for i in range(0, 3 * MiB, MiB)}
    sock = c.open_upload("/api/files/interrupted.bin", length=40 * MiB, first=prefix)
    try:
        wait_until(lambda: all(ids <= set(c.chunk_files(i)) for i in range(3)), 30,
                   what="the partial upload's chunks on every node")
        wait_until(lambda: intents(c, ids) == ids, 20, what="the intents journalled")
        c.stop_brain(signal.SIGKILL)
    finally:
        sock.close()
    c.start_brain()
    c.wait_online(3)

    def gone() -> bool:
        c.gc()
        return not any(ids & set(c.chunk_files(i)) for i in range(3))

    wait_until(gone, 30, interval=0.5, what="the interrupted upload's chunks collected")
    capped = c.http.get("/api/events", params={"kind": "gc_capped"}).json()
    assert capped and capped[-1]["data"]["cap"] == 4, capped
    assert planted_id in c.chunk_files(0)
    kept = status(c)["manifests"]["unknown_kept"]
    assert kept == {"copies": 1, "bytes": len(planted)}, kept
    assert status(c)["needs_recovery"] is None


def test_nodes_from_before_cluster_ids_learn_it_from_their_own_brain(
        make_cluster: Any) -> None:
    """The upgrade path: nodes with data and no cluster id, on the brain whose
    metadata knows their data, take its id once a sweep has vouched for them."""
    c: Cluster = make_cluster(nodes=3, replicas=3)
    for i in range(20):
        c.upload(f"known-{i}.txt", os.urandom(2000 + i))
    ours = status(c)["cluster_id"]
    stop_as_nodes_from_before_cluster_ids(c)
    for i in range(3):
        c.start_node(i)
    c.wait_online(3)
    c.gc()  # a sweep: their inventories are this metadata's own

    def learnt() -> bool:
        return all(json.loads((c.node_dir(i) / "node.json").read_text()).get("cluster") == ours
                   for i in range(3))

    wait_until(learnt, 20, what="every node taking the cluster id")
    assert status(c)["needs_recovery"] is None
