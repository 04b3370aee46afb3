#!/usr/bin/env python3
"""Upload latency while one node is paused (SIGSTOP): does one hung node stall uploads?

Starts a brain and three nodes (auth on, R=3, W=2) and uploads ``--size`` objects
at ``--concurrency`` for ``--seconds``. After ``--pause-at`` seconds node-0 is
stopped with SIGSTOP (it keeps its connections open and answers nothing, as a
hung disk or a frozen VM would) and stays stopped to the end. Reports p50, p99
and the slowest upload of those that ended before the pause and of those still
running once it began, and how many each. With
``--base REF`` the same run is made on an earlier commit too (its servers run
from a temporary git worktree), so both are measured in one session::

    .venv/bin/python bench/bench_paused_node.py --base HEAD~1

A brain that waits for every copy holds each upload that picked the paused node
for ``node_timeout`` (60 s) until the monitor stops choosing the node; one that
leaves stragglers behind once W copies are made (``straggler_wait``) holds it
about a second.
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
            got = bc._timed(conn, failures, f"PUT {i}", "PUT",
                            f"/api/files/paused-{label}/o-{i}", data)
            # Counted as paused if it was still running once the node was stopped.
            phase = after if paused_at else before
            for what in failures.first_errors:
                phase.fail(what)
            if got is None:
                continue
            status, body, dt = got
            if status == 201:
                phase.ok(dt)
            else:
                phase.fail(f"PUT {i}: HTTP {status}: {body[:200]!r}")
        conn.reset()

    def pauser() -> None:
        time.sleep(args.pause_at)
        os.kill(cluster.pids()["node-0"], signal.SIGSTOP)
        paused_at.append(time.monotonic())

    threading.Thread(target=pauser, daemon=True).start()
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        list(pool.map(worker, range(args.concurrency)))
    wall = time.monotonic() - t0
    out: dict[str, Any] = {"wall_s": round(wall, 1)}
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
            print(f"{label}: before the pause {a['ok']} uploads, p50 "
                  f"{a['p50_ms']} ms, p99 {a['p99_ms']} ms; during it: {b['ok']} uploads, p50 "
                  f"{b['p50_ms']} ms, p99 {b['p99_ms']} ms, slowest {b['max_ms']} ms, "
                  f"errors {b['errors']}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "size": args.size, "concurrency": args.concurrency, "seconds": args.seconds,
        "pause_at": args.pause_at, "base": args.base, "runs": runs,
        "git": bc.git_commit(), "machine": bc.machine_info()}, indent=1))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
