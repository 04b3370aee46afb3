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


class HangingPort:
    """A TCP forwarder to a node's port that can start hanging: connections are
    accepted and then nothing is answered (a hung data port, a broken NIC
    offload, a stuck firewall), while the node's own heartbeats go on."""

    def __init__(self, target: int) -> None:
        import asyncio
        import threading

        self.port = free_port()
        self.hang = False
        self._loop = asyncio.new_event_loop()
        self._target = target
        ready = threading.Event()

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(65536):
                    while self.hang:  # noqa: ASYNC110 - a flag set from the test's thread
                        await asyncio.sleep(0.1)
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()

        async def serve(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
            try:
                nr, nw = await asyncio.open_connection("127.0.0.1", self._target)
            except OSError:
                cw.close()
                return
            await asyncio.gather(pipe(cr, nw), pipe(nr, cw))

        async def main() -> None:
            self._server = await asyncio.start_server(serve, "127.0.0.1", self.port)
            ready.set()
            await self._server.serve_forever()

        self._thread = threading.Thread(
            target=lambda: self._loop.run_until_complete(main()), daemon=True)
        self._thread.start()
        ready.wait(5)


def test_a_node_whose_data_port_hangs_while_it_heartbeats_is_shown_unreachable(
        make_cluster: Any) -> None:
    """Transfers to it time out, its heartbeats arrive: writers skip it longer
    after each failure (heartbeats do not end that), its address is probed, and
    it is shown unreachable, so uploads stop paying a timeout there. Once its
    port answers again, it is online again by itself."""
    import time

    c: Cluster = make_cluster(nodes=3, replicas=2,
                              brain_args=["--node-timeout", "2"])
    port = free_port()
    proxy = HangingPort(port)
    c.node_ports.append(port)
    c.nodes.append(None)
    c.n_nodes += 1
    c.node_args = ["--advertise-url", f"http://127.0.0.1:{proxy.port}"]
    c.start_node(3)
    c.node_args = []
    wait_until(lambda: node_row(c, "node-3")["state"] == "online", 30, what="node-3 online")
    proxy.hang = True
    slow = 0
    t_end = time.monotonic() + 40
    while node_row(c, "node-3")["state"] != "unreachable":
        assert time.monotonic() < t_end, "node-3 never shown unreachable"
        t0 = time.monotonic()
        c.upload(f"during-{slow}.bin", os.urandom(200_000))
        slow += time.monotonic() - t0 > 1.5
    assert slow <= 4, slow  # a timeout for the first few uploads, not for each
    row = node_row(c, "node-3")
    assert "does not answer" in row["address_problem"]
    t0 = time.monotonic()
    for i in range(5):
        c.upload(f"after-{i}.bin", os.urandom(200_000))
    assert time.monotonic() - t0 < 5
    proxy.hang = False
    wait_until(lambda: node_row(c, "node-3")["state"] == "online", 40,
               what="node-3 online again once its port answers")
