"""A node whose heartbeats reach the brain, but whose address the brain cannot
reach, is shown as unreachable and gets no data, instead of looking online while
every transfer to it fails."""

from __future__ import annotations

import os
from typing import Any

from cluster import Cluster, free_port, wait_until


def node_row(c: Cluster, name: str) -> dict[str, Any]:
    rows = [n for n in c.http.get("/api/nodes").json() if n["name"] == name]
    return rows[0] if rows else {"state": "absent"}


def test_a_node_at_an_address_the_brain_cannot_reach_is_unreachable(make_cluster: Any) -> None:
    c: Cluster = make_cluster(nodes=2, replicas=2)
    c.node_args = ["--advertise-url", f"http://127.0.0.1:{free_port()}"]  # nobody there
    i = c.add_node()
    c.node_args = []
    row = wait_until(lambda: (r := node_row(c, f"node-{i}"))["state"] == "unreachable" and r,
                     30, what="the node shown as unreachable")
    problem = row["address_problem"]
    assert "does not answer" in problem and "--advertise-url" in problem
    assert row["latency_ms"] is None
    status = c.http.get("/api/status").json()
    assert status["nodes"]["online"] == 2 and status["nodes"]["by_state"]["unreachable"] == 1
    events = c.http.get("/api/events", params={"kind": "node_unreachable"}).json()
    assert len(events) == 1 and events[0]["severity"] == "error"
    # No data goes to it: every copy of a new file is on the two reachable nodes.
    up = c.upload("where.bin", os.urandom(300_000))
    info = c.http.get(f"/api/files/{up['id']}/info").json()
    holders = {n["id"] for ch in info["chunk_map"] for n in ch["nodes"]}
    assert node_row(c, f"node-{i}")["id"] not in holders and len(holders) == 2
    # Heartbeats keep coming: it stays unreachable, not online, and is never declared dead.
    wait_until(lambda: node_row(c, f"node-{i}")["seconds_since_heartbeat"] < 2, 10,
               what="a fresh heartbeat")
    assert node_row(c, f"node-{i}")["state"] == "unreachable"
    # Fixed (the right address): online again.
    c.kill_node(i)
    c.start_node(i)
    c.wait_node_state(i, "online", 30)
    assert node_row(c, f"node-{i}")["address_problem"] is None


def test_copies_on_a_node_unreachable_past_dead_after_are_made_elsewhere(
        make_cluster: Any) -> None:
    """It heartbeats, so it is never declared dead; but nothing can be read from
    it. Past dead_after its copies stop counting and the repairer re-makes them
    on the reachable nodes (once it answers again, they count again)."""
    c: Cluster = make_cluster(nodes=3, replicas=2, chunk_size="64KiB", brain_args=[
        "--dead-after", "15", "--auto-repair", "--repair-interval", "3600"])
    files = {f"f{k}.bin": os.urandom(200_000) for k in range(4)}
    ids = {name: c.upload(name, data)["id"] for name, data in files.items()}
    victim = 0
    held = set(c.chunk_files(victim))
    assert held, "the victim holds nothing: proves nothing"
    victim_id = c.node_id(victim)
    # The same node (same data dir and id) comes back at an address nobody answers.
    c.kill_node(victim)
    c.node_args = ["--advertise-url", f"http://127.0.0.1:{free_port()}"]
    c.start_node(victim)
    c.node_args = []
    wait_until(lambda: node_row(c, f"node-{victim}")["state"] == "unreachable", 30,
               what="the node shown as unreachable")
    # Within the grace period its copies still count, and the status says it waits.
    status = c.http.get("/api/status").json()
    waiting = status["replication"]["waiting_for"]
    assert [w["name"] for w in waiting] == [f"node-{victim}"] and waiting[0]["dead_in_s"] > 0

    def at_r_elsewhere() -> bool:
        for fid in ids.values():
            info = c.http.get(f"/api/files/{fid}/info").json()
            for ch in info["chunk_map"]:
                ok = {n["id"] for n in ch["nodes"] if n.get("state", "ok") == "ok"}
                if len(ok - {victim_id}) < 2:
                    return False
        return True

    wait_until(at_r_elsewhere, 90, interval=0.5,
               what="every chunk at R on the reachable nodes")
    events = c.http.get("/api/events", params={"kind": "node_unreachable"}).json()
    assert any("its copies no longer count" in e["message"] for e in events), events
    assert node_row(c, f"node-{victim}")["state"] == "unreachable"  # not dead: it heartbeats
    for name, fid in ids.items():
        assert c.download(fid) == files[name]
