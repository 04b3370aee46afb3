"""In-memory storage nodes, and the brain's core built on them, for fast tests.

``MemTransport`` implements ``tossit.brain.transport.NodeTransport`` with nodes
that keep their blobs in dicts. A test can make a node fail (every call raises,
as an unreachable node does through ``NodeClient``), pause (calls wait at a
gate the test opens), fill up (``NodeFull``), lose a blob, or rot one (reads
return other bytes). ``memcore`` wires the real ``Ingest``, ``Reader``,
``Repairer``, ``Collector``, ``CommitBatcher`` and ``ManifestWriter`` to such
nodes and to a real SQLite store in a temporary directory, the way
``brain/service.py`` does, without HTTP or processes: a test runs in
milliseconds. What only processes show (timeouts, signatures, restarts) stays in
tests/integration.
"""

from __future__ import annotations

import asyncio
import atexit
import random
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import event, select

from tossit.brain.commits import CommitBatcher
from tossit.brain.db import make_engine, migrate
from tossit.brain.gc import Collector
from tossit.brain.ingest import Ingest, UploadResult
from tossit.brain.manifest_writer import ManifestWriter
from tossit.brain.models import Replica
from tossit.brain.pins import ChunkPins
from tossit.brain.reader import Reader
from tossit.brain.registry import NodeView, Registry
from tossit.brain.repair import Repairer
from tossit.brain.store import Store
from tossit.brain.transport import (
    ChunkMissing,
    NodeError,
    NodeFull,
    NodeTransport,
    NodeUnavailable,
)
from tossit.chunking import DATA, content_id
from tossit.config import BrainSettings
from tossit.manifests import pack_key

KiB = 1024


class MemNode:
    """One node: blobs in a dict, and the faults a test switches on."""

    def __init__(self, view: NodeView) -> None:
        self.view = view
        self.blobs: dict[str, bytes] = {}
        self.kinds: dict[str, str] = {}
        self.mtimes: dict[str, float] = {}
        self.failing: type[NodeError] | None = None
        self.capacity: int | None = None  # bytes; None: unlimited
        self.rotten: set[str] = set()
        self.calls: list[tuple[str, str]] = []  # (operation, blob id), in order
        self.gate = asyncio.Event()
        self.gate.set()
        self.arrived = asyncio.Event()  # a call reached the closed gate
        self.waiting = 0

    @property
    def name(self) -> str:
        return self.view.name

    # -- faults ----------------------------------------------------------------

    def fail(self, error: type[NodeError] = NodeUnavailable) -> None:
        """Every call raises ``error`` from now on (``NodeUnavailable``: as
        NodeClient reports a refused, reset or timed-out connection)."""
        self.failing = error

    def heal(self) -> None:
        self.failing = None

    def pause(self) -> None:
        """Calls wait (as on a node that stopped answering) until ``resume``."""
        self.gate.clear()
        self.arrived.clear()

    def resume(self) -> None:
        self.gate.set()

    def fill_up(self) -> None:
        """No room for one more byte: writes raise ``NodeFull``."""
        self.capacity = self.used

    def lose(self, blob_id: str) -> None:
        self.blobs.pop(blob_id, None)
        self.rotten.discard(blob_id)

    def rot(self, blob_id: str) -> None:
        """Reads of this blob return other bytes of the same length."""
        self.rotten.add(blob_id)

    # -- what it holds ---------------------------------------------------------

    @property
    def used(self) -> int:
        return sum(len(b) for b in self.blobs.values())

    def data_ids(self) -> set[str]:
        return {c for c, k in self.kinds.items() if k == DATA and c in self.blobs}

    def count(self, op: str, blob_id: str | None = None) -> int:
        """Calls of this operation (on this blob) so far."""
        return sum(1 for o, b in self.calls if o == op and blob_id in (None, b))

    def read(self, blob_id: str) -> bytes:
        data = self.blobs[blob_id]
        if blob_id in self.rotten and data:
            return bytes([data[0] ^ 0xFF]) + data[1:]
        return data

    def store(self, blob_id: str, data: bytes | bytearray, kind: str) -> None:
        if blob_id in self.blobs:
            return  # "exists": the node does not rewrite it
        if self.capacity is not None and self.used + len(data) > self.capacity:
            raise NodeFull(f"{self.name}: storage limit reached")
        self.blobs[blob_id] = bytes(data)
        self.kinds[blob_id] = kind
        self.mtimes[blob_id] = time.time()
        self.rotten.discard(blob_id)


class MemTransport:
    """``NodeTransport`` over ``MemNode``s. Like ``NodeClient``, a data call
    (put, get) that finds its node unreachable marks it so in the registry (writers
    skip it for a few seconds), and a successful one clears that mark."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.nodes: dict[str, MemNode] = {}
        self.log: list[tuple[str, str, str]] = []  # (operation, node name, blob id)

    def add(self, view: NodeView) -> MemNode:
        node = MemNode(view)
        self.nodes[view.id] = node
        return node

    async def _enter(self, view: NodeView, op: str, blob_id: str,
                     mark: bool = False) -> MemNode:
        node = self.nodes[view.id]
        node.calls.append((op, blob_id))
        self.log.append((op, node.name, blob_id))
        if not node.gate.is_set():
            node.waiting += 1
            node.arrived.set()
            try:
                await node.gate.wait()
            finally:
                node.waiting -= 1
        if node.failing is not None:
            if mark and issubclass(node.failing, NodeUnavailable):
                self.registry.mark_unreachable(view.id)
            raise node.failing(f"{node.name} unreachable (test fault)")
        return node

    async def put_chunk(self, node: NodeView, chunk_id: str, data: bytes | bytearray,
                        kind: str = DATA) -> None:
        n = await self._enter(node, "put", chunk_id, mark=True)
        if content_id(data, kind) != chunk_id:
            raise NodeError(f"{n.name} refused chunk {chunk_id}: 400 body does not match")
        n.store(chunk_id, data, kind)
        node.unreachable_until = 0.0

    async def get_chunk(self, node: NodeView, chunk_id: str) -> bytes:
        n = await self._enter(node, "get", chunk_id, mark=True)
        if chunk_id not in n.blobs:
            raise ChunkMissing(f"{n.name} does not have chunk {chunk_id}")
        node.unreachable_until = 0.0
        return n.read(chunk_id)

    async def delete_chunk(self, node: NodeView, chunk_id: str) -> bool:
        n = await self._enter(node, "delete", chunk_id)
        return n.blobs.pop(chunk_id, None) is not None

    async def delete_chunks(self, node: NodeView, chunk_ids: list[str]) -> set[str]:
        n = await self._enter(node, "deletes", ",".join(chunk_ids))
        return {c for c in chunk_ids if n.blobs.pop(c, None) is not None}

    async def inventory(self, node: NodeView, after: str, limit: int,
                        kind: str | None = None) -> dict[str, object]:
        n = await self._enter(node, "inventory", after)
        ids = sorted(c for c in n.blobs if c > after and (kind is None or n.kinds[c] == kind))
        page = ids[:limit]
        return {"chunks": [{"id": c, "size": len(n.blobs[c]), "mtime": n.mtimes[c],
                            "kind": n.kinds[c]} for c in page],
                "next": page[-1] if len(page) == limit else None}

    async def replicate(self, target: NodeView, chunk_id: str, sources: list[NodeView],
                        kind: str = DATA) -> None:
        """As a node does (node/peers.py): an intact copy already there is kept, a
        rotten one set aside; then the target fetches from the first source that
        serves verified bytes (failing, lacking or rotten sources are skipped)."""
        t = await self._enter(target, "replicate", chunk_id)
        if chunk_id in t.blobs:
            if chunk_id not in t.rotten:
                return
            t.lose(chunk_id)  # quarantined
        for src in sources:
            s = self.nodes.get(src.id)
            if s is None or s.failing is not None or chunk_id not in s.blobs:
                continue
            data = s.read(chunk_id)
            if content_id(data, kind) == chunk_id:
                t.store(chunk_id, data, kind)
                return
        raise NodeError(f"{t.name} could not copy {chunk_id[:12]}: 502 no source could "
                        "supply a verified copy")


_: type[NodeTransport] = MemTransport  # mypy: the fake keeps to the Protocol


def node_report(i: int) -> dict[str, object]:
    """A registration as a node sends it (plenty of room, one zone)."""
    return {"id": f"{i:032x}", "name": f"mem-{i}", "address": f"mem://{i}", "zone": "default",
            "capacity": 10**12, "used": 0, "free": 10**12, "disk_total": 10**12,
            "disk_free": 10**12, "chunk_count": 0, "load": 0.0, "version": "test"}


_template: Path | None = None


async def _migrated_db(dest: Path) -> Path:
    """A migrated SQLite file at ``dest``: migrated once per process (half a
    second), then copied for each test (a millisecond)."""
    global _template
    if _template is None:
        tmp = Path(tempfile.mkdtemp(prefix="tossit-memcore-"))
        atexit.register(shutil.rmtree, tmp, True)
        await migrate(f"sqlite+aiosqlite:///{tmp / 'template.db'}")
        _template = tmp / "template.db"
    shutil.copyfile(_template, dest)
    return dest


@dataclass
class Core:
    """The brain's core on in-memory nodes: what ``brain/service.py`` wires."""

    settings: BrainSettings
    store: Store
    registry: Registry
    transport: MemTransport
    nodes: list[MemNode]
    pins: ChunkPins
    collector: Collector
    repairer: Repairer
    commits: CommitBatcher
    ingest: Ingest
    manifests: ManifestWriter
    reader: Reader
    degraded: list[str] = field(default_factory=list)  # who woke the repairer

    def node(self, node_id: str) -> MemNode:
        return self.transport.nodes[node_id]

    async def upload(self, key: str, data: bytes, **kw: Any) -> UploadResult:
        return await self.ingest.put(pieces(data), key=key,
                                     content_type="application/octet-stream",
                                     size_hint=len(data), **kw)

    async def download(self, object_id: int) -> bytes:
        found = await self.store.object_with_chunks(object_id)
        assert found is not None
        download = await self.reader.open(found[1], None)
        return b"".join([piece async for piece in download.body])

    async def replicas(self, chunk_id: str) -> dict[str, str]:
        """The metadata's replica rows of a chunk: node id -> state."""
        async with self.store.read() as s:
            rows = await s.execute(select(Replica.node_id, Replica.state).where(
                Replica.chunk_id == chunk_id))
            return {n: st for n, st in rows.all()}

    async def refcount(self, chunk_id: str) -> int | None:
        """The chunk row's reference count; None: no row."""
        return (await self.store.known_chunks([chunk_id])).get(chunk_id)

    def holders(self, chunk_id: str) -> set[str]:
        """The nodes whose dict holds the chunk with its right bytes."""
        return {n.view.id for n in self.nodes
                if chunk_id in n.blobs and content_id(n.blobs[chunk_id]) == chunk_id}


async def pieces(data: bytes, piece: int = 16 * KiB) -> AsyncIterator[bytes]:
    for i in range(0, len(data), piece):
        yield data[i : i + piece]


@asynccontextmanager
async def memcore(tmp: Path, nodes: int = 4, replicas: int = 3, quorum: int = 2,
                  chunk_size: int = 64 * KiB,
                  tune: Callable[[BrainSettings], None] = lambda s: None,
                  ) -> AsyncIterator[Core]:
    """A running core (the commit batcher started; the other loops are driven
    by the test through ``run_once``) on ``nodes`` online in-memory nodes."""
    settings = BrainSettings(data_dir=tmp, replicas=replicas, write_quorum=quorum,
                             chunk_size=chunk_size)
    tune(settings)
    url = f"sqlite+aiosqlite:///{await _migrated_db(tmp / 'meta.db')}"
    engine = make_engine(url)

    @event.listens_for(engine.sync_engine, "connect")
    def _no_fsync(dbapi_conn: Any, _record: Any) -> None:
        # The real engine, minus the fsyncs: a test's durability is not at stake,
        # and a busy disk would make each commit cost milliseconds.
        dbapi_conn.execute("PRAGMA synchronous=OFF")

    store = Store(engine, pack_key("memcore test secret"))
    registry = Registry(settings.replicas, settings.high_water)
    transport = MemTransport(registry)
    mem = []
    for i in range(1, nodes + 1):
        report = node_report(i)
        await store.upsert_node(report, "online")
        mem.append(transport.add(registry.update(report)))
    pins = ChunkPins()
    collector = Collector(settings, store, registry, transport, pins)
    repairer = Repairer(settings, store, registry, transport, pins)
    commits = CommitBatcher(store, collector.release)
    ingest = Ingest(settings, store, registry, transport, pins, collector, commits)
    manifests = ManifestWriter(store, ingest.place, pins, collector.release,
                               lambda: len(registry.writable(1)) >= settings.replicas)
    commits.writer = manifests
    collector.written_packs = manifests.written_ids
    collector.written_versions = manifests.written_versions
    reader = Reader(store, registry, transport, settings.read_ahead_chunks, repairer.wake,
                    hedge_after=settings.straggler_wait)
    core = Core(settings, store, registry, transport, mem, pins, collector, repairer,
                commits, ingest, manifests, reader)
    collector.on_missing = lambda: core.degraded.append("collector")
    ingest.on_degraded = lambda: core.degraded.append("ingest")
    reader.on_bad_replica = lambda: core.degraded.append("reader")
    await store.bucket_id("default")
    commits.start()
    try:
        yield core
    finally:
        for n in mem:
            n.resume()  # nothing stays parked at a gate
        await commits.stop()
        await store.close()


def blob(seed: int, size: int) -> bytes:
    """Reproducible incompressible bytes (distinct seeds: distinct chunks)."""
    return random.Random(seed).randbytes(size)


async def until(cond: Callable[[], bool], turns: int = 10_000) -> None:
    """Let the event loop run until ``cond()`` holds (in-memory steps only: each
    turn is one pass of the loop, no wall-clock wait)."""
    for _ in range(turns):
        if cond():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")
