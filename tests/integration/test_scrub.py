"""Scrub control as an operator uses it: ``tossit scrub`` through the brain to the
nodes' scrubbers, on real processes (start, pause across a restart, resume,
the rate changed at run time, rot found by a background pass)."""

from __future__ import annotations

import os
import time
from typing import Any

from test_cli import tossit

from cluster import Cluster, wait_until


def scrub_of(cl: Cluster, name: str) -> dict[str, Any]:
    rows = cl.http.get("/api/scrub").json()["nodes"]
    row = next(r for r in rows if r["name"] == name)
    if row["error"] is not None:
        raise ValueError(row["error"])  # wait_until tries again
    scrub: dict[str, Any] = row["scrub"]
    return scrub


def steady_bytes(cl: Cluster, name: str) -> int:
    """bytes_checked once it stops moving (a chunk already paced goes through)."""
    seen: list[int] = []

    def still() -> bool:
        seen.append(scrub_of(cl, name)["bytes_checked"])
        return len(seen) > 1 and seen[-1] == seen[-2]

    wait_until(still, 15, interval=1.0, what="the scrub to stand still")
    return seen[-1]


def test_scrub_start_pause_survives_a_restart_resume_and_finds_rot(make_cluster: Any) -> None:
    # The nodes' first pass runs at start, over empty disks; the next is due in an
    # hour, so every pass after it is one this test asked for.
    cl = make_cluster(nodes=3, replicas=3, chunk_size="64KiB",
                      node_args=["--scrub-rate", "16MiB", "--scrub-interval", "3600"])
    key = cl.root / "brain" / "admin.key"
    run = {"brain": cl.url, "key_file": key}
    wait_until(lambda: scrub_of(cl, "node-0")["last_full_pass"] is not None, 20,
               what="the first (empty) pass")
    for i in range(6):
        cl.upload(f"f{i}.bin", os.urandom(8 * 64 * 1024))  # 48 chunks on every node
    rotten = max(cl.chunk_files(0))  # the last id: checked at the end of a pass
    path = cl.chunk_files(0)[rotten]
    path.write_bytes(b"rot" + path.read_bytes()[3:])

    before = scrub_of(cl, "node-0")
    assert before["state"] == "waiting" and before["corrupt_found"] == 0
    assert before["rate"] == 16 * 1024 * 1024 and not before["rate_set_at_run_time"]

    # Slow node-0 down (at run time), then start a pass there only.
    out = tossit("scrub", "rate", "256KiB/s", "--node", "node-0", **run).stdout
    assert "node-0" in out and "256.0 KiB/s" in out, out
    short = next(n["id"] for n in cl.http.get("/api/nodes").json()
                 if n["name"] == "node-0")[:8]  # as tossit nodes shows it
    tossit("scrub", "start", "--node", short, **run)
    wait_until(lambda: scrub_of(cl, "node-0")["bytes_checked"] > 0, 10, what="progress")
    s = scrub_of(cl, "node-0")
    assert s["state"] == "scanning" and 0 < s["progress"] < 1, s
    assert scrub_of(cl, "node-1")["state"] == "waiting"  # only node-0 was told

    out = tossit("scrub", "pause", "--node", "node-0", **run).stdout
    assert "paused" in out
    checked = steady_bytes(cl, "node-0")
    assert 0 < checked < 48 * 64 * 1024

    # A restart keeps the pause, the place in the pass and the rate set at run time.
    cl.kill_node(0)
    cl.start_node(0)
    cl.wait_node_state(0, "online", 30)
    s = wait_until(lambda: scrub_of(cl, "node-0"), 20, what="node-0's scrub status")
    assert s["state"] == "paused" and s["rate_set_at_run_time"], s
    assert s["rate"] == 256 * 1024
    assert s["bytes_checked"] >= checked - 5 * 256 * 1024  # saved every few seconds
    status = tossit("scrub", "status", **run).stdout
    assert "paused" in status and "node-0" in status and "node-2" in status, status

    tossit("scrub", "rate", "32MiB/s", "--node", "node-0", **run)
    tossit("scrub", "resume", **run)  # every node: the others have nothing to resume
    s = wait_until(lambda: (x := scrub_of(cl, "node-0"))["state"] == "waiting" and x,
                   30, what="the pass to finish")
    last = s["last_full_pass"]
    assert last["corrupt"] == 1 and s["corrupt_found"] == 1, s
    assert last["finished"] > time.time() - 30
    assert rotten not in cl.chunk_files(0)  # quarantined
    # Reported with the next heartbeat: marked corrupt, to be repaired.
    events = wait_until(lambda: [e for e in cl.http.get("/api/events").json()
                                 if e["kind"] == "replica_corrupt"], 10,
                        what="the corrupt copy reported")
    assert "node-0" in events[0]["message"]
    scrub_events = [e["message"] for e in cl.http.get("/api/events").json()
                    if e["kind"] == "scrub"]
    assert any(m.startswith("scrub paused on node-0 by") for m in scrub_events), scrub_events

    # tossit status: one line about it.
    status = wait_until(lambda: "1 corrupt copy found" in (
        out := tossit("status", **run).stdout) and out, 20, what="the scrub line")
    assert "scrub: 3 waiting" in status, status


def test_scrub_orders_are_refused_clearly(make_cluster: Any) -> None:
    cl = make_cluster(nodes=1, replicas=1, node_args=["--scrub-rate", "0"])
    run = {"brain": cl.url, "key_file": cl.root / "brain" / "admin.key"}
    res = tossit("scrub", "rate", "fast", **run, check=False)
    assert res.returncode == 1 and "not a size" in res.stderr, res.stderr
    res = tossit("scrub", "rate", "1KiB/s", **run, check=False)
    assert res.returncode == 1 and "at least 64.0 KiB/s" in res.stderr, res.stderr
    res = tossit("scrub", "start", "--node", "nosuch", **run, check=False)
    assert res.returncode == 1 and "no node 'nosuch'" in res.stderr, res.stderr
    # Scrubbing is off (rate 0): starting says how to turn it on; a rate does.
    res = tossit("scrub", "start", **run, check=False)
    assert res.returncode == 1 and "tossit scrub rate" in res.stdout, res.stdout
    assert scrub_of(cl, "node-0")["state"] == "off"
    tossit("scrub", "rate", "1MiB", **run)
    wait_until(lambda: scrub_of(cl, "node-0")["last_full_pass"] is not None, 20,
               what="a pass once a rate is set")
    # Without an admin key: refused by the brain.
    readonly = cl.http.post("/api/keys", json={"name": "ro", "role": "readonly"}).json()
    resp = cl.http.post("/api/scrub/pause", headers={"Authorization":
                                                     f"Bearer {readonly['secret']}"})
    assert resp.status_code == 403
