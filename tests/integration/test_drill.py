"""The fire drill: a rehearsal of a brain loss on the live cluster, changing nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from s3_clients import make_key, s3_client

from cluster import Cluster, wait_until

MiB = 1024 * 1024


def drill_cli(c: Cluster) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TOSSIT_KEY=c.admin_key)
    return subprocess.run([sys.executable, "-m", "tossit", "drill", "--brain", c.url],
                          capture_output=True, text=True, timeout=300, env=env)


def test_drill_on_a_healthy_cluster_then_with_manifests_deleted_by_hand(
        make_cluster: Any) -> None:
    c: Cluster = make_cluster(nodes=3, replicas=3)
    names = [f"f{i}.bin" for i in range(6)]
    ids = {}
    for name in names:  # one commit (and one manifest pack) each
        ids[name] = c.upload(name, os.urandom(MiB // 2 + len(name)))["id"]
    gone = c.upload("gone.bin", b"deleted before the drill")
    assert c.http.delete(f"/api/files/{gone['id']}").status_code == 200
    c.http.post("/api/admin/snapshot")
    listed_before = c.http.get("/api/files").json()

    healthy = drill_cli(c)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "a brain loss now: 6 files recoverable, 0 lost" in healthy.stdout
    assert "last snapshot" in healthy.stdout and "deleted files would come back" not in (
        healthy.stdout)
    status = c.http.get("/api/status").json()["drill"]
    assert status["last"]["ok"] is True and status["last"]["recoverable"] == 6
    assert c.http.get("/api/files").json() == listed_before  # nothing changed
    event = c.http.get("/api/events", params={"kind": "drill"}).json()[0]
    assert event["severity"] == "info" and "0 lost" in event["message"]

    # Someone deletes node 0's manifests by hand: still recoverable, but at risk.
    for p in c.pack_files(0).values():
        p.unlink()
    risky = c.http.post("/api/admin/drill").json()
    assert risky["ok"] is True and risky["recoverable"] == 6
    assert risky["manifest_below_count"] == 6
    assert sorted(risky["manifest_below"]) == sorted(f"default/{n}" for n in names)
    assert "6 files with fewer than the full number of copies" in risky["summary"]

    # And then every copy of the manifest of f0.bin: a brain loss would lose it.
    victim_pack = next(
        pid for pid, p in c.pack_files(1).items() if b'"key":"f0.bin"' in p.read_bytes())
    for i in (1, 2):
        c.pack_files(i)[victim_pack].unlink()
    lossy = drill_cli(c)
    assert lossy.returncode == 1, lossy.stdout
    assert "5 files recoverable, 1 lost" in lossy.stdout
    assert "1 file would be lost: default/f0.bin" in lossy.stdout
    event = c.http.get("/api/events", params={"kind": "drill"}).json()[0]
    assert event["severity"] == "error" and "1 lost" in event["message"]
    # The file itself is intact and still served.
    assert c.download(ids["f0.bin"])

    # The repairer writes that manifest again from the metadata (a pack is not data:
    # nothing is lost while the brain has it), and the drill is green again.
    seen: list[object] = []

    def rewritten() -> bool:
        seen[:] = [c.http.post("/api/admin/gc").json(),  # finds the copies gone
                   c.http.post("/api/admin/repair").json()]
        d = c.http.post("/api/admin/drill").json()
        seen.append(d)
        return bool(d["ok"] and d["recoverable"] == 6 and d["lost_count"] == 0
                    and d["manifest_below_count"] == 0)

    try:
        wait_until(rewritten, 60, interval=1, what="f0.bin's manifest written again")
    except TimeoutError:
        raise AssertionError(f"last gc, repair and drill: {seen}; status: "
                             f"{c.http.get('/api/status').json()['manifests']}") from None
    events = c.http.get("/api/events", params={"kind": "manifests_rewritten"}).json()
    assert len(events) == 1 and "1 manifest pack had no readable copy" in events[0]["message"]
    for i in range(3):  # (the same entries make the same pack: the same id again)
        assert any(b'"key":"f0.bin"' in p.read_bytes() for p in c.pack_files(i).values())
    m = c.http.get("/api/status").json()["manifests"]
    assert m["by_copies"] == {"3": m["packs"]} and m["outbox"] == 0
    assert drill_cli(c).returncode == 0


def test_the_drill_names_a_bucket_a_rebuild_would_lose_until_its_entry_is_rewritten(
        make_cluster: Any) -> None:
    c: Cluster = make_cluster(nodes=3, replicas=3)
    s3 = s3_client(c, make_key(c))
    s3.create_bucket(Bucket="empty-one")
    s3.create_bucket(Bucket="was-here")
    s3.delete_bucket(Bucket="was-here")
    healthy = c.http.post("/api/admin/drill").json()
    assert healthy["ok"] is True and healthy["buckets"] == 2  # default and empty-one
    assert healthy["buckets_lost_count"] == healthy["buckets_reappear_count"] == 0

    # Every copy of the entry that made empty-one is deleted by hand.
    for i in range(3):
        for p in c.pack_files(i).values():
            if b'"op":"bucket"' in p.read_bytes() and b'"name":"empty-one"' in p.read_bytes():
                p.unlink()
    lossy = drill_cli(c)
    assert lossy.returncode == 1, lossy.stdout
    assert "1 bucket lost" in lossy.stdout and "1 bucket would be lost: empty-one" in (
        lossy.stdout)

    def rewritten() -> bool:  # the repairer writes the entry again from the metadata
        c.http.post("/api/admin/gc")
        c.http.post("/api/admin/repair")
        d = c.http.post("/api/admin/drill").json()
        return bool(d["ok"] and d["buckets_lost_count"] == 0)

    wait_until(rewritten, 60, interval=1, what="empty-one's entry written again")
    assert drill_cli(c).returncode == 0
