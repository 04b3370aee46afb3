#!/usr/bin/env python3
"""Throughput, latency and memory benchmark of a local TossIt cluster.

Starts its own cluster (a brain and 3 nodes, R=3, SQLite metadata) on free
loopback ports with all data and logs under a temporary folder in /tmp, waits
for the 3 nodes to be online, then runs:

* cases ``a`` (200 x 1 MiB, c=8), ``b`` (20 x 64 MiB, c=4), ``c`` (2000 x 4 KiB,
  c=16): PUT every object (raw upload), GET every object (sha256 of each body
  checked), DELETE every object. Each phase reports MB/s (MB = 10^6 bytes),
  ops/s, p50/p99 latency in ms and errors, with the peak RSS and CPU seconds of
  the brain and of each node during the phase. Objects have distinct random
  content generated before timing. Rounds are interleaved (a b c, a b c, ...).
* ``stream``: one object of ``--stream-size`` bytes (default 5 GiB) uploaded
  through the brain from a generator (every MiB distinct, nothing stored on the
  client side), then downloaded and hashed while streaming; MB/s and the peak
  RSS of every server process during each direction.

The client is a thread pool with one persistent ``http.client`` connection per
worker. Every figure goes to a JSON file (default ``bench/results/<UTC time>.json``)
together with the git commit and the machine (cores, memory).

Run from the repository root::

    .venv/bin/python bench/bench_cluster.py                           # a,b,c + stream, 1 round
    .venv/bin/python bench/bench_cluster.py --cases a,b,c --repeat 2
    .venv/bin/python bench/bench_cluster.py --cases stream --stream-size 5GiB
    .venv/bin/python bench/bench_cluster.py --cases c --chunk-size 4MiB --keep

The cluster is stopped on exit, on Ctrl-C and on SIGTERM; its data folder is
removed unless ``--keep`` is given (its logs are copied next to the JSON file
when a run had errors).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MiB = 1 << 20
GiB = 1 << 30
HOST = "127.0.0.1"
N_NODES = 3
REPLICAS = 3
PAUSE_S = 5.0  # between runs: flush dirty pages, let the load settle


@dataclass(frozen=True)
class Case:
    name: str
    size: int
    count: int
    concurrency: int


CASES: dict[str, Case] = {
    "a": Case("a", 1 * MiB, 200, 8),
    "b": Case("b", 64 * MiB, 20, 4),
    "c": Case("c", 4096, 2000, 16),
}
PHASES = ("put", "get", "delete")


# -- sizes, ports, machine -------------------------------------------------------------


def parse_size(text: str) -> int:
    units = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "kb": 1000, "m": MiB, "mib": MiB,
             "mb": 10**6, "g": GiB, "gib": GiB, "gb": 10**9}
    s = text.strip().lower()
    num = s.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = s[len(num):].strip()
    if unit not in units or not num:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 5GiB, 8MiB, 4096)")
    return int(float(num) * units[unit])


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def git_commit() -> dict[str, Any]:
    def git(*args: str) -> str:
        out = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                             check=False)
        return out.stdout.strip()

    changed = git("diff", "--name-only", "HEAD", "--", "src")
    return {
        "commit": git("rev-parse", "HEAD") or None,
        "subject": git("log", "-1", "--format=%s") or None,
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        # The code actually measured when src/ has uncommitted changes.
        "src_changed": changed.splitlines(),
        "src_diff_sha256": hashlib.sha256(git("diff", "HEAD", "--", "src").encode()).hexdigest()
        if changed else None,
    }


def machine_info() -> dict[str, Any]:
    mem = 0
    cpu_model = platform.processor()
    with contextlib.suppress(OSError), open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "mem_total_bytes": mem,
        "mem_total_gib": round(mem / GiB, 1),
        "cpu_model": cpu_model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "hostname": platform.node(),
        "loadavg_start": os.getloadavg(),
    }


# -- the cluster ----------------------------------------------------------------------


class Cluster:
    """A brain and N nodes as child processes, each in its own session."""

    def __init__(self, root: Path, chunk_size: str | None, nodes: int = N_NODES) -> None:
        self.root = root
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.chunk_size = chunk_size
        self.port = free_port()
        self.node_ports = [free_port() for _ in range(nodes)]
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def _spawn(self, name: str, argv: list[str]) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(self.logs / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "tossit", *argv], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=env, cwd=self.root, start_new_session=True,
            )

    def start(self) -> None:
        argv = ["brain", "--host", HOST, "--port", str(self.port),
                "--data-dir", str(self.root / "brain"), "--replicas", str(REPLICAS)]
        if self.chunk_size:
            argv += ["--chunk-size", self.chunk_size]
        self._spawn("brain", argv)
        self._wait(lambda: request_json("GET", self.port, "/health")[0] == 200, 60,
                   "brain /health")
        for i, port in enumerate(self.node_ports):
            self._spawn(f"node-{i}", [
                "node", "--host", HOST, "--port", str(port),
                "--data-dir", str(self.root / f"node{i}"),
                "--brain", f"http://{HOST}:{self.port}", "--name", f"node-{i}",
            ])

        def online() -> bool:
            _, nodes = request_json("GET", self.port, "/api/nodes")
            return sum(1 for n in nodes if n["state"] == "online") >= len(self.node_ports)

        self._wait(online, 60, f"{len(self.node_ports)} nodes online")

    def _wait(self, ok: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{', '.join(dead)} exited during start; see {self.logs}")
            with contextlib.suppress(OSError, ValueError, KeyError, http.client.HTTPException):
                if ok():
                    return
            time.sleep(0.2)
        raise TimeoutError(f"timed out after {timeout} s waiting for {what}; see {self.logs}")

    def stored_chunks(self) -> int:
        """Chunks on the nodes as of their last heartbeats."""
        _, nodes = request_json("GET", self.port, "/api/nodes")
        return sum(int(n.get("chunk_count", 0)) for n in nodes)

    def drain(self, timeout: float = 120) -> float | None:
        """Waits until the nodes report no chunks (deletes free chunks in the background);
        returns the seconds it took, or None on timeout."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            with contextlib.suppress(OSError, ValueError, http.client.HTTPException):
                if self.stored_chunks() == 0:
                    return round(time.monotonic() - t0, 1)
            time.sleep(0.5)
        return None

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.procs.items()}

    def check_alive(self) -> list[str]:
        return [f"{n} exited with {p.returncode}" for n, p in self.procs.items()
                if p.poll() is not None]

    def stop(self) -> None:
        """Nodes first, then the brain: SIGTERM, then SIGKILL after 15 s."""
        order = [n for n in self.procs if n != "brain"] + ["brain"]
        for name in order:
            p = self.procs.get(name)
            if p is not None and p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for name in order:
            p = self.procs.get(name)
            if p is None:
                continue
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                p.wait(5)


def request_json(method: str, port: int, path: str, timeout: float = 10) -> tuple[int, Any]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, json.loads(body) if body else None
    finally:
        conn.close()


# -- server memory and CPU --------------------------------------------------------------


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


class Sampler:
    """Samples VmRSS of the server processes every ``interval`` s in a thread and keeps
    the peak of each since the last ``window()``."""

    def __init__(self, pids: dict[str, int], interval: float = 0.2) -> None:
        self.pids = pids
        self.interval = interval
        self._peak = dict.fromkeys(pids, 0)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        with self._lock:
            for name, pid in self.pids.items():
                self._peak[name] = max(self._peak[name], _rss_bytes(pid))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    @contextlib.contextmanager
    def window(self, into: dict[str, Any]) -> Iterator[None]:
        """Fills ``into`` with peak RSS (MB) and CPU seconds of each process over the block."""
        with self._lock:
            self._peak = {name: _rss_bytes(pid) for name, pid in self.pids.items()}
        cpu0 = {name: _cpu_seconds(pid) for name, pid in self.pids.items()}
        try:
            yield
        finally:
            self._sample()
            with self._lock:
                peak = dict(self._peak)
            into["peak_rss_mb"] = {n: round(v / 1e6, 1) for n, v in peak.items()}
            into["server_cpu_s"] = {n: round(_cpu_seconds(pid) - cpu0[n], 2)
                                    for n, pid in self.pids.items()}


# -- the client ---------------------------------------------------------------------------


class Conn:
    """One persistent HTTP/1.1 connection (reconnects after an error)."""

    def __init__(self, port: int, timeout: float = 600) -> None:
        self.port = port
        self.timeout = timeout
        self.http: http.client.HTTPConnection | None = None

    def _open(self) -> http.client.HTTPConnection:
        if self.http is None:
            self.http = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout)
            self.http.connect()
            assert self.http.sock is not None
            self.http.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self.http

    def reset(self) -> None:
        if self.http is not None:
            self.http.close()
            self.http = None

    def send(self, method: str, path: str, body: bytes | Iterator[bytes] | None = None,
             length: int | None = None) -> http.client.HTTPResponse:
        """Sends headers and body; small bodies go in the same segment as the headers."""
        conn = self._open()
        conn.putrequest(method, path, skip_accept_encoding=True)
        if body is not None:
            size = len(body) if isinstance(body, bytes) else length
            conn.putheader("Content-Length", str(size))
            conn.putheader("Content-Type", "application/octet-stream")
        if isinstance(body, bytes) and len(body) <= 64 * 1024:
            conn.endheaders(body)
        else:
            conn.endheaders()
            if isinstance(body, bytes):
                conn.send(body)
            elif body is not None:
                for piece in body:
                    conn.send(piece)
        return conn.getresponse()


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000, 2)


@dataclass
class Phase:
    """Latencies and errors of one phase; ``first_errors`` keeps a few messages."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ok(self, dt: float) -> None:
        with self.lock:
            self.latencies.append(dt)

    def fail(self, what: str) -> None:
        with self.lock:
            self.errors += 1
            if len(self.first_errors) < 5:
                self.first_errors.append(what[:300])

    def report(self, wall: float, size: int) -> dict[str, Any]:
        n = len(self.latencies)
        return {
            "MBps": round(n * size / wall / 1e6, 2) if size else None,
            "ops_s": round(n / wall, 1),
            "p50_ms": ms(percentile(self.latencies, 50)),
            "p99_ms": ms(percentile(self.latencies, 99)),
            "ok": n,
            "errors": self.errors,
            "first_errors": self.first_errors,
            "wall_s": round(wall, 3),
        }


def run_phase(count: int, concurrency: int, port: int, fn: Callable[[Conn, int], None]) -> float:
    """Calls fn(conn, i) for every i on a pool of ``concurrency`` threads, each with its own
    persistent connection; returns the wall time."""
    local = threading.local()
    conns: list[Conn] = []
    conns_lock = threading.Lock()

    def one(i: int) -> None:
        conn: Conn | None = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = Conn(port)
            with conns_lock:
                conns.append(conn)
        fn(conn, i)

    # Open the connections before the clock starts (one warm-up /health per worker).
    barrier = threading.Barrier(concurrency)

    def warm(_: int) -> None:
        c = local.conn = Conn(port)
        with conns_lock:
            conns.append(c)
        r = c.send("GET", "/health")
        r.read()
        barrier.wait(30)

    pool = ThreadPoolExecutor(max_workers=concurrency)
    try:
        list(pool.map(warm, range(concurrency)))
        t0 = time.perf_counter()
        list(pool.map(one, range(count)))
        wall = time.perf_counter() - t0
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)  # Ctrl-C: do not drain the queue
        raise
    pool.shutdown()
    for c in conns:
        c.reset()
    return wall


def run_case(case: Case, rnd: int, port: int, sampler: Sampler, seed: int) -> dict[str, Any]:
    rng = random.Random(seed * 1000 + rnd * 10 + ord(case.name))
    datas = [rng.randbytes(case.size) for _ in range(case.count)]
    digests = [hashlib.sha256(d).digest() for d in datas]
    tag = f"bench-{case.name}-r{rnd}-{os.getpid()}-{rng.getrandbits(32):08x}"
    ids: list[int | None] = [None] * case.count
    phases = {p: Phase() for p in PHASES}

    def request(conn: Conn, ph: Phase, what: str, method: str, path: str,
                body: bytes | None = None) -> tuple[int, bytes, float] | None:
        """One timed request; a transport error is counted and gives None."""
        try:
            t0 = time.perf_counter()
            resp = conn.send(method, path, body)
            data = resp.read()
            return resp.status, data, time.perf_counter() - t0
        except (OSError, http.client.HTTPException) as exc:
            conn.reset()
            ph.fail(f"{what}: {type(exc).__name__}: {exc}")
            return None

    def put(conn: Conn, i: int) -> None:
        ph = phases["put"]
        res = request(conn, ph, f"PUT {i}", "PUT", f"/api/files/{tag}/obj-{i:07d}", datas[i])
        if res is None:
            return
        status, body, dt = res
        if status != 201:
            ph.fail(f"PUT {i}: HTTP {status}: {body[:200]!r}")
            return
        ids[i] = int(json.loads(body)["id"])
        ph.ok(dt)

    def by_id(conn: Conn, ph: Phase, i: int, method: str, path: str) -> tuple[bytes, float] | None:
        """A request on an uploaded object; answers other than 200 are counted."""
        what = f"{method} {i}"
        if ids[i] is None:
            ph.fail(f"{what}: not uploaded")
            return None
        res = request(conn, ph, what, method, path.format(id=ids[i]))
        if res is None:
            return None
        status, body, dt = res
        if status != 200:
            ph.fail(f"{what}: HTTP {status}: {body[:200]!r}")
            return None
        return body, dt

    def get(conn: Conn, i: int) -> None:
        ph = phases["get"]
        res = by_id(conn, ph, i, "GET", "/api/files/{id}/download")
        if res is None:
            return
        body, dt = res
        if len(body) != case.size or hashlib.sha256(body).digest() != digests[i]:
            ph.fail(f"GET {i}: content mismatch ({len(body)} bytes)")
        else:
            ph.ok(dt)

    def delete(conn: Conn, i: int) -> None:
        ph = phases["delete"]
        res = by_id(conn, ph, i, "DELETE", "/api/files/{id}")
        if res is not None:
            ph.ok(res[1])

    out: dict[str, Any] = {
        "case": case.name, "round": rnd, "size": case.size, "count": case.count,
        "concurrency": case.concurrency, "loadavg_before": os.getloadavg(),
        "time": datetime.now(UTC).isoformat(timespec="seconds"), "phases": {},
    }
    for name, fn in (("put", put), ("get", get), ("delete", delete)):
        res: dict[str, Any] = {}
        with sampler.window(res):
            wall = run_phase(case.count, case.concurrency, port, fn)
        res = phases[name].report(wall, case.size if name != "delete" else 0) | res
        out["phases"][name] = res
    out["peak_rss_mb"] = {
        proc: max(out["phases"][p]["peak_rss_mb"][proc] for p in PHASES)
        for proc in out["phases"]["put"]["peak_rss_mb"]
    }
    out["errors"] = sum(out["phases"][p]["errors"] for p in PHASES)
    return out


# -- the streaming case ---------------------------------------------------------------------


def _stream_pieces(total: int, seed: int) -> Iterator[bytes]:
    """``total`` bytes in 1 MiB pieces, every MiB distinct (a counter over a random block),
    produced on the fly: nothing is kept on the client side."""
    base = bytearray(random.Random(seed).randbytes(MiB))
    for i, off in enumerate(range(0, total, MiB)):
        base[:16] = i.to_bytes(8, "big") * 2
        yield bytes(base[: min(MiB, total - off)])


def run_stream(size: int, port: int, sampler: Sampler, seed: int) -> dict[str, Any]:
    print(f"stream: hashing {size / GiB:.1f} GiB of generated content (untimed) ...",
          flush=True)
    sha = hashlib.sha256()
    for piece in _stream_pieces(size, seed):
        sha.update(piece)
    expected = sha.hexdigest()
    out: dict[str, Any] = {"size": size, "sha256": expected, "loadavg_before": os.getloadavg(),
                           "time": datetime.now(UTC).isoformat(timespec="seconds")}
    conn = Conn(port, timeout=900)
    name = f"bench-stream-{os.getpid()}-{seed}.bin"

    up: dict[str, Any] = {}
    with sampler.window(up):
        t0 = time.perf_counter()
        resp = conn.send("PUT", f"/api/files/{name}", _stream_pieces(size, seed), length=size)
        body = resp.read()
        dt = time.perf_counter() - t0
    up |= {"status": resp.status, "s": round(dt, 2), "MBps": round(size / dt / 1e6, 1)}
    out["upload"] = up
    if resp.status != 201:
        up["error"] = body[:300].decode(errors="replace")
        return out
    meta = json.loads(body)
    up["server_sha256_ok"] = meta.get("sha256") == expected
    up["chunks"] = meta.get("chunks")
    print(f"  upload   {up['MBps']:8.1f} MB/s  {dt:7.1f} s  brain peak RSS "
          f"{up['peak_rss_mb']['brain']:.0f} MB", flush=True)
    time.sleep(PAUSE_S)

    down: dict[str, Any] = {}
    buf = bytearray(MiB)
    view = memoryview(buf)
    got = 0
    sha = hashlib.sha256()
    with sampler.window(down):
        t0 = time.perf_counter()
        resp = conn.send("GET", f"/api/files/{meta['id']}/download")
        if resp.status == 200:
            while n := resp.readinto(view):
                sha.update(view[:n])
                got += n
        else:
            down["error"] = resp.read()[:300].decode(errors="replace")
        dt = time.perf_counter() - t0
    down |= {"status": resp.status, "s": round(dt, 2), "MBps": round(got / dt / 1e6, 1),
             "bytes": got, "sha256_ok": got == size and sha.hexdigest() == expected}
    out["download"] = down
    print(f"  download {down['MBps']:8.1f} MB/s  {dt:7.1f} s  brain peak RSS "
          f"{down['peak_rss_mb']['brain']:.0f} MB  verified={down['sha256_ok']}", flush=True)
    conn.reset()
    status, _ = request_json("DELETE", port, f"/api/files/{meta['id']}", timeout=120)
    out["delete_status"] = status
    out["errors"] = int(up["status"] != 201) + int(not up["server_sha256_ok"]) + int(
        not down["sha256_ok"]) + int(status != 200)
    return out


# -- summary -----------------------------------------------------------------------------------


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median over rounds of each case's phase figures, max of peak RSS."""
    summary: dict[str, Any] = {}
    for name in CASES:
        rs = [r for r in runs if r["case"] == name]
        if not rs:
            continue
        s: dict[str, Any] = {"rounds": len(rs), "errors": sum(r["errors"] for r in rs)}
        for p in PHASES:
            s[p] = {}
            for k in ("MBps", "ops_s", "p50_ms", "p99_ms"):
                vals = [r["phases"][p][k] for r in rs if r["phases"][p][k] is not None]
                s[p][k] = round(statistics.median(vals), 2) if vals else None
        s["peak_rss_mb"] = {proc: max(r["peak_rss_mb"][proc] for r in rs)
                            for proc in rs[0]["peak_rss_mb"]}
        summary[name] = s
    return summary


def print_run(r: dict[str, Any]) -> None:
    nodes = max(v for k, v in r["peak_rss_mb"].items() if k != "brain")
    print(f"case {r['case']} round {r['round']}: {r['count']} x {r['size']} B, "
          f"c={r['concurrency']}  peak RSS brain {r['peak_rss_mb']['brain']:.0f} MB, "
          f"max node {nodes:.0f} MB")
    for p in PHASES:
        x = r["phases"][p]
        mbps = f"{x['MBps']:9.1f} MB/s" if x["MBps"] is not None else " " * 14
        print(f"  {p:<6} {mbps} {x['ops_s']:9.1f} ops/s  p50 {x['p50_ms']:8.1f} ms  "
              f"p99 {x['p99_ms']:8.1f} ms  errors {x['errors']}"
              if x["ok"] else f"  {p:<6} all failed: {x['first_errors'][:1]}")
    sys.stdout.flush()


# -- main --------------------------------------------------------------------------------------


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="a,b,c,stream",
                    help="comma-separated subset of a,b,c,stream [a,b,c,stream]")
    ap.add_argument("--repeat", type=int, default=1, help="rounds of the a/b/c cases [1]")
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON output [bench/results/<UTC timestamp>.json]")
    ap.add_argument("--chunk-size", default=None,
                    help="brain chunk size, e.g. 8MiB [the brain's default]")
    ap.add_argument("--stream-size", type=parse_size, default=5 * GiB,
                    help="size of the streamed object [5GiB]")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--keep", action="store_true", help="keep the cluster's data folder")
    args = ap.parse_args(argv)

    wanted = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in wanted if c not in CASES and c != "stream"]
    if unknown or not wanted:
        ap.error(f"unknown case(s) {unknown}; choose from a, b, c, stream")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_path: Path = args.out or REPO / "bench" / "results" / f"{stamp}.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)

    # Explicit, so that Ctrl-C also works when started from a shell that ignores SIGINT.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    root = Path(tempfile.mkdtemp(prefix="tossit-bench-", dir="/tmp"))
    cluster = Cluster(root, args.chunk_size)
    result: dict[str, Any] = {
        "tool": "bench/bench_cluster.py",
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_commit(),
        "machine": machine_info(),
        "config": {"nodes": N_NODES, "replicas": REPLICAS, "metadata": "sqlite",
                   "chunk_size": args.chunk_size or "default", "cases": wanted,
                   "repeat": args.repeat, "stream_size": args.stream_size,
                   "client": "http.client, one persistent connection per worker thread",
                   "data_dir": str(root)},
        "runs": [],
    }
    errors = 0
    interrupted = False
    try:
        print(f"starting brain + {N_NODES} nodes under {root} ...", flush=True)
        cluster.start()
        result["pids"] = cluster.pids()
        with Sampler(cluster.pids()) as sampler:
            for rnd in range(1, args.repeat + 1):
                for name in [c for c in wanted if c in CASES]:
                    subprocess.run(["sync"], check=False)
                    time.sleep(PAUSE_S)
                    run = run_case(CASES[name], rnd, cluster.port, sampler, args.seed)
                    # Chunks of deleted objects are freed in the background: let that
                    # finish so it does not slow down the next run.
                    run["chunks_freed_after_s"] = cluster.drain()
                    result["runs"].append(run)
                    errors += run["errors"]
                    print_run(run)
                    if dead := cluster.check_alive():
                        raise RuntimeError("; ".join(dead))
            if "stream" in wanted:
                subprocess.run(["sync"], check=False)
                time.sleep(PAUSE_S)
                result["stream"] = run_stream(args.stream_size, cluster.port, sampler,
                                              args.seed)
                errors += result["stream"].get("errors", 1)
                result["stream"]["chunks_freed_after_s"] = cluster.drain(300)
        result["summary"] = summarise(result["runs"])
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted: stopping the cluster", file=sys.stderr)
    except Exception as exc:
        errors += 1
        result["fatal"] = f"{type(exc).__name__}: {exc}"
        print(f"error: {result['fatal']}", file=sys.stderr)
    finally:
        cluster.stop()
        result["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        result["errors"] = errors
        result["interrupted"] = interrupted
        if errors and not args.keep:
            logs = out_path.with_suffix(".logs")
            shutil.copytree(cluster.logs, logs, dirs_exist_ok=True)
            result["logs"] = str(logs)
        out_path.write_text(json.dumps(result, indent=1) + "\n")
        print(f"results: {out_path}")
        if args.keep:
            print(f"data kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 130 if interrupted else (1 if errors else 0)


if __name__ == "__main__":
    sys.exit(main())
