"""What an idle repairer costs the brain as the number of chunks grows.

The repairer wakes every ``repair_interval`` (60 s) even when nothing happens.
This fills a metadata database with ``--chunks`` healthy chunks (3 copies each,
one chunk per file, through the metadata store; no chunk data, no servers), then
times one planning pass of each kind on it, in-process:

- *all chunks*: every chunk is read and planned in Python (placement ranking and
  the repair rules), as after a node joins, dies or is drained;
- *flagged chunks*: the database returns only chunks that are short, extra or on
  a node that does not count, as while the nodes stay the same.

It also records the longest time the event loop was blocked during each pass
(requests wait that long). Figures go to the terminal and to a JSON file.

    .venv/bin/python bench/bench_repair_plan.py                 # 200,000 chunks
    .venv/bin/python bench/bench_repair_plan.py --chunks 50000 --repeat 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cluster import git_commit, machine_info
from bench_listing import NODES, fill
from tossit.brain.db import make_engine
from tossit.brain.registry import Registry
from tossit.brain.repair import Repairer
from tossit.brain.store import Store
from tossit.config import BrainSettings


async def loop_lag(stop: asyncio.Event, worst: list[float]) -> None:
    """Wake every millisecond; the largest lateness is the longest block."""
    while not stop.is_set():
        t0 = time.perf_counter()
        await asyncio.sleep(0.001)
        worst[0] = max(worst[0], time.perf_counter() - t0 - 0.001)


async def measure(url: str, repeat: int) -> dict[str, Any]:
    store = Store(make_engine(url))
    registry = Registry(replicas=3, high_water=0.95)
    for name in NODES:
        registry.update({"id": name, "name": name, "address": "http://127.0.0.1:9",
                         "zone": "bench", "capacity": 1 << 40, "used": 0, "free": 1 << 40,
                         "disk_total": 1 << 40, "disk_free": 1 << 40, "chunk_count": 0})
    none: Any = None  # planning needs neither node clients nor pins
    repairer = Repairer(BrainSettings(replicas=3), store, registry, none, none)
    out: dict[str, Any] = {}
    try:
        for full in (True, False):
            times, blocks = [], []
            for _ in range(repeat):
                stop, worst = asyncio.Event(), [0.0]
                ticker = asyncio.create_task(loop_lag(stop, worst))
                t0 = time.perf_counter()
                plans = await repairer.plan(full)
                times.append(time.perf_counter() - t0)
                stop.set()
                await ticker
                blocks.append(worst[0])
                assert not plans, f"a healthy cluster needs nothing, got {len(plans)} plans"
            name = "all chunks" if full else "flagged chunks"
            out[name] = {"pass_s_median": round(statistics.median(times), 3),
                         "pass_s_all": [round(t, 3) for t in times],
                         "loop_block_ms_max": round(max(blocks) * 1000, 1)}
    finally:
        await store.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chunks", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="tossit-repairplan-"))
    url = f"sqlite+aiosqlite:///{root / 'tossit.db'}"
    print(f"filling metadata with {args.chunks:,} chunks x 3 copies ...", flush=True)
    fill_s = asyncio.run(fill(url, args.chunks, seed=1))
    print(f"  {fill_s:.1f} s")
    results = asyncio.run(measure(url, args.repeat))
    print(f"\n{'pass':16} {'median s':>9} {'µs/chunk':>9} {'max loop block ms':>18}")
    for name, row in results.items():
        per = row["pass_s_median"] / args.chunks * 1e6
        row["us_per_chunk"] = round(per, 2)
        print(f"{name:16} {row['pass_s_median']:9.3f} {per:9.2f} {row['loop_block_ms_max']:18.1f}")
    out = args.out or Path(__file__).resolve().parent / "results" / "repair-plan.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "tool": "bench/bench_repair_plan.py", "chunks": args.chunks, "repeat": args.repeat,
        "git": git_commit(), "machine": machine_info(), "passes": results}, indent=1))
    print(f"\nresults: {out}")


if __name__ == "__main__":
    main()
