#!/usr/bin/env python3
"""Upload or download latency while one node is paused (SIGSTOP): does one hung
node stall them?

Starts a brain and three nodes (auth on, R=3, W=2) and uploads ``--size`` objects
at ``--concurrency`` for ``--seconds`` (with ``--phase get``: uploads
``--objects`` of them first, unmeasured, then downloads them round and round,
each body compared with what was uploaded). After ``--pause-at`` seconds node-0 is
stopped with SIGSTOP (it keeps its connections open and answers nothing, as a
hung disk or a frozen VM would) and stays stopped to the end (with ``--phase
get``, the node serving the reads at that moment instead). Reports p50, p99
and the slowest upload of those that ended before the pause and of those still
running once it began, and how many each. With
``--base REF`` the same run is made on an earlier commit too (its servers run
from a temporary git worktree), so both are measured in one session::

    .venv/bin/python bench/bench_paused_node.py --base HEAD~1

A brain that waits for every copy holds each upload that picked the paused node
for ``node_timeout`` (60 s) until the monitor stops choosing the node; one that
leaves stragglers behind once W copies are made (``straggler_wait``) holds it
about a second. The same holds for downloads: a reader that waits for the copy
it asked first holds each download that picked the paused node for
``node_timeout``; one that goes on to the next copy once the first is later
than ``straggler_wait`` holds it about that long::

    .venv/bin/python bench/bench_paused_node.py --phase get --base HEAD~1
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_cluster as bc  # a sibling script, not a package

ROOT = Path(__file__).resolve().parent.parent


def one_run(args: argparse.Namespace, label: str, src: Path | None) -> dict[str, Any]:
    with bc.fresh_cluster(f"paused-{label}", src) as cluster:
        return measure(args, label, cluster)


def measure(args: argparse.Namespace, label: str, cluster: bc.Cluster) -> dict[str, Any]:
    data = random.Random(3).randbytes(args.size)
    stored: list[tuple[int, bytes]] = []  # (id, bytes) of the objects to download
    if args.phase == "get":
        conn = bc.Conn(cluster.port, cluster.headers, timeout=300)
        body_of = bc.payloads(args.size, same=False)  # distinct chunks
        for i in range(args.objects):
            body = body_of(i)
            resp = conn.send("PUT", f"/api/files/paused-{label}/g-{i}", body)
            answer = resp.read()
            assert resp.status == 201, answer[:200]
            stored.append((int(json.loads(answer)["id"]), body))
        conn.reset()
    before, after = bc.Phase(), bc.Phase()
    t0 = time.monotonic()
    paused_at: list[float] = []
    counter = iter(range(10**9))
    lock = threading.Lock()

    def worker(_: int) -> None:
        conn = bc.Conn(cluster.port, cluster.headers, timeout=300)
        while time.monotonic() - t0 < args.seconds:
            with lock:
                i = next(counter)
            failures = bc.Phase()
            if stored:
                oid, expect = stored[i % len(stored)]
                got = bc._timed(conn, failures, f"GET {oid}", "GET",
                                f"/api/files/{oid}/download", None)
                want = 200
            else:
                got = bc._timed(conn, failures, f"PUT {i}", "PUT",
                                f"/api/files/paused-{label}/o-{i}", data)
                want = 201
            # Counted as paused if it was still running once the node was stopped.
            phase = after if paused_at else before
            for what in failures.first_errors:
                phase.fail(what)
            if got is None:
                continue
            status, body, dt = got
            if status == want and (not stored or body == expect):
                phase.ok(dt)
            else:
                phase.fail(f"{'GET' if stored else 'PUT'} {i}: HTTP {status}: {body[:200]!r}")
        conn.reset()

    paused: dict[str, Any] = {}

    def reads(i: int) -> float:
        return bc.metric_sum(bc.get_text(cluster.node_ports[i], "/metrics"),
                             "tossit_node_chunk_ops_total", 'op="get"')

    def pauser() -> None:
        time.sleep(args.pause_at)
        target = 0
        if stored:
            # The brain reads from the node that answered fastest lately: pause
            # the one serving the reads now (else the pause may miss them all).
            first = [reads(i) for i in range(len(cluster.node_ports))]
            time.sleep(0.2)
            now = [reads(i) - first[i] for i in range(len(first))]
            target = max(range(len(now)), key=lambda i: now[i])
            paused["share_of_reads"] = round(now[target] / max(1.0, sum(now)), 2)
        paused["node"] = f"node-{target}"
        os.kill(cluster.pids()[paused["node"]], signal.SIGSTOP)
        paused_at.append(time.monotonic())

    threading.Thread(target=pauser, daemon=True).start()
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        list(pool.map(worker, range(args.concurrency)))
    wall = time.monotonic() - t0
    brain = bc.get_text(cluster.port, "/metrics", cluster.headers)
    out: dict[str, Any] = {
        "wall_s": round(wall, 1),
        "paused": paused,
        "read_hedges": bc.metric_sum(brain, "tossit_read_hedges_total")}
    for name, ph in (("before", before), ("after", after)):
        out[name] = {"ok": len(ph.latencies), "errors": ph.errors,
                     "p50_ms": bc.ms(bc.percentile(ph.latencies, 50)),
                     "p99_ms": bc.ms(bc.percentile(ph.latencies, 99)),
                     "max_ms": bc.ms(max(ph.latencies, default=None)),
                     "first_errors": ph.first_errors}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", help="git ref to compare with (run as 'old')")
    ap.add_argument("--size", type=int, default=256 * 1024)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20.0,
                    help="how long uploads are started (the last ones may end later)")
    ap.add_argument("--pause-at", type=float, default=4.0)
    ap.add_argument("--phase", choices=("put", "get"), default="put")
    ap.add_argument("--objects", type=int, default=64,
                    help="objects uploaded first and then downloaded (--phase get)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "paused-node.json")
    args = ap.parse_args()
    runs: list[dict[str, Any]] = []
    with bc.base_checkout(args.base) as base:
        order: list[tuple[str, Path | None]] = [("new", None)]
        if base is not None:
            order.append(("old", base))
        for label, src in order:
            res = one_run(args, label, src)
            runs.append({"code": label, **res})
            a, b = res["before"], res["after"]
            what = "downloads" if args.phase == "get" else "uploads"
            print(f"{label}: before the pause {a['ok']} {what}, p50 "
                  f"{a['p50_ms']} ms, p99 {a['p99_ms']} ms; during it: {b['ok']} {what}, p50 "
                  f"{b['p50_ms']} ms, p99 {b['p99_ms']} ms, slowest {b['max_ms']} ms, "
                  f"errors {b['errors']}; paused {res['paused']}; hedged reads "
                  f"{res['read_hedges']}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "phase": args.phase, "size": args.size, "concurrency": args.concurrency,
        "seconds": args.seconds,
        "pause_at": args.pause_at, "base": args.base, "runs": runs,
        "git": bc.git_commit(), "machine": bc.machine_info()}, indent=1))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
