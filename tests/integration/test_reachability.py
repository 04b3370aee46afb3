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
