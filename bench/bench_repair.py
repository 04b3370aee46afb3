#!/usr/bin/env python3
"""Repair throughput of a local TossIt cluster: how fast a dead node's chunks are
re-replicated, and how long from the kill to full redundancy.

Starts its own cluster (a brain and 4 nodes, R=3, default chunk size, SQLite
metadata, authentication on) on free loopback ports with all data and logs under
a temporary folder in /tmp, with fast failure detection (heartbeats every 0.5 s,
suspect after 1.5 s, offline after 3 s, dead after ``--dead-after`` = 5 s). Then:

1. uploads ``--size`` bytes (default 2 GiB) as files of ``--file-size`` (default
   64 MiB) of random content, generated and hashed while streaming (nothing is
   held in memory), and waits until every chunk has 3 copies;
2. SIGKILLs the node holding the most chunks (``chunk_count`` of ``/api/nodes``),
   then polls ``/api/status`` and ``/api/nodes`` every ``--poll`` s (0.5) and
   records when the node turns suspect, offline and dead, when
   ``replication.chunks_below_target`` first drops back to 0 (full redundancy),
   the repair progress, the peak RSS and CPU seconds of the brain and of the
   surviving nodes, and the machine's CPU and disk use over the repair;
3. checks that every file downloads with its SHA-256 (hashed while streaming)
   and that every chunk has exactly 3 ``ok`` copies on the survivors, both in the
   metadata (``/api/files/{id}/info``) and on disk (the nodes' ``chunks/``).

A repair that makes no progress for ``--stall`` s (120) after the node is dead
ends the wait: the run is reported as stalled (an error), with its failed
copies, and step 3 still runs.

Figures: repair MB/s = bytes re-replicated (the ``bytes_copied`` of the brain's
``repair`` events; the killed node's referenced chunk bytes are given next to
it) / (t_full - t_dead); time from kill to full redundancy = detection
(dead_after) + repair. MB = 10^6 bytes. The JSON file (default
``bench/results/repair-<UTC time>.json``) holds the parameters, the git commit,
the machine, every figure, the polled timeline and the warnings of the logs.

Run from the repository root::

    .venv/bin/python bench/bench_repair.py                          # 2 GiB, node defaults
    .venv/bin/python bench/bench_repair.py --repair-bandwidth 0     # unlimited
    .venv/bin/python bench/bench_repair.py --size 1GiB --repair-concurrency 8 --keep

The cluster is stopped on exit, on Ctrl-C and on SIGTERM; the data folder is
removed unless ``--keep`` is given (the logs are copied next to the JSON file,
as ``<out>.logs/``, when the run had errors).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# The script's folder is on sys.path when it runs as `python bench/bench_repair.py`.
import bench_cluster as bc
from bench_cluster import Conn, GiB, MiB, Sampler, request_json

REPO = bc.REPO
N_NODES = 4
REPLICAS = 3
# Failure detection fast enough for dead_after = 5 s (offline_after <= dead_after).
BRAIN_TIMERS = ["--heartbeat-interval", "0.5", "--suspect-after", "1.5", "--offline-after", "3"]
CHUNK_NAME = re.compile(r"^[0-9a-f]{64}$")


class RepairCluster(bc.Cluster):
    """bench_cluster's cluster (auth on) with extra brain and node arguments."""

    def __init__(self, root: Path, brain_args: list[str], node_args: list[str],
                 nodes: int = N_NODES) -> None:
        super().__init__(root, None, auth=True, nodes=nodes, brain_args=brain_args,
                         node_args=node_args)

    def api(self, method: str, path: str, timeout: float = 30) -> Any:
        status, body = request_json(method, self.port, path, timeout=timeout,
                                    headers=self.headers)
        if status != 200:
            raise RuntimeError(f"{method} {path}: HTTP {status}: {str(body)[:300]}")
        return body

    def kill(self, name: str) -> None:
        p = self.procs[name]
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)


# -- machine counters --------------------------------------------------------------------


def cpu_times() -> tuple[float, float, float]:
    """(busy, iowait, total) jiffies of the whole machine."""
    with open("/proc/stat") as fh:
        v = [float(x) for x in fh.readline().split()[1:]]
    idle, iowait = v[3], v[4] if len(v) > 4 else 0.0
    total = sum(v[:8])
    return total - idle - iowait, iowait, total


def disk_bytes() -> tuple[int, int]:
    """(read, written) bytes of the whole disks (not partitions, loops, rams)."""
    disks = {d for d in os.listdir("/sys/block") if not d.startswith(("loop", "ram", "zram"))}
    rd = wr = 0
    with contextlib.suppress(OSError), open("/proc/diskstats") as fh:
        for line in fh:
            f = line.split()
            if len(f) > 9 and f[2] in disks:
                rd += int(f[5]) * 512
                wr += int(f[9]) * 512
    return rd, wr


class MachineWindow:
    """Machine CPU (busy and iowait share of all cores) and disk MB/s over a block."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.cpu0 = cpu_times()
        self.disk0 = disk_bytes()

    def result(self) -> dict[str, Any]:
        dt = max(1e-6, time.monotonic() - self.t0)
        busy, iow, total = (b - a for a, b in zip(self.cpu0, cpu_times(), strict=True))
        rd, wr = (b - a for a, b in zip(self.disk0, disk_bytes(), strict=True))
        total = max(total, 1.0)
        return {"seconds": round(dt, 2), "cpu_busy_pct": round(100 * busy / total, 1),
                "cpu_iowait_pct": round(100 * iow / total, 1), "nproc": os.cpu_count(),
                "disk_read_MBps": round(rd / dt / 1e6, 1),
                "disk_write_MBps": round(wr / dt / 1e6, 1),
                "disk_read_bytes": rd, "disk_written_bytes": wr,
                "loadavg_end": os.getloadavg()}


# -- upload --------------------------------------------------------------------------------


def random_pieces(size: int, sha: Any, piece: int = MiB) -> Iterator[bytes]:
    """``size`` random bytes (os.urandom) in ``piece``-sized parts, hashed on the way."""
    for off in range(0, size, piece):
        b = os.urandom(min(piece, size - off))
        sha.update(b)
        yield b


def upload_all(cluster: RepairCluster, size: int, file_size: int, concurrency: int,
               prefix: str) -> tuple[list[dict[str, Any]], list[str]]:
    sizes = [file_size] * (size // file_size)
    if size % file_size:
        sizes.append(size % file_size)
    files: list[dict[str, Any]] = [{} for _ in sizes]
    errors: list[str] = []
    local = threading.local()
    done = [0]
    lock = threading.Lock()

    def one(i: int) -> None:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = Conn(cluster.port, cluster.headers, timeout=600)
        name = f"{prefix}/file-{i:05d}.bin"
        sha = hashlib.sha256()
        t0 = time.perf_counter()
        try:
            resp = conn.send("PUT", f"/api/files/{name}", random_pieces(sizes[i], sha),
                             length=sizes[i])
            body = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.reset()
            with lock:
                errors.append(f"PUT {name}: {type(exc).__name__}: {exc}")
            return
        if resp.status != 201:
            with lock:
                errors.append(f"PUT {name}: HTTP {resp.status}: {body[:200]!r}")
            return
        meta = json.loads(body)
        files[i] = {"id": int(meta["id"]), "name": name, "size": sizes[i],
                    "sha256": sha.hexdigest(), "s": round(time.perf_counter() - t0, 2)}
        if meta.get("sha256") != files[i]["sha256"]:
            with lock:
                errors.append(f"PUT {name}: brain sha256 {meta.get('sha256')} != "
                              f"{files[i]['sha256']}")
        with lock:
            done[0] += 1
            if done[0] % 8 == 0 or done[0] == len(sizes):
                print(f"  uploaded {done[0]}/{len(sizes)} files", flush=True)

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, range(len(sizes))))
    return [f for f in files if f], errors


# -- waiting and looking ---------------------------------------------------------------------


def wait_for(what: str, ok: Any, timeout: float, interval: float = 0.5) -> float:
    t0 = time.monotonic()
    last: Any = None
    while time.monotonic() - t0 < timeout:
        with contextlib.suppress(OSError, ValueError, KeyError, RuntimeError,
                                 http.client.HTTPException):
            last = ok()
            if last:
                return round(time.monotonic() - t0, 2)
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def chunk_maps(cluster: RepairCluster, files: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """chunk id -> {size, nodes: {node id: (node_state, replica_state)}} over all files."""
    out: dict[str, dict[str, Any]] = {}
    for f in files:
        info = cluster.api("GET", f"/api/files/{f['id']}/info")
        for c in info["chunk_map"]:
            entry = out.setdefault(c["id"], {"size": int(c["size"]), "nodes": {}})
            for n in c["nodes"]:
                entry["nodes"][n["id"]] = (n["node_state"], n["replica_state"])
    return out


def chunks_on_disk(node_dir: Path) -> set[str]:
    root = node_dir / "chunks"
    found: set[str] = set()
    if root.is_dir():
        for sub in root.iterdir():
            if sub.is_dir():
                found.update(p.name for p in sub.iterdir() if CHUNK_NAME.match(p.name))
    return found


def download_hash(cluster: RepairCluster, f: dict[str, Any]) -> tuple[bool, str]:
    conn = Conn(cluster.port, cluster.headers, timeout=600)
    buf = bytearray(MiB)
    view = memoryview(buf)
    sha = hashlib.sha256()
    got = 0
    try:
        resp = conn.send("GET", f"/api/files/{f['id']}/download")
        if resp.status != 200:
            return False, f"HTTP {resp.status}: {resp.read()[:200]!r}"
        while n := resp.readinto(view):
            sha.update(view[:n])
            got += n
    except (OSError, http.client.HTTPException) as exc:
        return False, f"{type(exc).__name__}: {exc}"
    finally:
        conn.reset()
    if got != f["size"] or sha.hexdigest() != f["sha256"]:
        return False, f"{got} bytes, sha256 {sha.hexdigest()[:16]}..."
    return True, ""


def log_findings(logs: Path, limit: int = 15) -> dict[str, Any]:
    """Warnings, errors and tracebacks of each process's log: counts and first lines."""
    pat = re.compile(r" (WARNING|ERROR|CRITICAL) |Traceback|failed|exception")
    out: dict[str, Any] = {}
    for log in sorted(logs.glob("*.log")):
        hits = [ln.rstrip() for ln in log.read_text(errors="replace").splitlines()
                if pat.search(ln)]
        if hits:
            # Group by the message with hex ids and numbers blanked out.
            kinds = Counter(re.sub(r"[0-9a-f]{8,}|\d+(\.\d+)?", "#", h.split(" ", 3)[-1])[:160]
                            for h in hits)
            out[log.stem] = {"lines": len(hits), "first": hits[:limit],
                             "kinds": dict(kinds.most_common(10))}
    return out


def iso_to_ts(s: str | None) -> float | None:
    return datetime.fromisoformat(s).timestamp() if s else None


def rel(t: float | None, t0: float) -> float | None:
    return None if t is None else round(t - t0, 2)


# -- the run ------------------------------------------------------------------------------------


# One long script on purpose: the phases share the timeline and read top to bottom
# as the experiment happens (upload, kill, watch the repair, verify).
def run(args: argparse.Namespace,  # noqa: C901
        cluster: RepairCluster, result: dict[str, Any]) -> int:
    errors = 0
    figures: dict[str, Any] = {}
    result["figures"] = figures
    # 1. data
    print(f"uploading {args.size / GiB:.2f} GiB as {args.file_size / MiB:.0f} MiB files "
          f"(c={args.upload_concurrency}) ...", flush=True)
    prefix = f"repair-bench-{os.getpid()}"
    with Sampler(cluster.pids()) as sampler:
        up: dict[str, Any] = {}
        with sampler.window(up):
            t0 = time.monotonic()
            files, up_errors = upload_all(cluster, args.size, args.file_size,
                                          args.upload_concurrency, prefix)
            dt = time.monotonic() - t0
    total = sum(f["size"] for f in files)
    up |= {"files": len(files), "bytes": total, "s": round(dt, 2),
           "MBps": round(total / dt / 1e6, 1), "errors": up_errors[:10]}
    result["upload"] = up
    print(f"  {len(files)} files, {total / 1e6:.0f} MB in {dt:.1f} s = {up['MBps']} MB/s",
          flush=True)
    if up_errors:
        raise RuntimeError(f"{len(up_errors)} upload errors, first: {up_errors[0]}")

    def all_replicated() -> bool:
        st = cluster.api("GET", "/api/status")
        nodes = cluster.api("GET", "/api/nodes")
        want = st["chunks"] * REPLICAS
        return (st["replication"]["chunks_below_target"] == 0
                and set(st["replication"]["by_copies"]) == {str(REPLICAS)}
                and sum(n["chunk_count"] for n in nodes) == want)

    waited = wait_for("every chunk at 3 copies in the node heartbeats", all_replicated, 120)
    status0 = cluster.api("GET", "/api/status")
    nodes0 = cluster.api("GET", "/api/nodes")
    before = chunk_maps(cluster, files)
    result["before_kill"] = {
        "waited_for_3_copies_s": waited, "chunks": status0["chunks"],
        "chunk_bytes": status0["chunk_bytes"],
        "by_copies": status0["replication"]["by_copies"],
        "nodes": {n["name"]: {"id": n["id"], "chunk_count": n["chunk_count"],
                              "used": n["used"]} for n in nodes0},
    }
    victim = max(nodes0, key=lambda n: (n["chunk_count"], n["name"]))
    vid, vname = victim["id"], victim["name"]
    lost = {cid: c["size"] for cid, c in before.items()
            if c["nodes"].get(vid, ("", ""))[1] == "ok"}
    figures["victim"] = vname
    figures["victim_chunks"] = len(lost)
    figures["victim_chunk_bytes"] = sum(lost.values())
    print(f"{status0['chunks']} chunks ({status0['chunk_bytes'] / 1e6:.0f} MB) at 3 copies; "
          f"{vname} holds {len(lost)} ({sum(lost.values()) / 1e6:.0f} MB)", flush=True)
    early = cluster.api("GET", "/api/events?limit=1000")
    last_event = max((e["id"] for e in early), default=0)
    # Anything the cluster did before the kill (a node suspect during the upload, moves).
    result["events_before_kill"] = {
        "kinds": dict(Counter(e["kind"] for e in early)),
        "not_info": [f"{e['time']} {e['kind']}: {e['message']}" for e in early
                     if e["severity"] != "info"][:20],
    }

    subprocess.run(["sync"], check=False)
    time.sleep(bc.PAUSE_S)

    # 2. the kill and the repair
    survivors = {n: pid for n, pid in cluster.pids().items() if n != vname}
    timeline: list[list[Any]] = []
    marks: dict[str, float | None] = dict.fromkeys(
        ("suspect", "offline", "dead", "below_target", "repair_running", "full"))
    repair_peak: dict[str, Any] = {"max_rate_bytes_per_s": 0, "max_chunks_total": 0}
    stalled: str | None = None
    # From the first poll that sees the node dead: the repair proper.
    dead_cpu: dict[str, float] = {}
    dead_machine: MachineWindow | None = None
    with Sampler(survivors) as sampler:
        window: dict[str, Any] = {}
        with sampler.window(window):
            machine = MachineWindow()
            print(f"SIGKILL {vname} (pid {cluster.procs[vname].pid})", flush=True)
            t_kill_wall = time.time()
            t_kill = time.monotonic()
            cluster.kill(vname)
            deadline = t_kill + args.timeout
            progress_at, best = t_kill, (-1, 0)  # last time the repair moved forward
            while time.monotonic() < deadline:
                tick = time.monotonic()
                try:
                    nodes = cluster.api("GET", "/api/nodes", timeout=10)
                    st = cluster.api("GET", "/api/status", timeout=10)
                except (OSError, RuntimeError, http.client.HTTPException) as exc:
                    timeline.append([round(tick - t_kill, 2), f"poll error: {exc}"])
                    time.sleep(args.poll)
                    continue
                now = time.monotonic()
                state = next((n["state"] for n in nodes if n["id"] == vid), "?")
                below = st["replication"]["chunks_below_target"]
                rep = st["repair"]
                for mark in ("suspect", "offline", "dead"):
                    order = ("suspect", "offline", "dead")
                    if (marks[mark] is None and state in order
                            and order.index(state) >= order.index(mark)):
                        marks[mark] = now
                        if mark == "dead":
                            dead_machine = MachineWindow()
                            dead_cpu = {n: bc._cpu_seconds(pid) for n, pid in survivors.items()}
                if below > 0 and marks["below_target"] is None:
                    marks["below_target"] = now
                if rep["running"] and marks["repair_running"] is None:
                    marks["repair_running"] = now
                repair_peak["max_rate_bytes_per_s"] = max(repair_peak["max_rate_bytes_per_s"],
                                                          rep["rate_bytes_per_s"])
                repair_peak["max_chunks_total"] = max(repair_peak["max_chunks_total"],
                                                      rep["chunks_total"])
                timeline.append([round(now - t_kill, 2), state, below,
                                 st["replication"]["by_copies"], rep["running"],
                                 rep["chunks_done"], rep["chunks_total"], rep["bytes_done"],
                                 rep["rate_bytes_per_s"], rep["failed"]])
                if marks["dead"] is not None and below == 0:
                    marks["full"] = now
                    break
                if marks["dead"] is None or (-below, rep["chunks_done"]) > best:
                    progress_at, best = now, max(best, (-below, rep["chunks_done"]))
                elif now - progress_at > args.stall:
                    stalled = (f"no repair progress for {args.stall:.0f} s: {below} chunks "
                               f"below target, {rep['failed']} copies failed in the current "
                               "pass")
                    print(f"  STALLED: {stalled}", flush=True)
                    break
                if len(timeline) % max(1, int(5 / args.poll)) == 0:
                    print(f"  t+{now - t_kill:5.1f} s  {vname} {state:<8} below target "
                          f"{below:5d}  repair {rep['chunks_done']}/{rep['chunks_total']} "
                          f"{rep['rate_bytes_per_s'] / 1e6:6.1f} MB/s", flush=True)
                time.sleep(max(0.0, args.poll - (time.monotonic() - tick)))
        repair_machine = machine.result()
        repair_only: dict[str, Any] = {}
        if dead_machine is not None:
            repair_only["machine"] = dead_machine.result()
            secs = repair_only["machine"]["seconds"]
            repair_only["server_cpu_s"] = {n: round(bc._cpu_seconds(pid) - dead_cpu[n], 2)
                                           for n, pid in survivors.items()}
            # None: the repair ended within the poll that saw the node dead (a small
            # --size), too short a window to give a rate.
            repair_only["cpu_pct_of_one_core"] = {
                n: round(100 * c / secs, 1) for n, c in repair_only["server_cpu_s"].items()
            } if secs > 0 else None
    result["timeline_columns"] = ["t_s", "victim_state", "chunks_below_target", "by_copies",
                                  "repair_running", "chunks_done", "chunks_total", "bytes_done",
                                  "rate_bytes_per_s", "failed"]
    result["timeline"] = timeline
    figures["marks_s_after_kill"] = {k: rel(v, t_kill) for k, v in marks.items()}
    if marks["full"] is None and stalled is None:
        stalled = f"no full redundancy {args.timeout:.0f} s after the kill"
    figures["stalled"] = stalled
    if stalled:
        # Not at full redundancy: still count what happened and check the files.
        errors += 1
        print(f"  repair did not finish: {stalled}", flush=True)

    # The brain's own view: events since the kill.
    events = [e for e in cluster.api("GET", "/api/events?limit=1000") if e["id"] > last_event]
    events.sort(key=lambda e: e["id"])
    result["events"] = [{k: e[k] for k in ("id", "time", "kind", "severity", "message")}
                        | ({"data": e["data"]} if e["kind"].startswith("repair") else {})
                        for e in events]
    repairs = [e for e in events if e["kind"] == "repair"]
    failed_ev = [e for e in events if e["kind"] == "repair_failed"]
    ev_t = {k: next((iso_to_ts(e["time"]) for e in events if e["kind"] == f"node_{k}"
                     and e["node_id"] == vid), None) for k in ("suspect", "offline", "dead")}
    bytes_copied = sum(int((e.get("data") or {}).get("bytes_copied", 0)) for e in repairs)
    chunks_copied = sum(int((e.get("data") or {}).get("repaired", 0)) for e in repairs)
    t_last_repair = iso_to_ts(repairs[-1]["time"]) if repairs else None

    t_dead, t_full = marks["dead"], marks["full"]
    repair_s = t_full - t_dead if t_full is not None and t_dead is not None else 0.0
    moved = bytes_copied or figures["victim_chunk_bytes"]
    figures |= {
        "bytes_re_replicated": bytes_copied,
        "bytes_re_replicated_source": "repair events (bytes_copied)" if bytes_copied
        else "killed node's referenced chunk bytes (no repair event)",
        "chunks_re_replicated": chunks_copied,
        "repair_passes": len(repairs),
        "repair_failed_events": len(failed_ev),
        "repair_pass_seconds": [e["data"].get("seconds") for e in repairs if e.get("data")],
        "repair_failed_copies": sum(int((e.get("data") or {}).get("failed", 0))
                                    for e in failed_ev),
        "kill_to_dead_s": rel(t_dead, t_kill),
        "repair_s": round(repair_s, 2) if t_full is not None else None,
        "kill_to_full_s": rel(t_full, t_kill),
        "repair_MBps": round(moved / repair_s / 1e6, 1) if repair_s > 0 else None,
        "repair_MiBps": round(moved / repair_s / MiB, 1) if repair_s > 0 else None,
        # Brain-side times (event timestamps, no polling granularity).
        "events_s_after_kill": {k: rel(v, t_kill_wall) for k, v in ev_t.items()}
        | {"last_repair_event": rel(t_last_repair, t_kill_wall)},
        "repair_peak": repair_peak,
        "poll_s": args.poll,
    }
    if not stalled and ev_t["dead"] and t_last_repair and t_last_repair > ev_t["dead"]:
        figures["repair_MBps_brain_events"] = round(moved / (t_last_repair - ev_t["dead"]) / 1e6,
                                                    1)
    if bytes_copied and bytes_copied != figures["victim_chunk_bytes"]:
        figures["note"] = (f"bytes_copied {bytes_copied} != the killed node's chunk bytes "
                           f"{figures['victim_chunk_bytes']}")
    # kill -> full (peak RSS, CPU) and dead -> full (CPU, machine) of the survivors.
    result["repair_window"] = window | {"machine": repair_machine,
                                        "from_dead": repair_only}
    if failed_ev:
        print(f"  {len(failed_ev)} repair_failed events ({figures['repair_failed_copies']} "
              f"failed copies), first: {failed_ev[0]['message']}", flush=True)

    # 3. verification
    print("verifying: every chunk at 3 copies on the survivors, every file's sha256 ...",
          flush=True)
    after = chunk_maps(cluster, files)
    live_ids = {n["id"]: n["name"] for n in nodes0 if n["id"] != vid}
    meta_bad = {}
    for cid, c in after.items():
        ok = [n for n, (nst, rst) in c["nodes"].items() if n in live_ids and rst == "ok"]
        if len(ok) != REPLICAS:
            meta_bad[cid] = len(ok)
    on_disk: Counter[str] = Counter()
    disk_counts = {}
    for i in range(args.nodes):
        name = f"node-{i}"
        if name == vname:
            continue
        found = chunks_on_disk(cluster.root / f"node{i}")
        disk_counts[name] = len(found & after.keys())
        on_disk.update(found & after.keys())
    disk_bad = {cid: on_disk.get(cid, 0) for cid in after if on_disk.get(cid, 0) != REPLICAS}
    t0 = time.monotonic()
    bad_files = []
    for f in files:
        intact, why = download_hash(cluster, f)
        if not intact:
            bad_files.append(f"{f['name']}: {why}")
    dl_s = time.monotonic() - t0
    result["verify"] = {
        "chunks": len(after), "chunks_not_3_in_metadata": len(meta_bad),
        "chunks_not_3_on_disk": len(disk_bad), "chunks_on_disk_per_survivor": disk_counts,
        "examples_metadata": dict(list(meta_bad.items())[:5]),
        "examples_disk": dict(list(disk_bad.items())[:5]),
        "files": len(files), "files_bad": len(bad_files), "bad_files": bad_files[:10],
        "download_s": round(dl_s, 1), "download_MBps": round(total / dl_s / 1e6, 1),
    }
    errors += len(meta_bad) + len(disk_bad) + len(bad_files)
    result["status_after"] = cluster.api("GET", "/api/status")
    return errors


def print_summary(result: dict[str, Any]) -> None:
    f = result.get("figures", {})
    v = result.get("verify", {})
    w = result.get("repair_window", {})
    cfg = result["config"]
    if "repair_failed_copies" not in f:
        return
    print("\nrepair summary")
    print(f"  cluster          brain + {cfg['nodes']} nodes, R={cfg['replicas']}, chunk "
          f"{cfg['chunk_size']}, dead_after {cfg['dead_after']} s, repair-bandwidth "
          f"{cfg['repair_bandwidth']}, repair-concurrency {cfg['repair_concurrency']}")
    print(f"  data             {result['upload']['files']} files, "
          f"{result['upload']['bytes'] / 1e6:.0f} MB (upload {result['upload']['MBps']} MB/s)")
    print(f"  killed           {f['victim']}: {f['victim_chunks']} chunks, "
          f"{f['victim_chunk_bytes'] / 1e6:.0f} MB")
    m = f["marks_s_after_kill"]
    print(f"  after the kill   suspect {m['suspect']} s, offline {m['offline']} s, dead "
          f"{m['dead']} s, full redundancy {m['full']} s (polled every {f['poll_s']} s)")
    print(f"  re-replicated    {f['chunks_re_replicated']} chunks, "
          f"{f['bytes_re_replicated'] / 1e6:.0f} MB in {f['repair_passes']} pass(es), "
          f"{f['repair_failed_events']} repair_failed event(s), "
          f"{f['repair_failed_copies']} failed copies")
    if f.get("stalled"):
        print(f"  REPAIR DID NOT FINISH: {f['stalled']}")
    if f["repair_s"] is not None:
        print(f"  repair           {f['repair_s']} s  = {f['repair_MBps']} MB/s "
              f"({f['repair_MiBps']} MiB/s); brain events: "
              f"{f.get('repair_MBps_brain_events', '-')} MB/s")
        print(f"  kill -> full     {f['kill_to_full_s']} s (detection {f['kill_to_dead_s']} s "
              f"+ repair {f['repair_s']} s)")
    if w and w.get("from_dead"):
        mach = w["from_dead"]["machine"]
        print(f"  kill -> full     peak RSS MB {w['peak_rss_mb']}")
        print(f"  dead -> full     CPU % of one core {w['from_dead']['cpu_pct_of_one_core']}")
        print(f"                   machine CPU busy {mach['cpu_busy_pct']}% of "
              f"{mach['nproc']} cores, iowait {mach['cpu_iowait_pct']}%, disk read "
              f"{mach['disk_read_MBps']} MB/s, write {mach['disk_write_MBps']} MB/s")
    if v:
        print(f"  verified         {v['files'] - v['files_bad']}/{v['files']} files sha256 ok "
              f"(download {v['download_MBps']} MB/s); chunks not at exactly 3 on the "
              f"survivors: {v['chunks_not_3_in_metadata']} (metadata), "
              f"{v['chunks_not_3_on_disk']} (disk)")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=bc.parse_size, default=2 * GiB,
                    help="bytes uploaded in total [2GiB]")
    ap.add_argument("--file-size", type=bc.parse_size, default=64 * MiB,
                    help="size of each file [64MiB]")
    ap.add_argument("--upload-concurrency", type=int, default=2, help="uploads in flight [2]")
    ap.add_argument("--nodes", type=int, default=N_NODES, help="nodes [4]")
    ap.add_argument("--dead-after", type=float, default=5.0,
                    help="brain --dead-after, seconds (at least 3) [5]")
    ap.add_argument("--repair-bandwidth", default=None,
                    help="node --repair-bandwidth, e.g. 64MiB, 0 = unlimited [node default]")
    ap.add_argument("--repair-concurrency", type=int, default=None,
                    help="brain --repair-concurrency [brain default]")
    ap.add_argument("--chunk-size", default=None, help="brain --chunk-size [brain default]")
    ap.add_argument("--poll", type=float, default=0.5, help="status poll interval, s [0.5]")
    ap.add_argument("--timeout", type=float, default=1800,
                    help="seconds to wait for full redundancy after the kill [1800]")
    ap.add_argument("--stall", type=float, default=120,
                    help="give up when the repair makes no progress for this many seconds "
                    "after the node is dead [120]")
    ap.add_argument("--note", default=None, help="free text stored in the JSON file")
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON output [bench/results/repair-<UTC timestamp>.json]")
    ap.add_argument("--keep", action="store_true", help="keep the cluster's data folder")
    args = ap.parse_args(argv)
    if args.nodes <= REPLICAS:
        ap.error(f"--nodes must be more than {REPLICAS} (R) for a repair to be possible")
    if args.dead_after < 3:
        ap.error("--dead-after must be at least 3 (the bench's --offline-after)")
    if args.size < args.file_size:
        args.file_size = args.size

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_path: Path = args.out or REPO / "bench" / "results" / f"repair-{stamp}.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGINT, bc._interrupt)
    signal.signal(signal.SIGTERM, bc._interrupt)
    root = Path(tempfile.mkdtemp(prefix="tossit-repair-", dir="/tmp"))

    brain_args = [*BRAIN_TIMERS, "--dead-after", str(args.dead_after)]
    if args.repair_concurrency is not None:
        brain_args += ["--repair-concurrency", str(args.repair_concurrency)]
    if args.chunk_size:
        brain_args += ["--chunk-size", args.chunk_size]
    node_args = []
    if args.repair_bandwidth is not None:
        node_args += ["--repair-bandwidth", args.repair_bandwidth]
    cluster = RepairCluster(root, brain_args, node_args, nodes=args.nodes)

    result: dict[str, Any] = {
        "tool": "bench/bench_repair.py",
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": bc.git_commit(),
        "machine": bc.machine_info(),
        "config": {
            "nodes": args.nodes, "replicas": REPLICAS, "metadata": "sqlite", "auth": "on",
            "chunk_size": args.chunk_size or "default (4MiB)",
            "size": args.size, "file_size": args.file_size,
            "files": math.ceil(args.size / args.file_size),
            "upload_concurrency": args.upload_concurrency,
            "dead_after": args.dead_after,
            "repair_bandwidth": args.repair_bandwidth or "node default (64MiB)",
            "repair_concurrency": args.repair_concurrency or "brain default (4)",
            "brain_args": brain_args, "node_args": node_args, "poll_s": args.poll,
            "data_dir": str(root),
            # Set when the servers run with something injected (e.g. a sitecustomize).
            "env_pythonpath": os.environ.get("PYTHONPATH"),
            "note": args.note,
        },
    }
    errors = 0
    interrupted = False
    t_start = time.monotonic()
    try:
        print(f"starting brain + {args.nodes} nodes under {root} ...", flush=True)
        cluster.start()
        result["pids"] = cluster.pids()
        errors += run(args, cluster, result)
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted: stopping the cluster", file=sys.stderr)
    except Exception as exc:
        errors += 1
        result["fatal"] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()  # where, not only what: a bench bug is fixed from this
        print(f"error: {result['fatal']}", file=sys.stderr)
    finally:
        cluster.stop()
        result["log_findings"] = log_findings(cluster.logs)
        result["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        result["wall_s"] = round(time.monotonic() - t_start, 1)
        result["errors"] = errors
        result["interrupted"] = interrupted
        bc.save_result(out_path, result, {"": cluster.logs}, args.keep)
        print_summary(result)
        print(f"results: {out_path}  ({errors} errors, {result['wall_s']} s)")
        bc.remove_data(root, args.keep)
    return 130 if interrupted else (1 if errors else 0)


if __name__ == "__main__":
    sys.exit(main())
