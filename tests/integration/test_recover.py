"""The brain's disk is lost: ``tossit recover`` rebuilds the metadata from the nodes.

Real processes: a cluster takes uploads, overwrites and deletes; the brain is
stopped and its whole data dir deleted; ``tossit recover`` reads the nodes
(over HTTP, or their data dirs); a brain started on the result must serve every
surviving file with the right bytes, keep deleted files deleted and overwritten
names at their newest content, and list exactly what was listed before.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from s3_clients import make_key, s3_client

from cluster import Cluster, wait_until

MiB = 1024 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def run_recover(c: Cluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    secret = c.node_dir(0) / "cluster.secret"  # the brain's copy went with its disk
    proc = subprocess.run(
        [sys.executable, "-m", "tossit", "recover", "--cluster-secret-file", str(secret),
         "--data-dir", str(c.root / "brain"), "--replicas", str(c.replicas), *args],
        capture_output=True, text=True, timeout=300, cwd=c.root)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def node_urls(c: Cluster, skip: tuple[int, ...] = ()) -> list[str]:
    out: list[str] = []
    for i, port in enumerate(c.node_ports):
        if i not in skip:
            out += ["--node", f"http://127.0.0.1:{port}"]
    return out


def listing(c: Cluster) -> dict[str, tuple[int, int, str]]:
    files = c.http.get("/api/files", params={"limit": 10000}).json()
    return {f["name"]: (f["id"], f["size"], f["sha256"]) for f in files}


def workload(c: Cluster) -> dict[str, bytes]:
    """Files of several sizes, some overwritten, some deleted: what must survive."""
    alive: dict[str, bytes] = {}
    sizes = {"empty.bin": 0, "one.bin": 1, "small.txt": 4000, "exact.bin": MiB,
             "many.bin": 5 * MiB + 17, "dup-a.bin": 2 * MiB, "photos/2026/a.jpg": 300_000}
    for name, size in sizes.items():
        data = os.urandom(size)
        resp = c.http.put(f"/api/files/{name}", content=data)  # raw: keeps the folders
        assert resp.status_code == 201, resp.text
        alive[name] = data
    dup = alive["dup-a.bin"]  # the same content under a second name: chunks shared
    c.upload("dup-b.bin", dup)
    alive["dup-b.bin"] = dup
    for name in ("small.txt", "many.bin"):  # overwrites: the newest content wins
        data = os.urandom(len(alive[name]) + 123)
        c.upload(name, data)
        alive[name] = data
    for name in ("one.bin", "dup-a.bin"):  # deletes: they stay deleted
        fid = listing(c)[name][0]
        assert c.http.delete(f"/api/files/{fid}").status_code == 200
        del alive[name]
    c.upload("one.bin", b"reborn")  # deleted, then uploaded again: the new one
    alive["one.bin"] = b"reborn"
    gone = c.upload("gone-for-good.bin", os.urandom(1000))  # deleted for good
    assert c.http.delete(f"/api/files/{gone['id']}").status_code == 200
    return alive


def lose_the_brain(c: Cluster) -> None:
    c.stop_brain(signal.SIGKILL)
    shutil.rmtree(c.root / "brain")


def check_served(c: Cluster, alive: dict[str, bytes],
                 before: dict[str, tuple[int, int, str]]) -> None:
    after = listing(c)
    assert after == before, "the rebuilt listing differs from the one before the loss"
    assert set(after) == set(alive)
    for name, data in alive.items():
        assert sha(c.download(after[name][0])) == sha(data), name


def restart_brain(c: Cluster) -> None:
    """Start a brain on the rebuilt metadata and wait until every running node has
    talked to it (the rebuilt rows say online before any node did)."""
    t0 = time.time()
    c.start_brain()
    running = sum(1 for p in c.nodes if p is not None)

    def heard() -> bool:
        nodes = c.http.get("/api/nodes").json()
        return sum(1 for n in nodes if n["state"] == "online" and datetime.fromisoformat(
            n["last_heartbeat"]).timestamp() > t0) >= running

    wait_until(heard, 30, what="every node heartbeating to the new brain")


@pytest.fixture
def cluster(make_cluster: Any) -> Cluster:
    c: Cluster = make_cluster(nodes=3, replicas=3)
    return c


def test_recover_from_the_nodes_serves_every_file(cluster: Cluster) -> None:
    c = cluster
    alive = workload(c)
    before = listing(c)
    # A chunk no manifest names (its file's manifest could be on a node that is away):
    # old, so an ordinary sweep would delete it at once.
    stray = os.urandom(5000)
    with c.node_http(0) as node0:
        assert node0.put(f"/chunks/{sha(stray)}", content=stray).status_code == 201
    os.utime(c.chunk_files(0)[sha(stray)], (1e9, 1e9))
    lose_the_brain(c)
    out = run_recover(c, *node_urls(c)).stdout
    assert f"{len(alive):,} files" in out and "every file has all its chunks" in out, out
    assert (c.root / "brain" / "admin.key").exists()
    restart_brain(c)
    check_served(c, alive, before)
    assert c.gc()["orphans_deleted"] == 0 and sha(stray) in c.chunk_files(0)
    # Uploads go on after the rebuild: new ids above the old ones, nothing reused.
    new = c.upload("after.bin", b"after the storm")
    assert new["id"] > max(fid for fid, _, _ in before.values())
    assert c.download(new["id"]) == b"after the storm"
    events = c.http.get("/api/events", params={"kind": "metadata_rebuilt"}).json()
    assert len(events) == 1 and f"{len(alive):,} files" in events[0]["message"]


def test_recover_from_data_dirs_with_a_node_dead_and_damaged_manifests(
        cluster: Cluster) -> None:
    """One node is dead during the rebuild, and every manifest pack on another is
    damaged: every acknowledged file is on the remaining copies; afterwards the
    damaged packs are repaired from good ones like any chunk."""
    c = cluster
    alive = workload(c)
    before = listing(c)
    lose_the_brain(c)
    c.kill_node(2)
    packs = [p for p in (c.node_dir(0) / "manifests").rglob("*") if p.is_file()]
    assert packs
    for p in packs:  # bit rot, same size
        data = p.read_bytes()
        p.write_bytes(data[:-8] + bytes(b ^ 0xFF for b in data[-8:]))
    # One node read from its data dir, one over HTTP (both in one recovery).
    proc = run_recover(c, "--node-dir", str(c.node_dir(0)),
                       "--node", f"http://127.0.0.1:{c.node_ports[1]}")
    assert "every file has all its chunks" in proc.stdout, proc.stdout
    assert "damaged manifest cop" in proc.stdout, proc.stdout  # said, not silently skipped
    c.start_node(2)  # the dead node comes back: it simply rejoins
    restart_brain(c)
    check_served(c, alive, before)

    unusable = re.search(r"(\d+) manifest pack\(s\) could not be used", proc.stdout)

    def damaged_on_node0() -> int:
        return sum(1 for p in (c.node_dir(0) / "manifests").rglob("*") if p.is_file() and
                   hashlib.sha256(b"tossit-meta-v1\0" + p.read_bytes()).hexdigest() != p.name)

    def repaired() -> bool:
        c.http.post("/api/admin/gc")  # adopts node 2's copies, drops superseded packs
        c.http.post("/api/admin/repair")
        m = c.http.get("/api/status").json()["manifests"]
        # What may stay damaged on node 0 is only what recover could not use (a pack
        # whose only other copy was on the dead node): an orphan the brain ignores.
        return (m["packs"] > 0 and m["by_copies"] == {"3": m["packs"]} and m["outbox"] == 0
                and damaged_on_node0() == (int(unusable.group(1)) if unusable else 0))

    wait_until(repaired, 60, interval=1, what="every manifest pack at 3 good copies")


def test_recover_refuses_to_overwrite_and_names_what_it_cannot_complete(
        cluster: Cluster) -> None:
    c = cluster
    kept = c.upload("kept.bin", os.urandom(MiB + 1))
    lost = c.upload("lost.bin", os.urandom(2 * MiB))
    lost_chunks = [ch["id"] for ch in c.http.get(f"/api/files/{lost['id']}/info").json()[
        "chunk_map"]]
    lose_the_brain(c)
    for i in range(3):  # every copy of one chunk of lost.bin is gone
        c.chunk_files(i)[lost_chunks[0]].unlink()
    proc = run_recover(c, *node_urls(c), check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 file cannot be complete" in proc.stdout, proc.stdout
    assert "default/lost.bin" in proc.stdout and "kept.bin" not in proc.stdout
    again = run_recover(c, *node_urls(c), check=False)
    assert again.returncode == 2 and "already exists" in again.stderr, again.stderr
    restart_brain(c)
    assert sha(c.download(kept["id"])) == kept["sha256"]
    resp = c.http.get(f"/api/files/{lost['id']}/download")
    assert resp.status_code == 503 and resp.json()["error"] == "chunk_unavailable"


def test_the_wrong_secret_reads_nothing(cluster: Cluster, tmp_path: Path) -> None:
    c = cluster
    c.upload("a.txt", b"a")
    wrong = tmp_path / "wrong.secret"
    wrong.write_text("not-the-cluster-secret\n")
    proc = subprocess.run(
        [sys.executable, "-m", "tossit", "recover", "--cluster-secret-file", str(wrong),
         "--data-dir", str(tmp_path / "out"), *node_urls(c)],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "no node could be read" in proc.stderr and "401" in proc.stderr, proc.stderr
    assert not (tmp_path / "out" / "tossit.db").exists()


@pytest.mark.parametrize("point", ["commit.before_pack", "commit.after_pack"])
def test_a_brain_killed_between_commit_and_manifest_leaves_no_half_file(
        make_cluster: Any, point: str) -> None:
    """SIGKILL right after the metadata commit (its pack not yet on the nodes), or
    right after the pack reached the nodes (not yet recorded): the client got no
    answer; after a restart and after a rebuild, every listed file is whole."""
    c: Cluster = make_cluster(nodes=3, replicas=3, brain_env={
        "TOSSIT_FAILPOINTS": f"{point}=victim"})
    keep = os.urandom(MiB + 5)
    kept = c.upload("keep.bin", keep)
    victim = os.urandom(2 * MiB + 7)
    with pytest.raises(httpx.HTTPError):
        c.http.put("/api/files/victim.bin", content=victim)
    assert c.brain is not None and c.brain.wait(10) == -signal.SIGKILL
    c.brain = None

    def whole(expected: dict[str, bytes]) -> None:
        files = listing(c)
        assert set(files) <= set(expected)
        for name, (fid, size, digest) in files.items():
            data = c.download(fid)
            assert (len(data), sha(data)) == (size, digest) == (
                len(expected[name]), sha(expected[name])), name

    c.brain_env = {}
    restart_brain(c)
    whole({"keep.bin": keep, "victim.bin": victim})
    # The commit happened: the restarted brain finishes the manifest and keeps it.
    assert "victim.bin" in listing(c)
    wait_until(lambda: c.http.get("/api/status").json()["manifests"]["outbox"] == 0, 30,
               what="the waiting pack written")
    before = listing(c)
    lose_the_brain(c)
    run_recover(c, *node_urls(c))
    restart_brain(c)
    assert listing(c) == before
    whole({"keep.bin": keep, "victim.bin": victim})
    assert sha(c.download(kept["id"])) == sha(keep)


def test_snapshots_on_the_nodes_and_a_recovery_from_the_newest(cluster: Cluster) -> None:
    """Snapshots are files of the hidden bucket (not listed, not counted), the newest
    few are kept; a recovery from one keeps the event history and applies what
    changed after it."""
    c = cluster
    assert c.http.get("/api/status").json()["snapshot"]["last"] is None
    alive = workload(c)
    # The event history as the snapshot will hold it (later events are not in it).
    history = [e["message"] for e in c.http.get("/api/events", params={"limit": 1000}).json()]
    first = c.http.post("/api/admin/snapshot").json()
    assert first["key"].startswith("snapshots/") and first["as_of"] > 0
    status = c.http.get("/api/status").json()
    assert status["snapshot"]["last"]["id"] == first["id"] and status["snapshot"]["kept"] == 1
    assert status["objects"] == len(alive)  # the snapshot is not a user's file
    assert "snapshots" not in " ".join(listing(c))
    # What changes after the snapshot: applied from the manifests.
    data = os.urandom(3000)
    c.upload("after-snapshot.bin", data)
    alive["after-snapshot.bin"] = data
    fid = listing(c)["small.txt"][0]
    assert c.http.delete(f"/api/files/{fid}").status_code == 200
    del alive["small.txt"]
    before = listing(c)
    assert any("joined" in m for m in history)
    lose_the_brain(c)
    out = run_recover(c, "--from-snapshot", *node_urls(c)).stdout
    assert f"version {first['as_of']:,})" in out and "every file has all its chunks" in out, out
    restart_brain(c)
    check_served(c, alive, before)
    kept = [e["message"] for e in c.http.get("/api/events", params={"limit": 1000}).json()]
    assert set(history) <= set(kept)  # the history came back with the snapshot


def test_only_the_newest_snapshots_are_kept_and_only_after_a_change(make_cluster: Any) -> None:
    c: Cluster = make_cluster(nodes=3, replicas=3, brain_args=["--snapshot-keep", "2"])
    ids = []
    for i in range(3):
        c.upload(f"f{i}.txt", b"x" * (i + 1))
        ids.append(c.http.post("/api/admin/snapshot").json()["id"])
    assert c.http.get("/api/status").json()["snapshot"]["kept"] == 2
    assert len(set(ids)) == 3


def test_a_brain_on_an_old_backup_does_not_collect_the_newer_data(cluster: Cluster) -> None:
    """The wrong way back (yesterday's database backup, instead of tossit recover):
    same cluster id, so the nodes join; but their packs carry changes this brain
    never made, so it deletes nothing and says why, instead of taking the newer
    files' chunks for orphans."""
    c = cluster
    c.upload("old.bin", os.urandom(5000))
    c.stop_brain()
    brain = c.root / "brain"
    shutil.copy(brain / "tossit.db", brain / "backup.db")  # stopped: the WAL is merged
    c.start_brain()
    c.wait_online(3)
    c.upload("precious.bin", os.urandom(MiB + 3))
    before = {i: set(c.chunk_files(i)) for i in range(3)}
    c.stop_brain()
    for extra in ("tossit.db-wal", "tossit.db-shm"):
        (brain / extra).unlink(missing_ok=True)
    (brain / "backup.db").replace(brain / "tossit.db")
    c.brain_args = ["--gc-grace", "0"]  # orphans would be deleted at once
    restart_brain(c)
    stats = c.gc()
    assert stats["orphans_deleted"] == 0, stats
    assert {i: set(c.chunk_files(i)) for i in range(3)} == before
    st = c.http.get("/api/status").json()
    frozen = st["manifests"]["deletions_frozen"]
    assert frozen and "newer than this brain's metadata" in frozen
    assert st["needs_recovery"] and "tossit recover" in st["needs_recovery"]
    event = c.http.get("/api/events", params={"kind": "metadata_behind"}).json()
    assert event and event[0]["severity"] == "error"
    # No change either: it would take versions and ids the nodes' newer packs use.
    refused = c.http.put("/api/files/meanwhile.bin", content=b"x" * 10)
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"] == "metadata_behind"
    assert "tossit recover" in refused.json()["message"]
    # A restart does not end it: refused at once, before any collector pass.
    c.stop_brain()
    restart_brain(c)
    again = c.http.put("/api/files/meanwhile.bin", content=b"x" * 10)
    assert again.status_code == 503 and again.json()["error"] == "metadata_behind"
    assert c.http.get("/api/status").json()["needs_recovery"]


def test_after_a_cluster_secret_rotation_the_manifests_are_signed_again(
        cluster: Cluster) -> None:
    """Packs are signed with a key from the cluster secret: after a rotation the
    brain writes every needed entry again with the new one (and drops the old
    packs), so a rebuild with the new secret finds everything."""
    c = cluster
    alive = {"a.bin": os.urandom(5000), "b.bin": os.urandom(MiB + 1)}
    for name, data in alive.items():
        c.upload(name, data)
    old_packs = set(c.pack_files(0))
    c.stop_brain()
    for i in range(3):
        c.kill_node(i, signal.SIGTERM)
    (c.root / "brain" / "cluster.secret").write_text("a-brand-new-cluster-secret\n")
    restart_brain(c)
    for i in range(3):
        c.start_node(i)
    c.wait_online(3)

    def resigned() -> bool:
        c.gc()
        m = c.http.get("/api/status").json()["manifests"]
        return m["outbox"] == 0 and not (set(c.pack_files(0)) & old_packs)

    wait_until(resigned, 60, interval=1, what="the manifests signed with the new secret")
    kinds = [e["kind"] for e in c.http.get("/api/events").json()]
    assert "manifests_resigned" in kinds
    assert c.http.post("/api/admin/drill").json()["lost_count"] == 0
    before = listing(c)
    lose_the_brain(c)
    run_recover(c, *node_urls(c))  # the nodes' copies of the (new) secret
    restart_brain(c)
    check_served(c, alive, before)


def wait_packed(c: Cluster) -> None:
    wait_until(lambda: c.http.get("/api/status").json()["manifests"]["waiting"] == 0, 30,
               interval=0.3, what="every manifest on the nodes")


def test_writes_after_a_partial_recovery_survive_a_full_one(make_cluster: Any) -> None:
    """A recovery that could not read the newest packs (their nodes were away), a
    brain started on it that takes uploads, then the missing nodes back and a
    recovery from every node: the uploads made meanwhile and the changes only the
    away nodes held must all be there. The rebuilt brain's counters leave a gap,
    so its versions and file ids never collide with the ones it did not see; and
    once the away nodes show newer changes it takes no more."""
    c: Cluster = make_cluster(nodes=4, replicas=3)
    early = {f"early-{i}.bin": os.urandom(3000 + i) for i in range(4)}
    ids = {name: c.upload(name, data)["id"] for name, data in early.items()}
    wait_packed(c)
    mark = time.time()
    time.sleep(0.05)
    late = {f"late-{i}.bin": os.urandom(5000 + i) for i in range(3)}
    for name, data in late.items():
        c.upload(name, data)
    assert c.http.delete(f"/api/files/{ids['early-0.bin']}").status_code == 200
    del early["early-0.bin"]
    wait_packed(c)
    lose_the_brain(c)
    c.kill_node(2)
    c.kill_node(3)
    for i in (0, 1):  # the newest packs were only on nodes 2 and 3
        for p in (c.node_dir(i) / "manifests").rglob("*"):
            if p.is_file() and p.stat().st_mtime > mark:
                p.unlink()
    run_recover(c, *node_urls(c, skip=(2, 3)))
    restart_brain(c)
    acked = {f"acked-{i}.bin": os.urandom(7000 + i) for i in range(3)}
    for name, data in acked.items():
        c.upload(name, data)
    wait_packed(c)
    c.start_node(2)
    c.start_node(3)
    c.wait_online(4)

    def behind() -> bool:
        c.gc()
        return bool(c.http.get("/api/status").json()["needs_recovery"])

    wait_until(behind, 30, interval=1, what="the brain seeing the newer packs")
    refused = c.http.put("/api/files/refused.bin", content=b"no")
    assert refused.status_code == 503 and refused.json()["error"] == "metadata_behind"

    c.stop_brain()
    brain = c.root / "brain"
    for part in ("tossit.db", "tossit.db-wal", "tossit.db-shm"):
        if (brain / part).exists():
            (brain / part).replace(brain / f"{part}.partial")
    admin_key = (brain / "admin.key").read_text()
    proc = run_recover(c, *node_urls(c))
    assert "two different changes" not in proc.stdout, proc.stdout
    # The admin key in use is kept (it is among the keys recovered); the new one
    # goes beside it.
    assert (brain / "admin.key").read_text() == admin_key
    assert "new admin key: " in proc.stdout and "admin-recovered.key" in proc.stdout
    restart_brain(c)
    served = listing(c)
    want = {**early, **late, **acked}
    assert set(served) == set(want), sorted(set(served) ^ set(want))
    for name, data in want.items():
        assert sha(c.download(served[name][0])) == sha(data), name


def test_s3_buckets_and_keys_come_back_with_a_backup_of_the_master_key(
        cluster: Cluster, tmp_path: Path) -> None:
    """An empty bucket comes back, a deleted one stays deleted (though tombstones
    of its files are on the nodes), a bucket with files keeps them, and with
    ``--keys-master`` the keys made before sign S3 requests as they did."""
    c = cluster
    key = make_key(c)
    s3 = s3_client(c, key)
    for name in ("kept-empty", "kept-full", "dropped"):
        s3.create_bucket(Bucket=name)
    s3.put_object(Bucket="kept-full", Key="a/b.txt", Body=b"in a bucket")
    s3.put_object(Bucket="dropped", Key="x.bin", Body=b"deleted with its bucket")
    s3.delete_object(Bucket="dropped", Key="x.bin")
    s3.delete_bucket(Bucket="dropped")
    before = sorted(b["Name"] for b in s3.list_buckets()["Buckets"])
    assert before == ["default", "kept-empty", "kept-full"]
    master = tmp_path / "keys.master.backup"
    shutil.copy(c.root / "brain" / "keys.master", master)

    lose_the_brain(c)
    out = run_recover(c, "--keys-master", str(master), *node_urls(c)).stdout
    assert "3 buckets" in out, out  # default, kept-empty, kept-full
    restart_brain(c)
    s3 = s3_client(c, key)  # the key made before the loss
    assert sorted(b["Name"] for b in s3.list_buckets()["Buckets"]) == before
    assert s3.get_object(Bucket="kept-full", Key="a/b.txt")["Body"].read() == b"in a bucket"
    assert s3.list_objects_v2(Bucket="kept-empty")["KeyCount"] == 0
    with pytest.raises(Exception, match="NoSuchBucket"):
        s3.list_objects_v2(Bucket="dropped")
    # Made again after the recovery: a change logged like any other.
    s3.create_bucket(Bucket="dropped")
    assert s3.list_objects_v2(Bucket="dropped")["KeyCount"] == 0
