"""The brain's live view of the storage nodes.

Placement and reads consult this in-memory table on every chunk, so it must not
cost a database query. Heartbeats update it (and the database, for listings and
restarts); the monitor loop ages it into ``suspect`` and ``offline``; a failed
request marks a node unreachable for a few seconds so that the next chunks route
around it at once instead of waiting for the heartbeat timeout.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from tossit.brain.states import READABLE_STATES, AdminState, NodeState
from tossit.chunking import META_ROOM
from tossit.placement import (
    Candidate,
    balanced,
    preference_list,
    rank,
    spread_by_zone,
    usable_capacity,
)

# The states (tossit.brain.states), under the short names the brain uses.
ONLINE, SUSPECT, OFFLINE, DEAD = (NodeState.ONLINE, NodeState.SUSPECT, NodeState.OFFLINE,
                                  NodeState.DEAD)
UNREACHABLE = NodeState.UNREACHABLE
DRAINING, DRAINED = AdminState.DRAINING, AdminState.DRAINED
PlacementKey = tuple[tuple[str, bool, str | None, int, str], ...]
UNREACHABLE_PENALTY = 5.0  # seconds a failed node is skipped by writers
# A node that keeps failing transfers (timeouts, resets) while its heartbeats
# arrive (its data port hangs, not the process) is skipped longer each time, up
# to this; its heartbeats do not end the penalty, only a transfer that works or a
# heartbeat after a silence (a paused or restarted node) does: one the brain
# marked it away for, or one longer than the brain's suspect_after.
UNREACHABLE_MAX_PENALTY = 120.0
PROBE_AFTER_STRIKES = 2  # failed transfers in a row before its address is probed
# Seconds a node that was too slow to answer a read (another copy answered first)
# is asked last by readers. Writers still use it: slow to read is not unreachable,
# and skipping it would leave too few nodes for W on a small cluster.
SLOW_READ_PENALTY = 5.0
USUAL_TRANSFER_MS = 50.0  # what a chunk transfer to a node not measured yet is taken to take
# Bytes a node must be able to take to count as having room (/ready, "full" in the
# listing), or one chunk if they are smaller: a node a few bytes under its
# high-water mark takes no real upload.
READY_ROOM = 1 << 20


@dataclass
class NodeView:
    id: str
    name: str
    address: str
    zone: str
    state: str
    capacity: int
    used: int
    free: int
    disk_total: int
    disk_free: int
    chunk_count: int
    manifest_count: int = 0
    load: float = 0.0
    version: str = "?"
    registered_at: float = 0.0
    last_heartbeat: float = 0.0  # wall clock, for display
    seen_mono: float = field(default_factory=time.monotonic)
    # The node's last heartbeat round trip (node -> brain -> node), what people
    # are shown as its latency; and the brain's running average of chunk
    # transfers to it (size-dependent, for ordering reads only).
    rtt_ms: float | None = None
    transfer_ms: float | None = None
    unreachable_until: float = 0.0
    # Transfers that failed in a row (``mark_unreachable``); a success ends it.
    strikes: int = 0
    slow_until: float = 0.0  # readers ask it last until then (``mark_slow``)
    reads_out: int = 0  # chunk reads this brain has on their way to it now
    admin_state: str | None = None
    reserved: int = 0  # bytes placed here since the last heartbeat
    disk_id: str | None = None  # nodes sharing a filesystem report the same id
    # Why the brain cannot reach ``address`` (None: it answered the last probe).
    address_problem: str | None = None
    probed_mono: float = 0.0
    # Since when (monotonic) ``address_problem`` has lasted, and whether it has
    # lasted past ``dead_after``: heartbeats keep such a node from ever being
    # declared dead, yet nothing can be read from it, so past that its copies
    # stop counting (``gone``) and are re-made elsewhere, as for a dead node.
    unreachable_since: float | None = None
    written_off: bool = False
    # Why the node's disk refuses writes, as its last heartbeat said (None: it
    # writes): no copies are placed there meanwhile; reads go on.
    write_error: str | None = None

    @property
    def usual_transfer_ms(self) -> float:
        """What a chunk transfer to it usually takes (a guess until measured)."""
        return self.transfer_ms if self.transfer_ms is not None else USUAL_TRANSFER_MS

    @property
    def gone(self) -> bool:
        """Its copies no longer count towards R: dead, or unreachable too long."""
        return self.state == DEAD or self.written_off

    def set_address_problem(self, problem: str | None) -> None:
        """Record the outcome of a probe (None: it answered)."""
        if problem is None:
            self.unreachable_since = None
            self.written_off = False
        elif self.address_problem is None:
            self.unreachable_since = time.monotonic()
        self.address_problem = problem

    def writable(self, size: int, high_water: float, now: float, meta: bool = False) -> bool:
        """Can it take a blob of ``size`` now? ``meta``: a manifest pack, which
        may use the room a node keeps over its limit (``META_ROOM``)."""
        if (self.state != ONLINE or self.admin_state is not None
                or self.unreachable_until > now or self.write_error is not None):
            return False
        if meta:  # (a disk really full refuses it: the writer tries the next node)
            return (self.used + self.reserved + size <= self.capacity + META_ROOM
                    and size <= self.free - self.reserved + META_ROOM)
        return self.has_room(size, high_water)

    def has_room(self, size: int, high_water: float) -> bool:
        """Room for ``size`` more bytes of chunks: under its high-water mark and
        on its disk (counting the writes on their way to it)."""
        used = self.used + self.reserved
        return used + size <= self.capacity * high_water and size <= self.free - self.reserved

    def why_not_writable(self, now: float) -> str:
        """What keeps this node from taking writes, in a few words (for /ready)."""
        if self.admin_state is not None:
            return self.admin_state
        if self.state != ONLINE:
            return self.state
        if self.write_error is not None:
            return f"refusing writes (its disk: {self.write_error})"
        if self.unreachable_until > now:
            return "skipped for a few seconds (it did not answer a write in time)"
        return "full"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "address": self.address, "zone": self.zone,
            "state": self.state, "capacity": self.capacity, "used": self.used,
            "free": self.free, "disk_total": self.disk_total, "disk_free": self.disk_free,
            "chunk_count": self.chunk_count, "manifest_count": self.manifest_count,
            "load": self.load, "version": self.version,
            "disk_id": self.disk_id, "admin_state": self.admin_state,
            "address_problem": self.address_problem,
            "write_error": self.write_error,
            # Only while it answers: an offline node's last figure is not its latency.
            "latency_ms": (round(self.rtt_ms, 2) if self.rtt_ms is not None
                           and self.state == ONLINE else None),
            # What orders reads (this brain's, in memory): null before a transfer.
            "transfer_ms": None if self.transfer_ms is None else round(self.transfer_ms, 2),
            "registered_at": self.registered_at, "last_heartbeat": self.last_heartbeat,
            "seconds_since_heartbeat": round(max(0.0, time.monotonic() - self.seen_mono), 1),
        }


def disk_capacity(nodes: list[NodeView]) -> tuple[int, int]:
    """Raw capacity and free space, counting a disk shared by several nodes
    once: no more than the disk holds, whatever the nodes' limits add up to."""
    disks: dict[str, list[NodeView]] = {}
    for n in nodes:
        disks.setdefault(n.disk_id or n.id, []).append(n)
    raw = free = 0
    for group in disks.values():
        raw += min(sum(n.capacity for n in group), max(n.disk_total for n in group))
        free += min(sum(n.free for n in group), max(n.disk_free for n in group))
    return raw, free


def _left(live: list[NodeView]) -> list[Candidate]:
    """What each node taking new data (not draining or drained) has left."""
    return [Candidate(n.id, max(0, min(n.capacity - n.used, n.free)), n.zone)
            for n in live if n.admin_state is None]


def room_at(live: list[NodeView], r: int, free: int) -> int:
    """How much more file data fits at ``r`` copies: what the nodes taking
    writes have left, with copies on distinct nodes (and zones), and no more
    than the free space (a shared disk counted once) over ``r``. 0 when fewer
    than ``r`` nodes have room left: a chunk's ``r`` copies need ``r`` nodes, and
    what fits at fewer copies is not room at ``r`` (``cluster_capacity`` says it
    apart)."""
    left = _left(live)
    if sum(1 for c in left if c.weight > 0) < r:
        return 0
    return min(free // r, usable_capacity(left, r))


def cluster_capacity(live: list[NodeView], r: int) -> dict[str, int]:
    """Raw, used, free, usable (at ``r`` copies) and room (more file data that
    fits at ``r`` copies) over the readable nodes, from memory alone; and, for
    when fewer than ``r`` nodes have room left (room is then 0), how many do
    (``nodes_with_room``) and what fits at that many copies (``room_fewer_copies``,
    what new files get meanwhile: below R)."""
    raw, free = disk_capacity(live)
    # raw / R is an upper bound (a disk shared by nodes counts once); uneven nodes or
    # zones hold less, because a chunk's copies must land on distinct ones.
    usable = min(raw // r, usable_capacity(
        [Candidate(n.id, n.capacity, n.zone) for n in live if n.admin_state is None], r))
    takers = sum(1 for c in _left(live) if c.weight > 0)
    fewer = room_at(live, takers, free) if 0 < takers < r else 0
    return {"raw": raw, "used": sum(n.used for n in live), "free": free,
            "usable": usable, "room": room_at(live, r, free),
            "nodes_with_room": takers, "room_fewer_copies": fewer}


@dataclass(frozen=True)
class SharedFate:
    """Nodes that one failure takes down together, so that copies on them
    protect against less than their number suggests."""

    kind: str  # "disk" or "host"
    where: str  # the disk id, or the machine's name
    nodes: tuple[str, ...]  # their names
    ids: tuple[str, ...] = ()  # their ids, in the same order

    def message(self) -> str:
        thing = "disk" if self.kind == "disk" else "machine"
        verb = "store on one disk" if self.kind == "disk" else "run on one machine"
        # A name two of them share (a node re-installed, its old self not removed
        # yet) is told apart by the start of each id, as tossit nodes shows it.
        shown = tuple(f"{name} ({node_id[:8]})" if self.nodes.count(name) > 1 else name
                      for name, node_id in zip(self.nodes, self.ids or self.nodes,
                                               strict=True))
        return (f"{_names(shown)} {verb} ({self.where}): copies on them do not protect "
                f"against that {thing} failing")


def _names(names: tuple[str, ...]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def ready_room(chunk_size: int) -> int:
    """``READY_ROOM``, or the chunk size when it is smaller."""
    return min(chunk_size, READY_ROOM)


def shared_fates(nodes: list[NodeView]) -> list[SharedFate]:
    """Groups of two or more nodes on one disk, and on one machine (when their
    disks are not already one). Drained nodes hold nothing and do not count, nor
    do gone ones (dead, written off: their copies no longer count either)."""
    by_disk: dict[str, list[tuple[str, str]]] = {}
    by_host: dict[str, set[str]] = {}
    for n in sorted(nodes, key=lambda n: (n.name, n.id)):
        if not n.disk_id or n.admin_state == DRAINED or n.gone:
            continue
        by_disk.setdefault(n.disk_id, []).append((n.name, n.id))
        by_host.setdefault(n.disk_id.rpartition(":")[0] or n.disk_id, set()).add(n.disk_id)

    def fate(kind: str, where: str, members: list[tuple[str, str]]) -> SharedFate:
        return SharedFate(kind, where, tuple(m[0] for m in members),
                          tuple(m[1] for m in members))

    out = [fate("disk", d, members) for d, members in sorted(by_disk.items())
           if len(members) > 1]
    for host, disks in sorted(by_host.items()):
        members = sorted(m for d in disks for m in by_disk[d])
        if len(disks) > 1 and len(members) > 1:
            out.append(fate("host", host, members))
    return out


class Registry:
    def __init__(self, replicas: int, high_water: float, away_after: float = 6.0) -> None:
        """``away_after``: seconds without a report after which a node counts as
        having been away (the brain's suspect_after)."""
        self.nodes: dict[str, NodeView] = {}
        self.away_after = away_after
        self.replicas = replicas
        self.high_water = high_water
        self._weights_key: PlacementKey | None = None
        self._weights: dict[str, float] = {}

    def update(self, report: dict[str, Any], state: str = ONLINE) -> NodeView:
        view = self.nodes.get(report["id"])
        fields = {k: report[k] for k in (
            "name", "address", "zone", "capacity", "used", "free", "disk_total", "disk_free",
            "chunk_count", "manifest_count", "load", "version", "disk_id", "rtt_ms",
            "write_error",
        ) if k in report and (k != "rtt_ms" or report[k] is not None)}
        away = False
        if view is None:
            view = NodeView(id=report["id"], state=state, registered_at=time.time(), **fields)
            self.nodes[view.id] = view
        else:
            away = view.state in (SUSPECT, OFFLINE, DEAD)
            if fields.get("address", view.address) != view.address:
                view.set_address_problem(None)  # a new address: probed again
            for k, v in fields.items():
                setattr(view, k, v)
            view.state = UNREACHABLE if state == ONLINE and view.address_problem else state
        now = time.monotonic()
        if view.strikes == 0 or away or now - view.seen_mono > self.away_after:
            # It talked to us after a silence (paused, restarted), or its last
            # failure was not a transfer's: writers may try it again.
            view.unreachable_until = 0.0
            view.strikes = 0
        view.last_heartbeat = time.time()
        view.seen_mono = now
        view.reserved = 0
        return view

    def mirror(self, rows: list[Any]) -> None:
        """Take the nodes as the leader recorded them (a follower's view: the
        leader hears the heartbeats and decides the states)."""
        now_mono, now = time.monotonic(), time.time()
        seen = set()
        for row in rows:
            seen.add(row.id)
            view = self.nodes.get(row.id)
            if view is None:
                view = NodeView(id=row.id, name=row.name, address=row.address, zone=row.zone,
                                state=row.state, capacity=row.capacity, used=row.used,
                                free=row.free, disk_total=row.disk_total,
                                disk_free=row.disk_free, chunk_count=row.chunk_count)
                self.nodes[row.id] = view
            for k in ("name", "address", "zone", "state", "capacity", "used", "free",
                      "disk_total", "disk_free", "chunk_count", "load", "version",
                      "admin_state", "registered_at", "last_heartbeat", "disk_id",
                      "write_error"):
                setattr(view, k, getattr(row, k))
            view.rtt_ms = row.latency_ms
            view.seen_mono = now_mono - max(0.0, now - row.last_heartbeat)
            view.reserved = 0
        for gone in set(self.nodes) - seen:
            del self.nodes[gone]

    def get(self, node_id: str) -> NodeView | None:
        return self.nodes.get(node_id)

    def online_ids(self) -> list[str]:
        return [n.id for n in self.nodes.values() if n.state in READABLE_STATES]

    def writable(self, size: int, meta: bool = False) -> list[NodeView]:
        now = time.monotonic()
        return [n for n in self.nodes.values()
                if n.writable(size, self.high_water, now, meta)]

    def placement_key(self) -> PlacementKey:
        """What placement and counting depend on (which nodes count, their
        capacity and zone): while it stays the same, so do the rankings."""
        return tuple((n.id, n.gone, n.admin_state, n.capacity, n.zone)
                     for n in self.nodes.values())

    def candidates(self, views: list[NodeView]) -> list[Candidate]:
        """What placement ranks. Weights are the capacities corrected for the
        multi-pick skew (``placement.balanced``) over the nodes whose copies
        count, computed once per set of nodes, so that writers, the repairer and
        the file info all rank with the same weights whatever subset they use."""
        key = self.placement_key()
        if key != self._weights_key:
            self._weights = {c.id: c.weight for c in balanced(
                [Candidate(n.id, float(n.capacity), n.zone) for n in self.nodes.values()
                 if not n.gone and n.admin_state is None], self.replicas)}
            self._weights_key = key
        return [Candidate(n.id, self._weights.get(n.id, float(n.capacity)), n.zone)
                for n in views]

    def write_order(self, chunk_id: str, size: int, exclude: set[str],
                    meta: bool = False) -> list[NodeView]:
        """Eligible nodes in the order a writer should try them for this chunk
        (``meta``: a manifest pack, see ``NodeView.writable``)."""
        eligible = [n for n in self.writable(size, meta) if n.id not in exclude]
        ranked = preference_list(chunk_id, self.candidates(eligible), self.replicas)
        by_id = {n.id: n for n in eligible}
        return [by_id[c.id] for c in ranked]

    def desired(self, chunk_id: str) -> list[str]:
        """Where placement wants this chunk among the nodes that can take writes."""
        eligible = [n for n in self.nodes.values() if n.state == ONLINE and n.admin_state is None]
        ranked = preference_list(chunk_id, self.candidates(eligible), self.replicas)
        return [c.id for c in ranked[: self.replicas]]

    def repair_targets(self, chunk_id: str, size: int) -> tuple[list[str], list[str]]:
        """The chunk's desired placement over every node whose copies count
        (offline ones included: a rebooting node's chunks stay in place), and the
        nodes that can take a copy of it now, best first: what the repairer needs
        for each chunk, from one ranking (the hashing is the cost)."""
        counted = [n for n in self.nodes.values() if not n.gone and n.admin_state is None]
        ranked = rank(chunk_id, self.candidates(counted))
        desired = [c.id for c in spread_by_zone(ranked, self.replicas)]
        now = time.monotonic()
        can_write = {n.id for n in counted if n.writable(size, self.high_water, now)}
        live = [c for c in ranked if c.id in can_write]
        order = spread_by_zone(live, self.replicas)
        taken = {c.id for c in order}
        return desired, [c.id for c in order] + [c.id for c in live if c.id not in taken]

    def read_order(self, node_ids: list[str]) -> list[NodeView]:
        """Replicas to read from, best first: live, not recently failing or late,
        then the one expected to answer first: its usual transfer time times the
        reads already on their way to it, plus one. Ordered by speed alone, the
        fastest node took every read while the other copies' disks and links
        idled; this spreads reads over the copies, in proportion to speed."""
        now = time.monotonic()
        views = [self.nodes[n] for n in node_ids if n in self.nodes]

        def key(v: NodeView) -> tuple[int, int, int, float]:
            return (
                0 if v.state in READABLE_STATES else 1,
                1 if v.unreachable_until > now else 0,
                1 if v.slow_until > now else 0,
                (v.reads_out + 1) * v.usual_transfer_ms,
            )

        return sorted(views, key=key)

    def mark_unreachable(self, node_id: str, transfer: bool = True) -> None:
        """Skip the node for writes a while: ``UNREACHABLE_PENALTY``, doubled for
        each transfer that failed in a row (``transfer``: a timeout or a reset,
        not a refusal its heartbeat will speak of, like a disk error)."""
        view = self.nodes.get(node_id)
        if view:
            penalty = UNREACHABLE_PENALTY
            if transfer:
                view.strikes += 1
                penalty = min(UNREACHABLE_MAX_PENALTY,
                              UNREACHABLE_PENALTY * 2 ** (view.strikes - 1))
            view.unreachable_until = time.monotonic() + penalty

    def mark_slow(self, node_id: str) -> None:
        """Another copy answered a read while this node's was still out."""
        view = self.nodes.get(node_id)
        if view:
            view.slow_until = time.monotonic() + SLOW_READ_PENALTY

    def observe_latency(self, node_id: str, seconds: float) -> None:
        view = self.nodes.get(node_id)
        if view:
            ms = seconds * 1000
            view.transfer_ms = (ms if view.transfer_ms is None
                                else 0.8 * view.transfer_ms + 0.2 * ms)
            view.unreachable_until = view.slow_until = 0.0
            view.strikes = 0
