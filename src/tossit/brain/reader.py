"""The read path: verified chunks, streamed in order with bounded read-ahead.

Every chunk is checked against its SHA-256 before a byte of it is sent. A
replica that is unreachable, missing or corrupt is skipped for the next one
and recorded (and the bad copy reported in the event log for repair). Before
the response starts, the first chunk is already fetched and every chunk is
known to have a copy on a live node, so the common failures become a clear
JSON error instead of a 200 with a broken body; a failure after that aborts the
connection, which clients see as a truncated transfer, never as success.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from tossit.brain.ingest import straggler_wait
from tossit.brain.metrics import CORRUPT_COPIES, DOWNLOAD_BYTES, READ_HEDGES, TRAFFIC
from tossit.brain.registry import READABLE_STATES, NodeView, Registry
from tossit.brain.states import EventKind
from tossit.brain.store import ChunkPlacement, Store
from tossit.brain.transport import ChunkMissing, NodeError, NodeTransport
from tossit.errors import ChunkUnavailable
from tossit.ranges import ByteRange, ChunkSlice, chunk_slices

log = logging.getLogger("tossit.brain.reader")
T = TypeVar("T")
_VERIFY_INLINE_BELOW = 256 * 1024


@dataclass
class Download:
    """A prepared download: the first piece is already fetched and verified.
    ``whole``: the entire body when that first piece is all of it (a file of
    one chunk, a range inside one), to answer in one response body rather
    than a stream (a streamed response costs a task and a task group per
    request: a tenth of a small download's CPU)."""

    length: int
    body: AsyncIterator[bytes]
    whole: bytes | None = None


class Reader:
    def __init__(
        self, store: Store, registry: Registry, nodes: NodeTransport, read_ahead: int,
        on_bad_replica: Callable[[], None] = lambda: None, *, hedge_after: float,
    ) -> None:
        """``hedge_after``: seconds a copy may take before the next one is asked
        too (at least; the ``straggler_wait`` setting, as for uploads)."""
        self.store = store
        self.registry = registry
        self.nodes = nodes
        self.read_ahead = read_ahead
        self.hedge_after = hedge_after
        self.on_bad_replica = on_bad_replica  # wakes the repairer

    async def fetch_verified(self, placement: ChunkPlacement) -> bytes:
        """The chunk's bytes from the best good replica, verified.

        A copy that fails (unreachable, missing, corrupt) is followed at once by
        the next one. A copy that is only slow (a paused node, a hung disk: it
        answers nothing until ``node_timeout``) is not waited for: the first copy
        asked gets ``_hedge_delay``, then it is left (asked again last) and the
        others are asked, each joined by the next one when it is late in turn;
        the first good answer wins and the late nodes are read last for a few
        seconds. The common case, a first copy that answers in time, is one
        plain await under a timer (a task per read cost small downloads about
        a tenth of the brain's CPU)."""
        errors: list[str] = []
        waiting = deque(self.registry.read_order(placement.ok_nodes()))
        if len(waiting) > 1:  # (the only copy is waited for in _hedged)
            node = waiting.popleft()
            attempt = self._copy(node, placement, errors)
            try:
                data = await _within(self._hedge_delay([node]), attempt)
            except _Late:
                READ_HEDGES.inc()
                self.registry.mark_slow(node.id)
                errors.append(f"{node.name} did not answer in time")
                waiting.append(node)
            else:
                if data is not None:
                    return data
        return await self._hedged(placement, waiting, errors)

    async def _hedged(self, placement: ChunkPlacement, waiting: deque[NodeView],
                      errors: list[str]) -> bytes:
        """The other copies after the first failed or was late (or none at all):
        each asked in turn, joined by the next one when it is late too; the
        first good answer wins."""
        asked: dict[asyncio.Task[bytes | None], NodeView] = {}

        def ask(node: NodeView) -> None:
            asked[asyncio.create_task(self._copy(node, placement, errors))] = node

        try:
            while waiting or asked:
                if not asked:
                    ask(waiting.popleft())
                done, _ = await asyncio.wait(asked, timeout=self._hedge_delay(asked.values()),
                                             return_when=asyncio.FIRST_COMPLETED)
                if not done and waiting:  # every copy asked is late: ask the next one too
                    READ_HEDGES.inc()
                    ask(waiting.popleft())
                    continue
                if not done:
                    # Nothing left to ask: the late copies are waited for while their
                    # nodes may still answer, not for the whole node timeout (a
                    # paused node is called offline within seconds).
                    for task, node in list(asked.items()):
                        view = self.registry.get(node.id)
                        if view is None or view.state not in READABLE_STATES:
                            task.cancel()
                            del asked[task]
                            errors.append(f"{node.name} is "
                                          f"{view.state if view else 'removed'} and did not "
                                          "answer")
                    continue
                for task in done:
                    asked.pop(task)
                    data = task.result()
                    if data is not None:
                        for slow in asked.values():
                            self.registry.mark_slow(slow.id)
                        return data
        finally:
            for task in asked:
                task.cancel()
        raise ChunkUnavailable(placement.chunk_id, "; ".join(errors) or "no replica recorded")

    def _hedge_delay(self, asked: Iterable[NodeView]) -> float:
        """How long the copies asked may take before the next one is asked too:
        ``hedge_after`` at least, or 4 times what the slowest of those nodes
        took lately (a big chunk on a busy disk is slow everywhere alike)."""
        usual = max(n.usual_transfer_ms for n in asked)
        return straggler_wait(usual / 1000, self.hedge_after)

    async def _copy(self, node: NodeView, placement: ChunkPlacement,
                    errors: list[str]) -> bytes | None:
        """One copy's bytes if they are good; else None, with the reason in
        ``errors`` (and a missing or corrupt copy reported for repair)."""
        node.reads_out += 1
        try:
            data = await self.nodes.get_chunk(node, placement.chunk_id)
        except ChunkMissing as exc:
            errors.append(str(exc))
            # shielded: a faster copy winning meanwhile must not lose the report
            await asyncio.shield(self._report_bad(placement.chunk_id, node.id, "missing"))
            return None
        except NodeError as exc:
            errors.append(str(exc))
            return None
        finally:
            node.reads_out -= 1
        if len(data) < _VERIFY_INLINE_BELOW:
            digest = hashlib.sha256(data).hexdigest()
        else:
            digest = await asyncio.to_thread(_sha256_hex, data)
        if digest == placement.chunk_id and len(data) == placement.size:
            return data
        errors.append(f"{node.name} returned corrupt data")
        CORRUPT_COPIES.labels("read").inc()
        await asyncio.shield(self._report_bad(placement.chunk_id, node.id, "corrupt"))
        return None

    async def _report_bad(self, chunk_id: str, node_id: str, state: str) -> None:
        node = self.registry.get(node_id)
        name = node.name if node else node_id
        log.warning("replica of chunk %s on %s is %s", chunk_id[:12], name, state)
        try:
            await self.store.set_replica_state(chunk_id, node_id, state)
            await self.store.add_event(
                EventKind(f"replica_{state}"),
                f"chunk {chunk_id[:12]} on {name} is {state}; the read goes on to the "
                "other copies, and the repairer re-makes it from a good one",
                severity="warning", node_id=node_id,
                data={"chunk": chunk_id},
            )
        except Exception:
            log.exception("could not record bad replica")
        self.on_bad_replica()

    def check_available(self, placements: list[ChunkPlacement]) -> None:
        for p in placements:
            live = [n for n in p.ok_nodes()
                    if (v := self.registry.get(n)) is not None and v.state in READABLE_STATES]
            if not p.ok_nodes():
                raise ChunkUnavailable(p.chunk_id, "no good copy is recorded")
            if not live:
                raise ChunkUnavailable(p.chunk_id, "every node holding it is offline")

    async def open(
        self, placements: list[ChunkPlacement], rng: ByteRange | None
    ) -> Download:
        slices = chunk_slices([p.size for p in placements], rng)
        needed = [placements[s.index] for s in slices]
        self.check_available(needed)
        length = sum(s.hi - s.lo for s in slices)
        if not slices:
            return Download(0, _empty())
        first = await self.fetch_verified(placements[slices[0].index])
        if len(slices) == 1:
            piece = _cut(first, slices[0])
            _sent(len(piece))
            return Download(length, _one(piece), whole=piece)
        return Download(length, self._stream(placements, slices, first))

    async def _stream(
        self, placements: list[ChunkPlacement], slices: list[ChunkSlice], first: bytes,
    ) -> AsyncIterator[bytes]:
        ahead: deque[asyncio.Task[bytes]] = deque()
        nxt = 1
        try:
            def refill() -> None:
                nonlocal nxt
                while nxt < len(slices) and len(ahead) < self.read_ahead:
                    p = placements[slices[nxt].index]
                    ahead.append(asyncio.create_task(self.fetch_verified(p)))
                    nxt += 1

            refill()
            yield _cut(first, slices[0])
            _sent(slices[0].hi - slices[0].lo)
            del first
            for s in slices[1:]:
                data = await ahead.popleft()
                refill()
                yield _cut(data, s)
                _sent(s.hi - s.lo)
        finally:
            for t in ahead:
                t.cancel()


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _cut(data: bytes, s: ChunkSlice) -> bytes:
    """The part of a chunk's bytes a slice covers (the bytes themselves, uncopied,
    when it covers them all)."""
    return data[s.lo : s.hi] if (s.lo, s.hi) != (0, len(data)) else data


def _sent(n: int) -> None:
    DOWNLOAD_BYTES.inc(n)
    TRAFFIC.sent(n)


async def _one(piece: bytes) -> AsyncIterator[bytes]:
    yield piece


async def _empty() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator


class _Late(Exception):
    """An attempt took longer than it was given (``_within``)."""


async def _within(seconds: float, attempt: Coroutine[Any, Any, T]) -> T:
    """``attempt``'s result; ``_Late`` (the attempt cancelled) if it takes longer
    than ``seconds``. asyncio.timeout does the same at about three times the
    cost, which small downloads notice: a bare timer cancels this task, and a
    cancellation that is not the timer's goes on up."""
    task = asyncio.current_task()
    assert task is not None
    fired = False

    def late() -> None:
        nonlocal fired
        fired = True
        task.cancel()

    timer = asyncio.get_running_loop().call_later(seconds, late)
    try:
        return await attempt
    except asyncio.CancelledError:
        if fired and task.uncancel() == 0:
            raise _Late from None
        raise
    finally:
        timer.cancel()
