"""Readiness (``/ready``, ``tossit ready``) as opposed to liveness (``/health``)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import httpx

from cluster import Cluster, wait_until


def ready_cli(c: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tossit", "ready", "--brain", c.url, *args],
                          capture_output=True, text=True, timeout=60)


def test_ready_only_while_a_write_would_be_accepted(make_cluster: Any) -> None:
    c: Cluster = make_cluster(nodes=3, replicas=3)  # write quorum 2
    resp = httpx.get(c.url + "/ready")  # no key needed, like /health
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"status": "ready", "nodes_writable": 3, "write_quorum": 2,
                           "replicas": 3}
    ok = ready_cli(c)
    assert ok.returncode == 0 and "ready: 3 nodes take writes" in ok.stdout, ok.stderr
    c.kill_node(1)
    c.kill_node(2)
    c.wait_node_state(1, "offline")
    c.wait_node_state(2, "offline")
    resp = httpx.get(c.url + "/ready")
    assert resp.status_code == 503, resp.text
    body = resp.json()
    assert body["status"] == "not_ready" and body["nodes_writable"] == 1
    assert body["reason"].startswith("1 storage node can take writes, 2 needed")
    assert "node-1 is offline" in body["reason"] and "node-2 is offline" in body["reason"]
    assert httpx.get(c.url + "/health").status_code == 200  # alive all the same
    # What /ready says is what an upload gets.
    up = c.http.put("/api/files/nope.txt", content=b"x")
    assert up.status_code == 503 and up.json()["error"] == "not_enough_nodes"
    down = ready_cli(c)
    assert down.returncode == 1 and "not ready: 1 storage node can" in down.stderr
    assert c.http.get("/api/status").json()["readiness"]["status"] == "not_ready"
    c.start_node(1)
    waited = ready_cli(c, "--wait", "30")  # returns as soon as the node is back
    assert waited.returncode == 0, waited.stderr
    wait_until(lambda: c.http.put("/api/files/yes.txt", content=b"x").status_code == 201, 10,
               what="an upload accepted")
