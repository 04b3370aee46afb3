"""Faults against real processes: SIGKILL, SIGSTOP, SIGTERM + restart, full
disks, corrupted and vanished chunk files. Every read is byte-identical or a
clean JSON error; no file is ever listed half-written."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from cluster import Cluster, wait_until

MiB = 1 << 20
MakeCluster = Callable[..., Cluster]


# -- helpers ------------------------------------------------------------------


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def chunk_ids(data: bytes, size: int = MiB) -> list[str]:
    return [sha(data[i : i + size]) for i in range(0, len(data), size)]


def assert_error(resp: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert resp.status_code in statuses, (resp.status_code, resp.text[:500])
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    body: dict[str, Any] = resp.json()
    assert body.get("error") and body.get("message"), body
    assert "Traceback" not in resp.text
    return body


def listing(c: Cluster) -> dict[str, dict[str, Any]]:
    resp = c.http.get("/api/files", params={"limit": 10000})
    assert resp.status_code == 200
    return {f["name"]: f for f in resp.json()}


def node_ids(c: Cluster) -> dict[int, str]:
    """Node index -> the node's persistent id, as the brain lists it."""
    by_name = {n["name"]: n["id"] for n in c.http.get("/api/nodes").json()}
    return {i: by_name[f"node-{i}"] for i in range(c.n_nodes) if f"node-{i}" in by_name}


def info(c: Cluster, file_id: int) -> dict[str, Any]:
    resp = c.http.get(f"/api/files/{file_id}/info")
    assert resp.status_code == 200, resp.text
    result: dict[str, Any] = resp.json()
    return result


def node_metric(c: Cluster, i: int, name: str, labels: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{c.node_ports[i]}/metrics", timeout=10).text
    m = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def bytes_served(c: Cluster, i: int) -> float:
    return node_metric(c, i, "tossit_node_bytes_total", 'direction="out"')


def puts_ok(c: Cluster, i: int) -> float:
    return node_metric(c, i, "tossit_node_chunk_ops_total", 'op="put",result="ok"')


def put_raw(c: Cluster, name: str, data: bytes) -> httpx.Response:
    return c.http.put(f"/api/files/{name}", content=data)


def start_in_thread(fn: Callable[[], httpx.Response]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["resp"] = fn()
        except Exception as exc:  # reported by the test
            out["exc"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


# -- SIGKILL during an upload, then during a download -------------------------------


def test_sigkill_during_upload_and_during_download(make_cluster: MakeCluster) -> None:
    """R=3 on 4 nodes: an upload survives a node dying under it, and a download
    survives the node it is reading from dying under it."""
    c = make_cluster(nodes=4, replicas=3)
    ids = node_ids(c)
    victim = 2
    data = os.urandom(40 * MiB)
    t, out = start_in_thread(lambda: put_raw(c, "big.bin", data))
    wait_until(lambda: puts_ok(c, victim) >= 3, 30, interval=0.02, what="upload under way")
    assert t.is_alive(), "the upload finished before the node could be killed"
    c.kill_node(victim)
    t.join(120)
    assert not t.is_alive() and "exc" not in out, out
    resp = out["resp"]
    assert resp.status_code == 201, resp.text
    up = resp.json()
    assert up["size"] == len(data) and up["sha256"] == sha(data) and up["chunks"] == 40
    assert sha(c.download(up["id"])) == sha(data)

    survivors = [i for i in range(4) if i != victim]
    disk = {i: c.chunk_files(i) for i in survivors}
    chunk_map = info(c, up["id"])["chunk_map"]
    assert [ch["id"] for ch in chunk_map] == chunk_ids(data)
    after_kill = 0
    for ch in chunk_map:
        holders = {n["id"] for n in ch["nodes"] if n["replica_state"] == "ok"}
        assert len(holders) == 3, ch  # R copies were acknowledged for every chunk
        for i in survivors:  # every recorded copy on a survivor is really there
            path = disk[i].get(ch["id"])
            assert (ids[i] in holders) == (path is not None), (i, ch)
            assert path is None or sha(path.read_bytes()) == ch["id"]
        on_survivors = sum(ids[i] in holders for i in survivors)
        assert on_survivors >= 2, ch  # the write quorum is met without the victim
        if ids[victim] not in holders:
            after_kill += 1
            assert on_survivors == 3, ch  # written after the kill: fully on survivors
    assert after_kill > 0, "no chunk was written after the kill"

    c.wait_node_state(victim, "offline", timeout=10)
    listed = listing(c)["big.bin"]
    assert listed["id"] == up["id"] and listed["replication"]["min_copies"] >= 2

    # Now a slow download, and the node it reads from dies half-way.
    served_before = {i: bytes_served(c, i) for i in survivors}
    got = bytearray()
    killed = -1
    # A small, fixed receive buffer: loopback autotuning may grow it to 32 MiB, and
    # then the brain can have read the whole file before the client is half-way.
    slow = httpx.HTTPTransport(socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 << 10)])
    with httpx.Client(base_url=c.url, headers=c.http.headers, transport=slow,
                      timeout=60) as client, \
            client.stream("GET", f"/api/files/{up['id']}/download") as r:
        assert r.status_code == 200
        assert r.headers["content-length"] == str(len(data))
        for piece in r.iter_bytes(64 * 1024):
            got += piece
            if killed < 0 and len(got) >= 6 * MiB:
                served = {i: bytes_served(c, i) - served_before[i] for i in survivors}
                killed = max(survivors, key=lambda i: served[i])
                assert served[killed] > 0
                c.kill_node(killed)
                served_before = {i: bytes_served(c, i) for i in survivors if i != killed}
            elif killed < 0:
                time.sleep(0.005)  # a slow client
    assert len(got) == len(data) and sha(bytes(got)) == sha(data)
    # The rest of the file really came from the two nodes left.
    served_after = {i: bytes_served(c, i) for i in served_before}
    assert sum(served_after[i] - n for i, n in served_before.items()) >= 10 * MiB, (
        killed, served_before, served_after)
    assert sha(c.download(up["id"])) == sha(data)


# -- a node down, then two ------------------------------------------------------


def test_node_down_reads_writes_quorum_and_restart(make_cluster: MakeCluster) -> None:
    c = make_cluster(nodes=3, replicas=3)
    ids = node_ids(c)
    files = {"a.bin": os.urandom(2 * MiB + 99), "b.txt": os.urandom(5000), "empty": b""}
    up = {name: c.upload(name, data) for name, data in files.items()}
    disk_before = {i: set(c.chunk_files(i)) for i in range(3)}

    t0 = time.monotonic()
    c.kill_node(2)
    c.wait_node_state(2, "offline", timeout=10)
    assert time.monotonic() - t0 < 10
    states = {n["name"]: n["state"] for n in c.http.get("/api/nodes").json()}
    assert states == {"node-0": "online", "node-1": "online", "node-2": "offline"}
    for name, data in files.items():
        assert sha(c.download(up[name]["id"])) == sha(data)
    assert listing(c)["a.bin"]["replication"]["state"] == "degraded"

    # One of three down: writes still succeed (W=2) and say they are degraded.
    new = os.urandom(3 * MiB + 1)
    fresh = c.upload("new.bin", new)
    assert fresh["replication"]["state"] == "degraded", fresh
    assert fresh["replication"]["min_copies"] == 2
    assert fresh["replication"]["under_replicated_chunks"] == 4
    assert listing(c)["new.bin"]["replication"]["state"] == "degraded"
    meta = info(c, fresh["id"])
    assert meta["replication"]["state"] == "degraded"
    disk = {i: c.chunk_files(i) for i in range(3)}
    for ch in meta["chunk_map"]:
        assert {n["id"] for n in ch["nodes"]} == {ids[0], ids[1]}, ch
        assert all(sha(disk[i][ch["id"]].read_bytes()) == ch["id"] for i in (0, 1))
        assert ch["id"] not in disk[2]
    resp = put_raw(c, "raw-degraded.bin", b"x" * 70000)
    assert resp.status_code == 201 and resp.json()["replication"]["state"] == "degraded"
    assert sha(c.download(fresh["id"])) == sha(new)

    # Node 1 dies during an upload: too few nodes are left for the write quorum,
    # so the upload fails cleanly and leaves nothing listed and nothing on disk.
    doomed = os.urandom(24 * MiB)
    base = puts_ok(c, 1)
    t, out = start_in_thread(lambda: put_raw(c, "doomed.bin", doomed))
    wait_until(lambda: puts_ok(c, 1) >= base + 2, 30, interval=0.02, what="upload under way")
    assert t.is_alive(), "the upload finished before the node could be killed"
    c.kill_node(1)
    t.join(120)
    assert not t.is_alive()
    if "exc" in out:  # the brain may answer before reading the whole body
        assert isinstance(out["exc"], httpx.HTTPError), out
    else:
        body = assert_error(out["resp"], 503)
        assert body["error"] == "not_enough_nodes" and body["needed"] == 2, body
        assert body["available"] < 2, body
    assert "doomed.bin" not in listing(c)
    doomed_ids = set(chunk_ids(doomed))

    def collected() -> bool:
        c.gc()
        return not set(c.chunk_files(0)) & doomed_ids

    wait_until(collected, 20, interval=0.3, what="the failed upload's chunks collected")

    # Two of three down: uploads are refused with how many nodes are needed.
    c.wait_node_state(1, "offline", timeout=10)
    attempts = [
        c.http.post("/api/files/upload", files={"file": ("refused1.bin", os.urandom(MiB))}),
        put_raw(c, "refused2.bin", os.urandom(MiB)),
        c.http.put("/api/files/refused3.bin", content=iter([b"a" * 1000] * 5)),
        c.http.post("/api/files/upload", files={"file": ("refused4.bin", b"")}),
    ]
    for resp in attempts:
        body = assert_error(resp, 503)
        assert body["error"] == "not_enough_nodes"
        assert (body["needed"], body["available"]) == (2, 1), body
    names = set(listing(c))
    assert not {"refused1.bin", "refused2.bin", "refused3.bin", "refused4.bin"} & names
    # ... while every file still reads, from the one node left.
    for name, data in [*files.items(), ("new.bin", new)]:
        assert sha(c.download(listing(c)[name]["id"])) == sha(data)

    # Both come back on their data dirs: same ids, same chunks, files intact.
    c.start_node(1)
    c.start_node(2)
    c.wait_online(3)
    assert node_ids(c) == ids
    assert len(c.http.get("/api/nodes").json()) == 3
    assert set(c.chunk_files(2)) == disk_before[2]
    assert set(c.chunk_files(1)) >= disk_before[1]
    for name, data in [*files.items(), ("new.bin", new)]:
        assert sha(c.download(listing(c)[name]["id"])) == sha(data)
    assert listing(c)["a.bin"]["replication"]["state"] == "healthy"
    again = c.upload("after-restart.bin", os.urandom(MiB + 5))
    assert again["replication"]["state"] == "healthy"


# -- damaged replicas -------------------------------------------------------------


def _by_latency(c: Cluster, ids: dict[int, str]) -> list[int]:
    """Node indexes in the order the brain's reader will try them (fastest first)."""
    lat = {n["id"]: n["transfer_ms"] for n in c.http.get("/api/nodes").json()}
    return sorted(ids, key=lambda i: lat[ids[i]] if lat[ids[i]] is not None else 50.0)


def _reported(c: Cluster, kind: str, cid: str) -> set[str]:
    """Nodes a ``kind`` event names for chunk ``cid``. The reader reports one copy
    per event; an inventory sweep (run when a node comes back, which a loaded
    machine's late heartbeat can cause) or a scrub reports a node's list."""
    events = c.http.get("/api/events", params={"kind": kind}).json()
    return {e["node_id"] for e in events
            if cid == e["data"].get("chunk") or cid in e["data"].get("chunks", [])}


def test_corrupt_and_missing_replicas(make_cluster: MakeCluster) -> None:
    # The read path's own detection, with the repairer held back so the recorded
    # states stay visible (test_healing.py covers the repair that follows).
    c = make_cluster(nodes=3, replicas=3, brain_args=["--no-auto-repair"])
    ids = node_ids(c)
    data = os.urandom(4 * MiB + 10)
    up = c.upload("precious.bin", data)
    cids = chunk_ids(data)

    # Corrupt chunk 1 on the two replicas the reader tries first: it must read
    # both, detect both, and serve the third.
    order = _by_latency(c, ids)
    bad = order[:2]
    for i in bad:
        path = c.chunk_files(i)[cids[1]]
        with open(path, "r+b") as fh:
            fh.seek(1000)
            fh.write(b"\x00garbage\xff" * 10)
    resp = c.http.get(f"/api/files/{up['id']}/download",
                      headers={"Range": f"bytes={MiB}-{2 * MiB - 1}"})
    assert resp.status_code == 206 and sha(resp.content) == cids[1]
    states = {n["id"]: n["replica_state"] for n in info(c, up["id"])["chunk_map"][1]["nodes"]}
    assert states == {ids[i]: "corrupt" if i in bad else "ok" for i in range(3)}
    assert _reported(c, "replica_corrupt", cids[1]) == {ids[i] for i in bad}
    assert sha(c.download(up["id"])) == sha(data)
    listed = listing(c)["precious.bin"]["replication"]
    assert listed["min_copies"] == 1 and listed["state"] == "degraded"

    # Delete chunk 2's file on the two replicas tried first: same story.
    order = _by_latency(c, ids)
    gone = order[:2]
    for i in gone:
        c.chunk_files(i)[cids[2]].unlink()
    resp = c.http.get(f"/api/files/{up['id']}/download",
                      headers={"Range": f"bytes={2 * MiB}-{3 * MiB - 1}"})
    assert resp.status_code == 206 and sha(resp.content) == cids[2]
    states = {n["id"]: n["replica_state"] for n in info(c, up["id"])["chunk_map"][2]["nodes"]}
    assert states == {ids[i]: "missing" if i in gone else "ok" for i in range(3)}
    assert _reported(c, "replica_missing", cids[2]) == {ids[i] for i in gone}
    assert sha(c.download(up["id"])) == sha(data)

    # Chunk 4 (the 10-byte tail) corrupt everywhere: a clear 503 before any byte
    # when that is known up front, never a complete-looking wrong body.
    for i in range(3):
        c.chunk_files(i)[cids[4]].write_bytes(b"0123456789")
    resp = c.http.get(f"/api/files/{up['id']}/download", headers={"Range": f"bytes={4 * MiB}-"})
    assert assert_error(resp, 503)["error"] == "chunk_unavailable"
    try:
        resp = c.http.get(f"/api/files/{up['id']}/download")
    except httpx.HTTPError:
        pass  # the transfer was cut: a client can tell it is incomplete
    else:
        assert resp.status_code != 200 or len(resp.content) < len(data), "silent bad body"
        if resp.status_code != 200:
            assert_error(resp, 503)


# -- a full node ------------------------------------------------------------------


def _blocks_preferring(c: Cluster, node_id: str, count: int) -> list[bytes]:
    """1 MiB blocks whose placement puts ``node_id`` among their R targets."""
    from tossit.placement import Candidate, balanced, preference_list

    nodes = balanced([Candidate(n["id"], float(n["capacity"]), n["zone"])
                      for n in c.http.get("/api/nodes").json()], c.replicas)
    out: list[bytes] = []
    while len(out) < count:
        block = os.urandom(MiB)
        if node_id in [n.id for n in preference_list(sha(block), nodes, c.replicas)[:c.replicas]]:
            out.append(block)
    return out


def test_full_nodes(make_cluster: MakeCluster) -> None:
    # No metadata snapshots: on a slow machine the first one (a minute after the
    # start) would take room on these 3 MiB nodes, and "empty" below would never be.
    c = make_cluster(nodes=4, replicas=2, node_capacity="3MiB",
                     brain_args=["--snapshot-interval", "0"])
    ids = node_ids(c)
    limit = 3 * MiB
    node0 = c.node_http(0)

    def refused_by_node0() -> float:
        return node_metric(c, 0, "tossit_node_chunk_ops_total", 'op="put",result="full"')

    def heartbeat_of_node0() -> str | None:
        return next(n["last_heartbeat"] for n in c.http.get("/api/nodes").json()
                    if n["id"] == ids[0])

    # Node 0 fills up behind the brain's back (as if another writer got there
    # first) and an upload whose chunks belong on node 0 arrives before the next
    # heartbeat: node 0 answers 507 and the brain places the chunks elsewhere.
    # If a heartbeat slips in first the brain simply skips node 0; try again.
    # Each try starts right after a heartbeat (a whole interval ahead of it: on a
    # loaded machine, a try started anywhere was beaten by one six times in a row).
    for _attempt in range(10):
        # Just under the limit (the node also keeps small manifest packs): no room
        # for another 1 MiB chunk.
        filler = [os.urandom(MiB), os.urandom(MiB), os.urandom(MiB - 64 * 1024)]
        data = b"".join(_blocks_preferring(c, ids[0], 2))
        last = heartbeat_of_node0()
        wait_until(lambda: heartbeat_of_node0() != last, 10, interval=0.01,  # noqa: B023
                   what="a heartbeat of node 0")
        for block in filler:
            assert node0.put(f"/chunks/{sha(block)}", content=block).status_code == 201
        before = refused_by_node0()
        up = c.upload("fits.bin", data)
        hit_507 = refused_by_node0() > before
        if hit_507:
            break
        for block in filler:
            assert node0.delete(f"/chunks/{sha(block)}").status_code == 200
        assert c.http.delete(f"/api/files/{up['id']}").status_code == 200
        c.gc(orphans=False)
        # (Data chunks only: the nodes keep the manifest packs of the upload and of
        # its deletion a while, a few hundred bytes each, which the filler leaves
        # room for.)
        wait_until(lambda: all(n["chunk_count"] == 0 for n in c.http.get("/api/nodes").json()),
                   20, what="no chunk left on the nodes")
    assert hit_507, "node 0 never had to refuse a chunk"
    assert sha(c.download(up["id"])) == sha(data)
    for ch in info(c, up["id"])["chunk_map"]:
        holders = {n["id"] for n in ch["nodes"]}
        assert len(holders) == 2 and ids[0] not in holders, ch
    assert not set(chunk_ids(data)) & set(c.chunk_files(0))
    # Node 0 itself: a 507 JSON, nothing stored.
    block = os.urandom(MiB)
    assert assert_error(node0.put(f"/chunks/{sha(block)}", content=block), 507)["error"] == (
        "storage_full")
    assert sha(block) not in c.chunk_files(0)
    node0.close()

    # Keep writing 1 MiB files until the cluster says it is full.
    stored = {"fits.bin": data}
    refusal = None
    for n in range(6):
        blob = os.urandom(MiB)
        resp = c.http.post("/api/files/upload", files={"file": (f"more{n}.bin", blob)})
        if resp.status_code == 201:
            stored[f"more{n}.bin"] = blob
            continue
        refusal = assert_error(resp, 503, 507)
        failed = f"more{n}.bin"
        break
    assert refusal is not None, "the cluster never filled up"
    assert failed not in listing(c)
    resp = put_raw(c, "raw-too.bin", os.urandom(MiB))
    assert_error(resp, 503, 507)
    assert "raw-too.bin" not in listing(c)

    # No node went past its limit, and everything acknowledged reads back.
    # The refused uploads' chunks are being released in the background: let
    # that pass finish so the disks are not walked while files vanish.
    c.gc(orphans=False)
    for i in range(4):
        used = sum(p.stat().st_size for p in c.chunk_files(i).values())
        assert used <= limit, (i, used)
    names = listing(c)
    assert set(names) == set(stored)
    for name, blob in stored.items():
        assert sha(c.download(names[name]["id"])) == sha(blob)

    # Deleting makes room again.
    assert c.http.delete(f"/api/files/{names['fits.bin']['id']}").status_code == 200
    c.gc(orphans=False)
    tries: list[str] = []

    def upload_fits() -> bool:
        resp = c.http.post("/api/files/upload", files={"file": ("again.bin", os.urandom(MiB))})
        tries.append(resp.text)
        return resp.status_code == 201

    try:
        wait_until(upload_fits, 20, interval=0.3, what="room after a delete")
    except TimeoutError:
        nodes = [(n["name"], n["state"], n["used"], n["free"]) for n in
                 c.http.get("/api/nodes").json()]
        disk = {i: len(c.chunk_files(i)) for i in range(4)}
        raise AssertionError(f"{tries[-1]}; nodes {nodes}; chunks on disk {disk}") from None


# -- a hung node, a restarted node ---------------------------------------------------


def test_a_paused_brain_does_not_blame_the_nodes(make_cluster: MakeCluster) -> None:
    # A brain that stops running for longer than offline_after (3 s here): CPU
    # starvation, a stalled loop, a suspended VM. The nodes' heartbeats wait in its
    # sockets meanwhile; nobody must be declared suspect or offline for it.
    c = make_cluster(nodes=3, replicas=3)
    data = os.urandom(MiB + 1)
    up = c.upload("before.bin", data)
    assert c.brain is not None
    c.brain.send_signal(signal.SIGSTOP)
    try:
        time.sleep(4.5)
    finally:
        c.brain.send_signal(signal.SIGCONT)
    time.sleep(1.0)  # a few monitor passes
    states = [n["state"] for n in c.http.get("/api/nodes").json()]
    assert states == ["online"] * 3
    kinds = {e["kind"] for e in c.http.get("/api/events").json()}
    assert not kinds & {"node_suspect", "node_offline", "node_online"}, kinds
    assert sha(c.download(up["id"])) == sha(data)
    assert c.upload("after.bin", data)["replication"]["state"] == "healthy"


def test_a_node_paused_mid_upload_is_left_behind_after_the_straggler_wait(
        make_cluster: MakeCluster) -> None:
    """A node stops answering (SIGSTOP) while it is still online: an upload that
    sent it a copy commits with W copies once the others are done and the
    straggler wait is over, not after node_timeout (60 s)."""
    c = make_cluster(nodes=3, replicas=3, brain_args=["--straggler-wait", "1"])
    ids = node_ids(c)
    proc = c.nodes[2]
    assert proc is not None
    data = os.urandom(300_000)
    proc.send_signal(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        up = c.upload("during-the-pause.bin", data)  # before the monitor notices
        took = time.monotonic() - t0
        assert took < 15, f"the upload waited {took:.1f} s for the paused node"
        assert up["replication"]["state"] == "degraded"
        for ch in info(c, up["id"])["chunk_map"]:
            assert {n["id"] for n in ch["nodes"]} == {ids[0], ids[1]}
        assert sha(c.download(up["id"])) == sha(data)
    finally:
        proc.send_signal(signal.SIGCONT)
    c.wait_node_state(2, "online", timeout=15)
    assert sha(c.download(up["id"])) == sha(data)


def test_downloads_go_on_while_a_node_is_paused(make_cluster: MakeCluster) -> None:
    """A node stops answering (SIGSTOP) while it is still online, with reads of
    its copies on their way: every download ends with the right bytes once the
    straggler wait is over (the next copy asked), none waits for node_timeout
    (60 s), and the brain counts the hedged reads."""
    c = make_cluster(nodes=3, replicas=3, brain_args=["--straggler-wait", "0.5"])
    files = {}
    for i in range(12):
        data = os.urandom(200_000 + i)
        files[c.upload(f"read-{i}.bin", data)["id"]] = sha(data)
    # The brain reads from the node that answered fastest lately: the one that
    # served the last read is the one it asks first next. That one is paused.
    for i in files:
        c.download(i)
    # (On a loaded machine a read may be hedged to a second node too: read again.)
    for _try in range(5):
        served = [bytes_served(c, n) for n in range(3)]
        c.download(next(iter(files)))
        grew = [n for n in range(3) if bytes_served(c, n) > served[n]]
        if len(grew) == 1:
            break
    (first,) = grew
    proc = c.nodes[first]
    assert proc is not None
    results: dict[int, tuple[str, float]] = {}

    def read(file_id: int) -> None:
        t0 = time.monotonic()
        body = c.download(file_id)
        results[file_id] = (sha(body), time.monotonic() - t0)

    proc.send_signal(signal.SIGSTOP)
    try:
        # All at once, before the monitor notices: the first of them asks the paused node.
        threads = [threading.Thread(target=read, args=(i,)) for i in files]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert {i: r[0] for i, r in results.items()} == files
        slowest = max(r[1] for r in results.values())
        assert slowest < 20, f"a download waited {slowest:.1f} s for the paused node"
        hedged = re.search(r"^tossit_read_hedges_total (\S+)$", c.http.get("/metrics").text,
                           re.M)
        assert hedged is not None and float(hedged.group(1)) >= 1
    finally:
        proc.send_signal(signal.SIGCONT)
    c.wait_node_state(first, "online", timeout=15)
    for i, digest in files.items():
        assert sha(c.download(i)) == digest


def test_a_brain_started_again_takes_uploads_at_once(make_cluster: MakeCluster) -> None:
    """A brain stopped for a few seconds finds its nodes suspect when it starts
    (silent for longer than suspect_after), while they, having backed off, may
    not heartbeat for seconds more. It asks them: the first upload after its
    start is stored on every node, not refused with 503 not_enough_nodes."""
    c = make_cluster(nodes=3, replicas=3)
    assert c.upload("before.bin", b"x" * 1000)["replication"]["state"] == "healthy"
    c.stop_brain()
    time.sleep(4)  # the nodes' heartbeats back off to 4 s and more meanwhile
    c.start_brain()
    data = os.urandom(300_000)
    resp = c.http.put("/api/files/right-after.bin", content=data)
    assert resp.status_code == 201, resp.text
    assert resp.json()["replication"]["state"] == "healthy"
    assert [n["state"] for n in c.http.get("/api/nodes").json()] == ["online"] * 3
    kinds = [e["kind"] for e in c.http.get("/api/events").json()]
    assert "node_online" not in kinds  # they were never away: no event says so
    assert sha(c.download(resp.json()["id"])) == sha(data)


def test_sigstop_then_sigterm_restart(make_cluster: MakeCluster) -> None:
    c = make_cluster(nodes=3, replicas=3, brain_args=["--no-auto-repair"])
    ids = node_ids(c)
    old = os.urandom(2 * MiB + 3)
    first = c.upload("old.bin", old)
    proc = c.nodes[2]
    assert proc is not None
    proc.send_signal(signal.SIGSTOP)
    try:
        c.wait_node_state(2, "offline", timeout=10)
        t0 = time.monotonic()
        assert sha(c.download(first["id"])) == sha(old)
        new = os.urandom(2 * MiB + 4)
        second = c.upload("new.bin", new)
        assert time.monotonic() - t0 < 10, "a hung node stalled reads or writes"
        assert second["replication"]["state"] == "degraded"
        for ch in info(c, second["id"])["chunk_map"]:
            assert {n["id"] for n in ch["nodes"]} == {ids[0], ids[1]}
    finally:
        proc.send_signal(signal.SIGCONT)
    c.wait_node_state(2, "online", timeout=10)
    assert not set(chunk_ids(new)) & set(c.chunk_files(2))
    assert sha(c.download(first["id"])) == sha(old)
    assert sha(c.download(second["id"])) == sha(new)
    # A repair pass completes the degraded write on the returning node: its 3
    # chunks, and the upload's manifest pack if it is on 2 nodes only. (A pack the
    # commit could not write goes out from the outbox, which waits a while for R
    # nodes: when node 2 is back in time, the pack gets its 3 copies that way.)
    wait_until(lambda: c.http.get("/api/status").json()["manifests"]["outbox"] == 0, 10,
               what="the manifest pack recorded")
    short = c.http.get("/api/status").json()["manifests"]["below_target"]
    assert c.http.post("/api/admin/repair", timeout=120).json()["repaired"] == 3 + short
    assert c.http.get("/api/status").json()["manifests"]["below_target"] == 0
    assert set(chunk_ids(new)) <= set(c.chunk_files(2))
    assert info(c, second["id"])["replication"]["state"] == "healthy"

    # A clean stop and a restart on the same data dir: same id, same chunks.
    chunks = set(c.chunk_files(1))
    count = len(chunks)  # what the node must report after the restart (a heartbeat
    # read here could predate the last writes)
    c.kill_node(1, signal.SIGTERM)
    c.wait_node_state(1, "offline", timeout=10)
    c.start_node(1)
    c.wait_node_state(1, "online", timeout=30)
    assert node_ids(c) == ids and len(c.http.get("/api/nodes").json()) == 3
    assert set(c.chunk_files(1)) == chunks
    wait_until(lambda: next(n["chunk_count"] for n in c.http.get("/api/nodes").json()
                            if n["id"] == ids[1]) == count, 10, what="chunk count reported")
    assert listing(c)["old.bin"]["replication"]["state"] == "healthy"
    for i in (0, 2):  # read the restarted node's copies alone
        c.kill_node(i, signal.SIGTERM)
    c.wait_node_state(0, "offline", timeout=10)
    c.wait_node_state(2, "offline", timeout=10)
    assert sha(c.download(first["id"])) == sha(old)
    assert sha(c.download(second["id"])) == sha(new)


@pytest.fixture(autouse=True)
def _no_unhandled_errors(tmp_path: Any) -> Any:
    """No process logs an unhandled error (a 500) during a fault test."""
    yield
    for log in tmp_path.glob("c*/logs/*.log"):
        assert "unhandled error" not in log.read_text(errors="replace"), log
