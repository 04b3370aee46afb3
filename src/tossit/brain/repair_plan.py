"""What to do about one chunk's replicas: copy it somewhere, drop a copy, or nothing.

Pure logic (no I/O), so every rule can be tested without servers:

- A replica *counts* when it is ``ok`` on a node that is neither ``dead`` nor being
  drained. ``offline`` nodes still count during their grace period (``dead_after``):
  a machine that reboots must not set off a repair storm.
- Below R counted copies: copy from a readable replica (``ok`` on an online/suspect
  node, draining ones included) to the nodes placement wants, least-replicated
  chunks first (the caller sorts by ``copies``).
- At R or more: move towards the desired placement one copy at a time (copy to a
  desired node, then drop a copy placement does not want), and drop copies beyond
  R, on draining/drained nodes, corrupt ones and rows for missing ones (a pack's
  ``doubtful`` row, a write that may have landed, stays for the collector). A copy is
  dropped only while R *other* counted copies are on online nodes, so a chunk never
  goes below R because of a move.
- A drain whose chunk has a counted copy on an offline node gets an extra online
  copy first (reason ``drain``), so one node rebooting does not hold up the drain of
  another; the spare copy is an ordinary extra once that node is back or dead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tossit.brain.states import READABLE_STATES as READABLE
from tossit.brain.states import AdminState, NodeState

ONLINE, SUSPECT, OFFLINE, DEAD = (NodeState.ONLINE, NodeState.SUSPECT, NodeState.OFFLINE,
                                  NodeState.DEAD)
DRAINING, DRAINED = AdminState.DRAINING, AdminState.DRAINED

# Why a copy is made or dropped (the event log and the status page show these).
UNDER_REPLICATED = "under-replicated"
REBALANCE = "rebalance"
DRAIN = "drain"
EXTRA = "extra copy"
CORRUPT = "corrupt"
MISSING = "missing"


@dataclass(frozen=True)
class NodeInfo:
    id: str
    state: str  # online, suspect, offline, dead
    admin_state: str | None = None  # None, draining, drained

    @property
    def counts(self) -> bool:
        """Do this node's ok replicas count towards R?"""
        return self.state != DEAD and self.admin_state is None

    @property
    def readable(self) -> bool:
        return self.state in READABLE and self.admin_state != DRAINED


@dataclass(frozen=True)
class Copy:
    chunk_id: str
    size: int
    sources: tuple[str, ...]  # readable ok holders, best first
    target: str
    reason: str
    copies: int  # counted copies before this one (repair order: fewest first)


@dataclass(frozen=True)
class Drop:
    chunk_id: str
    node_id: str
    reason: str
    on_node: bool  # False: only the metadata row goes (the node lacks the chunk)


@dataclass
class ChunkPlan:
    chunk_id: str
    copies: int  # counted copies now
    copy: list[Copy] = field(default_factory=list)
    drop: list[Drop] = field(default_factory=list)
    unavailable: bool = False  # below R and no readable copy anywhere
    # Copies that no longer count, and why ("dead", "draining", "corrupt", ...):
    # what the event log names as the reason for a repair.
    lost_on: tuple[tuple[str, str], ...] = ()


def plan_chunk(
    chunk_id: str,
    size: int,
    replicas: Mapping[str, str],  # node id -> replica state (ok, corrupt, missing)
    nodes: Mapping[str, NodeInfo],
    target_count: int,
    desired: Sequence[str],  # where placement wants it, among the nodes that count
    write_order: Sequence[str],  # nodes that can take a copy now, best first
) -> ChunkPlan:
    """``desired`` is computed over every node that counts (offline ones too, so
    a rebooting node's chunks stay "in place"); copies only go to ``write_order``."""
    desired = list(desired[:target_count])
    ok = [n for n, st in replicas.items() if st == "ok" and n in nodes]
    counted = [n for n in ok if nodes[n].counts]
    plan = ChunkPlan(chunk_id, len(counted), lost_on=tuple(sorted(
        (n, _why_not_counted(st, nodes.get(n))) for n, st in replicas.items()
        if n not in counted)))
    sources = sorted((n for n in ok if nodes[n].readable),
                     key=lambda n: (nodes[n].state != ONLINE, nodes[n].admin_state is not None))

    if len(counted) < target_count:
        if not sources:
            plan.unavailable = True
        else:
            holders = set(ok)
            for target in write_order:
                if len(counted) + len(plan.copy) >= target_count:
                    break
                if target not in holders:
                    plan.copy.append(Copy(chunk_id, size, tuple(sources), target,
                                          UNDER_REPLICATED, len(counted)))
    else:
        _rebalance(plan, chunk_id, size, ok, counted, nodes, target_count, desired,
                   write_order, sources)

    # Bad rows last, never on a node this plan copies to (the copy repairs it). A
    # corrupt copy goes only while a good one can be read: the last copies of a
    # chunk, even damaged, are all there is to save its bytes from by hand.
    targets = {c.target for c in plan.copy}
    for node_id, st in replicas.items():
        if node_id in targets:
            continue
        if st == "corrupt" and node_id in nodes and nodes[node_id].readable and sources:
            plan.drop.append(Drop(chunk_id, node_id, CORRUPT, on_node=True))
        elif st == "missing" or node_id not in nodes:
            plan.drop.append(Drop(chunk_id, node_id, MISSING, on_node=False))
    return plan


def spread_sources(chunk_id: str, sources: Sequence[str], busy: Mapping[str, int],
                   tier: Mapping[str, int] | None = None) -> list[str]:
    """The order in which a copy's target should try the holders.

    The target reads from the first holder that answers (``tossit.node.peers``),
    so the first place decides which disk serves the read. Always taking the
    same holder would make one node serve a whole repair (its disk and network
    the bottleneck, the other holders idle). Instead: better tiers first (``tier``:
    lower is better, e.g. online before suspect, not draining before draining),
    then the holder with the fewest copies being read from it right now
    (``busy``), then a hash of (chunk, node), so that chunks with equal load
    start at different holders yet a retry of one chunk asks in the same order.
    Every holder stays in the list: the later ones are the fallback when the
    first fails."""
    tier = tier or {}

    def key(node: str) -> tuple[int, int, bytes]:
        spread = hashlib.blake2b(f"{chunk_id}/{node}".encode(), digest_size=8).digest()
        return tier.get(node, 0), busy.get(node, 0), spread

    return sorted(dict.fromkeys(sources), key=key)


def _why_not_counted(replica_state: str, node: NodeInfo | None) -> str:
    if node is None:
        return "removed"
    if replica_state != "ok":
        return f"{replica_state} copy"
    return node.admin_state or node.state


def _rebalance(plan: ChunkPlan, chunk_id: str, size: int, ok: list[str], counted: list[str],
               nodes: Mapping[str, NodeInfo], target_count: int, desired: list[str],
               write_order: Sequence[str], sources: list[str]) -> None:
    """At R or more copies: one move towards the desired placement (or the copies
    a drain still needs), and the drops that keep R copies on online nodes."""
    writable = set(write_order)
    misplaced = [n for n in counted if n not in desired]
    missing_desired = [n for n in desired if n not in ok and n in writable]
    leaving = [n for n in ok if not nodes[n].counts and nodes[n].state != DEAD]
    kept = {n for n in counted if nodes[n].state == ONLINE}
    if leaving and len(kept) < target_count and sources:
        # A drain waits for R online copies elsewhere. When a counted copy sits on
        # an offline node (within its grace period), make the missing online ones
        # now rather than hold the drain until that node returns or is declared
        # dead; the spare copy is dropped as an extra once the cluster is whole.
        spare = [n for n in write_order if n not in ok]
        for target in spare[: target_count - len(kept)]:
            plan.copy.append(Copy(chunk_id, size, tuple(sources), target, DRAIN,
                                  len(counted)))
    elif misplaced and missing_desired and sources:
        plan.copy.append(Copy(chunk_id, size, tuple(sources), missing_desired[0],
                              REBALANCE, len(counted)))
    # Copies on draining/drained nodes go first, then extras placement does not want.
    extra = [n for n in counted if n not in desired]
    for n in leaving + extra:
        if nodes[n].state not in READABLE or len(kept - {n}) < target_count:
            continue
        plan.drop.append(Drop(chunk_id, n, DRAIN if n in leaving else EXTRA, on_node=True))
        kept.discard(n)


def stuck_plans(plans: Sequence[ChunkPlan], target_count: int) -> list[ChunkPlan]:
    """Chunks below R that this pass cannot bring to R: not for want of a source
    (that is ``unavailable``), but of a node to put the missing copies on."""
    return [p for p in plans if not p.unavailable and p.copies < target_count
            and p.copies + sum(1 for c in p.copy if c.reason != REBALANCE) < target_count]


def _ordinal(n: int) -> str:
    return f"{n}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(n if n < 20 else n % 10, 'th') }"


def stuck_message(stuck: Sequence[ChunkPlan], target_count: int, can_take: int,
                  why_not: Sequence[str]) -> str:
    """The words of a stuck repair, e.g. "repair is stuck: 12 chunks need a 3rd copy
    but only 2 nodes can take them (nas-2 is full, nas-3 offline)". ``can_take``:
    the nodes that can take a copy now; ``why_not``: each other node and why not."""
    need = {p.copies + sum(1 for c in p.copy if c.reason != REBALANCE) + 1 for p in stuck}
    n = len(stuck)
    chunks = f"{n:,} chunk{'' if n == 1 else 's'}"
    if len(need) == 1:
        what = f"{chunks} {'needs' if n == 1 else 'need'} a {_ordinal(need.pop())} copy"
    else:
        what = f"{chunks} {'is' if n == 1 else 'are'} short of {target_count} copies"
    nodes = "no node" if can_take == 0 else (
        f"only {can_take} node{'' if can_take == 1 else 's'}")
    them = "it" if n == 1 else "them"
    reasons = f" ({', '.join(why_not)})" if why_not else ""
    return f"repair is stuck: {what} but {nodes} can take {them}{reasons}"


# Why a node takes no copy (NodeView.why_not_writable) -> what brings it back.
_AWAY = ("suspect", "offline", "dead", "unreachable")


def stuck_advice(target_count: int, can_take: int, why_not: Sequence[tuple[str, str]]) -> str:
    """What to do about a stuck repair, e.g. "add a node, or bring back nas-3"
    (lower case, no full stop). ``why_not``: (name, reason) of each node that
    takes no copy now, the reason as ``NodeView.why_not_writable`` says it."""
    more = max(1, target_count - can_take)
    ways = ["add a node" if more == 1 else f"add {more} nodes"]
    away = [name for name, why in why_not if why in _AWAY]
    full = [name for name, why in why_not if why == "full"]
    refusing = [name for name, why in why_not if why.startswith("refusing writes")]
    draining = [name for name, why in why_not if why == "draining"]
    if away:
        ways.append(f"bring back {_names(away)}")
    if full:
        ways.append(f"free space on {_names(full)}")
    if refusing:
        ways.append(f"fix the disk of {_names(refusing)}")
    if draining:
        ways.append(f"undrain {_names(draining)}")
    return ", or ".join(ways)


def _names(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
