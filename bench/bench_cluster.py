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

Authentication (``--auth``):

* ``on`` (the default): the brain runs with authentication, the nodes join with
  ``--join-secret-file BRAIN_DATA_DIR/cluster.secret`` (brain <-> node requests
  are HMAC-signed), and every request of the bench carries
  ``Authorization: Bearer <the brain's DATA_DIR/admin.key>``.
* ``off``: ``brain --no-auth`` (loopback only), nodes without a secret
  (unsigned), requests without a key.
* ``both``: the cost of authentication. Two clusters, one of each mode, are
  started up front on different ports; each case runs on both back to back on
  the same objects, and which mode goes first alternates from case to case and
  from round to round (round 1: a-on a-off, b-off b-on, c-on c-off; round 2:
  the other way round), so both see the same load over the same time window.
  ``stream`` runs on the on cluster, then on the off one. At the end a table
  gives, for every case and phase, the median with auth on, off and on/off
  (MB/s for PUT/GET of 1 MiB and larger objects, ops/s for DELETE and for 4 KiB
  objects); the target is on/off >= 0.90.

Every run in the JSON file is tagged ``"auth": "on"`` or ``"off"``. With one
mode, ``summary`` (and ``stream``, ``pids``) have the layout of a single run;
with ``both`` they are keyed by mode (``summary.on``, ``summary.off``) and
``summary.ratio_on_off`` holds the comparison per case and phase (``on``,
``off``, ``ratio`` of the medians, ``per_round`` ratios of the paired runs,
p50/p99 latencies and their ratios, ``within_10pct``; ``stream`` for the upload
and download of the streaming case).

Run from the repository root::

    .venv/bin/python bench/bench_cluster.py                           # a,b,c + stream, 1 round
    .venv/bin/python bench/bench_cluster.py --cases a,b,c --repeat 2
    .venv/bin/python bench/bench_cluster.py --cases stream --stream-size 5GiB
    .venv/bin/python bench/bench_cluster.py --cases c --chunk-size 4MiB --keep
    .venv/bin/python bench/bench_cluster.py --cases a,b,c --repeat 3 --auth both

The clusters are stopped on exit, on Ctrl-C and on SIGTERM; the data folder
(one ``auth-on`` / ``auth-off`` subfolder per cluster) is removed unless
``--keep`` is given (the logs are copied next to the JSON file, as
``<out>.logs/auth-<mode>/``, when a run had errors).
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
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tossit import processes
from tossit.processes import Child, child_env
from tossit.serve import pick_free_port
from tossit.server_args import BrainArgs, NodeArgs, tossit_command

REPO = Path(__file__).resolve().parent.parent
MiB = 1 << 20
GiB = 1 << 30
HOST = "127.0.0.1"
N_NODES = 3
REPLICAS = 3
PAUSE_S = 5.0  # between runs: flush dirty pages, let the load settle
ADMIN_KEY_FILE = "admin.key"  # in the brain's data dir: the first admin key's secret
CLUSTER_SECRET_FILE = "cluster.secret"  # in the brain's data dir: nodes join with it
# Environment variables that would change a child's auth mode behind the flags' back.
_AUTH_ENV = ("TOSSIT_AUTH", "TOSSIT_NODE_JOIN_SECRET", "TOSSIT_NODE_JOIN_SECRET_FILE",
             "TOSSIT_CONFIG")


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


def read_secret(path: Path) -> str:
    """The first non-comment line of a secret file (like tossit.auth.secretfile)."""
    for line in path.read_text().splitlines():
        if line.strip() and not line.strip().startswith("#"):
            return line.strip()
    raise ValueError(f"{path} is empty")


def free_port() -> int:
    return pick_free_port(HOST)


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
    """A brain and N nodes as child processes, each in its own session.

    ``auth=True``: the brain runs with authentication (the default) and the nodes
    join with its cluster secret; every request the bench makes carries the
    brain's first admin key (``headers``). ``auth=False``: ``brain --no-auth``
    and nodes without a secret (unsigned), requests carry no key. ``brain_args``,
    ``node_args``: more flags for every brain or node (the last flag wins)."""

    def __init__(self, root: Path, chunk_size: str | None, auth: bool = True,
                 nodes: int = N_NODES, brain_args: Sequence[str] = (),
                 node_args: Sequence[str] = ()) -> None:
        self.root = root
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.chunk_size = chunk_size
        self.auth = auth
        self.mode = "on" if auth else "off"
        self.brain_args = brain_args
        self.node_args = node_args
        self.port = free_port()
        self.s3_port = free_port()  # the brain's S3 API (clusters run side by side)
        self.node_ports = [free_port() for _ in range(nodes)]
        self.children: dict[str, Child] = {}
        self.headers: dict[str, str] = {}  # Authorization once the brain is up (auth on)

    @property
    def procs(self) -> dict[str, subprocess.Popen[bytes]]:
        return {name: c.proc for name, c in self.children.items() if c.proc is not None}

    def _spawn(self, name: str, argv: list[str], extra_env: dict[str, str] | None = None) -> None:
        child = self.children[name] = Child(name, tossit_command(argv),
                                            self.logs / f"{name}.log")
        # The mode is set by flags; keep a stray environment from changing it.
        env = child_env(os.environ, {"PYTHONUNBUFFERED": "1", **(extra_env or {})},
                        unset=_AUTH_ENV)
        processes.start(child, env=env, cwd=self.root, own_session=True)

    def _wait(self, ok: Callable[[], object], timeout: float, what: str) -> None:
        """Until ``ok()``; a server that exits meanwhile ends the wait with its log."""
        processes.wait_for(ok, timeout, what, watch=list(self.children.values()))

    def start(self) -> None:
        brain = BrainArgs(host=HOST, port=self.port, data_dir=self.root / "brain",
                          replicas=REPLICAS, auth=self.auth, chunk_size=self.chunk_size,
                          extra=self.brain_args)
        # The S3 port by environment, not flag: a brain from before S3 (an older
        # commit measured against this one) ignores it rather than refusing to start.
        self._spawn("brain", brain.argv(), {"TOSSIT_S3_PORT": str(self.s3_port)})
        self._wait(lambda: request_json("GET", self.port, "/health")[0] == 200, 60,
                   "brain /health")
        secret: Path | None = None
        if self.auth:
            # Written by the brain on its first start, before it answers /health.
            key_file = self.root / "brain" / ADMIN_KEY_FILE
            self._wait(lambda: bool(read_secret(key_file)), 30, f"{key_file}")
            self.headers = {"Authorization": f"Bearer {read_secret(key_file)}"}
            secret = self.root / "brain" / CLUSTER_SECRET_FILE
        self.check_mode()
        for i, port in enumerate(self.node_ports):
            node = NodeArgs(host=HOST, port=port, data_dir=self.root / f"node{i}",
                            brain=f"http://{HOST}:{self.port}", name=f"node-{i}",
                            join_secret_file=secret, extra=self.node_args)
            self._spawn(f"node-{i}", node.argv())
        processes.wait_online(
            lambda: request_json("GET", self.port, "/api/nodes", headers=self.headers)[1],
            len(self.node_ports), 60, watch=list(self.children.values()))

    def check_mode(self) -> None:
        """The brain really runs in the mode asked for: without a key, the API answers
        401 with auth on and 200 with auth off (and 200 with the key, auth on)."""
        bare, _ = request_json("GET", self.port, "/api/nodes")
        keyed, _ = request_json("GET", self.port, "/api/nodes", headers=self.headers)
        want = (401, 200) if self.auth else (200, 200)
        if (bare, keyed) != want:
            raise RuntimeError(
                f"brain on port {self.port} (auth {self.mode}): GET /api/nodes answered "
                f"{bare} without a key and {keyed} with it, expected {want[0]} and {want[1]}")

    def stored_chunks(self) -> int:
        """Chunks on the nodes as of their last heartbeats."""
        _, nodes = request_json("GET", self.port, "/api/nodes", headers=self.headers)
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
        nodes = [p for name, p in self.procs.items() if name != "brain"]
        processes.stop([*nodes, self.procs.get("brain")], grace=15)


def request_json(method: str, port: int, path: str, timeout: float = 10,
                 headers: dict[str, str] | None = None, body: Any = None) -> tuple[int, Any]:
    """One request (``body``: sent as JSON); the status and the decoded answer."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        if body is None:
            conn.request(method, path, headers=headers or {})
        else:
            conn.request(method, path, body=json.dumps(body).encode(),
                         headers={**(headers or {}), "Content-Type": "application/json"})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, json.loads(body) if body else None
    finally:
        conn.close()


@contextlib.contextmanager
def base_checkout(ref: str | None) -> Iterator[Path | None]:
    """A temporary git worktree of ``ref`` whose ``src`` the 'old' servers run
    (``use_code``), so that two versions are measured in one session; None
    without a ref."""
    if not ref:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="tossit-base-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", str(base), ref],
                       check=True, cwd=REPO, capture_output=True)
        try:
            yield base / "src"
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=REPO,
                           capture_output=True)


@contextlib.contextmanager
def fresh_cluster(label: str, src: Path | None) -> Iterator[Cluster]:
    """A new cluster (auth on) running the code in ``src`` (None: this checkout),
    in a temporary folder that goes with it."""
    use_code(src)
    root = Path(tempfile.mkdtemp(prefix=f"tossit-{label}-"))
    cluster = Cluster(root, None)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()  # a stopped (SIGSTOP) child is continued first
        shutil.rmtree(root, ignore_errors=True)


def use_code(src: Path | None) -> None:
    """Servers spawned from now on run the code in ``src`` (None: this checkout)."""
    if src is not None:
        os.environ["PYTHONPATH"] = str(src)
    else:
        os.environ.pop("PYTHONPATH", None)


def payloads(size: int, same: bool) -> Callable[[int], bytes]:
    """Upload i's bytes: all different (the index in the first 8 bytes of one
    random block), as real files are, so every chunk and node write is a new one;
    or, with ``same``, one block for all (every upload after the first stores
    nothing new: the deduplicated path)."""
    base = random.Random(7).randbytes(max(size, 8))[:size]
    if same or size < 8:
        return lambda i: base
    return lambda i: i.to_bytes(8, "big") + base[8:]


def metric_sum(text: str, name: str, match: str = "") -> float:
    """The sum of a Prometheus metric's samples (lines of ``text`` starting with
    ``name`` and containing ``match``)."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and match in line)


def get_text(port: int, path: str, headers: dict[str, str] | None = None,
             timeout: float = 10) -> str:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        return conn.getresponse().read().decode()
    finally:
        conn.close()


# -- server memory and CPU --------------------------------------------------------------


def rss_bytes(pid: int) -> int:
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
                self._peak[name] = max(self._peak[name], rss_bytes(pid))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    @contextlib.contextmanager
    def window(self, into: dict[str, Any]) -> Iterator[None]:
        """Fills ``into`` with peak RSS (MB) and CPU seconds of each process over the block."""
        with self._lock:
            self._peak = {name: rss_bytes(pid) for name, pid in self.pids.items()}
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
    """One persistent HTTP/1.1 connection (reconnects after an error); ``headers``
    (the Authorization header with auth on) go with every request."""

    def __init__(self, port: int, headers: dict[str, str] | None = None,
                 timeout: float = 600) -> None:
        self.port = port
        self.headers = dict(headers or {})
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
             length: int | None = None, headers: dict[str, str] | None = None
             ) -> http.client.HTTPResponse:
        """Sends headers (the connection's, then ``headers``) and body; small bodies go
        in the same segment as the headers."""
        conn = self._open()
        conn.putrequest(method, path, skip_accept_encoding=True)
        for k, v in {**self.headers, **(headers or {})}.items():
            conn.putheader(k, v)
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


def run_phase(count: int, concurrency: int, cluster: Cluster,
              fn: Callable[[Conn, int], None], port: int | None = None,
              headers: dict[str, str] | None = None) -> float:
    """Calls fn(conn, i) for every i on a pool of ``concurrency`` threads, each with its own
    persistent connection to ``cluster``'s brain (``port``: another of its ports, whose
    connections carry ``headers`` instead of the API key); returns the wall time."""
    if port is None:
        port, headers = cluster.port, cluster.headers
    local = threading.local()
    conns: list[Conn] = []
    conns_lock = threading.Lock()

    def one(i: int) -> None:
        conn: Conn | None = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = Conn(port, headers)
            with conns_lock:
                conns.append(conn)
        fn(conn, i)

    # Open the connections before the clock starts (one warm-up /health per worker).
    barrier = threading.Barrier(concurrency)

    def warm(_: int) -> None:
        c = local.conn = Conn(port, headers)
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


def _timed(conn: Conn, ph: Phase, what: str, method: str, path: str,
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


def run_case(case: Case, rnd: int, cluster: Cluster, sampler: Sampler,
             seed: int) -> dict[str, Any]:
    # The same objects for both auth modes of a round: like is compared with like.
    rng = random.Random(seed * 1000 + rnd * 10 + ord(case.name))
    datas = [rng.randbytes(case.size) for _ in range(case.count)]
    digests = [hashlib.sha256(d).digest() for d in datas]
    tag = f"bench-{case.name}-r{rnd}-auth{cluster.mode}-{os.getpid()}-{rng.getrandbits(32):08x}"
    ids: list[int | None] = [None] * case.count
    phases = {p: Phase() for p in PHASES}

    def put(conn: Conn, i: int) -> None:
        ph = phases["put"]
        res = _timed(conn, ph, f"PUT {i}", "PUT", f"/api/files/{tag}/obj-{i:07d}", datas[i])
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
        res = _timed(conn, ph, what, method, path.format(id=ids[i]))
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
        "case": case.name, "round": rnd, "auth": cluster.mode, "size": case.size,
        "count": case.count,
        "concurrency": case.concurrency, "loadavg_before": os.getloadavg(),
        "time": datetime.now(UTC).isoformat(timespec="seconds"), "phases": {},
    }
    for name, fn in (("put", put), ("get", get), ("delete", delete)):
        res: dict[str, Any] = {}
        with sampler.window(res):
            wall = run_phase(case.count, case.concurrency, cluster, fn)
        res = phases[name].report(wall, case.size if name != "delete" else 0) | res
        out["phases"][name] = res
    out["peak_rss_mb"] = {
        proc: max(out["phases"][p]["peak_rss_mb"][proc] for p in PHASES)
        for proc in out["phases"]["put"]["peak_rss_mb"]
    }
    out["errors"] = sum(out["phases"][p]["errors"] for p in PHASES)
    return out


# -- the streaming case ---------------------------------------------------------------------


def stream_pieces(total: int, seed: int) -> Iterator[bytes]:
    """``total`` bytes in 1 MiB pieces, every MiB distinct (a counter over a random block),
    produced on the fly: nothing is kept on the client side."""
    base = bytearray(random.Random(seed).randbytes(MiB))
    for i, off in enumerate(range(0, total, MiB)):
        base[:16] = i.to_bytes(8, "big") * 2
        yield bytes(base[: min(MiB, total - off)])


def run_stream(size: int, cluster: Cluster, sampler: Sampler, seed: int) -> dict[str, Any]:
    print(f"stream (auth {cluster.mode}): hashing {size / GiB:.1f} GiB of generated content "
          "(untimed) ...", flush=True)
    sha = hashlib.sha256()
    for piece in stream_pieces(size, seed):
        sha.update(piece)
    expected = sha.hexdigest()
    out: dict[str, Any] = {"auth": cluster.mode, "size": size, "sha256": expected,
                           "loadavg_before": os.getloadavg(),
                           "time": datetime.now(UTC).isoformat(timespec="seconds")}
    conn = Conn(cluster.port, cluster.headers, timeout=900)
    name = f"bench-stream-{os.getpid()}-{seed}.bin"

    up: dict[str, Any] = {}
    with sampler.window(up):
        t0 = time.perf_counter()
        resp = conn.send("PUT", f"/api/files/{name}", stream_pieces(size, seed), length=size)
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
    status, _ = request_json("DELETE", cluster.port, f"/api/files/{meta['id']}", timeout=120,
                             headers=cluster.headers)
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


SMALL = 64 * 1024  # objects below this are compared by ops/s (MB/s would be ~1 or less)


def metric(case: Case, phase: str) -> tuple[str, str]:
    """The figure compared: MB/s for a PUT or GET of large objects, else ops/s (for one
    case both give the same ratio; ops/s keeps its precision for small objects)."""
    if phase != "delete" and case.size >= SMALL:
        return "MBps", "MB/s"
    return "ops_s", "ops/s"

TARGET_RATIO = 0.90  # "with authentication on, within 10% of its throughput without"


def _ratio(on: float | None, off: float | None) -> float | None:
    return round(on / off, 3) if on is not None and off else None


def compare(runs: list[dict[str, Any]], summary: dict[str, Any],
            stream: dict[str, Any] | None) -> dict[str, Any]:
    """For every case and phase: the median with auth on and off and their ratio
    (``ratio`` = on/off of the medians; ``per_round`` = on/off of the two runs of
    each round, which ran next to each other on the same objects)."""
    out: dict[str, Any] = {}
    for name in CASES:
        if name not in summary["on"] or name not in summary["off"]:
            continue
        out[name] = {}
        for p in PHASES:
            key, unit = metric(CASES[name], p)
            on, off = summary["on"][name][p], summary["off"][name][p]
            paired: dict[int, dict[str, float | None]] = {}
            for r in runs:
                if r["case"] == name:
                    paired.setdefault(r["round"], {})[r["auth"]] = r["phases"][p][key]
            out[name][p] = {
                "metric": key, "unit": unit, "on": on[key], "off": off[key],
                "ratio": _ratio(on[key], off[key]),
                "per_round": [_ratio(v.get("on"), v.get("off")) for _, v in sorted(paired.items())],
                "p50_ms": {"on": on["p50_ms"], "off": off["p50_ms"],
                           "ratio": _ratio(on["p50_ms"], off["p50_ms"])},
                "p99_ms": {"on": on["p99_ms"], "off": off["p99_ms"],
                           "ratio": _ratio(on["p99_ms"], off["p99_ms"])},
            }
            out[name][p]["within_10pct"] = (None if out[name][p]["ratio"] is None
                                            else out[name][p]["ratio"] >= TARGET_RATIO)
    if stream and "on" in stream and "off" in stream:
        out["stream"] = {}
        for d in ("upload", "download"):
            on = stream["on"].get(d, {}).get("MBps")
            off = stream["off"].get(d, {}).get("MBps")
            ratio = _ratio(on, off)
            out["stream"][d] = {"metric": "MBps", "unit": "MB/s", "on": on, "off": off,
                                "ratio": ratio,
                                "within_10pct": None if ratio is None else ratio >= TARGET_RATIO}
    return out


def print_comparison(cmp: dict[str, Any], rounds: int) -> None:
    def num(x: float | None, fmt: str) -> str:
        width = int(fmt.split(".")[0])
        return format(x, fmt) if x is not None else "-".rjust(width)

    print(f"\nauth on vs off (median of {rounds} round(s) per mode; on/off below "
          f"{TARGET_RATIO:.2f} = more than 10% slower with auth)")
    print(f"{'case':<7}{'phase':<9}{'unit':<7}{'on':>10}{'off':>10}{'on/off':>8}  "
          f"{'p50 ms on':>10}{'p50 ms off':>11}  within 10%")
    for name, phases in cmp.items():
        for p, x in phases.items():
            p50 = x.get("p50_ms", {})
            ok = {True: "yes", False: "NO", None: "-"}[x["within_10pct"]]
            print(f"{name:<7}{p.upper():<9}{x['unit']:<7}{num(x['on'], '10.1f')}"
                  f"{num(x['off'], '10.1f')}{num(x['ratio'], '8.3f')}  "
                  f"{num(p50.get('on'), '10.1f')}{num(p50.get('off'), '11.1f')}  {ok}")
    sys.stdout.flush()


def print_run(r: dict[str, Any]) -> None:
    nodes = max(v for k, v in r["peak_rss_mb"].items() if k != "brain")
    print(f"case {r['case']} round {r['round']} auth {r['auth']}: {r['count']} x {r['size']} B, "
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
    ap.add_argument("--auth", choices=("on", "off", "both"), default="on",
                    help="on: the brain with authentication (the default) and nodes joined "
                    "with its cluster secret; off: brain --no-auth, unsigned nodes; both: two "
                    "clusters, one of each, measured in turn and compared [on]")
    ap.add_argument("--code", type=Path, default=None,
                    help="a src/ folder whose code the servers run (an older checkout; "
                    "this script keeps running this checkout's code) [this checkout]")
    args = ap.parse_args(argv)
    use_code(args.code)

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
    modes = {"on": ["on"], "off": ["off"], "both": ["on", "off"]}[args.auth]
    clusters = {m: Cluster(root / f"auth-{m}", args.chunk_size, auth=m == "on") for m in modes}
    both = len(clusters) > 1

    def per_mode(values: dict[str, Any]) -> Any:
        """One mode: its value alone (the layout of a single-cluster run); both: by mode."""
        return values if both else values[modes[0]]

    result: dict[str, Any] = {
        "tool": "bench/bench_cluster.py",
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_commit(),
        "machine": machine_info(),
        "config": {"nodes": N_NODES, "replicas": REPLICAS, "metadata": "sqlite",
                   "chunk_size": args.chunk_size or "default", "cases": wanted,
                   "repeat": args.repeat, "stream_size": args.stream_size,
                   "auth": args.auth,
                   "client": "http.client, one persistent connection per worker thread",
                   "data_dir": str(root)},
        "runs": [],
    }
    errors = 0
    interrupted = False
    try:
        for m, cluster in clusters.items():
            print(f"starting brain + {N_NODES} nodes, auth {m}, under {cluster.root} ...",
                  flush=True)
            cluster.start()
        result["pids"] = per_mode({m: c.pids() for m, c in clusters.items()})
        with contextlib.ExitStack() as stack:
            samplers = {m: stack.enter_context(Sampler(c.pids())) for m, c in clusters.items()}
            abc = [c for c in wanted if c in CASES]
            for rnd in range(1, args.repeat + 1):
                for k, name in enumerate(abc):
                    # Both modes of a case back to back; who goes first alternates from
                    # case to case and from round to round.
                    order = modes if (rnd + k) % 2 == 1 else modes[::-1]
                    for m in order:
                        cluster = clusters[m]
                        subprocess.run(["sync"], check=False)
                        time.sleep(PAUSE_S)
                        run = run_case(CASES[name], rnd, cluster, samplers[m], args.seed)
                        # Chunks of deleted objects are freed in the background: let that
                        # finish so it does not slow down the next run.
                        run["chunks_freed_after_s"] = cluster.drain()
                        result["runs"].append(run)
                        errors += run["errors"]
                        print_run(run)
                        for c in clusters.values():
                            if dead := c.check_alive():
                                raise RuntimeError(f"auth {c.mode}: " + "; ".join(dead))
            if "stream" in wanted:
                streams: dict[str, Any] = {}
                for m in modes:
                    subprocess.run(["sync"], check=False)
                    time.sleep(PAUSE_S)
                    streams[m] = run_stream(args.stream_size, clusters[m], samplers[m],
                                            args.seed)
                    errors += streams[m].get("errors", 1)
                    streams[m]["chunks_freed_after_s"] = clusters[m].drain(300)
                result["stream"] = per_mode(streams)
        summaries = {m: summarise([r for r in result["runs"] if r["auth"] == m]) for m in modes}
        result["summary"] = per_mode(summaries)
        if both:
            cmp = compare(result["runs"], summaries, result.get("stream"))
            result["summary"]["ratio_on_off"] = cmp
            print_comparison(cmp, args.repeat)
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted: stopping the cluster", file=sys.stderr)
    except Exception as exc:
        errors += 1
        result["fatal"] = f"{type(exc).__name__}: {exc}"
        print(f"error: {result['fatal']}", file=sys.stderr)
    finally:
        for cluster in clusters.values():
            cluster.stop()
        result["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        result["errors"] = errors
        result["interrupted"] = interrupted
        save_result(out_path, result, {f"auth-{m}": c.logs for m, c in clusters.items()},
                    args.keep)
        print(f"results: {out_path}  ({errors} errors)")
        remove_data(root, args.keep)
    return 130 if interrupted else (1 if errors else 0)


def save_result(out_path: Path, result: dict[str, Any], log_dirs: dict[str, Path],
                keep: bool) -> None:
    """Write the JSON; when the run had errors (and its data is not kept), copy the
    servers' logs next to it (one subfolder per name, "" = the folder itself)."""
    if result["errors"] and not keep:
        logs = out_path.with_suffix(".logs")
        for name, folder in log_dirs.items():
            shutil.copytree(folder, logs / name if name else logs, dirs_exist_ok=True)
        result["logs"] = str(logs)
    out_path.write_text(json.dumps(result, indent=1) + "\n")


def remove_data(root: Path, keep: bool) -> None:
    if keep:
        print(f"data kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
