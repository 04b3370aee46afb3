"""Real TossIt processes for integration tests.

``Cluster`` starts ``python -m tossit brain`` and N ``python -m tossit node``
processes on free loopback ports with data under a temporary folder, with fast
timers (heartbeats every 0.5 s, offline after 3 s) so failure tests take
seconds. Tests drive it over HTTP and look at the nodes' folders directly.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from tossit import processes
from tossit.auth.mac import Signer
from tossit.chunking import is_chunk_id
from tossit.processes import Child, child_env
from tossit.serve import pick_free_port as free_port
from tossit.server_args import BrainArgs, NodeArgs, Tls, tossit_command

# Fast failure detection: heartbeats every 0.5 s, suspect after 1.5 s, offline after 3 s.
HEARTBEAT_S, SUSPECT_AFTER_S, OFFLINE_AFTER_S = 0.5, 1.5, 3.0
# Uploads wait for every copy, as they would without stragglers: on a loaded test
# machine a third copy can take more than the default second, and with the repairer
# off a test would then see a file short of a copy. (Stragglers have their own
# tests: test_inproc_ingest.py, and bench_paused_node.py for a real paused node.)
STRAGGLER_WAIT_S = 60.0


def wait_until(predicate: Any, timeout: float = 20.0, interval: float = 0.1,
               what: str = "condition") -> Any:
    """``predicate()`` once it is true (a network error counts as not yet); TimeoutError
    after ``timeout`` seconds."""
    return processes.wait_for(predicate, timeout, what, interval=interval)


class SignedAuth(httpx.Auth):
    """Signs httpx requests to one node with the cluster secret, as the brain does."""

    requires_request_body = True

    def __init__(self, secret: str, audience: str, sender: str = "test") -> None:
        self.signer = Signer(secret, sender)
        self.audience = audience

    def auth_flow(self, request: httpx.Request) -> Any:
        request.headers.update(self.headers(request.method, request.url.path,
                                            request.url.query.decode(), request.content))
        yield request

    def headers(self, method: str, path: str, query: str, body: bytes) -> dict[str, str]:
        # Like the brain: a chunk PUT signs the chunk id as its body hash (the
        # node checks the bytes against the id itself).
        tail = path.rsplit("/", 1)[-1]
        if method == "PUT" and path.startswith("/chunks/") and is_chunk_id(tail):
            digest = tail
        else:
            digest = hashlib.sha256(body).hexdigest()
        return self.signer.headers(method, path, self.audience, query=query, digest=digest)


class Cluster:
    def __init__(
        self,
        root: Path,
        nodes: int = 3,
        replicas: int = 3,
        chunk_size: str = "1MiB",
        database_url: str | None = None,
        brain_args: list[str] | None = None,
        node_capacity: str | None = None,
        zones: list[str] | None = None,
        tls: Path | None = None,
        node_args: list[str] | None = None,
        brain_env: dict[str, str] | None = None,
        brains: int = 1,
        nofile: tuple[int, int] | None = None,
    ) -> None:
        """``tls``: a folder with ca.pem, cert.pem and key.pem (a certificate for
        127.0.0.1): every server then speaks HTTPS and verifies the others.
        ``nofile``: the (soft, hard) open-file limit every process starts with."""
        self.root = root
        self.n_nodes = nodes
        self.replicas = replicas
        self.chunk_size = chunk_size
        self.database_url = database_url
        self.brain_args = brain_args or []
        self.node_capacity = node_capacity
        self.zones = zones
        self.port = free_port()
        self.s3_port = free_port()
        self.tls = tls
        self.node_args = node_args or []
        self.nofile = nofile
        # e.g. TOSSIT_FAILPOINTS (tossit.failpoints). Tests send wrong keys on
        # purpose, all from 127.0.0.1: the throttle has a test of its own.
        # The trash is off unless a test turns it on: a delete frees its chunks at
        # once, as most tests expect (tests/integration/test_trash.py turns it on).
        self.brain_env = {"TOSSIT_WRONG_KEYS_FREE": "100000", "TOSSIT_TRASH_KEEP": "0",
                          **(brain_env or {})}
        self.scheme = "https" if tls else "http"
        self.url = f"{self.scheme}://127.0.0.1:{self.port}"
        self.s3_url = f"{self.scheme}://127.0.0.1:{self.s3_port}"  # the brain's S3 API
        self.node_ports = [free_port() for _ in range(nodes)]
        self.brain: subprocess.Popen[bytes] | None = None
        self.brain_started = 0.0  # time.time() when the first brain was last started
        # More brains on the same (PostgreSQL) metadata: each its own port and data
        # dir (with copies of the first one's secrets); the nodes know them all.
        self.extra_ports = [free_port() for _ in range(brains - 1)]
        self.extra_s3_ports = [free_port() for _ in range(brains - 1)]
        self.extra: list[subprocess.Popen[bytes] | None] = [None] * (brains - 1)
        self.nodes: list[subprocess.Popen[bytes] | None] = [None] * nodes
        self.children: dict[str, Child] = {}  # the last process started under each name
        self.verify: Any = ssl.create_default_context(cafile=str(tls / "ca.pem")) if tls \
            else True
        self.http = httpx.Client(base_url=self.url, timeout=60, verify=self.verify)
        (root / "logs").mkdir(parents=True, exist_ok=True)

    # -- processes ----------------------------------------------------------

    def _spawn(self, name: str, argv: list[str],
               extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start ``tossit ARGV`` as ``name``, logging to logs/NAME.log."""
        child = Child(name, tossit_command(argv), self.root / "logs" / f"{name}.log")
        self.children[name] = child
        return processes.start(
            child, env=child_env(os.environ, {"PYTHONUNBUFFERED": "1", **(extra_env or {})}),
            nofile=self.nofile)

    def brain_args_for(self, n: int = 0) -> BrainArgs:
        """Brain n's flags (0: the first one; the others share its metadata)."""
        # The repairer stays off unless a test turns it on (--auto-repair in
        # brain_args, the last flag wins): tests that watch the write and read
        # paths must not see background moves under their feet.
        first = BrainArgs(
            port=self.port, s3_port=self.s3_port, data_dir=self.root / "brain",
            replicas=self.replicas,
            chunk_size=self.chunk_size, gc_interval=3600, auto_repair=False,
            heartbeat_interval=HEARTBEAT_S, suspect_after=SUSPECT_AFTER_S,
            offline_after=OFFLINE_AFTER_S, straggler_wait=STRAGGLER_WAIT_S,
            database_url=self.database_url,
            tls=self._tls(), extra=self.brain_args)
        if n == 0:
            return first
        return replace(first, port=self.extra_ports[n - 1],
                       s3_port=self.extra_s3_ports[n - 1], data_dir=self.root / f"brain{n}",
                       advertise_url=self.brain_url(n))

    def brain_argv(self) -> list[str]:
        return self.brain_args_for(0).argv()

    def _tls(self, with_ca: bool = True) -> Tls | None:
        if not self.tls:
            return None
        return Tls(self.tls / "cert.pem", self.tls / "key.pem",
                   self.tls / "ca.pem" if with_ca else None)

    def tls_args(self) -> list[str]:
        tls = self._tls()
        return tls.argv() if tls else []

    def node_dir(self, i: int) -> Path:
        return self.root / f"node{i}"

    @property
    def secret_file(self) -> Path:
        """The cluster secret the brain made on its first start (nodes join with it)."""
        return self.root / "brain" / "cluster.secret"

    @property
    def admin_key(self) -> str:
        return (self.root / "brain" / "admin.key").read_text().strip()

    def start_brain(self) -> None:
        self.brain_started = time.time()
        self.brain = self._spawn("brain", self.brain_argv(), self.brain_env)
        processes.wait_healthy(self.url, 60, watch=[self.children["brain"]], verify=self.verify)
        # Every API call needs a key: use the admin key the brain wrote on first start.
        self.http.headers["Authorization"] = f"Bearer {self.admin_key}"

    def start_node(self, i: int, join: str | None = None, bare: bool = False) -> None:
        """``join``: start it with ``--join TOKEN`` instead of the secret file and the
        brain URLs (the token carries both); ``bare``: with neither (a node that
        joined with a token before)."""
        brains = ",".join(self.brain_url(n) for n in range(len(self.extra) + 1))
        joined = join is not None or bare  # it knows its cluster from a token
        node = NodeArgs(
            port=self.node_ports[i], data_dir=self.node_dir(i), name=f"node-{i}",
            heartbeat_interval=HEARTBEAT_S, join=join,
            brain=None if joined else brains,
            join_secret_file=None if joined else self.secret_file,
            capacity=self.node_capacity,
            zone=self.zones[i % len(self.zones)] if self.zones else None,
            # A node that joins with a token learns the CA from it (and keeps it).
            tls=self._tls(with_ca=not joined), extra=self.node_args)
        self.nodes[i] = self._spawn(f"node{i}", node.argv())

    def add_node(self, join: str | None = None) -> int:
        """Start one more node (a new machine joining, with a join token if given);
        returns its index."""
        self.node_ports.append(free_port())
        self.nodes.append(None)
        self.n_nodes += 1
        self.start_node(self.n_nodes - 1, join=join)
        return self.n_nodes - 1

    def brain_url(self, n: int) -> str:
        """Brain n's URL (0: the first one)."""
        return self.url if n == 0 else f"{self.scheme}://127.0.0.1:{self.extra_ports[n - 1]}"

    def s3_url_of(self, n: int) -> str:
        """Brain n's S3 API URL (0: the first one)."""
        return self.s3_url if n == 0 else \
            f"{self.scheme}://127.0.0.1:{self.extra_s3_ports[n - 1]}"

    def start_extra_brain(self, n: int) -> None:
        """Start brain n (1, 2...) on the same metadata as the first."""
        data = self.root / f"brain{n}"
        data.mkdir(mode=0o700, exist_ok=True)
        for name in ("cluster.secret", "keys.master"):
            if not (data / name).exists():
                shutil.copy(self.root / "brain" / name, data / name)
        argv = self.brain_args_for(n).argv()
        self.extra[n - 1] = self._spawn(f"brain{n}", argv, self.brain_env)
        processes.wait_healthy(self.brain_url(n), 60, watch=[self.children[f"brain{n}"]],
                               verify=self.verify)

    def client(self, n: int) -> httpx.Client:
        """An admin client of brain n."""
        return httpx.Client(base_url=self.brain_url(n), timeout=60, verify=self.verify,
                            headers={"Authorization": f"Bearer {self.admin_key}"})

    def start(self) -> Cluster:
        self.start_brain()
        for n in range(1, len(self.extra) + 1):
            self.start_extra_brain(n)
        for i in range(self.n_nodes):
            self.start_node(i)
        # A server that dies while starting fails the test at once, with its log.
        self.wait_online(self.n_nodes, watch=list(self.children.values()))
        return self

    def wait_online(self, count: int, timeout: float = 60,
                    watch: list[Child] | None = None) -> list[dict[str, Any]]:
        """The brain's list of nodes once ``count`` of them are online and have
        reported to this brain process since it started (a restarted brain takes
        the states it finds in its metadata until it hears otherwise). ``watch``:
        processes whose exit ends the wait (none by default: tests kill nodes)."""
        def unheard(n: dict[str, Any]) -> bool:
            seen = n["last_heartbeat"]
            return not seen or datetime.fromisoformat(seen).timestamp() < self.brain_started

        def heard() -> list[dict[str, Any]]:
            return [{**n, "state": "not heard from yet"}
                    if n["state"] == "online" and unheard(n) else n
                    for n in self.http.get("/api/nodes").json()]
        return processes.wait_online(heard, count, timeout, watch=watch or [])

    def node_state(self, i: int) -> str:
        name = f"node-{i}"
        for n in self.http.get("/api/nodes").json():
            if n["name"] == name:
                return str(n["state"])
        return "absent"

    def wait_node_state(self, i: int, state: str, timeout: float = 20) -> None:
        wait_until(lambda: self.node_state(i) == state, timeout, what=f"node-{i} {state}")

    def kill_node(self, i: int, sig: int = signal.SIGKILL) -> None:
        proc = self.nodes[i]
        assert proc is not None
        proc.send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            proc.wait(10)
            self.nodes[i] = None

    def stop_brain(self, sig: int = signal.SIGTERM) -> None:
        if self.brain is not None:
            self.brain.send_signal(sig)
            try:
                # 30 s: a brain stopped a second after it started was seen waiting
                # out SQLite's 10 s busy timeout in one step of its stop (the
                # activity log's last write; the brain logs "stopping: ... took").
                # Not explained yet: a write lock held across the stop.
                self.brain.wait(30)
            except subprocess.TimeoutExpired:
                # Where it is stuck, from its own log: every thread's stack (the
                # servers dump them on SIGUSR1), then the end of that log.
                self.brain.send_signal(signal.SIGUSR1)
                time.sleep(1)
                self.brain.kill()
                self.brain.wait()
                self.brain = None
                raise AssertionError("the brain did not stop within 15 s of signal "
                                     f"{sig}" + processes.log_tail(
                                         self.root / "logs" / "brain.log", 80)) from None
            self.brain = None

    def stop(self) -> None:
        """The nodes, then the brains: SIGTERM, SIGKILL after 10 s."""
        processes.stop([*self.nodes, self.brain, *self.extra], grace=10)
        self.http.close()

    # -- inspection ---------------------------------------------------------

    def chunk_files(self, i: int) -> dict[str, Path]:
        """Chunk id -> path of every chunk stored on node i's disk."""
        out: dict[str, Path] = {}
        base = self.node_dir(i) / "chunks"
        if base.exists():
            for sub in base.iterdir():
                for f in sub.iterdir():
                    out[f.name] = f
        return out

    def pack_files(self, i: int) -> dict[str, Path]:
        """Manifest pack id -> path of every pack on node i's disk."""
        base = self.node_dir(i) / "manifests"
        return {f.name: f for f in base.rglob("*") if f.is_file()} if base.exists() else {}

    def node_id(self, i: int) -> str:
        return str(json.loads((self.node_dir(i) / "node.json").read_text())["id"])

    def node_auth(self, i: int) -> SignedAuth:
        return SignedAuth(self.secret_file.read_text().strip(), self.node_id(i))

    def node_http(self, i: int, signed: bool = True) -> httpx.Client:
        """A client for node i's chunk API, signing like the brain (or not)."""
        auth = self.node_auth(i) if signed else None
        return httpx.Client(base_url=f"{self.scheme}://127.0.0.1:{self.node_ports[i]}",
                            timeout=30, verify=self.verify,
                            auth=auth)

    def upload(self, name: str, data: bytes) -> dict[str, Any]:
        resp = self.http.post("/api/files/upload", files={"file": (name, data)})
        assert resp.status_code == 201, resp.text
        result: dict[str, Any] = resp.json()
        return result

    def download(self, file_id: int) -> bytes:
        resp = self.http.get(f"/api/files/{file_id}/download")
        assert resp.status_code == 200, resp.text
        return resp.content

    def open_upload(self, target: str, *, method: str = "PUT", ctype: str = "text/plain",
                    length: int, first: bytes) -> socket.socket:
        """Start an upload of ``length`` bytes and send only ``first``: the open
        socket, for a test that then lets the client (or the brain) go away."""
        head = (f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}"
                f"\r\nContent-Length: {length}\r\nAuthorization: Bearer {self.admin_key}"
                "\r\n\r\n")
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        sock.sendall(head.encode() + first)
        return sock

    def gc(self, orphans: bool = True) -> dict[str, Any]:
        resp = self.http.post("/api/admin/gc", params={"orphans": str(orphans).lower()})
        assert resp.status_code == 200, resp.text
        result: dict[str, Any] = resp.json()
        return result

    def log(self, name: str) -> str:
        return (self.root / "logs" / f"{name}.log").read_text(errors="replace")
