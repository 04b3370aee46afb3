"""The repairer: keeps every chunk at R healthy copies, and where placement wants them.

Each pass reads every referenced chunk's replicas a page at a time, asks
``repair_plan.plan_chunk`` what to do, and then

1. copies under-replicated chunks, fewest copies first: the brain only sends an
   order to the target node, which fetches the chunk from a healthy holder,
   verifies it against its id and fsyncs it (no chunk data crosses the brain);
2. drops what the plans say is safe to drop (extra copies, copies on drained
   nodes, corrupt copies, rows of copies a node lost);
3. moves chunks towards their desired placement (rebalancing), a bounded number
   per pass so a new node fills up gradually.

Everything is idempotent: a pass recomputes from the metadata, so a brain that
restarts mid-repair simply plans again; a copy that landed but was not recorded
is adopted by the next inventory sweep. Copies are pinned against the garbage
collector while in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tossit.brain.metrics import REPAIR_FAILURES, REPAIRED_BYTES, REPAIRED_CHUNKS
from tossit.brain.pins import ChunkPins
from tossit.brain.registry import (
    DEAD,
    DRAINED,
    DRAINING,
    ONLINE,
    NodeView,
    PlacementKey,
    Registry,
    ready_room,
)
from tossit.brain.repair_plan import (
    REBALANCE,
    ChunkPlan,
    Copy,
    Drop,
    NodeInfo,
    plan_chunk,
    spread_sources,
    stuck_advice,
    stuck_message,
    stuck_plans,
)
from tossit.brain.states import EventKind
from tossit.brain.store import Store
from tossit.brain.transport import NodeError, NodeFull, NodeTransport
from tossit.chunking import DATA, META
from tossit.config import BrainSettings, format_duration, format_size, plural
from tossit.periodic import Periodic

log = logging.getLogger("tossit.brain.repair")
PAGE = 500  # chunks planned between two awaits: bounds how long the loop is busy
# The name under which the leader publishes a stuck repair for the followers.
STUCK_STATE = "repair_stuck"
PER_TARGET = 2  # copies in flight towards one node
FULL_PASS_EVERY = 3600.0  # seconds: plan every chunk at least this often


@dataclass
class Progress:
    """What the status page shows about the current repair."""

    running: bool = False
    started: float | None = None
    chunks_total: int = 0  # copies planned in this pass
    bytes_total: int = 0
    chunks_done: int = 0
    bytes_done: int = 0
    failed: int = 0
    at_risk: dict[int, int] = field(default_factory=dict)  # copies -> chunks below R
    unavailable: int = 0

    def to_dict(self) -> dict[str, Any]:
        elapsed = time.time() - self.started if self.started else 0.0
        rate = self.bytes_done / elapsed if elapsed > 0 else 0.0
        left = max(0, self.bytes_total - self.bytes_done)
        return {
            "running": self.running,
            "started": (datetime.fromtimestamp(self.started, UTC).isoformat()
                        if self.started else None),
            "chunks_total": self.chunks_total, "chunks_done": self.chunks_done,
            "bytes_total": self.bytes_total, "bytes_done": self.bytes_done,
            "failed": self.failed,
            "chunks_at_risk_by_copies": {str(k): v for k, v in sorted(self.at_risk.items())},
            "chunks_unavailable": self.unavailable,
            "rate_bytes_per_s": round(rate),
            "eta_s": round(left / rate, 1) if self.running and rate > 0 else None,
        }


class Repairer(Periodic):
    name = "repair"
    wait_first = True
    retry_after = 30.0  # a failing pass (the database?) is not retried hot

    def __init__(self, settings: BrainSettings, store: Store, registry: Registry,
                 nodes: NodeTransport, pins: ChunkPins) -> None:
        super().__init__()
        self.settings = settings
        self.store = store
        self.registry = registry
        self.nodes = nodes
        self.pins = pins
        self.progress = Progress()
        self._again = False  # the last pass made progress: more may be possible now
        self._lock = asyncio.Lock()
        self._sem = asyncio.Semaphore(settings.repair_concurrency)
        self._per_target: dict[str, asyncio.Semaphore] = {}
        self._last_unavailable = 0
        self._done_bytes: Counter[str] = Counter()  # this pass: bytes copied by reason
        self._repaired: set[str] = set()  # this pass: chunks given back missing copies
        self._drain_waiting: set[str] = set()  # draining nodes already reported stuck
        # Since when a repeating condition ("stuck", "failed") has lasted, by event
        # kind: its events are one row with a count per episode (Store.add_event).
        self._since: dict[str, float] = {}
        self._meta: set[str] = set()  # this pass: which copies are manifest packs
        # Copies being read from each holder now (the first source of each order):
        # the next order starts at the least busy one (repair_plan.spread_sources).
        self._reading: Counter[str] = Counter()
        # Several brains: the progress goes to the metadata for the followers' pages.
        self.publish = False
        # Packs rewritten from the metadata (_rewrite_lost_packs): the service wakes
        # the manifest writer and hands the old packs to the collector.
        self.on_lost_packs: Callable[[list[str]], None] = lambda packs: None
        # The last full pass: the node set it saw, when, and whether it left work.
        self._full_key: PlacementKey = ()
        self._full_at = float("-inf")
        self._full_work = True
        # The last pass's stuck repair (None: not stuck), for /api/status: what
        # its event says, and what to do about it (``_report_stuck``).
        self.stuck: dict[str, Any] | None = None
        self._stuck_written = False  # published once since this brain leads

    # wake(): something changed (a node's state, a drain, a bad replica): plan again soon.

    def after_pass(self, stats: dict[str, Any]) -> None:
        # Moves come in steps: after one that did something, more may be possible.
        self._again = bool(stats["copies_done"] or stats["drops_done"])

    async def next_delay(self) -> float:
        # A pass that achieved nothing (every copy failed) waits for a change or
        # for repair_interval: no hot loop against a broken source.
        return 0.5 if self._again else self.settings.repair_interval

    # -- one pass -------------------------------------------------------------

    def _node_infos(self) -> dict[str, NodeInfo]:
        # A node unreachable for longer than dead_after plans as a dead one.
        return {n.id: NodeInfo(n.id, DEAD if n.gone else n.state, n.admin_state)
                for n in self.registry.nodes.values()}

    def _needs_full_pass(self, key: PlacementKey | None = None) -> bool:
        """While the placement key stays the same, a chunk with exactly R ok copies
        on counted nodes needed nothing last time and needs nothing now."""
        key = self.registry.placement_key() if key is None else key
        return (key != self._full_key or self._full_work
                or time.monotonic() - self._full_at > FULL_PASS_EVERY)

    async def plan(self, full: bool = True) -> list[ChunkPlan]:
        """Plans for every chunk that needs something done. ``full=False`` looks
        only at the chunks the database flags as possibly short or misplaced
        (``Store.suspect_chunk_page``): right when the nodes are as they were at
        the last quiet full pass."""
        infos = self._node_infos()
        r = self.settings.replicas
        counted = [n for n, info in infos.items() if info.counts]
        dead = [n for n, info in infos.items() if info.state == DEAD]
        plans: list[ChunkPlan] = []
        after = ""
        while True:
            if full:
                page = await self.store.chunk_replica_page(after, PAGE)
            else:
                page = await self.store.suspect_chunk_page(after, PAGE, counted, r, dead)
            if not page:
                break
            for cid, size, reps in page:
                desired, order = self.registry.repair_targets(cid, size)
                p = plan_chunk(cid, size, reps, infos, r, desired, order)
                if p.copy or p.drop or p.unavailable or p.copies < r:
                    plans.append(p)
            after = page[-1][0]
        return plans

    async def run_once(self, rebalance: bool = True, full: bool | None = None) -> dict[str, Any]:
        """One pass; returns what it did (also the admin endpoint's answer).

        ``full=None`` plans every chunk only when the nodes changed, the last full
        pass left work, or an hour went by (new uploads that fell back to other
        nodes are moved then); otherwise only the chunks the database flags."""
        async with self._lock:
            t0 = time.time()
            key = self.registry.placement_key()
            if full is None:
                full = self._needs_full_pass(key)
            plans = await self.plan(full)
            rewritten = await self._rewrite_lost_packs(plans)
            # Their rows are the writer's now: the same entries make the same pack,
            # whose new rows this pass's plan (drop the missing rows) would remove.
            plans = [p for p in plans if p.chunk_id not in rewritten]
            if full:
                self._full_key, self._full_at = key, time.monotonic()
                self._full_work = any(p.copy or p.drop for p in plans)
            r = self.settings.replicas
            urgent = sorted((c for p in plans for c in p.copy if c.reason != REBALANCE),
                            key=lambda c: c.copies)
            moves = [c for p in plans for c in p.copy if c.reason == REBALANCE]
            moves = moves[: self.settings.rebalance_batch] if rebalance else []
            drops = [d for p in plans for d in p.drop]
            at_risk = Counter(p.copies for p in plans if p.copies < r)
            self._meta = await self.store.meta_ids([c.chunk_id for c in urgent + moves])
            self._done_bytes = Counter()
            self._repaired = set()
            self.progress = Progress(
                running=bool(urgent or moves), started=t0,
                chunks_total=len(urgent) + len(moves),
                bytes_total=sum(c.size for c in urgent + moves),
                at_risk=dict(at_risk), unavailable=sum(1 for p in plans if p.unavailable))
            publisher = asyncio.create_task(self._publish_while_running())
            try:
                copied, order = await self._copy_by_urgency(urgent)
                dropped = await self._drop_all(drops)
                moved = await self._copy_all(moves)
            finally:
                self.progress.running = False
                publisher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await publisher
            if self.publish and (urgent or moves or drops):
                await self.store.set_state("repair", self.progress.to_dict())
            stats = {
                "chunks_below_target": sum(at_risk.values()),
                "unavailable": self.progress.unavailable,
                "packs_rewritten": len(rewritten),
                "copies_planned": len(urgent) + len(moves),
                "copies_done": copied + moved, "repaired": copied, "moved": moved,
                "repair_order": order,
                "drops_planned": len(drops), "drops_done": dropped,
                "failed": self.progress.failed,
                "bytes_copied": self.progress.bytes_done,
                "scope": "all chunks" if full else "flagged chunks",
                "seconds": round(time.time() - t0, 2),
            }
            await self._report(stats, urgent, moves, plans)
            await self._finish_drains(progress=bool(stats["copies_done"] or dropped))
            return stats

    async def _rewrite_lost_packs(self, plans: list[ChunkPlan]) -> set[str]:
        """Manifest packs without a readable copy are written again from the
        metadata (``LogStore.repack``; ``on_lost_packs`` wakes the writer and
        hands the old ones to the collector), rather than waiting, as a chunk
        must, for a node to bring a copy back: until then a brain disk lost would
        lose their files' manifests. Returns every manifest pack without a
        readable copy (rewritten now, on its way already, or needing nothing):
        this pass leaves them alone."""
        unavailable = [p.chunk_id for p in plans if p.unavailable]
        packs = await self.store.meta_ids(unavailable) if unavailable else set()
        if not packs:
            return set()
        moved = await self.store.log.repack(packs)
        if not moved:
            return packs
        entries = sum(moved.values())
        log.warning("%d manifest pack(s) had no readable copy: %d entries are written "
                    "again from the metadata", len(moved), entries)
        await self.store.add_event(
            EventKind.MANIFESTS_REWRITTEN,
            f"{plural(len(moved), 'manifest pack')} had no readable copy left (every copy "
            f"missing, corrupt or on a node that is away): their "
            f"{plural(entries, 'entry', 'entries')} are written to the nodes again from "
            "the metadata", severity="warning", data={"packs": sorted(moved)[:100]})
        self.on_lost_packs(sorted(moved))
        return packs

    async def _publish_while_running(self) -> None:
        while self.publish and self.progress.running:
            await self.store.set_state("repair", self.progress.to_dict())
            await asyncio.sleep(1.0)

    async def _finish_drains(self, progress: bool) -> None:
        """A draining node that holds no copy any more is drained. One that still
        holds copies while the pass could do nothing is waiting for nodes: say so
        once, in words, instead of showing a drain that silently stands still."""
        for node in [n for n in self.registry.nodes.values() if n.admin_state == DRAINING]:
            held = await self.store.ok_replica_count(node.id)
            if held == 0:
                node.admin_state = DRAINED
                self._drain_waiting.discard(node.id)
                await self.store.set_admin_state(node.id, DRAINED)
                await self.store.add_event(
                    EventKind.NODE_DRAINED, f"{node.name} drained: it holds no chunk any more and "
                    "can be removed (tossit node remove)", node_id=node.id)
            elif progress:
                self._drain_waiting.discard(node.id)
            elif node.id not in self._drain_waiting:
                self._drain_waiting.add(node.id)
                await self.store.add_event(
                    EventKind.DRAIN_WAITING, f"drain of {node.name} is waiting: its last "
                    f"{held:,} chunk copies can only go once {self.settings.replicas} "
                    f"other online nodes hold them ({self._node_shortage(node.id)})",
                    severity="warning", node_id=node.id)

    def _node_shortage(self, leaving: str) -> str:
        nodes = [n for n in self.registry.nodes.values() if n.id != leaving]
        online = [n for n in nodes if n.state == ONLINE and n.admin_state is None]
        away = [f"{n.name} {n.state}" for n in nodes
                if n.state != ONLINE and n.admin_state is None]
        full = [n.name for n in online if not n.writable(1, self.registry.high_water,
                                                        time.monotonic())]
        why = [f"{len(online)} online"]
        if away:
            why.append(", ".join(sorted(away)))
        if full:
            why.append("full: " + ", ".join(sorted(full)))
        return "; ".join(why)

    def _lost_from(self, plans: list[ChunkPlan]) -> str:
        """" from node-3 (dead)": whose copies the repairs replaced, and why."""
        lost = Counter(why for p in plans if p.copy and p.copies < self.settings.replicas
                       for why in p.lost_on)
        if not lost:
            return ""
        names = []
        for (node_id, why), _ in lost.most_common(3):
            node = self.registry.get(node_id)
            names.append(f"{node.name if node else node_id[:12]} ({why})")
        more = f" and {len(lost) - 3} more" if len(lost) > 3 else ""
        return " from " + ", ".join(names) + more

    async def _report(self, stats: dict[str, Any], urgent: list[Copy], moves: list[Copy],
                      plans: list[ChunkPlan]) -> None:
        took = stats["seconds"]
        done = self._done_bytes
        if stats["repaired"]:
            reasons = ", ".join(sorted({c.reason for c in urgent}))
            await self.store.add_event(
                EventKind.REPAIR, f"re-made copies of {self._chunks_and_packs(self._repaired)} "
                f"({format_size(done.total() - done[REBALANCE])}){self._lost_from(plans)} "
                f"in {format_duration(took)} ({reasons})", data=stats)
        if stats["moved"]:
            await self.store.add_event(
                EventKind.REBALANCE, f"moved copies of {plural(stats['moved'], 'chunk')} "
                f"({format_size(done[REBALANCE])}) towards their placement", data=stats)
        if stats["failed"]:
            await self.store.add_event(
                EventKind.REPAIR_FAILED,
                f"{plural(stats['failed'], 'copy', 'copies')} could not be made; trying again "
                "on the next pass",
                severity="warning", data=stats, repeat_key=self._episode("repair_failed"))
        else:
            self._since.pop("repair_failed", None)
        await self._report_stuck(plans)
        if stats["unavailable"] and stats["unavailable"] != self._last_unavailable:
            await self.store.add_event(
                EventKind.CHUNKS_UNAVAILABLE,
                f"{plural(stats['unavailable'], 'chunk', verb=('has', 'have'))} no readable copy "
                "(every copy is on a node that is away, missing or corrupt)", severity="error")
        self._last_unavailable = stats["unavailable"]

    def _chunks_and_packs(self, ids: set[str]) -> str:
        """"12 chunks and 2 manifest packs": both are blobs the repairer copies,
        but an operator counts files' chunks."""
        packs = len(ids & self._meta)
        words = [plural(len(ids) - packs, "chunk")] if len(ids) > packs else []
        if packs:
            words.append(plural(packs, "manifest pack"))
        return " and ".join(words)

    def _episode(self, kind: str) -> str:
        """The repeat key of a condition that lasts over passes: the same until it
        clears, so each pass's event adds to one row instead of a new one."""
        return f"since {self._since.setdefault(kind, time.time()):.3f}"

    def _why_nodes_cannot_take(self) -> tuple[int, list[tuple[str, str]]]:
        """How many nodes can take a copy now (room for a real chunk, as ``/ready``
        counts them), and each other node's name with why not."""
        now, can, why = time.monotonic(), 0, []
        room = ready_room(self.settings.chunk_size)
        for n in sorted(self.registry.nodes.values(), key=lambda v: v.name):
            if n.writable(room, self.registry.high_water, now):
                can += 1
            else:
                why.append((n.name, n.why_not_writable(now)))
        return can, why

    async def _report_stuck(self, plans: list[ChunkPlan]) -> None:
        """Chunks below R with nowhere to put the missing copies: the repair is
        stuck, and says why, as one event counted over the passes it lasts (and
        in ``self.stuck``, for the status: published for the followers too)."""
        r = self.settings.replicas
        stuck = stuck_plans(plans, r)
        if not stuck:
            await self._set_stuck(None)
            if self._since.pop("repair_stuck", None) is not None:
                await self.store.add_event(
                    EventKind.REPAIR_RESUMED, "repair is no longer stuck: the missing copies can "
                    "be made again")
            return
        first = "repair_stuck" not in self._since
        key = self._episode("repair_stuck")
        can_take, reasons = self._why_nodes_cannot_take()
        why = [f"{name} is {reason}" for name, reason in reasons]
        msg = stuck_message(stuck, r, can_take, why)
        if first:
            log.warning("%s", msg)
        await self._set_stuck({
            "chunks": len(stuck), "nodes_can_take": can_take, "replicas": r, "why": why,
            "message": msg, "advice": stuck_advice(r, can_take, reasons),
            "since": datetime.fromtimestamp(self._since["repair_stuck"], UTC).isoformat()})
        await self.store.add_event(
            EventKind.REPAIR_STUCK, msg, severity="error" if min(p.copies for p in stuck) <= 1
            else "warning", repeat_key=key,
            data={"chunks": len(stuck), "nodes_can_take": can_take, "why": why,
                  "sample": [p.chunk_id for p in stuck[:20]]})

    def forget_stuck(self) -> None:
        """No longer leading: what this brain knew is the next leader's to say."""
        self.stuck = None
        self._stuck_written = False

    async def _set_stuck(self, stuck: dict[str, Any] | None) -> None:
        """Keep what the status says about a stuck repair; with several brains,
        write it where the followers read it (only when it changed)."""
        changed = stuck != self.stuck or not self._stuck_written
        self.stuck = stuck
        if self.publish and changed:
            # (The first time too: a brain that took over replaces what the last
            # leader left.)
            await self.store.set_state(STUCK_STATE, {"stuck": stuck})
            self._stuck_written = True

    # -- copies ----------------------------------------------------------------

    async def _copy_by_urgency(self, copies: list[Copy]) -> tuple[int, list[int]]:
        """Chunks with one copy left are all copied before those with two, etc."""
        done, order = 0, []
        for n in sorted({c.copies for c in copies}):
            done += await self._copy_all([c for c in copies if c.copies == n])
            order.append(n)
        return done, order

    async def _copy_all(self, copies: list[Copy]) -> int:
        results = await asyncio.gather(*(self._copy(c) for c in copies))
        return sum(results)

    async def _copy(self, c: Copy) -> bool:
        per_target = self._per_target.setdefault(c.target, asyncio.Semaphore(PER_TARGET))
        await self.pins.pin(c.chunk_id)
        try:
            async with per_target, self._sem:
                target = self.registry.get(c.target)
                sources = self._sources(c)
                if target is None or not sources:
                    self.progress.failed += 1
                    return False
                first = sources[0].id
                self._reading[first] += 1
                try:
                    await self.nodes.replicate(target, c.chunk_id, sources,
                                               META if c.chunk_id in self._meta else DATA)
                except NodeError as exc:
                    log.info("copy of %s to %s failed: %s", c.chunk_id[:12], target.name, exc)
                    if isinstance(exc, NodeFull):
                        target.free = 0  # not a target until its next heartbeat says otherwise
                    REPAIR_FAILURES.inc()
                    self.progress.failed += 1
                    return False
                finally:
                    self._reading[first] -= 1
                    if self._reading[first] <= 0:
                        del self._reading[first]
                await self.store.add_replicas(c.chunk_id, [c.target])
                REPAIRED_CHUNKS.labels(c.reason).inc()
                REPAIRED_BYTES.labels(c.reason).inc(c.size)
                self.progress.chunks_done += 1
                self.progress.bytes_done += c.size
                self._done_bytes[c.reason] += c.size
                if c.reason != REBALANCE:
                    self._repaired.add(c.chunk_id)
                return True
        finally:
            self.pins.unpin(c.chunk_id)

    def _sources(self, c: Copy) -> list[NodeView]:
        """The holders to read this copy from, spread over all of them (every
        holder listed: the target falls back to the next when one fails)."""
        views = {v.id: v for v in (self.registry.get(s) for s in c.sources) if v}
        tier = {n: (v.state != ONLINE) * 2 + (v.admin_state is not None)
                for n, v in views.items()}
        return [views[n] for n in spread_sources(c.chunk_id, list(views), self._reading, tier)]

    # -- drops -----------------------------------------------------------------

    async def _drop_all(self, drops: list[Drop]) -> int:
        done = 0
        for d in drops:
            if not d.on_node:
                await self.store.remove_replica(d.chunk_id, d.node_id)
                done += 1
                continue
            node = self.registry.get(d.node_id)
            if node is None or self.pins.is_pinned(d.chunk_id):
                continue
            try:
                async with self._sem:
                    await self.nodes.delete_chunk(node, d.chunk_id)
            except NodeError as exc:
                log.info("could not drop %s on %s: %s", d.chunk_id[:12], node.name, exc)
                continue
            await self.store.remove_replica(d.chunk_id, d.node_id)
            done += 1
        return done
