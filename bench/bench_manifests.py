#!/usr/bin/env python3
"""What writing manifests to the nodes costs the upload (and delete) rates.

Runs ``bench_cluster.py --cases a,c`` (200 x 1 MiB at c=8, 2000 x 4 KiB at c=16:
PUT, GET, DELETE) alternately on this checkout and on an earlier one (a git
ref checked out in a temporary worktree, run through PYTHONPATH), round after
round, so both see the same machine over the same time. Per case and phase it
prints the median ops/s, MB/s and server CPU per operation (brain + nodes) of
each, and the new/old ratio of the medians; and writes everything to a JSON
file. The target for issue 10: PUT rates within 10% (new/old >= 0.90).

Run from the repository root (takes about a minute per run)::

    .venv/bin/python bench/bench_manifests.py --base 943f8e5 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PHASES = ("put", "get", "delete")


def run_bench(src: Path | None, out: Path) -> dict[str, Any]:
    code = ["--code", str(src)] if src is not None else []  # the servers run that code
    subprocess.run([sys.executable, str(ROOT / "bench" / "bench_cluster.py"), "--cases", "a,c",
                    "--repeat", "1", "--out", str(out), *code], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def figures(result: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """case -> phase -> ops_s, MBps, cpu_ms_per_op (brain and nodes)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for run in result["runs"]:
        for phase in PHASES:
            p = run["phases"][phase]
            cpu = sum(p["server_cpu_s"].values())
            brain = p["server_cpu_s"].get("brain", 0.0)
            ok = max(1, p["ok"])
            out.setdefault(run["case"], {})[phase] = {
                "ops_s": p["ops_s"], "MBps": p["MBps"] or 0.0,
                "cpu_ms_per_op": round(1000 * cpu / ok, 3),
                "brain_cpu_ms_per_op": round(1000 * brain / ok, 3),
                "nodes_cpu_ms_per_op": round(1000 * (cpu - brain) / ok, 3),
                "errors": p["errors"]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="git ref to compare with (the old code)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path,
                    default=ROOT / "bench" / "results" / "manifests-cost.json")
    args = ap.parse_args()
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="tossit-base-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", str(base), args.base], check=True,
                       cwd=ROOT, capture_output=True)
        try:
            for r in range(args.rounds):
                pair: dict[str, Any] = {}
                # Alternate which goes first, so neither always gets the fresher machine.
                order = [("new", None), ("old", base / "src")]
                for label, src in order if r % 2 == 0 else order[::-1]:
                    t0 = time.monotonic()
                    res = run_bench(src, Path(tmp) / f"{label}-{r}.json")
                    pair[label] = figures(res)
                    print(f"round {r + 1} {label}: {time.monotonic() - t0:.0f} s", flush=True)
                rounds.append(pair)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT,
                           capture_output=True)
    summary: dict[str, Any] = {}
    print(f"\n{'case':<5}{'phase':<8}{'metric':<20}{'old':>10}{'new':>10}{'new/old':>9}")
    for case in ("a", "c"):
        for phase in PHASES:
            for metric in ("ops_s", "MBps", "cpu_ms_per_op", "brain_cpu_ms_per_op",
                           "nodes_cpu_ms_per_op"):
                old = statistics.median(x["old"][case][phase][metric] for x in rounds)
                new = statistics.median(x["new"][case][phase][metric] for x in rounds)
                ratio = round(new / old, 3) if old else None
                summary.setdefault(case, {}).setdefault(phase, {})[metric] = {
                    "old": old, "new": new, "ratio": ratio,
                    "per_round": [round(x["new"][case][phase][metric]
                                        / x["old"][case][phase][metric], 3)
                                  if x["old"][case][phase][metric] else None for x in rounds]}
                if metric != "MBps" or case == "a":
                    print(f"{case:<5}{phase:<8}{metric:<20}{old:>10.2f}{new:>10.2f}"
                          f"{ratio if ratio is not None else '-':>9}")
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True, cwd=ROOT).stdout.strip()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"base": args.base, "new": git, "rounds": rounds,
                                    "summary": summary, "cores": os.cpu_count()}, indent=1))
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
