"""Where a chunk's replicas should live: weighted rendezvous hashing.

Each (chunk, node) pair gets a score ``-weight / ln(u)`` with ``u`` a uniform
hash in (0, 1); the highest scores win. This is the weighted form of
highest-random-weight hashing: a node receives chunks in proportion to its
weight, and adding or removing a node only moves the chunks whose winner
changed (about 1/N of them), with no table to keep. Replicas are spread over
distinct zones first, then filled by score.

Pure functions of the chunk id and the node list, so the brain, the tests and
the dashboard all compute the same answer.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class Candidate:
    """What placement needs to know about a node."""

    id: str
    weight: float  # usually the node's capacity in bytes
    zone: str = "default"


def _unit_hash(chunk_id: str, node_id: str) -> float:
    h = hashlib.blake2b(f"{chunk_id}\x00{node_id}".encode(), digest_size=8).digest()
    # 53 bits -> a float strictly inside (0, 1).
    return ((int.from_bytes(h, "big") >> 11) + 0.5) / float(1 << 53)


def score(chunk_id: str, node: Candidate) -> float:
    if node.weight <= 0:
        return float("-inf")
    return -node.weight / math.log(_unit_hash(chunk_id, node.id))


def rank(chunk_id: str, nodes: Iterable[Candidate]) -> list[Candidate]:
    """Every node, best first, for this chunk (ties broken by id)."""
    return sorted(nodes, key=lambda n: (-score(chunk_id, n), n.id))


def spread_by_zone(ranked: Sequence[Candidate], count: int) -> list[Candidate]:
    """Pick ``count`` nodes from a ranking: one per zone first, then by rank.

    Returning the rest of the ranking after the picks lets a writer use it as
    the fallback order when a chosen node fails.
    """
    chosen: list[Candidate] = []
    zones: set[str] = set()
    for node in ranked:
        if len(chosen) == count:
            return chosen
        if node.zone not in zones:
            chosen.append(node)
            zones.add(node.zone)
    picked = {n.id for n in chosen}  # ids: cheaper than comparing dataclasses
    for node in ranked:
        if len(chosen) == count:
            break
        if node.id not in picked:
            chosen.append(node)
            picked.add(node.id)
    return chosen


def _rest(ranked: Sequence[Candidate], first: Sequence[Candidate]) -> list[Candidate]:
    """``first``, then the rest of ``ranked`` in its order."""
    taken = {n.id for n in first}
    return [*first, *(n for n in ranked if n.id not in taken)]


def preference_list(chunk_id: str, nodes: Iterable[Candidate], replicas: int) -> list[Candidate]:
    """All nodes in the order a writer should try them.

    The first ``replicas`` entries are the desired placement (zone-spread); the
    rest are fallbacks in rank order.
    """
    ranked = rank(chunk_id, nodes)
    return _rest(ranked, spread_by_zone(ranked, replicas))


def desired_nodes(chunk_id: str, nodes: Iterable[Candidate], replicas: int) -> list[str]:
    return [n.id for n in preference_list(chunk_id, nodes, replicas)[:replicas]]


def _most_that_fits(capacities: Sequence[float], copies: int) -> Fraction:
    """The largest D with ``sum(min(c, D)) >= copies * D``: how much data fits when
    every chunk needs ``copies`` copies in distinct bins (a bin holds at most one
    copy of each chunk, so never more than D). Each bound below holds because the
    j largest bins take at most D each and the rest at most their capacity; the
    smallest of them is reached. Exact, so that the floor in bytes is too."""
    caps = sorted((Fraction(c) for c in capacities if c > 0), reverse=True)
    copies = min(copies, len(caps))
    if copies <= 0:
        return Fraction(0)
    return min(sum(caps[j:], Fraction(0)) / (copies - j) for j in range(copies))


def usable_capacity(nodes: Iterable[Candidate], replicas: int) -> int:
    """How much file data these nodes can hold at ``replicas`` copies, given that
    copies of a chunk go to distinct nodes and, when there are enough zones, to
    distinct zones. With uneven nodes this is less than ``sum / replicas``: three
    nodes of 1, 1 and 8 TB hold 1 TB at three copies, not 3.3 TB."""
    nodes = list(nodes)
    by_zone: dict[str, int] = {}
    for n in nodes:
        by_zone[n.zone] = by_zone.get(n.zone, 0) + max(int(n.weight), 0)
    per_node = _most_that_fits([int(n.weight) for n in nodes], replicas)
    return math.floor(min(per_node, _most_that_fits(list(by_zone.values()), replicas)))


# Multi-pick correction. A chunk's copies go to distinct groups (zones when there
# are at least R of them, else nodes), picked one after another by rendezvous
# score: an exponential race, so a group is drawn with probability in proportion
# to its weight among the groups not drawn yet (Plackett-Luce sampling without
# replacement). That favours small groups: with zones of 17, 31 and 52% of the
# capacity and R=3 each gets a third of the copies. Scaling each group's node
# weights by a factor that makes P(group among the R drawn) proportional to its
# capacity removes the skew; inside a group the race still picks nodes in
# proportion to their capacity.
_BALANCE_BUDGET = 6000  # ordered draws to enumerate per iteration (~5 ms)
_BALANCE_ROUNDS = 40


def _inclusion(weights: Sequence[float], picks: int) -> list[float]:
    """P(each group is among ``picks`` drawn without replacement, in proportion
    to weight), by enumerating the ordered draws."""
    total = sum(weights)
    out = [0.0] * len(weights)

    def walk(taken: list[int], removed: float, prob: float) -> None:
        left = total - removed
        for g, w in enumerate(weights):
            if g in taken or w <= 0:
                continue
            p = prob * w / left
            out[g] += p
            if len(taken) + 1 < picks:
                walk([*taken, g], removed + w, p)

    walk([], 0.0, 1.0)
    return out


def _draws(groups: int, picks: int) -> int:
    n = 1
    for i in range(picks):
        n *= groups - i
    return n


def balanced(nodes: Iterable[Candidate], replicas: int) -> list[Candidate]:
    """The nodes with weights corrected for the multi-pick skew (see above).

    The target is the fill that holds the most data (``usable_capacity``): every
    group fills up at the same time, except groups so big that they must hold a
    copy of every chunk; those are ranked first for every chunk. Unchanged when
    there is nothing to correct (no more groups than copies), with too many
    groups to enumerate (then the skew is small), and for 1 < zones < R, where
    the copies follow both rules."""
    nodes = list(nodes)
    zones = {n.zone for n in nodes}
    key = (lambda n: n.zone) if len(zones) >= replicas else (
        (lambda n: n.id) if len(zones) == 1 else None)
    if key is None:
        return nodes
    cap: dict[str, float] = {}
    for n in nodes:
        cap[key(n)] = cap.get(key(n), 0.0) + max(n.weight, 0.0)
    names = [g for g in sorted(cap) if cap[g] > 0]
    if len(names) <= replicas:
        return nodes
    most = float(_most_that_fits([cap[g] for g in names], replicas))
    full = [g for g in names if cap[g] >= most * (1 - 1e-9)]  # a copy of every chunk
    rest = [g for g in names if g not in full]
    picks = replicas - len(full)
    factor = {g: 1.0 for g in names}
    if picks > 0 and len(rest) > picks and _draws(len(rest), picks) <= _BALANCE_BUDGET:
        caps = [cap[g] for g in rest]
        target = [c / most for c in caps]  # sums to ``picks``
        w = list(caps)
        for _ in range(_BALANCE_ROUNDS):
            got = _inclusion(w, picks)
            if max(abs(g - t) for g, t in zip(got, target, strict=True)) < 1e-4:
                break
            w = [wi * t / g for wi, t, g in zip(w, target, got, strict=True)]
        factor.update({g: wi / ci for g, wi, ci in zip(rest, w, caps, strict=True)})
    if full:
        top = sum(cap.values()) * 1e9  # always outscores the others
        factor.update({g: top / cap[g] for g in full})
    return [Candidate(n.id, n.weight * factor.get(key(n), 1.0), n.zone) for n in nodes]
