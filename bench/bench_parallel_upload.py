#!/usr/bin/env python3
"""One big file through the Python client, its parts sent 1 at a time vs N at once.

Starts a brain and three nodes (auth on, R=3), writes ``--size`` random bytes
to a temporary file, and uploads it with ``TossitClient.upload`` (resumable
parts of ``--part-size``) once per ``--parallel`` value, deleting it between
runs so each stores every chunk anew. Prints MB/s for each (the wall time of
the upload call, completion included: the brain reads the file once there to
record its SHA-256)::

    .venv/bin/python bench/bench_parallel_upload.py --size 1GiB --parallel 1 4

The machine's cores bound what parallel parts can gain: the brain hashes and
forwards every byte, each node writes and fsyncs its copy.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_cluster as bc  # a sibling script, not a package
from tossit.client import TossitClient
from tossit.config import format_size

MiB = 1 << 20


def write_random(path: Path, size: int) -> None:
    with open(path, "wb") as out:
        left = size
        while left:
            n = min(left, 16 * MiB)
            out.write(os.urandom(n))
            left -= n


def measure(cluster: bc.Cluster, path: Path, size: int, part_size: int,
            parallel: int) -> dict[str, float]:
    key = cluster.headers["Authorization"].removeprefix("Bearer ")
    with TossitClient(f"http://{bc.HOST}:{cluster.port}", key=key, timeout=600,
                      parts_above=0, part_size=part_size, parallel=parallel,
                      state_dir=path.parent / "state") as client:
        t0 = time.monotonic()
        done = client.upload(path, f"bench/parallel-{parallel}.bin")
        seconds = time.monotonic() - t0
        if done.size != size:
            raise RuntimeError(f"uploaded {done.size} bytes, not {size}")
        client.delete(done.id)
    return {"parallel": parallel, "seconds": round(seconds, 2),
            "mb_per_s": round(size / seconds / 1e6, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=bc.parse_size, default=1 << 30,
                    help="file size, e.g. 1GiB [1GiB]")
    ap.add_argument("--part-size", type=bc.parse_size, default=16 * MiB,
                    help="bytes per part (at least 5MiB) [16MiB]")
    ap.add_argument("--parallel", type=int, nargs="+", default=[1, 4],
                    help="parts sent at once, one run each [1 4]")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tossit-parallel-upload-"))
    cluster = bc.Cluster(root / "cluster", None)
    try:
        cluster.start()
        path = root / "big.bin"
        write_random(path, args.size)
        rows = [measure(cluster, path, args.size, args.part_size, n) for n in args.parallel]
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    for row in rows:
        print(f"parallel {row['parallel']:>2}: {row['mb_per_s']:>7.1f} MB/s "
              f"({row['seconds']} s for {format_size(args.size)})")
    if args.json:
        args.json.write_text(json.dumps({"size": args.size, "part_size": args.part_size,
                                         "machine": bc.machine_info(), "runs": rows}, indent=1))


if __name__ == "__main__":
    main()
