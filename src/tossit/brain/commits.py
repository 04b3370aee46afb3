"""Group commit: uploads and deletes finishing together share one transaction.

Uploads hand their ready object, and deletes their object id, to the
``CommitBatcher`` and wait. A single task takes everything queued while the
previous transaction ran and applies it at once, so under load the cost of a
commit (an fsync, a few statements) is paid once per batch instead of once per
request. An idle system commits a lone request immediately: batching adds no
latency, it only absorbs bursts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tossit import failpoints
from tossit.brain.manifest_writer import ManifestWriter
from tossit.brain.metrics import COMMITS, COMMITTED
from tossit.brain.models import Object
from tossit.brain.store import Applied, NewObject, Store
from tossit.errors import ManifestNotStored

log = logging.getLogger("tossit.brain.commits")
MAX_BATCH = 256
PACKS_IN_FLIGHT = 16  # committed batches waiting for their manifests on the nodes
# How long a commit waits for uploads whose chunks are on their way (``coming``):
# each commit costs a transaction and a manifest pack on R nodes, so under load
# one commit for a burst of small uploads beats one for each few. An idle
# cluster never waits (nothing is coming).
LINGER = 0.010


class Coming:
    """An upload whose body has ended, on its way to a commit: the batcher waits
    a little for it (see LINGER). ``close`` once it is queued or has failed."""

    def __init__(self, arrived: Callable[[], None]) -> None:
        self._arrived: Callable[[], None] | None = arrived

    def close(self) -> None:
        arrived, self._arrived = self._arrived, None
        if arrived is not None:
            arrived()


@dataclass
class _Request:
    upload: NewObject | None = None
    delete: int | None = None
    future: asyncio.Future[Any] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


class CommitBatcher:
    def __init__(self, store: Store, on_garbage: Callable[[list[str]], None],
                 writer: ManifestWriter | None = None) -> None:
        self.store = store
        self.on_garbage = on_garbage
        self.writer = writer
        self._queue: list[_Request] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Batches committed whose pack is on its way to the nodes: the next batch
        # commits meanwhile (its clients wait for their own pack only).
        self._finishing: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(PACKS_IN_FLIGHT)
        self._coming = 0  # uploads on their way (Coming)
        self._all_here = asyncio.Event()
        self._all_here.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="commit-batcher")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for t in list(self._finishing):
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if self.writer is not None:
            await self.writer.stop_publishing()
        for req in self._queue:
            if not req.future.done():
                req.future.set_exception(RuntimeError("the brain is shutting down"))

    def coming(self) -> Coming:
        """Announce an upload that will ask for a commit soon (its body has
        ended; its last chunks are being stored)."""
        self._coming += 1
        self._all_here.clear()
        return Coming(self._arrived)

    def _arrived(self) -> None:
        self._coming -= 1
        if not self._coming:
            self._all_here.set()

    async def _submit(self, req: _Request, coming: Coming | None = None) -> Any:
        self._queue.append(req)
        if coming is not None:
            coming.close()
        self._wake.set()
        # shield: a client that disconnects must not cancel a batch others share.
        return await asyncio.shield(req.future)

    async def commit(self, item: NewObject, coming: Coming | None = None) -> Object:
        """Make an uploaded object visible (replacing any under the same name);
        ``coming``: its announcement, closed once it is queued."""
        obj: Object = await self._submit(_Request(upload=item), coming)
        return obj

    async def _linger(self) -> None:
        """Wait (LINGER at most) for the uploads on their way to be queued."""
        if self._coming and len(self._queue) < MAX_BATCH:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_here.wait(), LINGER)

    async def delete(self, object_id: int) -> bool:
        """Delete an object; False if there was none with that id."""
        found: bool = await self._submit(_Request(delete=object_id))
        return found

    def _take(self) -> list[_Request]:
        """Up to MAX_BATCH queued requests, uploads with distinct names (a
        repeated name waits for the next batch so that the later upload wins, as
        it would alone)."""
        batch: list[_Request] = []
        rest: list[_Request] = []
        keys: set[tuple[str, str]] = set()
        for req in self._queue:
            key = (req.upload.bucket, req.upload.key) if req.upload else None
            if len(batch) < MAX_BATCH and (key is None or key not in keys):
                if key is not None:
                    keys.add(key)
                batch.append(req)
            else:
                rest.append(req)
        self._queue = rest
        return batch

    async def _apply(self, batch: list[_Request]) -> None:
        """Commit a batch, write its manifest pack to the nodes, then answer."""
        uploads = [r for r in batch if r.upload is not None]
        deletes = [r for r in batch if r.delete is not None]
        written = self.writer.take_written() if self.writer is not None else []
        try:
            done = await self.store.apply(
                [r.upload for r in uploads if r.upload is not None],
                [r.delete for r in deletes if r.delete is not None], written,
                defer_pack=self.writer is not None,
            )
        except BaseException:
            if self.writer is not None:
                self.writer.recorded(written, ok=False)
            raise
        COMMITS.inc()
        COMMITTED.inc(len(batch))
        manifests: asyncio.Future[None] | None = None
        if self.writer is not None:
            self.writer.recorded(written, ok=True)
            manifests = self.writer.publish(done.entries)
        failpoints.hit("commit.before_pack", lambda: [e.key for e in done.objects])
        if done.garbage:
            self.on_garbage(done.garbage)  # (nothing is deleted while the pack waits)
        await self._slots.acquire()
        task = asyncio.create_task(self._finish(uploads, deletes, done, manifests))
        self._finishing.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._finishing.discard(task)
        self._slots.release()

    async def _finish(self, uploads: list[_Request], deletes: list[_Request],
                      done: Applied, manifests: asyncio.Future[None] | None) -> None:
        """Wait for the batch's manifest entries to be on the nodes, then answer
        its clients."""
        failure: ManifestNotStored | None = None
        if manifests is not None and self.writer is not None:
            try:
                await manifests
            except Exception as exc:
                log.warning("manifest pack of a commit batch not stored yet: %s", exc)
                failure = ManifestNotStored(getattr(exc, "message", str(exc)))
                self.writer.wake()  # retried in the background from the outbox
        for req, obj in zip(uploads, done.objects, strict=True):
            _settle(req.future, obj, failure)
        for req in deletes:
            _settle(req.future, req.delete in done.deleted, failure)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                await self._linger()
                batch = self._take()
                try:
                    await self._apply(batch)
                except Exception as exc:
                    if len(batch) == 1:
                        if not batch[0].future.done():
                            batch[0].future.set_exception(exc)
                        continue
                    # One bad request must not fail the others: retry them one by one.
                    log.warning("batched commit of %d requests failed (%s); retrying singly",
                                len(batch), exc)
                    for req in batch:
                        try:
                            await self._apply([req])
                        except Exception as one:
                            if not req.future.done():
                                req.future.set_exception(one)


def _settle(future: asyncio.Future[Any], result: Any, failure: Exception | None) -> None:
    if future.done():
        return
    if failure is not None:
        future.set_exception(failure)
    else:
        future.set_result(result)
