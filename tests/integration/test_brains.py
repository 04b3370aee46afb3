"""Several brains on one PostgreSQL database: all serve, one leads, another takes over.

Real processes: two brains share the metadata; the nodes and the clients know
both. Uploads and downloads go through either; the leader is killed in the
middle of a repair; the other brain takes over the loops and finishes it, and
every file is still there, whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import httpx

from cluster import Cluster, wait_until
from tossit.serve import pick_free_port

MiB = 1024 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def role(c: Cluster, n: int) -> str:
    return str(httpx.get(c.brain_url(n) + "/health", timeout=5).json()["role"])


def test_two_brains_serve_and_one_takes_over_in_the_middle_of_a_repair(
        make_cluster: Any, pg_url: str) -> None:
    c: Cluster = make_cluster(
        database_url=pg_url, nodes=4, replicas=3, brains=2,
        brain_args=["--auto-repair", "--dead-after", "4", "--repair-interval", "1"],
        node_args=["--repair-bandwidth", "1MiB", "--scrub-rate", "0"])
    assert (role(c, 0), role(c, 1)) == ("leader", "follower")
    b0, b1 = c.client(0), c.client(1)
    brains = b0.get("/api/status").json()["brains"]
    assert brains["role"] == "leader" and [b["role"] for b in brains["list"]] == [
        "leader", "follower"]

    # A third brain on SQLite with the leader's data dir: refused.
    argv = ["brain", "--port", str(pick_free_port()), "--data-dir", str(c.root / "brain")]
    third = subprocess.run([sys.executable, "-m", "tossit", *argv], capture_output=True,
                           text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert third.returncode != 0 and "is already running with data dir" in (
        third.stdout + third.stderr), third.stdout + third.stderr

    # Uploads and downloads through both brains (the follower passes changes on).
    files: dict[str, bytes] = {}
    for i in range(12):
        data = os.urandom(2 * MiB + i)
        via = b0 if i % 2 else b1
        resp = via.put(f"/api/files/f{i}.bin", content=data)
        assert resp.status_code == 201, resp.text
        files[f"f{i}.bin"] = data
    listing0 = {f["name"]: f["id"] for f in b0.get("/api/files").json()}
    listing1 = {f["name"]: f["id"] for f in b1.get("/api/files").json()}
    assert listing0 == listing1 and set(listing0) == set(files)
    for name, data in files.items():  # reads: each brain serves them itself
        assert sha(b1.get(f"/api/files/{listing0[name]}/download").content) == sha(data)
    gone = listing0.pop("f0.bin")
    files.pop("f0.bin")
    assert b1.delete(f"/api/files/{gone}").status_code == 200  # a delete, forwarded
    assert b0.get(f"/api/files/{gone}").status_code == 404

    # A node dies: after dead_after the leader re-replicates its chunks (slowly:
    # 1 MiB/s per receiving node), and is killed in the middle of it.
    c.kill_node(3)

    def repairing() -> bool:
        rp = b1.get("/api/status").json()["repair"]  # the follower shows it too
        return bool(rp["running"] and rp["chunks_done"] > 0)

    wait_until(repairing, 60, interval=0.3, what="a repair under way")
    done_before = b1.get("/api/status").json()["repair"]["chunks_done"]
    c.stop_brain(signal.SIGKILL)
    t0 = time.monotonic()
    wait_until(lambda: role(c, 1) == "leader", 30, interval=0.2, what="brain 1 leading")
    took = time.monotonic() - t0
    assert took < 15, f"the follower took {took:.1f} s to take over"
    # It finishes the repair: every chunk back at 3 copies on the live nodes.

    def healthy() -> bool:
        st = b1.get("/api/status").json()
        return bool(st["replication"]["chunks_below_target"] == 0 and st["chunks"] > 0
                    and not st["repair"]["running"])

    wait_until(healthy, 120, interval=1, what="the repair finished by the new leader")
    events = [e["message"] for e in b1.get("/api/events", params={"limit": 500}).json()]
    assert any("now leads the cluster" in m for m in events)
    assert any(m.startswith("re-made copies of") for m in events), events[:20]
    assert done_before >= 1

    # Nothing lost, and the cluster takes writes again, through the new leader and
    # through a client that lists both brains (the first one is dead).
    for name, data in files.items():
        assert sha(b1.get(f"/api/files/{listing0[name]}/download").content) == sha(data)
    assert b1.put("/api/files/after.bin", content=b"after").status_code == 201
    env = dict(os.environ, TOSSIT_KEY=c.admin_key,
               TOSSIT_BRAIN_URL=f"{c.brain_url(0)},{c.brain_url(1)}")
    ls = subprocess.run([sys.executable, "-m", "tossit", "ls"], capture_output=True,
                        text=True, timeout=60, env=env)
    assert ls.returncode == 0 and "after.bin" in ls.stdout and "f11.bin" in ls.stdout, (
        ls.stdout + ls.stderr)
    put = subprocess.run([sys.executable, "-m", "tossit", "put", str(c.secret_file.parent /
                          "brain.json"), "--name", "via-cli.json"], capture_output=True,
                         text=True, timeout=60, env=env)
    assert put.returncode == 0, put.stdout + put.stderr

    # The old leader comes back: it follows now.
    c.start_brain()
    assert role(c, 0) == "follower"
    assert b0.put("/api/files/back.bin", content=b"back").status_code == 201
    assert b1.get("/api/files", params={"search": "back.bin"}).json()[0]["size"] == 4


def test_a_follower_shows_the_leaders_recovery_alarm(make_cluster: Any, pg_url: str) -> None:
    """Only the leader sees the nodes (their requests go to it), so only it can
    raise "needs recovery"; a follower's status and dashboard must say it too,
    and stop saying it once it is over."""
    c: Cluster = make_cluster(database_url=pg_url, nodes=3, replicas=3, brains=2,
                              node_args=["--scrub-rate", "0"])
    assert (role(c, 0), role(c, 1)) == ("leader", "follower")
    b0, b1 = c.client(0), c.client(1)
    ours = b0.get("/api/status").json()["cluster_id"]
    c.kill_node(0, signal.SIGTERM)
    ident = c.node_dir(0) / "node.json"
    doc = json.loads(ident.read_text())
    ident.write_text(json.dumps({**doc, "cluster": "0123456789abcdef"}))
    c.start_node(0)
    wait_until(lambda: "refused" in (b0.get("/api/status").json()["needs_recovery"] or ""),
               20, what="the leader's alarm")
    leader_says = b0.get("/api/status").json()["needs_recovery"]
    wait_until(lambda: b1.get("/api/status").json()["needs_recovery"] == leader_says, 20,
               what="the follower showing the leader's alarm")
    # Told to adopt this cluster, the node is accepted: the alarm clears on both.
    c.kill_node(0, signal.SIGTERM)
    c.node_args = ["--adopt-cluster", ours, "--scrub-rate", "0"]
    c.start_node(0)
    c.wait_node_state(0, "online")
    wait_until(lambda: b1.get("/api/status").json()["needs_recovery"] is None, 20,
               what="the follower's alarm cleared")
    assert b0.get("/api/status").json()["needs_recovery"] is None


def test_a_paused_leader_is_unseated_and_another_brain_takes_over(
        make_cluster: Any, pg_url: str) -> None:
    """A leader whose process is paused (SIGSTOP, a frozen VM) keeps its lock: its
    kernel still answers the keepalives. Once its row has gone unrenewed for
    SILENT_AFTER, a follower ends its database session and takes over; writes
    go through again; the old leader, woken, steps down and serves as a follower."""
    c: Cluster = make_cluster(database_url=pg_url, nodes=3, replicas=3, brains=2)
    assert (role(c, 0), role(c, 1)) == ("leader", "follower")
    leader = c.children["brain"].proc
    assert leader is not None
    os.kill(leader.pid, signal.SIGSTOP)
    try:
        # A change sent to the follower now is forwarded to the paused leader: it is
        # cut off with a 503 once the leader's row goes stale, not left hanging.
        stuck: dict[str, Any] = {}

        def write_during_pause() -> None:
            t0 = time.monotonic()
            with c.client(1) as cl:
                stuck["response"] = cl.put("/api/files/sent-to-paused.bin", content=b"x" * 99)
            stuck["seconds"] = time.monotonic() - t0

        writer = threading.Thread(target=write_during_pause, daemon=True)
        writer.start()
        wait_until(lambda: role(c, 1) == "leader", 90, interval=1,
                   what="the follower taking over from the paused leader")
        writer.join(timeout=15)
        assert not writer.is_alive(), "a change forwarded to the paused leader still hangs"
        assert stuck["response"].status_code == 503, stuck["response"].text
        assert stuck["response"].json()["error"] == "leader_unreachable"
        assert stuck["seconds"] < 45, stuck
        data = os.urandom(MiB + 3)
        up = c.client(1).put("/api/files/while-paused.bin", content=data)
        assert up.status_code == 201, up.text
    finally:
        os.kill(leader.pid, signal.SIGCONT)
    wait_until(lambda: role(c, 0) == "follower", 30, interval=0.5,
               what="the woken brain stepping down")
    got = c.client(0).get(f"/api/files/{up.json()['id']}/download")
    assert got.status_code == 200 and got.content == data
    events = c.client(1).get("/api/events", params={"kind": "brain_leader"}).json()
    assert events and "now leads the cluster" in events[0]["message"]
