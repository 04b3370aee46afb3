"""Group commit: many uploads finishing together share one metadata transaction.

Uploads hand their ready object to ``CommitBatcher.commit`` and wait. A single
task takes everything queued while the previous transaction ran and commits it
at once, so under load the cost of a commit (an fsync, a few statements) is
paid once per batch instead of once per object. An idle system commits a lone
upload immediately: batching adds no latency, it only absorbs bursts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from tossit.brain.models import Object
from tossit.brain.store import NewObject, Store

log = logging.getLogger("tossit.brain.commits")
MAX_BATCH = 256


class CommitBatcher:
    def __init__(self, store: Store, on_garbage: Callable[[list[str]], None]) -> None:
        self.store = store
        self.on_garbage = on_garbage
        self._queue: list[tuple[NewObject, asyncio.Future[Object]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="commit-batcher")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for _, fut in self._queue:
            if not fut.done():
                fut.set_exception(RuntimeError("the brain is shutting down"))

    async def commit(self, item: NewObject) -> Object:
        fut: asyncio.Future[Object] = asyncio.get_running_loop().create_future()
        self._queue.append((item, fut))
        self._wake.set()
        # shield: a client that disconnects must not cancel a batch others share.
        return await asyncio.shield(fut)

    def _take(self) -> list[tuple[NewObject, asyncio.Future[Object]]]:
        """Up to MAX_BATCH queued items with distinct keys (a repeated key waits
        for the next batch so that the later upload wins, as it would alone)."""
        batch: list[tuple[NewObject, asyncio.Future[Object]]] = []
        rest: list[tuple[NewObject, asyncio.Future[Object]]] = []
        keys: set[tuple[str, str]] = set()
        for entry in self._queue:
            key = (entry[0].bucket, entry[0].key)
            if len(batch) < MAX_BATCH and key not in keys:
                keys.add(key)
                batch.append(entry)
            else:
                rest.append(entry)
        self._queue = rest
        return batch

    async def _commit(self, batch: list[tuple[NewObject, asyncio.Future[Object]]]) -> None:
        objs, garbage = await self.store.commit_objects([item for item, _ in batch])
        for (_, fut), obj in zip(batch, objs, strict=True):
            if not fut.done():
                fut.set_result(obj)
        if garbage:
            self.on_garbage(garbage)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = self._take()
                try:
                    await self._commit(batch)
                except Exception as exc:
                    if len(batch) == 1:
                        if not batch[0][1].done():
                            batch[0][1].set_exception(exc)
                        continue
                    # One bad item must not fail the others: retry them one by one.
                    log.warning("batched commit of %d objects failed (%s); retrying singly",
                                len(batch), exc)
                    for entry in batch:
                        try:
                            await self._commit([entry])
                        except Exception as one:
                            if not entry[1].done():
                                entry[1].set_exception(one)
