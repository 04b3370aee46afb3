#!/usr/bin/env python3
"""Where a small upload's CPU goes: steady-state PUTs, CPU per operation per process.

Starts a brain and three nodes (auth on, R=3) from this checkout and, with
``--base REF``, from an earlier commit too (a temporary git worktree, run
through PYTHONPATH), alternating round by round so that both see the same
machine over the same time. Each run PUTs ``--count`` objects of ``--size``
bytes at ``--concurrency`` into one bucket (long enough to reach a steady
state: group commit batches, manifest packs and the nodes' batching all
settle) and reports, for that phase only, ops/s and the user and system CPU
milliseconds per upload of the brain and of each node, read from
/proc/PID/stat. With ``--profile DIR`` it also records py-spy profiles
(GIL-holding samples, raw collapsed stacks) of the brain and the first node
(``py-spy`` must be on PATH; it is not a project dependency).

CPU per operation is the steadier figure on a shared machine; ops/s moves with
whatever else runs. Compare ratios from one run, never absolute figures across
runs::

    .venv/bin/python bench/bench_put_cpu.py --base 943f8e5 --rounds 2
    .venv/bin/python bench/bench_put_cpu.py --phase delete --count 3000
    .venv/bin/python bench/bench_put_cpu.py --phase get --count 3000 --base HEAD~1

(``--phase get|delete`` first uploads the objects, unmeasured, then measures
their downloads, each body compared with what was uploaded, or their deletes.)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_cluster as bc  # a sibling script, not a package

ROOT = Path(__file__).resolve().parent.parent


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    hz = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / hz, int(fields[12]) / hz


def one_run(args: argparse.Namespace, label: str, src: Path | None,
            api: str) -> dict[str, Any]:
    """A fresh cluster, the measured phase, the figures."""
    with bc.fresh_cluster(f"putcpu-{label}", src) as cluster:
        return measure(args, label, cluster, api)


def s3_put(cluster: bc.Cluster, data_of: Callable[[int], bytes], tag: str,
           count: int) -> Callable[[bc.Conn, int], None]:
    """PutObject into the REST API's bucket (``default``), signed with SigV4 by
    botocore as an SDK would, with a key made for it."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    status, made = bc.request_json("POST", cluster.port, "/api/keys", headers=cluster.headers,
                                   body={"name": "bench s3", "role": "readwrite"})
    if status != 201:
        raise RuntimeError(f"could not make an S3 key: HTTP {status}: {made}")
    signer = S3SigV4Auth(Credentials(made["id"], made["secret"]), "s3", "us-east-1")
    def signed(i: int) -> dict[str, str]:
        data = data_of(i)
        req = AWSRequest("PUT", f"http://{bc.HOST}:{cluster.s3_port}{path_of(i)}", data=data,
                         headers={"x-amz-content-sha256": hashlib.sha256(data).hexdigest()})
        signer.add_auth(req)
        return dict(req.headers.items())

    def path_of(i: int) -> str:
        return f"/default/{tag}/obj-{i:07d}"

    # Signed before the clock starts (valid for 15 minutes): the client's own CPU
    # (botocore's signing, on the cores the servers share) would otherwise slow
    # and spread its requests, which measures the client, not the server.
    headers = [signed(i) for i in range(count)]

    def put(conn: bc.Conn, i: int) -> None:
        data = data_of(i)
        resp = conn.send("PUT", path_of(i), data, headers=headers[i])
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"S3 PUT {i}: HTTP {resp.status}: {body[:300]!r}")

    return put


def measure(args: argparse.Namespace, label: str, cluster: bc.Cluster,
            api: str = "rest") -> dict[str, Any]:
    data_of = bc.payloads(args.size, args.same_bytes)
    ids = [0] * args.count
    tag = f"putcpu-{label}-{os.getpid()}"

    def put(conn: bc.Conn, i: int) -> None:
        resp = conn.send("PUT", f"/api/files/{tag}/obj-{i:07d}", data_of(i))
        body = resp.read()
        if resp.status != 201:
            raise RuntimeError(f"PUT {i}: HTTP {resp.status}: {body[:200]!r}")
        ids[i] = int(json.loads(body)["id"])

    def delete(conn: bc.Conn, i: int) -> None:
        resp = conn.send("DELETE", f"/api/files/{ids[i]}")
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"DELETE {i}: HTTP {resp.status}: {body[:200]!r}")

    def get(conn: bc.Conn, i: int) -> None:
        resp = conn.send("GET", f"/api/files/{ids[i]}/download")
        body = resp.read()
        if resp.status != 200 or body != data_of(i):
            raise RuntimeError(f"GET {i}: HTTP {resp.status}, {len(body)} bytes")

    store: Callable[[bc.Conn, int], None] = (
        s3_put(cluster, data_of, tag, args.count) if api == "s3" else put)
    if args.phase != "put":
        if api == "s3":
            raise SystemExit(f"the {args.phase} phase is measured on the REST API only")
        bc.run_phase(args.count, args.concurrency, cluster, put)
    pids = cluster.pids()
    spies = start_profiles(args.profile, label, pids)
    sent_before = node_traffic(cluster)
    before = {name: cpu_times(pid) for name, pid in pids.items()}
    wall = bc.run_phase(args.count, args.concurrency, cluster,
                        {"put": store, "get": get, "delete": delete}[args.phase],
                        *((cluster.s3_port, {}) if api == "s3" else ()))
    after = {name: cpu_times(pid) for name, pid in pids.items()}
    sent = {k: v - sent_before[k] for k, v in node_traffic(cluster).items()}
    for spy in spies:
        spy.send_signal(2)  # py-spy writes its file on SIGINT
    for spy in spies:
        spy.wait(30)
    per_op = {name: {"user_ms": round(1000 * (after[name][0] - before[name][0]) / args.count, 3),
                     "sys_ms": round(1000 * (after[name][1] - before[name][1]) / args.count, 3)}
              for name in pids}
    nodes = [v for k, v in per_op.items() if k != "brain"]
    # Chunk writes that went alone are one request each; batched ones share theirs.
    requests = sent["writes"] - sent["batched"] + sent["batches"]
    # (Older code has no commit or pack counters: None.)
    counted = {k: round(sent[k] / args.count, 3) if k in sent else None
               for k in ("commits", "packs")}
    return {"ops_s": round(args.count / wall, 1), "per_op": per_op,
            "node_requests_per_op": round(requests / args.count, 2),
            "commits_per_op": counted["commits"], "packs_per_op": counted["packs"],
            "writes_per_request": round(sent["writes"] / requests, 2) if requests else None,
            "brain_ms": round(per_op["brain"]["user_ms"] + per_op["brain"]["sys_ms"], 3),
            "node_ms": round(statistics.mean(n["user_ms"] + n["sys_ms"] for n in nodes), 3)}


def node_traffic(cluster: bc.Cluster) -> dict[str, float]:
    """Blob writes the nodes stored (chunks and manifest packs), and how many of
    them the brain sent in multi-chunk requests, in how many requests; and the
    brain's commit transactions and manifest packs (when it counts them)."""
    brain = bc.get_text(cluster.port, "/metrics", cluster.headers)
    writes = sum(bc.metric_sum(bc.get_text(port, "/metrics"), "tossit_node_chunk_ops_total",
                             'op="put"') for port in cluster.node_ports)
    out = {"writes": writes,
           "batches": bc.metric_sum(brain, "tossit_chunk_batches_total"),
           "batched": bc.metric_sum(brain, "tossit_batched_chunks_total")}
    for key, name in (("commits", "tossit_commits_total"),
                      ("packs", "tossit_manifest_packs_written_total")):
        if name in brain:
            out[key] = bc.metric_sum(brain, name)
    return out


def start_profiles(out: Path | None, label: str,
                   pids: dict[str, int]) -> list[subprocess.Popen[bytes]]:
    if out is None:
        return []
    out.mkdir(parents=True, exist_ok=True)
    spies = [subprocess.Popen(
        ["py-spy", "record", "--gil", "-r", "250", "-f", "raw", "-p", str(pids[name]),
         "-o", str(out / f"{label}-{name}.txt")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for name in ("brain", "node-0")]
    time.sleep(1.0)  # attached before the clock starts
    return spies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", help="git ref to compare with (run as 'old')")
    ap.add_argument("--api", choices=("rest", "s3"), default="rest",
                    help="the API the --base comparison uploads through (s3: PutObject "
                    "signed with SigV4, on both)")
    ap.add_argument("--vs-s3", action="store_true",
                    help="compare the REST API's PUT with S3's PutObject (SigV4) on this code")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--phase", choices=("put", "get", "delete"), default="put")
    ap.add_argument("--count", type=int, default=4000)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--same-bytes", action="store_true",
                    help="every upload the same bytes (the deduplicated path) instead of "
                    "different bytes each")
    ap.add_argument("--profile", type=Path, help="folder for py-spy profiles")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "put-cpu.json")
    args = ap.parse_args()
    runs: list[dict[str, Any]] = []
    with bc.base_checkout(args.base) as base:
        api = args.api if base is not None else "rest"
        order: list[tuple[str, Path | None, str]] = [("new" if base else "rest", None, api)]
        if base is not None:
            order.append(("old", base, api))
        elif args.vs_s3:
            order.append(("s3", None, "s3"))
        for r in range(args.rounds):
            for label, src, api in order if r % 2 == 0 else order[::-1]:
                res = one_run(args, label, src, api)
                runs.append({"round": r + 1, "code": label, **res})
                print(f"round {r + 1} {label}: {res['ops_s']} ops/s, brain "
                      f"{res['brain_ms']} ms/op, each node {res['node_ms']} ms/op (CPU), "
                      f"{res['node_requests_per_op']} node requests/op, commits/op "
                      f"{res['commits_per_op']}, packs/op {res['packs_per_op']}", flush=True)
    summary: dict[str, Any] = {}
    labels = [label for label, _, _ in order]
    for code in labels:
        mine = [r for r in runs if r["code"] == code]
        summary[code] = {k: statistics.median(r[k] for r in mine)
                         for k in ("ops_s", "brain_ms", "node_ms")}
    if len(labels) == 2:
        a, b = labels[0], labels[1]
        ratio = f"{a}/{b}" if a == "new" else f"{b}/{a}"  # new/old, s3/rest
        top, bottom = ratio.split("/")
        summary[ratio] = {k: round(summary[top][k] / summary[bottom][k], 3)
                          for k in ("ops_s", "brain_ms", "node_ms") if summary[bottom][k]}
        print(f"medians: {ratio} ops/s {summary[ratio].get('ops_s')}, brain CPU/op "
              f"{summary[ratio].get('brain_ms')}, node CPU/op {summary[ratio].get('node_ms')}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "phase": args.phase, "count": args.count, "size": args.size,
        "concurrency": args.concurrency, "base": args.base, "runs": runs, "summary": summary,
        "git": bc.git_commit(), "machine": bc.machine_info()}, indent=1))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
