"""How fast the files browser's queries stay with many files.

Fills a brain's metadata with ``--files`` objects (default 100,000; names like
``photos/2024/IMG_01234.jpg`` in folders, sizes spread from bytes to GiB) written
straight through the metadata store — no chunk data, no nodes: this measures the
listing, not the upload — then starts a real ``tossit brain`` on that database and
times the requests the dashboard makes: the first page, a deep page, each sort,
a substring search that matches many names and one that matches few. Each query
runs ``--repeat`` times; p50/p99 in ms go to the terminal and to a JSON file.

    .venv/bin/python bench/bench_listing.py            # SQLite, 100,000 files
    .venv/bin/python bench/bench_listing.py --files 20000 --repeat 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cluster import free_port, git_commit, machine_info, read_secret
from tossit.brain.db import make_engine, migrate
from tossit.brain.store import NewObject, Store

NODES = ("bench-a", "bench-b", "bench-c")
QUERIES: dict[str, dict[str, Any]] = {
    "first page (newest)": {"limit": 50},
    "page 1000 (offset 49,950)": {"limit": 50, "offset": 49_950},
    "last page": {"limit": 50, "offset": -50},
    "sort by name": {"limit": 50, "sort": "name", "order": "asc"},
    "sort by size": {"limit": 50, "sort": "size", "order": "desc"},
    "search, many hits ('img_01')": {"limit": 50, "search": "img_01"},
    "search, few hits ('0777')": {"limit": 50, "search": "0777"},
    "search, no hit": {"limit": 50, "search": "no-such-name"},
}


async def fill(url: str, count: int, seed: int) -> float:
    """``count`` objects of one chunk each on three made-up nodes; seconds taken."""
    await migrate(url)
    store = Store(make_engine(url))
    rng = random.Random(seed)
    for name in NODES:  # offline nodes: the listing only needs their rows
        await store.upsert_node({
            "id": name, "name": name, "address": "http://127.0.0.1:9", "zone": "bench",
            "capacity": 1 << 40, "used": 0, "free": 1 << 40, "disk_total": 1 << 40,
            "disk_free": 1 << 40, "chunk_count": 0}, "offline")
    started = time.monotonic()
    batch: list[NewObject] = []
    for i in range(count):
        cid = f"{i:064x}"
        size = int(10 ** rng.uniform(2, 9))
        batch.append(NewObject(
            bucket="default", key=f"photos/{2000 + i % 25}/IMG_{i:06d}.jpg", size=size,
            sha256=cid, content_type="image/jpeg", chunk_size=8 << 20,
            chunks=[(cid, size)], replicas={cid: list(NODES)}))
        if len(batch) == 2000 or i == count - 1:
            await store.commit_objects(batch)
            batch = []
    await store.close()
    return time.monotonic() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="tossit-listing-"))
    brain_dir = root / "brain"
    brain_dir.mkdir()
    url = f"sqlite+aiosqlite:///{brain_dir / 'tossit.db'}"
    print(f"filling metadata with {args.files:,} files ...", flush=True)
    fill_s = asyncio.run(fill(url, args.files, args.seed))
    print(f"  {fill_s:.1f} s ({args.files / fill_s:,.0f} objects/s through the store)")

    port = free_port()
    log = open(root / "brain.log", "wb")  # noqa: SIM115
    brain = subprocess.Popen(
        [sys.executable, "-m", "tossit", "brain", "--host", "127.0.0.1", "--port", str(port),
         "--data-dir", str(brain_dir)], stdout=log, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    results: dict[str, Any] = {}
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"the brain did not start; see {root / 'brain.log'}")
            time.sleep(0.2)
        key = read_secret(brain_dir / "admin.key")
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"},
                          timeout=60) as http:
            total = int(http.get("/api/files", params={"limit": 1}).headers["x-total-count"])
            assert total == args.files, (total, args.files)
            print(f"\n{'query':32} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'matches':>9}")
            for name, params in QUERIES.items():
                params = dict(params)
                if params.get("offset", 0) < 0:
                    params["offset"] = total + params["offset"]
                times: list[float] = []
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    resp = http.get("/api/files", params=params)
                    times.append((time.perf_counter() - t0) * 1000)
                    resp.raise_for_status()
                matches = int(resp.headers["x-total-count"])
                times.sort()
                row = {"params": params, "p50_ms": round(statistics.median(times), 1),
                       "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 1),
                       "max_ms": round(times[-1], 1), "matches": matches,
                       "returned": len(resp.json())}
                results[name] = row
                print(f"{name:32} {row['p50_ms']:8.1f} {row['p99_ms']:8.1f} "
                      f"{row['max_ms']:8.1f} {matches:9,}")
    finally:
        brain.terminate()
        brain.wait(10)
        log.close()
    out = args.out or Path(__file__).resolve().parent / "results" / "listing.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "tool": "bench/bench_listing.py", "files": args.files, "repeat": args.repeat,
        "fill_s": round(fill_s, 1), "git": git_commit(), "machine": machine_info(),
        "queries": results}, indent=1))
    print(f"\nresults: {out}")


if __name__ == "__main__":
    main()
