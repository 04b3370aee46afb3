"""The dashboard's data, from a real cluster: the live stream (status, nodes,
events), the throughput figures, and a node's impact ("what if it stops")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cluster import Cluster, wait_until

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def cl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("live"), nodes=3, replicas=2, chunk_size="256KiB")
    c.start()
    yield c
    c.stop()


class Listener:
    """Reads /api/stream in a thread and keeps every (event, data) it parses."""

    def __init__(self, cl: Cluster, headers: dict[str, str] | None = None,
                 path: str = "/api/stream") -> None:
        self.path = path
        self.messages: list[tuple[str, Any]] = []
        self.status: int | None = None
        self.client = httpx.Client(base_url=cl.url, timeout=httpx.Timeout(30, read=60),
                                   verify=cl.verify,
                                   headers=headers if headers is not None else cl.http.headers)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            with self.client.stream("GET", self.path) as resp:
                self.status = resp.status_code
                if resp.status_code != 200:
                    return
                event, data = "message", ""
                for line in resp.iter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        data = line[6:]
                    elif not line and data:
                        self.messages.append((event, json.loads(data)))
                        event, data = "message", ""
        except httpx.HTTPError:
            pass

    def last(self, event: str) -> Any:
        found = [d for e, d in self.messages if e == event]
        return found[-1] if found else None

    def close(self) -> None:
        self.client.close()


def test_stream_needs_a_key_and_pushes_status_nodes_and_new_events(cl: Cluster) -> None:
    anon = Listener(cl, headers={})
    wait_until(lambda: anon.status is not None, 10, what="an answer")
    assert anon.status == 401
    anon.close()

    live = Listener(cl)
    try:
        # The current state arrives at once, without waiting for a change.
        wait_until(lambda: live.last("status") and live.last("nodes"), 10, what="first state")
        assert live.last("status")["replicas"] == 2
        assert {n["name"] for n in live.last("nodes")} == {"node-0", "node-1", "node-2"}
        # Something happens: the event and the new state arrive without asking.
        node_id = cl.node_id(2)
        assert cl.http.post(f"/api/nodes/{node_id}/drain").status_code == 200
        wait_until(lambda: any(e == "event" and d["kind"] == "node_draining"
                               for e, d in live.messages), 10, what="the drain event")
        wait_until(lambda: next(n for n in live.last("nodes") if n["id"] == node_id)[
            "admin_state"] in ("draining", "drained"), 10, what="the node draining")
    finally:
        assert cl.http.post(f"/api/nodes/{cl.node_id(2)}/undrain").status_code == 200
        live.close()


def test_a_reconnecting_client_gets_the_events_it_missed(cl: Cluster) -> None:
    for n in range(3):
        assert cl.http.post("/api/keys", json={"name": f"missed {n}", "role": "readonly"}
                            ).status_code == 201
    newest = cl.http.get("/api/events", params={"limit": 4}).json()
    seen = newest[3]["id"]  # the client has everything up to the fourth newest event
    live = Listener(cl, path=f"/api/stream?after={seen}")
    try:
        wait_until(lambda: live.last("status"), 10, what="first state")
        got = [d["id"] for e, d in live.messages if e == "event"]
        assert got[:3] == sorted(e["id"] for e in newest[:3]), got
    finally:
        live.close()


def test_stream_ends_when_the_key_is_revoked(cl: Cluster) -> None:
    resp = cl.http.post("/api/keys", json={"name": "watcher", "role": "readonly"})
    key = resp.json()
    live = Listener(cl, headers={"Authorization": f"Bearer {key['secret']}"})
    try:
        wait_until(lambda: live.last("status"), 10, what="first state")
        assert cl.http.delete(f"/api/keys/{key['id']}").status_code == 200
        wait_until(lambda: live.last("auth"), 30, what="the stream to say the key is gone")
        assert "revoked" in live.last("auth")["message"]
        live.thread.join(10)
        assert not live.thread.is_alive(), "the brain kept streaming to a revoked key"
    finally:
        live.close()


def test_throughput_counts_the_bytes_clients_send_and_receive(cl: Cluster) -> None:
    data = os.urandom(6 * MiB)
    file_id = cl.upload("traffic.bin", data)["id"]
    assert cl.download(file_id) == data

    def history() -> list[dict[str, Any]]:
        return list(cl.http.get("/api/status").json()["throughput"]["history"])

    # The buckets of the last minutes add up to what went through (2 s each). The
    # history holds complete buckets only: wait until the download's has closed too.
    def both_seen() -> list[dict[str, Any]] | None:
        hist = history()
        done = (sum(h["in"] for h in hist) * 2 >= len(data)
                and sum(h["out"] for h in hist) * 2 >= len(data))
        return hist if done else None

    hist = wait_until(both_seen, 10, what="the upload and the download in the history")
    assert sum(h["in"] for h in hist) * 2 == pytest.approx(len(data), rel=0.01)
    assert len(hist) == 150 and all(h["in"] >= 0 and h["out"] >= 0 for h in hist)


def test_impact_says_what_stopping_a_node_would_do(cl: Cluster) -> None:
    ids = [cl.node_id(i) for i in range(3)]
    for n in range(4):
        cl.upload(f"impact{n}.bin", os.urandom(MiB))
    info = cl.http.get(f"/api/nodes/{ids[0]}/impact").json()
    held = len(cl.chunk_files(0))
    stopped = info["if_stopped"]
    # R=2 on three nodes: every chunk node-0 holds has exactly one other copy.
    assert stopped["chunks"] == held > 0
    assert stopped["by_copies_after"] == {"1": held}
    assert stopped["chunks_unavailable"] == 0 and stopped["files_unavailable"] == 0
    assert "drop to 1 copy" in stopped["summary"] and "none become unavailable" in stopped[
        "summary"]
    assert info["drain"]["chunks"] == held and info["drain"]["allowed"] is True
    assert "2 other nodes" in info["drain"]["summary"]
    assert info["remove"]["allowed"] is False and "drain it first" in info["remove"]["reason"]

    # Every node answering shows its heartbeat's round trip (loopback: well under 1 s).
    def latencies() -> dict[str, float | None]:
        return {n["id"]: n["latency_ms"] for n in cl.http.get("/api/nodes").json()}

    wait_until(lambda: all(v is not None for v in latencies().values()), 20,
               what="a heartbeat round trip for every node")
    assert all(0 < (v or 0) < 1000 for v in latencies().values()), latencies()

    # With node-1 down, the chunks node-0 shares only with node-1 would be lost.
    cl.kill_node(1)
    try:
        cl.wait_node_state(1, "offline")
        assert latencies()[ids[1]] is None  # no figure for a node that does not answer
        shared = set(cl.chunk_files(0)) & set(cl.chunk_files(1))
        info = cl.http.get(f"/api/nodes/{ids[0]}/impact").json()["if_stopped"]
        assert info["chunks_unavailable"] == len(shared) > 0
        assert info["files_unavailable"] >= 1
        assert "become unavailable" in info["summary"]
        assert cl.http.get("/api/nodes/nope/impact").status_code == 404
        # And when it happens, `tossit status` says so, and only so.
        cl.kill_node(0)
        cl.wait_node_state(0, "offline")
        out = subprocess.run(
            [sys.executable, "-m", "tossit", "status"], capture_output=True, text=True,
            timeout=60, env=dict(os.environ, COLUMNS="200", TOSSIT_BRAIN_URL=cl.url,
                                 TOSSIT_KEY_FILE=str(cl.root / "brain" / "admin.key")))
        said = (f"{len(shared)} chunk has" if len(shared) == 1 else f"{len(shared)} chunks have")
        assert f"{said} no live copy" in out.stdout, out.stdout + out.stderr
        assert "full set of copies" not in out.stdout
    finally:
        for i in (0, 1):
            if cl.nodes[i] is None:
                cl.start_node(i)
        cl.wait_online(3)
    # Nothing stored is touched by asking.
    assert len(cl.chunk_files(0)) == held


def test_one_key_cannot_hold_every_stream(cl: Cluster) -> None:
    """A readonly key opening stream after stream gets 429 after a few; the admin
    (another key) still gets its dashboard."""
    key = cl.http.post("/api/keys", json={"name": "greedy", "role": "readonly"}).json()
    headers = {"Authorization": f"Bearer {key['secret']}"}
    held = [Listener(cl, headers=headers) for _ in range(8)]
    try:
        wait_until(lambda: all(x.status == 200 for x in held), 20, what="8 streams open")
        extra = httpx.get(f"{cl.url}/api/stream", headers=headers, verify=cl.verify, timeout=10)
        assert extra.status_code == 429 and extra.json()["error"] == "too_many_streams"
        admin = Listener(cl)
        try:
            wait_until(lambda: admin.last("status"), 10, what="the admin's stream")
        finally:
            admin.close()
    finally:
        for x in held:
            x.close()


def test_open_streams_do_not_hold_up_a_brain_shutdown(cl: Cluster) -> None:
    live = Listener(cl)
    try:
        wait_until(lambda: live.last("status"), 10, what="first state")
        assert cl.brain is not None
        started = time.monotonic()
        cl.brain.terminate()
        cl.brain.wait(10)
        # Well inside uvicorn's 5 s graceful window, which an open stream used to fill.
        assert time.monotonic() - started < 3
        live.thread.join(5)
        assert not live.thread.is_alive()
    finally:
        live.close()
        cl.start_brain()
        cl.wait_online(3)
