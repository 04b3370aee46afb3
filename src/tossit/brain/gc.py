"""The garbage collector: frees chunk copies that no object uses any more.

Three sources of garbage, one procedure:

* chunks a delete or an overwrite left at zero references, and those of a
  multipart upload's parts when a part is replaced or the upload aborted,
  expired or completed without them (``release``),
* chunks written for an upload that failed before it committed (``release``),
* chunks found on a node that the metadata does not know at all (the orphan
  sweep, e.g. after a brain crash mid-upload), once older than ``gc_grace``, and
  only if the intent journal says this brain wrote them (``intents``): absence
  from the metadata alone never deletes anything, and a node whose data is
  mostly unknown stops every deletion (``strangers``).

A chunk is claimed (``ChunkPins.begin_delete``) before the metadata is checked
and its copies deleted, so an upload that starts using it in the meantime waits
for the delete to finish and then writes it again: no committed object ever
points at a chunk the collector removed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tossit.brain.intents import IntentJournal
from tossit.brain.pins import ChunkPins
from tossit.brain.registry import READABLE_STATES, Registry
from tossit.brain.states import EventKind
from tossit.brain.store import Store
from tossit.brain.strangers import RecoveryAlarm, Suspect, is_stranger
from tossit.brain.transport import NodeError, NodeTransport
from tossit.chunking import META, content_id
from tossit.config import BrainSettings, format_size, plural
from tossit.manifests import VERSION_GAP, PackError, decode_pack
from tossit.periodic import Periodic

BEHIND_STATE = "metadata_behind"  # this metadata was found behind the nodes' packs
ALARM_STATE = "recovery_alarm"  # the leader's alarm, for followers (cluster_state row)
log = logging.getLogger("tossit.brain.gc")
_PARALLEL_DELETES = 16
# A failed upload's chunk writes that were already on their way still land on the
# node after the brain gave up on them, possibly after the collector's delete. So
# each such chunk is deleted once more this many seconds later, instead of waiting
# for the orphan sweep's gc_grace (an hour by default) to free the space.
LATE_WRITE_RECHECK = 10.0
DELETES_PER_REQUEST = 500  # chunk ids in one delete request to a node
HELD_RETRY = 1.0  # seconds before a pass held for waiting manifests tries again
EXPIRE_EVERY = 10.0  # seconds between two tombstone expiries


def gc_summary(stats: Mapping[str, int]) -> str:
    """A collector pass in words: the space freed (every copy counted), and
    what it was."""
    parts = []
    if stats["replicas_deleted"]:
        what = (f"{plural(stats['chunks_dropped'], 'chunk')} no file uses any more"
                if stats["chunks_dropped"] else "chunks no file uses any more")
        parts.append(f"{plural(stats['replicas_deleted'], 'copy', 'copies')} of {what}")
    if stats["orphans_deleted"]:
        parts.append(f"{plural(stats['orphans_deleted'], 'stray copy', 'stray copies')} "
                     "that no file refers to (failed uploads, or deleted while a node was away)")
    return f"garbage collection freed {format_size(stats['bytes_freed'])}: " + " and ".join(parts)


class Collector(Periodic):
    name = "garbage collection"
    wait_first = True  # released chunks wake it; nothing to do at start
    retry_after = 10.0

    def __init__(
        self, settings: BrainSettings, store: Store, registry: Registry, nodes: NodeTransport,
        pins: ChunkPins,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.store = store
        self.registry = registry
        self.nodes = nodes
        self.pins = pins
        self._pending: set[str] = set()
        self._sizes: dict[str, int] = {}  # of released chunks, when the caller knew
        self._late: dict[str, float] = {}  # chunk -> when to delete it once more
        self._lock = asyncio.Lock()
        self._sem = asyncio.Semaphore(_PARALLEL_DELETES)
        self.on_missing: Callable[[], None] = lambda: None  # wakes the repairer
        self._sweep_soon = False
        self._last_sweep = time.monotonic()
        self._held = False  # the last pass was held for manifests: try again soon
        # After a rebuild from the nodes, blobs the new metadata does not know may
        # belong to files whose manifests are on a node that was away: no orphan is
        # deleted before this time (epoch seconds).
        self.keep_orphans_until = 0.0
        # What says this brain's metadata may not be the cluster's (strangers,
        # packs newer than it, nodes of another cluster): while it blocks, nothing
        # is deleted, since what looks like garbage here may be what the real
        # metadata uses. Cleared by a restart.
        self.alarm = RecoveryAlarm()
        # With several brains, the leader (whose loops see the nodes) writes the
        # alarm to the shared database for the followers' status (``publish``).
        self.publish = False
        self._published: dict[str, Any] | None = None
        # The orphan sweep's positive knowledge: what this brain wrote (uploads
        # note their chunks in it).
        self.intents = IntentJournal(store, settings.intent_keep)
        self.unknown_kept = (0, 0)  # unknown copies the last sweep kept: count, bytes
        # Packs on the nodes whose recording in the metadata is pending (the writer's).
        self.written_packs: Callable[[], set[str]] = set
        self.written_versions: Callable[[], set[int]] = set
        self._packs_checked: dict[str, bool] = {}  # unknown pack -> foreign?
        self._packs_dropped = True  # since the last tombstone expiry (True: at start)
        self._expired_at = float("-inf")

    def request_sweep(self) -> None:
        """Compare inventories soon (a node joined or came back)."""
        self._sweep_soon = True
        self._wake.set()

    def release(self, chunk_ids: Iterable[str], sizes: Mapping[str, int] | None = None) -> None:
        """These chunks may have become garbage; check them soon. ``sizes``: what
        the caller knows of their sizes (chunks of a failed upload have no row),
        for the report of the space freed."""
        self._pending.update(chunk_ids)
        if sizes:
            self._sizes.update(sizes)
        self._wake.set()

    async def next_delay(self) -> float:
        """gc_interval, sooner for chunks due later (``_late``) or held by packs."""
        timeout = self.settings.gc_interval
        if self._late:
            timeout = min(timeout, max(0.1, min(self._late.values()) - time.monotonic()))
        if self._held:
            timeout = min(timeout, HELD_RETRY)
        return timeout

    async def tick(self) -> dict[str, Any]:
        """The timed pass: orphans are swept only every gc_interval (or when asked)."""
        sweep = self._sweep_soon or time.monotonic() - self._last_sweep >= self.settings.gc_interval
        self._sweep_soon = False
        try:
            return await self.run_once(sweep_orphans=sweep)
        finally:
            if sweep:
                self._last_sweep = time.monotonic()
            await asyncio.sleep(0.2)  # batch bursts of releases

    async def run_once(self, sweep_orphans: bool = True) -> dict[str, Any]:
        """One pass: released chunks, zero-reference rows, then (optionally) orphans."""
        async with self._lock:
            self._held = False
            stats = {"replicas_deleted": 0, "chunks_dropped": 0, "orphans_deleted": 0,
                     "adopted": 0, "bytes_freed": 0}
            pending, self._pending = self._pending, set()
            now = time.monotonic()
            due = [c for c, at in self._late.items() if at <= now]
            for c in due:
                del self._late[c]
            await self._collect_unknown(pending, stats, late=set(due) - pending)
            await self._expire_tombstones()
            while True:
                garbage = await self.store.garbage_chunks(limit=1000)
                garbage = [(c, n) for c, n in garbage if not self.pins.is_deleting(c)]
                if not garbage or await self._manifests_waiting(stats, await self._committed()):
                    break
                done = await self._collect_garbage(garbage, stats)
                if not done:
                    break  # what is left waits for offline nodes or pinned uploads
            if sweep_orphans:
                await self._sweep_orphans(stats)
            if stats.get("missing"):
                self.on_missing()
            if stats["replicas_deleted"] or stats["orphans_deleted"]:
                msg = gc_summary(stats)
                log.info(msg)
                await self.store.add_event(EventKind.GC, msg, data=stats)
        await self.publish_alarm()
        return stats

    async def publish_alarm(self) -> None:
        """Write the recovery alarm where followers read it, when it changed."""
        if not self.publish:
            return
        state = {"message": self.alarm.message(), "blocks_deletion": self.alarm.blocks_deletion}
        if state != self._published:
            await self.store.set_state(ALARM_STATE, state)
            self._published = state

    async def _committed(self) -> int:
        """The newest version committed so far. Read after the garbage list: any
        commit that made those chunks garbage is at or below it."""
        return await self.store.log.max_version()

    async def _manifests_waiting(self, stats: dict[str, Any], up_to: int) -> bool:
        """Garbage is deleted only once the manifests of the commits that made it
        garbage (versions up to ``up_to``) are on the nodes: the nodes must not lose
        a file's old manifest, or the chunks it names, before they hold the newer
        one. Packs of later commits do not hold it up (uploads that never stop
        never stall the collector). A held pass is tried again soon."""
        # An entry moves one way: in no pack, then in a pack of the outbox, then out.
        # So the earlier stage is read first: an entry packed between the two reads
        # is then found in the outbox. (Read the other way round, it could be in
        # neither, and the garbage it holds back would be deleted too soon.)
        waiting = 0
        if self.store.pack_key is not None:
            # Entries in no pack yet: on their way (ManifestWriter.publish), or
            # left by a brain that stopped before they were out.
            waiting += len(await self.store.log.unpacked(up_to) - self.written_versions())
        # A pack already on the nodes but not recorded yet counts as out.
        waiting += len(await self.store.log.outbox_ids(up_to) - self.written_packs())
        if waiting:
            stats["held_for_manifests"] = waiting
            self._held = True
        return bool(waiting)

    async def _check_foreign(self, node: Any, packs: list[str]) -> None:
        """Unknown manifest packs on a node: stale copies are orphans like any
        other; but a pack of this cluster with versions newer than any this brain
        logged means its metadata is behind: freeze deletions, and say so."""
        if self.alarm.behind or not packs or self.store.pack_key is None:
            return
        outbox = await self.store.log.outbox_ids()
        unseen = await self._unseen_versions()
        for pid in packs:
            if pid in outbox or self.pins.is_pinned(pid):
                continue  # being written right now
            if pid not in self._packs_checked:
                try:
                    data = await self.nodes.get_chunk(node, pid)
                    if content_id(data, META) != pid:
                        continue  # a damaged copy: the scrubber's business
                    entries = decode_pack(data, self.store.pack_key)
                except (NodeError, PackError):
                    continue
                self._packs_checked[pid] = any(unseen(e.version) for e in entries)
            if self._packs_checked[pid]:
                self.alarm.behind = (
                    f"{node.name} holds manifest pack {pid[:12]} with changes newer than this "
                    "brain's metadata (a new empty database, or an old backup restored): "
                    "nothing is deleted until this is sorted out; run 'tossit drill', and "
                    "'tossit recover' to rebuild the metadata (docs/operations.md)")
                log.critical("%s", self.alarm.behind)
                # New changes would reuse the versions and file ids of the ones
                # this metadata lacks: none until the metadata is rebuilt.
                self.store.versions.refusal = (
                    f"{node.name} holds changes newer than this brain's metadata; stop "
                    "the brain and run 'tossit recover' with every node "
                    "(docs/operations.md)")
                # Kept in this metadata: a restart must not take changes again
                # until the collector has looked at the packs once more. A
                # recovery writes a new database, without it.
                await self.store.set_state(BEHIND_STATE, {
                    "alarm": self.alarm.behind, "refusal": self.store.versions.refusal})
                await self.store.add_event(EventKind.METADATA_BEHIND, self.alarm.behind,
                                           severity="error",
                                           node_id=node.id, data={"pack": pid})
                return

    async def resume_alarm(self) -> None:
        """At start: metadata found behind the nodes before stays so (deletions
        frozen, changes refused) until it is rebuilt."""
        state = await self.store.get_state(BEHIND_STATE)
        if state and state.get("alarm"):
            self.alarm.behind = str(state["alarm"])
            self.store.versions.refusal = str(state.get("refusal") or state["alarm"])
            log.critical("%s", self.alarm.behind)

    async def _unseen_versions(self) -> Callable[[int], bool]:
        """Which versions this metadata cannot have made nor known: above its
        newest, or in the gap a recovery left above the newest it found
        (``manifests.VERSION_GAP``): the brain never hands those out, so an
        entry there is from a history the recovery did not read."""
        newest = await self.store.log.max_version()
        recovered = await self.store.get_state("recovered")
        floor = int(recovered.get("max_version") or 0) if recovered else None

        def unseen(version: int) -> bool:
            return version > newest or (
                floor is not None and floor < version <= floor + VERSION_GAP)

        return unseen

    async def _expire_tombstones(self) -> None:
        """Tombstones whose older versions are all gone from the nodes (or that a
        newer entry made moot): their packs may go too (garbage now: the pass
        below collects them). It reads every needed tombstone, so at most every
        ``EXPIRE_EVERY`` seconds, and only after a pass dropped a pack."""
        now = time.monotonic()
        if not self._packs_dropped or now - self._expired_at < EXPIRE_EVERY:
            return
        self._packs_dropped = False
        self._expired_at = now
        await self.store.log.expire_tombstones()

    async def _delete_copy(self, node_id: str, cid: str) -> bool | None:
        """Delete one copy: True if deleted, False if there was none, None if
        the node could not be asked (offline, error): try again later."""
        node = self.registry.get(node_id)
        if node is None:
            return False  # the node is unknown: nothing to delete there
        if node.state not in READABLE_STATES or self.alarm.blocks_deletion:
            return None
        async with self._sem:
            try:
                return await self.nodes.delete_chunk(node, cid)
            except NodeError as exc:
                log.info("could not delete chunk %s on %s yet: %s", cid[:12], node.name, exc)
                return None

    async def _claim(self, cids: Iterable[str]) -> list[str]:
        """Claim chunks that no upload holds and that the metadata does not use."""
        claimed = [c for c in cids if self.pins.begin_delete(c)]
        known = await self.store.known_chunks(claimed)
        keep = [c for c in claimed if known.get(c, 0) > 0]
        for c in keep:
            self.pins.end_delete(c)
        return [c for c in claimed if known.get(c, 0) <= 0]

    async def _collect_unknown(self, pending: set[str], stats: dict[str, Any],
                               late: set[str] | None = None) -> None:
        """Released chunks with no metadata row: delete everywhere they may be,
        and once more ``LATE_WRITE_RECHECK`` seconds later (``late``: that time)."""
        late = late or set()
        if not pending and not late:
            return
        everything = pending | late
        known = await self.store.known_chunks(list(everything))
        unknown = [c for c in everything if c not in known]
        retry = {c for c in unknown if self.pins.is_pinned(c)}
        claimed = await self._claim(c for c in unknown if c not in retry)
        claimed = [c for c in claimed if c not in known]
        live = self.registry.online_ids()
        try:
            results = await asyncio.gather(
                *(self._delete_copy(n, c) for c in claimed for n in live)
            )
            stats["orphans_deleted"] += sum(1 for r in results if r)
            pairs = [c for c in claimed for _ in live]
            stats["bytes_freed"] += sum(self._sizes.get(c, 0)
                                        for c, r in zip(pairs, results, strict=True) if r)
        finally:
            for c in claimed:
                self.pins.end_delete(c)
        for c in everything - retry:  # settled (deleted, in use, or held): sizes not needed
            self._sizes.pop(c, None)
        self._pending |= retry
        again = time.monotonic() + LATE_WRITE_RECHECK
        self._late.update((c, again) for c in claimed if c not in late)

    async def _collect_garbage(
        self, garbage: list[tuple[str, list[str]]], stats: dict[str, Any]
    ) -> int:
        """Delete the claimed garbage's copies, one request per node for all of its
        share, then forget them in one transaction."""
        claimed = set(await self._claim(c for c, _ in garbage))
        fully: list[str] = []
        try:
            size_of = await self.store.chunk_sizes(list(claimed))
            per_node: dict[str, list[str]] = {}
            # A manifest pack may have a copy on a node the metadata does not list:
            # a write that timed out (a paused node) can still land. Left there,
            # once the tombstones that hid its entries expire, a rebuild would take
            # its old entries for the newest. So a dropped pack is deleted on every
            # node that answers (deleting a blob a node lacks is a no-op).
            packs = await self.store.meta_ids(list(claimed))
            readable = [n.id for n in self.registry.nodes.values()
                        if n.state in READABLE_STATES]
            for cid, holders in garbage:
                if cid in claimed:
                    for n in dict.fromkeys([*holders, *(readable if cid in packs else ())]):
                        per_node.setdefault(n, []).append(cid)
            answers = dict(zip(per_node, await asyncio.gather(
                *(self._delete_copies(n, cids) for n, cids in per_node.items())), strict=True))
            forget = [(cid, n) for n, got in answers.items()
                      for cid, gone in got.items() if gone is not None]
            await self.store.remove_replicas(forget)
            stats["replicas_deleted"] += sum(
                1 for got in answers.values() for gone in got.values() if gone)
            stats["bytes_freed"] += sum(size_of.get(cid, 0) for got in answers.values()
                                        for cid, gone in got.items() if gone)
            fully = [cid for cid, holders in garbage if cid in claimed and all(
                answers[n].get(cid) is not None for n in holders)]
            dropped = await self.store.drop_unreferenced(fully)
            if dropped:  # maybe packs: tombstones may have nothing left to hide
                self._packs_dropped = True
            stats["chunks_dropped"] += dropped
        finally:
            for c in claimed:
                self.pins.end_delete(c)
        return len(fully)

    async def _delete_copies(self, node_id: str, cids: list[str]) -> dict[str, bool | None]:
        """Like ``_delete_copy`` for many chunks on one node, in few requests."""
        node = self.registry.get(node_id)
        if node is None:
            return dict.fromkeys(cids, False)
        if node.state not in READABLE_STATES or self.alarm.blocks_deletion:
            return dict.fromkeys(cids, None)
        if node.unreachable_until > time.monotonic():
            # Its transfers fail (a hung data port): the next pass tries again,
            # and this one frees the other nodes' copies without waiting on it.
            return dict.fromkeys(cids, None)
        out: dict[str, bool | None] = dict.fromkeys(cids, None)
        for i in range(0, len(cids), DELETES_PER_REQUEST):
            part = cids[i : i + DELETES_PER_REQUEST]
            async with self._sem:
                try:
                    deleted = await self.nodes.delete_chunks(node, part)
                except NodeError as exc:
                    log.info("could not delete %d chunks on %s yet: %s", len(cids) - i,
                             node.name, exc)
                    break  # one timeout per pass, not one per batch
            out.update({c: c in deleted for c in part})
        return out

    async def _sweep_orphans(self, stats: dict[str, Any]) -> None:
        """Compare each live node's inventory with the metadata, both ways.

        Copies the metadata expects but the node lacks are marked missing (the
        repairer re-makes them); copies of known chunks it did not record are
        adopted. Unknown copies are first only looked at, on every node: a node
        whose inventory is mostly unknown is a stranger, and packs newer than the
        metadata mean it is behind; either stops all deletion (``alarm``). Then,
        and only then, unknown copies older than ``gc_grace`` that the intent
        journal names are deleted, at most ``gc_sweep_max`` per sweep; any other
        unknown copy is kept and counted: absence from the metadata alone is
        never a reason to delete."""
        started = time.time()
        stats.setdefault("missing", 0)
        looks = []
        for node_id in self.registry.online_ids():
            node = self.registry.get(node_id)
            if node is not None:
                look = await self._look(node, started, stats)
                if look is not None:
                    looks.append(look)
        candidates = [c for look in looks for c in look.old]
        named = await self.intents.known([cid for _, cid, _ in candidates])
        stats["unknown_kept"] = sum(1 for _, cid, _ in candidates if cid not in named)
        stats["unknown_kept_bytes"] = sum(size for _, cid, size in candidates
                                          if cid not in named)
        self.unknown_kept = (stats["unknown_kept"], stats["unknown_kept_bytes"])
        if self.alarm.blocks_deletion or started < self.keep_orphans_until:
            return
        doomed = [c for c in candidates if c[1] in named]
        cap = self.settings.gc_sweep_max
        if len(doomed) > cap:
            msg = (f"the orphan sweep found {plural(len(doomed), 'stray copy', 'stray copies')} "
                   f"to delete and stopped at {cap:,} (gc_sweep_max): the rest waits for the "
                   "next sweep")
            log.warning("%s", msg)
            await self.store.add_event(EventKind.GC_CAPPED, msg, severity="warning",
                                       data={"found": len(doomed), "cap": cap})
            doomed = doomed[:cap]
        claimed = set(await self._claim(cid for _, cid, _ in doomed))
        try:
            for node_id, cid, size in doomed:
                if cid in claimed and await self._delete_copy(node_id, cid):
                    stats["orphans_deleted"] += 1
                    stats["bytes_freed"] += size
        finally:
            for cid in claimed:
                self.pins.end_delete(cid)

    async def _look(self, node: Any, started: float, stats: dict[str, Any]) -> _Look | None:
        """Read one node's whole inventory: mark missing copies, adopt known ones,
        judge whether it is a stranger, and list its unknown copies older than
        ``gc_grace`` (deleted later, if at all). None: it could not be read."""
        cutoff = started - self.settings.gc_grace
        look = _Look(node.id)
        after = ""
        missing: list[str] = []
        while True:
            try:
                page = await self.nodes.inventory(node, after, 5000)
            except NodeError as exc:
                log.info("inventory of %s failed: %s", node.name, exc)
                return None
            entries: list[dict[str, Any]] = page["chunks"]  # type: ignore[assignment]
            nxt = page.get("next") or ""
            ids = [e["id"] for e in entries]
            expected = await self.store.ok_replicas_in_range(
                node.id, after, ids[-1] if nxt and ids else None, started)
            for cid in sorted(expected - set(ids)):
                await self.store.set_replica_state(cid, node.id, "missing")
                missing.append(cid)
            if not entries:
                break
            known = await self.store.known_chunks(ids)
            recorded = await self.store.replicas_on_node(node.id, ids)
            for cid in ids:
                if known.get(cid, 0) > 0 and cid not in recorded:
                    # A verified copy the metadata lost track of (e.g. a retried
                    # write): count it rather than delete good data.
                    await self.store.add_replicas(cid, [node.id])
                    stats["adopted"] += 1
            await self._check_foreign(node, [e["id"] for e in entries if e.get(
                "kind") == META and e["id"] not in known])
            # (Packs still in the outbox are not known yet: never orphans.)
            waiting = await self.store.log.outbox_ids() if has_packs(entries) else set()
            unknown = [e for e in entries if e["id"] not in known and e["id"] not in waiting]
            look.total += len(entries)
            look.unknown += len(unknown)
            look.old.extend((node.id, e["id"], int(e.get("size") or 0)) for e in unknown
                            if e["mtime"] < cutoff)
            after = nxt  # type: ignore[assignment]
            if not after:
                break
        if missing:
            stats["missing"] += len(missing)
            await self.store.add_event(
                EventKind.REPLICA_MISSING, f"{len(missing)} chunk copies the metadata expected "
                f"were not on {node.name}; re-replicating them", severity="warning",
                node_id=node.id, data={"missing": len(missing), "chunks": missing[:100]})
        await self._judge(node, look)
        return look

    async def _judge(self, node: Any, look: _Look) -> None:
        """Raise (or clear) the stranger alarm for this node."""
        if not is_stranger(look.total, look.unknown):
            self.alarm.strangers.pop(node.id, None)
            self.alarm.vouched.add(node.id)
            return
        self.alarm.vouched.discard(node.id)
        if node.id in self.alarm.strangers:
            return
        reason = (f"{look.unknown:,} of its {look.total:,} chunks and packs are unknown to "
                  "this brain's metadata")
        self.alarm.strangers[node.id] = Suspect(node.name, reason)
        msg = self.alarm.message() or reason
        log.warning("%s (%s: %s)", msg, node.name, reason)
        await self.store.add_event(EventKind.NEEDS_RECOVERY, f"{node.name}: {reason}. {msg}",
                                   severity="error", node_id=node.id,
                                   data={"unknown": look.unknown, "total": look.total})


@dataclass
class _Look:
    """One node's inventory as the sweep judged it."""

    node_id: str
    total: int = 0
    unknown: int = 0
    old: list[tuple[str, str, int]] = field(default_factory=list)  # (node, chunk, size)


def has_packs(entries: list[dict[str, Any]]) -> bool:
    """Any manifest pack in this inventory page (only they can be in the outbox)?"""
    return any(e.get("kind") == META for e in entries)
