"""The write path: a byte stream in, a committed, replicated object out.

The stream is cut into chunks as it arrives; each chunk is hashed (in a thread)
and sent to its placement's nodes while the next one is read, with at most
``upload_parallel_chunks`` in flight, so memory is bounded by a few chunks
whatever the file size. A node that fails is replaced by the next node in the
chunk's preference list. The object is committed in one transaction once every
chunk is fsynced on at least ``write_quorum`` nodes; on any failure nothing is
committed and the chunks written for it are handed to the collector.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tossit.brain.commits import CommitBatcher
from tossit.brain.gc import Collector
from tossit.brain.metrics import TRAFFIC, UPLOAD_BYTES, UPLOADS
from tossit.brain.models import Object
from tossit.brain.pins import ChunkPins
from tossit.brain.registry import READABLE_STATES, NodeView, Registry, disk_capacity
from tossit.brain.store import NewObject, Store
from tossit.brain.transport import NodeError, NodeFull, NodeTransport
from tossit.chunking import DATA, Digest, StreamHasher, rechunk
from tossit.config import BrainSettings
from tossit.errors import DigestMismatch, InsufficientStorage, NotEnoughNodes

log = logging.getLogger("tossit.brain.ingest")

_HASH_INLINE_BELOW = 256 * 1024  # smaller chunks are hashed without a thread hop
# Below this size, asking the metadata whether a chunk is already stored costs
# more than sending it: the nodes answer "already have it" without rewriting.
_DEDUP_LOOKUP_FROM = 64 * 1024


@dataclass(frozen=True)
class Expected:
    """A whole-object digest the client sent with its bytes (S3's Content-MD5,
    x-amz-checksum-*): ``digest`` is fed every byte, and the upload fails with
    ``DigestMismatch`` before it commits unless it ends equal to ``value``. A
    value sent after the body (an aws-chunked trailer) is a function, called
    once the body has ended."""

    algorithm: str  # for the error: "MD5", "CRC32", ...
    digest: Digest
    value: bytes | Callable[[], bytes]

    def check(self) -> None:
        want = self.value() if callable(self.value) else self.value
        got = self.digest.digest()
        if got != want:
            raise DigestMismatch(self.algorithm, want.hex(), got.hex())


@dataclass
class UploadResult:
    obj: Object
    bucket: str
    under_replicated: int
    replicas: dict[str, list[str]] = field(default_factory=dict)


class Ingest:
    def __init__(
        self, settings: BrainSettings, store: Store, registry: Registry, nodes: NodeTransport,
        pins: ChunkPins, collector: Collector, commits: CommitBatcher,
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.nodes = nodes
        self.pins = pins
        self.collector = collector
        self.commits = commits
        self.on_degraded: Callable[[], None] = lambda: None  # wakes the repairer
        # Chunk buffers in flight across all uploads: bounds the brain's memory
        # however many clients upload big files at once (each still gets >= 1).
        self._buffers = asyncio.Semaphore(
            max(1, settings.upload_buffer // settings.chunk_size))

    def check_capacity(self, size_hint: int | None = None) -> None:
        """Refuse early, before reading the body, when the cluster cannot take it."""
        quorum = self.settings.quorum
        writable = self.registry.writable(min(size_hint or 0, self.settings.chunk_size))
        if len(writable) < quorum:
            raise NotEnoughNodes(quorum, len(writable), "nodes that are online and not full")
        _, free = disk_capacity(writable)
        if size_hint and size_hint * quorum > free:
            raise InsufficientStorage(free, size_hint, quorum)

    async def put(
        self,
        pieces: AsyncIterable[bytes],
        *,
        key: str,
        content_type: str,
        bucket: str = "default",
        size_hint: int | None = None,
        on_conflict: str = "replace",
        user_meta: dict[str, Any] | None = None,
        expect: Sequence[Expected] = (),
    ) -> UploadResult:
        """Store ``pieces`` as ``bucket/key``. ``expect``: digests checked once the
        body has ended, before the commit (a mismatch commits nothing). The
        object gets the MD5 of its bytes as ETag and ``user_meta`` as is."""
        self.check_capacity(size_hint)
        hasher = StreamHasher([e.digest for e in expect])
        chunk_list: list[tuple[str, int]] = []
        placing: dict[str, asyncio.Task[list[str]]] = {}
        pinned: set[str] = set()
        slots = asyncio.Semaphore(self.settings.upload_parallel_chunks)
        committed = False
        commit: asyncio.Future[Object] | None = None
        failed: list[BaseException] = []

        def on_done(task: asyncio.Task[list[str]]) -> None:
            slots.release()
            self._buffers.release()
            if not task.cancelled() and task.exception() is not None:
                failed.append(task.exception())  # type: ignore[arg-type]

        try:
            async for data in rechunk(pieces, self.settings.chunk_size):
                TRAFFIC.received(len(data))
                if len(data) < _HASH_INLINE_BELOW:
                    cid = hasher.update_and_chunk_id(data)
                else:
                    cid = await asyncio.to_thread(hasher.update_and_chunk_id, data)
                chunk_list.append((cid, len(data)))
                if cid in placing:
                    continue  # repeated content inside this object: store once
                if failed:
                    raise failed[0]  # stop reading: a chunk could not be stored
                await self.pins.pin(cid)
                pinned.add(cid)
                await slots.acquire()
                try:
                    await self._buffers.acquire()
                except BaseException:
                    slots.release()
                    raise
                task = asyncio.create_task(self.place(cid, data))
                task.add_done_callback(on_done)
                placing[cid] = task
            for expected in expect:
                expected.check()  # before waiting on the nodes: nothing will commit
            results = await asyncio.gather(*placing.values())
            replicas = dict(zip(placing, results, strict=True))
            commit = asyncio.ensure_future(self.commits.commit(NewObject(
                bucket=bucket, key=key, size=hasher.size, sha256=hasher.hexdigest(),
                content_type=content_type, chunk_size=self.settings.chunk_size,
                chunks=chunk_list, replicas=replicas, on_conflict=on_conflict,
                etag=hasher.md5_hex(), user_meta=user_meta,
            )))
            obj = await asyncio.shield(commit)
            committed = True
            self.collector.intents.settled(placing)
            UPLOADS.labels("ok").inc()
            UPLOAD_BYTES.inc(hasher.size)
            under = sum(1 for nodes in replicas.values() if len(nodes) < self.settings.replicas)
            if under:
                log.warning("object %s committed with %d under-replicated chunks", obj.id, under)
                self.on_degraded()  # make the missing copies now, not at the next pass
            return UploadResult(obj=obj, bucket=bucket, under_replicated=under, replicas=replicas)
        finally:
            await self._end_upload(commit, committed, placing, pinned, dict(chunk_list))

    async def _end_upload(self, commit: asyncio.Future[Object] | None, committed: bool,
                          placing: dict[str, asyncio.Task[list[str]]],
                          pinned: set[str], sizes: dict[str, int]) -> None:
        """Whatever way an upload ended: unpin its chunks, and if it was not
        committed hand them to the collector."""
        if commit is not None and not commit.done():
            # The client went away while its object was being committed. The
            # commit goes on; its outcome decides whether these chunks are
            # garbage, so keep them pinned until it is known.
            with contextlib.suppress(BaseException):
                await asyncio.shield(commit)
        if commit is not None and commit.done() and not commit.cancelled():
            committed = commit.exception() is None
        for task in placing.values():
            task.cancel()
        for task in placing.values():
            with contextlib.suppress(BaseException):
                await task
        for cid in pinned:
            self.pins.unpin(cid)
        if not committed:
            UPLOADS.labels("failed").inc()
        if not committed and placing:
            # Chunks written for a failed upload: the collector frees the
            # ones no committed object uses (it re-checks under its lock).
            self.collector.release(list(placing), sizes)

    async def place(self, cid: str, data: bytes | bytearray, kind: str = DATA) -> list[str]:
        """Store one chunk (or manifest pack) on R nodes, or at least W; returns
        the nodes holding it."""
        replicas = self.settings.replicas
        quorum = self.settings.quorum
        holders: list[str] = []
        # Before any copy leaves: if this never commits, the journal is what lets
        # the orphan sweep delete the copies (nothing is deleted on absence alone).
        self.collector.intents.note(cid)
        if kind == DATA and len(data) >= _DEDUP_LOOKUP_FROM:
            holders = [
                n for n in await self.store.ok_replicas(cid)
                if (v := self.registry.get(n)) is not None and v.state in READABLE_STATES
            ]
            if len(holders) >= replicas:
                return holders  # deduplicated: already stored safely, nothing to send
        candidates = self.registry.write_order(cid, len(data), exclude=set(holders))
        want = replicas - len(holders)
        acked: list[str] = []
        errors: list[str] = []
        queue = list(candidates)
        running: dict[asyncio.Task[None], NodeView] = {}

        def launch() -> None:
            while queue and len(running) + len(acked) < want:
                node = queue.pop(0)
                node.reserved += len(data)
                running[asyncio.create_task(self.nodes.put_chunk(node, cid, data, kind))] = node

        launch()
        try:
            while running:
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    node = running.pop(task)
                    exc = task.exception()
                    if exc is None:
                        acked.append(node.id)
                        continue
                    node.reserved = max(0, node.reserved - len(data))
                    if isinstance(exc, NodeFull):
                        node.free = 0  # until its next heartbeat says otherwise
                    if not isinstance(exc, NodeError):
                        raise exc
                    errors.append(str(exc))
                    log.warning("chunk %s: %s; trying another node", cid[:12], exc)
                launch()
        finally:
            for task in running:
                task.cancel()
        total = holders + acked
        if len(total) < quorum:
            available = len(holders) + len(candidates) - len(errors)
            raise NotEnoughNodes(
                quorum, max(0, available),
                f"chunk stored on {len(total)} node(s); " + "; ".join(errors[-3:]),
            )
        return total

