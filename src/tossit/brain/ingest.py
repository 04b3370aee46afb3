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
import functools
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tossit.brain.commits import Coming, CommitBatcher
from tossit.brain.gc import Collector
from tossit.brain.intents import IntentJournal
from tossit.brain.metrics import TRAFFIC, UPLOAD_BYTES, UPLOADS
from tossit.brain.models import Object
from tossit.brain.pins import ChunkPins
from tossit.brain.registry import READABLE_STATES, NodeView, Registry, disk_capacity
from tossit.brain.store import NewObject, ReplaceOnly, Store
from tossit.brain.transport import (
    NodeDiskError,
    NodeError,
    NodeFull,
    NodeTransport,
    NodeUnavailable,
)
from tossit.brain.upload_budget import ByteBudget
from tossit.chunking import DATA, META, Digest, StreamHasher, rechunk
from tossit.config import BrainSettings
from tossit.errors import DigestMismatch, InsufficientStorage, NotEnoughNodes

log = logging.getLogger("tossit.brain.ingest")

_HASH_INLINE_BELOW = 256 * 1024  # smaller chunks are hashed without a thread hop
# Seconds a chunk may take to fill before it is handed over short, when other
# uploads wait for the upload budget (``store_chunks``).
SLOW_CHUNK_AFTER = 5.0
# Below this size, asking the metadata whether a chunk is already stored costs
# more than sending it: the nodes answer "already have it" without rewriting.
_DEDUP_LOOKUP_FROM = 64 * 1024
T = TypeVar("T")
# Once W nodes hold a chunk, the others get this many times what W took (and at
# least the ``straggler_wait`` setting): a big chunk on a busy disk is slow for
# every node alike, while a paused or failing node would hold the upload for
# ``node_timeout``.
STRAGGLER_FACTOR = 4.0


def straggler_wait(quorum_seconds: float, minimum: float) -> float:
    """Seconds the last copies of a chunk may take once W nodes hold it."""
    return max(minimum, STRAGGLER_FACTOR * quorum_seconds)


@dataclass
class StoredChunks:
    """A stream stored as chunks on the nodes, not yet referenced by the metadata
    (``Ingest.store_chunks``)."""

    size: int
    sha256: str  # of the whole stream
    md5: str  # of the whole stream (the S3 ETag of a single-part object)
    chunks: list[tuple[str, int]]  # (chunk id, size) in order
    replicas: dict[str, list[str]]  # chunk id -> nodes holding a good copy
    intents: IntentJournal = field(repr=False)  # told when they are settled
    settling: asyncio.Future[Any] | None = None
    settled: bool = False
    coming: Coming | None = None  # announced to the commit batcher (store_chunks)

    async def settle(self, step: Awaitable[T]) -> T:
        """Run the step that makes the metadata reference these chunks. It is
        shielded: a client that goes away does not cancel it, and the chunks stay
        pinned until its outcome says whether they are garbage."""
        self.settling = asyncio.ensure_future(step)
        result: T = await asyncio.shield(self.settling)
        self.settled = True
        self.intents.settled(self.replicas)
        return result


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
        # Chunk bytes held across all uploads, from the client's first byte to
        # the nodes' acknowledgement: the brain's memory stays bounded however
        # many clients upload at once (see upload_budget.py).
        self.budget = ByteBudget(settings.upload_buffer)

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
        on_conflict: str | ReplaceOnly = "replace",
        user_meta: dict[str, Any] | None = None,
        expect: Sequence[Expected] = (),
    ) -> UploadResult:
        """Store ``pieces`` as ``bucket/key``. ``expect``: digests checked once the
        body has ended, before the commit (a mismatch commits nothing). The
        object gets the MD5 of its bytes as ETag and ``user_meta`` as is.
        ``on_conflict``: see ``NewObject`` (checked by the commit)."""
        self.check_capacity(size_hint)
        async with self.store_chunks(pieces, expect, commit_follows=True,
                                     size_hint=size_hint) as stored:
            obj = await stored.settle(self.commits.commit(NewObject(
                bucket=bucket, key=key, size=stored.size, sha256=stored.sha256,
                content_type=content_type, chunk_size=self.settings.chunk_size,
                chunks=stored.chunks, replicas=stored.replicas, on_conflict=on_conflict,
                etag=stored.md5, user_meta=user_meta,
            ), stored.coming))
        UPLOADS.labels("ok").inc()
        UPLOAD_BYTES.inc(stored.size)
        replicas = stored.replicas
        under = sum(1 for nodes in replicas.values() if len(nodes) < self.settings.replicas)
        if under:
            log.warning("object %s committed with %d under-replicated chunks", obj.id, under)
            self.on_degraded()  # make the missing copies now, not at the next pass
        return UploadResult(obj=obj, bucket=bucket, under_replicated=under, replicas=replicas)

    @contextlib.asynccontextmanager
    async def store_chunks(self, pieces: AsyncIterable[bytes], expect: Sequence[Expected] = (),
                           commit_follows: bool = False, size_hint: int | None = None,
                           ) -> AsyncIterator[StoredChunks]:
        """Cut a stream into chunks and store each on its nodes (the stage every
        write shares: a file, an S3 part); yields them once all are stored.

        Inside the block the chunks are pinned: the caller makes the metadata
        reference them with ``stored.settle(...)`` (a commit, a part's record).
        If the block ends without that succeeding, the chunks are handed to the
        collector, which frees those nothing else uses. ``expect``: digests the
        client sent, checked once the body has ended, before anything is yielded
        (a mismatch stores no reference: the chunks become garbage).
        ``commit_follows``: the caller commits them; the commit batcher is told
        as soon as the body has ended (``stored.coming``, for its commit call).
        ``size_hint``: the body's length, or more (a form's whole length): each
        chunk reserves its bytes in the upload budget before they are read, no
        more than what is left of the body."""
        self.store.versions.check()  # refused before any byte is sent to the nodes
        hasher = StreamHasher([e.digest for e in expect])
        chunk_list: list[tuple[str, int]] = []
        placing: dict[str, asyncio.Task[list[str]]] = {}
        pinned: set[str] = set()
        slots = asyncio.Semaphore(self.settings.upload_parallel_chunks)
        stored: StoredChunks | None = None
        failed: list[BaseException] = []
        coming: Coming | None = None

        chunk_size = self.settings.chunk_size
        filling_since = [time.monotonic()]  # when the chunk being read got its bytes

        def slow(filled: int) -> bool:
            """Hand a chunk over short when it has been filling for a while and
            other uploads wait for budget: a slow sender (or hundreds of them)
            must not hold the brain's upload memory, and every other upload, for
            as long as it takes to send a whole chunk."""
            return (self.budget.waiting > 0
                    and time.monotonic() - filling_since[0] > SLOW_CHUNK_AFTER)

        chunks = rechunk(pieces, chunk_size, cut=slow)
        received = 0
        held = 0  # budget bytes reserved for the chunk being read

        def on_done(task: asyncio.Task[list[str]], size: int) -> None:
            slots.release()
            self.budget.give(size)
            if not task.cancelled() and task.exception() is not None:
                failed.append(task.exception())  # type: ignore[arg-type]

        try:
            while True:
                left = chunk_size if size_hint is None else size_hint - received
                held = await self.budget.take(max(1, min(chunk_size, left)))
                filling_since[0] = time.monotonic()
                try:
                    data = await anext(chunks)
                except StopAsyncIteration:
                    self.budget.give(held)
                    held = 0
                    break
                received += len(data)
                if len(data) > held:  # the hint was short: take the rest, never wait
                    self.budget.overdraw(len(data) - held)
                elif len(data) < held:
                    self.budget.give(held - len(data))
                held = len(data)
                TRAFFIC.received(len(data))
                if len(data) < _HASH_INLINE_BELOW:
                    cid = hasher.update_and_chunk_id(data)
                else:
                    cid = await asyncio.to_thread(hasher.update_and_chunk_id, data)
                chunk_list.append((cid, len(data)))
                if cid in placing:  # repeated content inside this object: store once
                    self.budget.give(held)
                    held = 0
                    del data
                    continue
                if failed:
                    raise failed[0]  # stop reading: a chunk could not be stored
                await self.pins.pin(cid)
                pinned.add(cid)
                await slots.acquire()
                task = asyncio.create_task(self.place(cid, data))
                task.add_done_callback(functools.partial(on_done, size=held))
                held = 0  # the task gives it back ...
                del data  # ... and holds the only reference: freed once stored
                placing[cid] = task
            for expected in expect:
                expected.check()  # before waiting on the nodes: nothing will commit
            if commit_follows:
                coming = self.commits.coming()
            results = await asyncio.gather(*placing.values())
            stored = StoredChunks(
                size=hasher.size, sha256=hasher.hexdigest(), md5=hasher.md5_hex(),
                chunks=chunk_list, replicas=dict(zip(placing, results, strict=True)),
                intents=self.collector.intents, coming=coming)
            yield stored
        finally:
            self.budget.give(held)  # (a chunk read and not sent, or the stream's end)
            held = 0
            if coming is not None:
                coming.close()
            await self._end_upload(stored.settling if stored else None,
                                   stored is not None and stored.settled,
                                   placing, pinned, dict(chunk_list))

    async def _end_upload(self, commit: asyncio.Future[Any] | None, committed: bool,
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

    async def place(self, cid: str, data: bytes | bytearray, kind: str = DATA,
                    doubtful: set[str] | None = None) -> list[str]:
        """Store one chunk (or manifest pack) on R nodes, or at least W; returns
        the nodes holding it. ``doubtful`` gets the nodes whose write failed in a
        way that may still land (a timeout, a reset, a straggler cut off)."""
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
        candidates = self.registry.write_order(cid, len(data), exclude=set(holders),
                                               meta=kind == META)
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

        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline: float | None = None  # for the last copies, once W nodes hold the chunk
        launch()
        try:
            while running:
                timeout = None if deadline is None else max(0.0, deadline - loop.time())
                done, _ = await asyncio.wait(running, timeout=timeout,
                                             return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    self._cut_stragglers(cid, running)
                    break
                for task in done:
                    node = running.pop(task)
                    exc = task.exception()
                    if exc is None:
                        acked.append(node.id)
                        continue
                    node.reserved = max(0, node.reserved - len(data))
                    errors.append(self._write_failed(cid, node, exc, doubtful))
                launch()
                if deadline is None and len(holders) + len(acked) >= quorum and running:
                    deadline = loop.time() + straggler_wait(
                        loop.time() - started, self.settings.straggler_wait)
        finally:
            for task in running:
                task.cancel()
            if doubtful is not None:
                doubtful.update(node.id for node in running.values())
        total = holders + acked
        if len(total) < quorum:
            available = len(holders) + len(candidates) - len(errors)
            raise NotEnoughNodes(
                quorum, max(0, available),
                f"chunk stored on {len(total)} node(s); "
                + ("; ".join(errors[-3:]) if errors else "no other node can take it"),
            )
        return total

    def _write_failed(self, cid: str, node: NodeView, exc: BaseException,
                      doubtful: set[str] | None) -> str:
        """A copy's write failed: what it says of the node, and why (raised again
        if it is no node's failure)."""
        if isinstance(exc, NodeFull):
            node.free = 0  # until its next heartbeat says otherwise
        elif isinstance(exc, NodeDiskError):
            # Until its next heartbeat, which says whether it writes again.
            self.registry.mark_unreachable(node.id, transfer=False)
        elif doubtful is not None and isinstance(exc, NodeUnavailable):
            doubtful.add(node.id)  # a timeout or a reset: the bytes may still land
        if not isinstance(exc, NodeError):
            raise exc
        log.warning("chunk %s: %s; trying another node", cid[:12], exc)
        return str(exc)

    def _cut_stragglers(self, cid: str, running: dict[asyncio.Task[None], NodeView]) -> None:
        """W nodes hold the chunk and these have not answered in time: go on without
        them (the caller cancels their requests). The upload commits with fewer
        than R copies and the repairer makes the rest; a copy that lands anyway is
        adopted by the orphan sweep. (Their reserved bytes stay counted until the
        node's next heartbeat: the copy may still land.) Writers skip those nodes
        until their next heartbeat (5 s at most): the next uploads, and this one's
        manifest pack, would each wait the straggler time for a paused node again
        until the monitor calls it suspect."""
        names = ", ".join(node.name for node in running.values())
        log.warning("chunk %s: %s did not answer in time; going on with the copies "
                    "made, the repairer makes the rest", cid[:12], names)
        for node in running.values():
            self.registry.mark_unreachable(node.id)

