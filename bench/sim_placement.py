#!/usr/bin/env python3
"""Pure-placement simulation of TossIt's weighted rendezvous hashing (no servers).

Builds a cluster of ``--nodes`` nodes with mixed disk sizes (1, 2, 4, 8, 12 and
16 TB, drawn with ``--seed``) spread over ``--zones`` zones of uneven sizes
(zone k of Z gets about k/(1+...+Z) of the nodes), places ``--chunks`` random
64-hex chunk ids with ``--replicas`` replicas as the brain does, and reports:

* utilisation: each node's share of the replicas divided by its share of the
  capacity (1.0 = exactly proportional): min, p1, p99, max, standard deviation,
  the standard deviation that binomial noise alone would give, and the skew
  predicted by successive sampling (see "model" below);
* movement: the fraction of replicas that change node when one node of median
  capacity is added, when one is removed and when the zone with the most
  capacity is removed, against the ideal (only what must move moves);
* zone spreading: the share of chunks whose replicas are in min(R, Z) distinct
  zones, for the main layout and for 1, 2 and R zones;
* the zone / capacity interaction: each zone's share of the replicas against
  its share of the capacity.

Weights. Every layout (set of nodes and zones) gets its own placement weights,
``tossit.placement.balanced(layout's candidates, R)``: the capacities corrected
for the multi-pick skew, recomputed for that layout as the brain recomputes them
whenever its nodes change. A chunk's placement is then
``desired_nodes(chunk, balanced(candidates, R), R)``. Because the factors follow
the layout, adding or removing a node can also move replicas between nodes that
stay ("unneeded" moves). ``--raw-weights`` places with the bare capacities
instead (the algorithm before balancing: minimal movement, multi-pick skew), so
both can be compared; its placements and figures are those of earlier runs.

How it stays exact and fast. The hash ``u = blake2b(chunk_id NUL node_id)`` is
computed with hashlib (the same bytes as ``tossit.placement._unit_hash``), one
node column at a time, in worker processes; the rest (the scores, the best node
of each zone, the R best zones, the fill by rank) is vectorised with numpy. The
hash of a (chunk, node) pair does not depend on the other nodes, so
``E = -ln u`` is computed once per block of chunks and serves every layout: a
layout's scores are ``w_layout / E``, bit for bit tossit's ``-w / ln u``.
numpy's ``log`` may differ from ``math.log`` in the last bit, so chunks with two
scores of a layout's nodes closer than 1e-12 (relative) are placed again for
that layout with ``tossit.placement.desired_nodes`` itself (given that layout's
balanced candidates); and before the full run a sample of ``--verify`` chunks is
placed both ways for every layout, the reference being
``desired_nodes(chunk, balanced(layout's candidates, R), R)`` (the bare
candidates with ``--raw-weights``), and the run aborts (exit 2) unless they
agree exactly.

Model. With ``score = w / E`` (``E`` exponential), the best node of a zone is an
exponential race of rate W_zone (the sum of its nodes' placement weights), so
the zones are drawn by successive sampling without replacement weighted by
W_zone, and the node inside a zone is drawn in proportion to its weight. A
node's expected replica share is therefore P(its zone among the R first drawn) /
R x its share of its zone's weight, with the inclusion probability computed by
numerical integration; with a single zone the nodes themselves are drawn
without replacement. The model is evaluated with the weights the run places
with (one code path for both modes). With raw weights (capacities) it is the
multi-pick skew: big zones below their capacity share, small ones above, none
above 1/R. With balanced weights it predicts 1.0 for every node, except where
a group (zone, or node with 1 zone) is big enough to hold a copy of every
chunk: such a group gets 1/R of the replicas and every other node the same
ratio, total / (R x usable capacity) >= 1. It predicts the raw skew where
``balanced`` leaves the weights alone (1 < zones < R, or too many groups to
enumerate, e.g. 1 zone of 100 nodes).

Run from the repository root (numpy: ``pip install -e '.[bench]'``)::

    .venv/bin/python bench/sim_placement.py      # 100 nodes, 1M chunks, R=3, 10 zones
    .venv/bin/python bench/sim_placement.py --raw-weights     # the same, unbalanced
    .venv/bin/python bench/sim_placement.py --nodes 20 --chunks 100000 --out /tmp/p.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import platform
import random
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
try:
    from tossit.placement import Candidate, balanced, desired_nodes
except ImportError:  # run without the package installed: use the source tree
    sys.path.insert(0, str(ROOT / "src"))
    from tossit.placement import Candidate, balanced, desired_nodes

TB = 10**12
DISK_TB = (1, 2, 4, 8, 12, 16)
DISK_WEIGHTS = (10, 15, 25, 25, 15, 10)  # how often each size is drawn
TIE_RTOL = 1e-12  # scores closer than this are re-placed by tossit.placement itself


# --------------------------------------------------------------------------- cluster


@dataclass(frozen=True)
class Node:
    id: str
    capacity: int  # bytes


@dataclass
class Layout:
    """One set of nodes and zones to place the chunks on."""

    name: str
    members: np.ndarray  # indices into the node list (ascending = by node id)
    zone_of: np.ndarray  # zone index of every node of the node list (-1: not a member)
    zone_names: list[str]
    candidates: list[Candidate]  # the members with their capacities as weights
    ranked: list[Candidate]  # what desired_nodes is given: balanced(candidates, R), or raw
    weights: np.ndarray  # ``ranked``'s weights by node-list index (0: not a member)

    @property
    def zones(self) -> int:
        return len({int(z) for z in self.zone_of[self.members]})


def zone_sizes(nodes: int, zones: int) -> list[int]:
    """Uneven zone sizes: zone k (1..Z) gets about k / (1+2+...+Z) of the nodes, at least 1."""
    if zones > nodes:
        raise ValueError("more zones than nodes")
    total = zones * (zones + 1) / 2
    raw = [nodes * k / total for k in range(1, zones + 1)]
    sizes = [max(1, int(r)) for r in raw]
    by_remainder = sorted(range(zones), key=lambda k: (raw[k] - int(raw[k]), k), reverse=True)
    i = 0
    while sum(sizes) < nodes:
        sizes[by_remainder[i % zones]] += 1
        i += 1
    while sum(sizes) > nodes:  # only when many zones were raised to 1
        k = max(range(zones), key=lambda k: sizes[k])
        sizes[k] -= 1
    return sizes


def zone_assignment(count: int, zones: int, seed: int) -> np.ndarray:
    """Zone index of each of ``count`` nodes: uneven sizes, nodes shuffled with the seed."""
    rng = random.Random(f"{seed}:zones:{zones}")
    order = list(range(count))
    rng.shuffle(order)
    out = np.empty(count, dtype=np.int64)
    pos = 0
    for z, size in enumerate(zone_sizes(count, zones)):
        for i in order[pos : pos + size]:
            out[i] = z
        pos += size
    return out


def make_nodes(count: int, seed: int) -> tuple[list[Node], Node]:
    """``count`` nodes with mixed disk sizes, plus one extra node of median capacity (to add)."""
    rng = random.Random(f"{seed}:nodes")
    nodes = [
        Node(rng.randbytes(8).hex(), rng.choices(DISK_TB, DISK_WEIGHTS)[0] * TB)
        for _ in range(count)
    ]
    median = sorted(n.capacity for n in nodes)[count // 2]
    extra = Node(rng.randbytes(8).hex(), median)
    return nodes, extra


def make_chunks(count: int, seed: int) -> list[str]:
    """Random 64-hex chunk ids (SHA-256 ids in reality)."""
    raw = random.Random(f"{seed}:chunks").randbytes(32 * count).hex()
    return [raw[i : i + 64] for i in range(0, 64 * count, 64)]


def make_layout(
    name: str,
    nodes: Sequence[Node],
    members: Sequence[int],
    zone_of: np.ndarray,
    prefix: str,
    replicas: int,
    raw: bool = False,
) -> Layout:
    """A layout whose placement weights are ``balanced(candidates, replicas)``, as the
    brain ranks them, or the bare capacities with ``raw``."""
    names = [f"{prefix}{z + 1:02d}" for z in range(int(zone_of.max()) + 1)]
    zo = np.full(len(nodes), -1, dtype=np.int64)
    for i in members:
        zo[i] = zone_of[i]
    mem = np.array(sorted(members), dtype=np.int64)
    cands = [Candidate(nodes[i].id, float(nodes[i].capacity), names[zo[i]]) for i in mem]
    ranked = list(cands) if raw else balanced(cands, replicas)
    index = {n.id: i for i, n in enumerate(nodes)}
    weights = np.zeros(len(nodes), dtype=np.float64)
    for c in ranked:
        weights[index[c.id]] = c.weight
    if sorted(index[c.id] for c in ranked) != mem.tolist() or not (weights[mem] > 0).all():
        raise ValueError(f"{name}: placement weights do not cover the members")
    return Layout(name, mem, zo, names, cands, ranked, weights)


# --------------------------------------------------------------------------- placement core

_STATE: dict[str, Any] = {}


class VerificationError(Exception):
    """The vectorised placement disagrees with tossit.placement."""


def init_worker(node_ids: list[str], layouts: list[Layout], r: int) -> None:
    _STATE.update(
        node_bytes=[n.encode() for n in node_ids],
        index={n: i for i, n in enumerate(node_ids)},
        layouts=layouts,
        replicas=r,
    )


def exp_matrix(chunks: Sequence[str], node_bytes: Sequence[bytes]) -> np.ndarray:
    """``E = -ln(u)`` for every (chunk, node): shape (chunks, nodes), u as in tossit.placement.

    A layout's scores are then ``w / E`` (= ``-w / ln u`` bit for bit: only signs differ)."""
    blake = hashlib.blake2b
    prefixes = [f"{c}\x00".encode() for c in chunks]
    h = np.empty((len(node_bytes), len(chunks)), dtype=np.uint64)
    for j, nb in enumerate(node_bytes):
        buf = b"".join([blake(p + nb, digest_size=8).digest() for p in prefixes])
        h[j] = np.frombuffer(buf, dtype=">u8")
    u = ((h >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)
    return np.ascontiguousarray((-np.log(u)).T)


def layout_scores(e: np.ndarray, layout: Layout) -> np.ndarray:
    """``w / E`` with the layout's own weights: shape (chunks, nodes), 0 off the layout."""
    return layout.weights / e


def near_ties(scores: np.ndarray) -> np.ndarray:
    """Rows (chunks) where two scores are too close for numpy's log to be trusted."""
    s = np.sort(scores, axis=1)
    gap = np.diff(s, axis=1) / s[:, 1:]
    return np.flatnonzero(gap.min(axis=1) < TIE_RTOL)


def place(scores: np.ndarray, layout: Layout, replicas: int) -> np.ndarray:
    """Desired nodes (node-list indices, in tossit.placement's order) of every chunk."""
    members = layout.members
    if len(members) < replicas:
        raise ValueError(f"{layout.name}: fewer nodes than replicas")
    s = scores[:, members]
    zone = layout.zone_of[members]
    zones = np.unique(zone)
    rows = np.arange(s.shape[0])[:, None]
    best = np.empty((s.shape[0], len(zones)), dtype=np.int64)  # best node of each zone
    for k, z in enumerate(zones):
        cols = np.flatnonzero(zone == z)
        best[:, k] = cols[np.argmax(s[:, cols], axis=1)]
    best_score = s[rows, best]
    first = min(replicas, len(zones))
    order = np.argsort(-best_score, axis=1, kind="stable")[:, :first]
    picks = np.take_along_axis(best, order, axis=1)  # one per zone, in rank order
    if first < replicas:  # fewer zones than replicas: fill by rank
        rest = s.copy()
        np.put_along_axis(rest, picks, -np.inf, axis=1)
        fill = np.argsort(-rest, axis=1, kind="stable")[:, : replicas - first]
        picks = np.concatenate([picks, fill], axis=1)
    return members[picks]


def reference(chunks: Sequence[str], layout: Layout) -> np.ndarray:
    """The same, computed by tossit.placement.desired_nodes itself (given the layout's
    balanced candidates, or the raw ones with --raw-weights)."""
    index, r = _STATE["index"], _STATE["replicas"]
    return np.array(
        [[index[n] for n in desired_nodes(c, layout.ranked, r)] for c in chunks],
        dtype=np.int64,
    ).reshape(len(chunks), r)


def place_block(chunks: Sequence[str]) -> tuple[dict[str, np.ndarray], int, dict[str, int]]:
    """Every layout's placement of a block of chunks, plus the number of chunks with a
    near-tie in some layout (re-done by tossit.placement) and the count per layout."""
    st = _STATE
    e = exp_matrix(chunks, st["node_bytes"])  # the hashing: shared by every layout
    out = {}
    tied = np.zeros(len(chunks), dtype=bool)
    per_layout = {}
    for lay in st["layouts"]:
        scores = layout_scores(e, lay)
        ties = near_ties(scores[:, lay.members])
        p = place(scores, lay, st["replicas"])
        if len(ties):
            p[ties] = reference([chunks[i] for i in ties], lay)
            tied[ties] = True
        per_layout[lay.name] = len(ties)
        out[lay.name] = p.astype(np.int16)
    return out, int(tied.sum()), per_layout


def reference_block(chunks: Sequence[str]) -> dict[str, np.ndarray]:
    return {lay.name: reference(chunks, lay).astype(np.int16) for lay in _STATE["layouts"]}


def run_blocks(pool: Any, fn: Any, chunks: Sequence[str], block: int) -> Iterator[Any]:
    pieces = [chunks[i : i + block] for i in range(0, len(chunks), block)]
    if pool is None:
        yield from map(fn, pieces)
    else:
        yield from pool.imap(fn, pieces)


# --------------------------------------------------------------------------- model


def inclusion_probs(weights: np.ndarray, k: int, grid: int = 20000) -> np.ndarray:
    """P(item i is among the first k drawn) when drawing without replacement ∝ weight.

    Equivalently, item i's exponential clock (rate w_i) is among the k first to ring:
    integral of w_i e^{-w_i t} P(fewer than k of the others rang by t) dt.
    """
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    n = len(w)
    if k >= n:
        return np.ones(n)
    # integrate over ln t, from where every clock is still silent to where all have rung
    t = np.logspace(np.log10(1e-12 / w.max()), np.log10(60 / w.min()), grid)
    p = -np.expm1(-np.outer(w, t))  # (n, grid): item j has rung by t (exact for tiny w t)
    # prefix[j][c] = P(c of items < j rang), suffix[j][c] = P(c of items >= j rang), c < k
    prefix = np.zeros((n + 1, k, grid))
    prefix[0, 0] = 1.0
    for j in range(n):
        prefix[j + 1] = prefix[j] * (1 - p[j])
        prefix[j + 1, 1:] += prefix[j, :-1] * p[j]
    suffix = np.zeros((n + 1, k, grid))
    suffix[n, 0] = 1.0
    for j in range(n - 1, -1, -1):
        suffix[j] = suffix[j + 1] * (1 - p[j])
        suffix[j, 1:] += suffix[j + 1, :-1] * p[j]
    out = np.empty(n)
    dlnt = np.log(t[1] / t[0])
    for i in range(n):
        fewer = sum(prefix[i, a] * suffix[i + 1, b] for a in range(k) for b in range(k - a))
        f = w[i] * np.exp(-w[i] * t) * fewer * t  # integrand in ln t
        out[i] = float(np.sum((f[1:] + f[:-1]) / 2) * dlnt)
    return out


# --------------------------------------------------------------------------- metrics


def pct(a: np.ndarray, q: float) -> float:
    return float(np.percentile(a, q))


def utilisation(
    placement: np.ndarray, layout: Layout, nodes: Sequence[Node], replicas: int
) -> dict[str, Any]:
    """Per node: share of replicas / share of capacity, and the zone totals."""
    mem = layout.members
    counts = np.bincount(placement.ravel(), minlength=len(nodes))[mem].astype(np.float64)
    cap = np.array([nodes[i].capacity for i in mem], dtype=np.float64)
    cap_share = cap / cap.sum()
    share = counts / counts.sum()
    ratio = share / cap_share
    chunks = placement.shape[0]
    incl = np.minimum(1.0, replicas * cap_share)  # ideal inclusion probability per chunk
    noise = np.sqrt((1 - incl) / (chunks * incl))  # binomial relative sd if exactly ideal
    zone = layout.zone_of[mem]
    zones = sorted(set(zone.tolist()))
    zcap = np.array([cap[zone == z].sum() for z in zones]) / cap.sum()
    zrep = np.array([counts[zone == z].sum() for z in zones]) / counts.sum()
    # the model: successive sampling under the placement weights (capacities, or balanced)
    w = layout.weights[mem]
    model = zmodel = zincl = None
    if len(zones) >= replicas:  # successive sampling of zones, proportional inside a zone
        zw = np.array([w[zone == z].sum() for z in zones])
        zincl = inclusion_probs(zw, replicas)
        k = np.searchsorted(zones, zone)
        model = zincl[k] / replicas * (w / zw[k]) / cap_share
        zmodel = zincl / (replicas * zcap)
    elif len(zones) == 1:  # successive sampling of the nodes themselves
        model = inclusion_probs(w, replicas) / (replicas * cap_share)
    out: dict[str, Any] = {
        "zones": len(zones),
        "ratio": {
            "min": float(ratio.min()),
            "p1": pct(ratio, 1),
            "p99": pct(ratio, 99),
            "max": float(ratio.max()),
            "std": float(ratio.std()),
            "noise_std": float(np.sqrt(np.mean(noise**2))),
        },
        "fill_at_first_full": float(1 / ratio.max()),
        "by_disk_tb": {},
        "per_zone": [],
        "per_node": [],
    }
    if model is not None:
        resid = ratio / model
        out["model"] = {
            "min": float(model.min()),
            "max": float(model.max()),
            "fill_at_first_full": float(1 / model.max()),
            "residual_std": float(resid.std()),
        }
    for tb in DISK_TB:
        sel = cap == tb * TB
        if sel.any():
            out["by_disk_tb"][str(tb)] = {
                "nodes": int(sel.sum()),
                "mean_ratio": float(ratio[sel].mean()),
                "min_ratio": float(ratio[sel].min()),
                "max_ratio": float(ratio[sel].max()),
            }
    for k, z in enumerate(zones):
        row = {
            "zone": layout.zone_names[z],
            "nodes": int((zone == z).sum()),
            "capacity_tb": float(cap[zone == z].sum() / TB),
            "capacity_share": float(zcap[k]),
            "replica_share": float(zrep[k]),
            "ratio": float(zrep[k] / zcap[k]),
        }
        if zmodel is not None and zincl is not None:
            row["model_ratio"] = float(zmodel[k])
            row["model_replica_share"] = float(zincl[k] / replicas)
        out["per_zone"].append(row)
    for j, i in enumerate(mem):
        out["per_node"].append(
            {
                "id": nodes[i].id,
                "zone": layout.zone_names[zone[j]],
                "capacity_tb": nodes[i].capacity / TB,
                "replicas": int(counts[j]),
                "ratio": float(ratio[j]),
            }
        )
    return out


def distinct_zones(placement: np.ndarray, layout: Layout, replicas: int) -> dict[str, Any]:
    z = np.sort(layout.zone_of[placement], axis=1)
    distinct = 1 + (np.diff(z, axis=1) != 0).sum(axis=1)
    want = min(replicas, layout.zones)
    hist = np.bincount(distinct, minlength=replicas + 1)
    out: dict[str, Any] = {
        "zones": layout.zones,
        "expected_distinct": want,
        "share_spread": float((distinct == want).mean()),
        "histogram": {str(d): int(hist[d]) for d in range(1, replicas + 1)},
    }
    if layout.zones < replicas:  # some zone holds 2+ replicas of every chunk: which one?
        zone_rep = layout.zone_of[placement]
        out["share_with_2plus_replicas"] = {
            layout.zone_names[z]: float(((zone_rep == z).sum(axis=1) >= 2).mean())
            for z in sorted({int(z) for z in layout.zone_of[layout.members]})
        }
    return out


def weight_factors(layout: Layout, nodes: Sequence[Node], raw: bool) -> dict[str, Any]:
    """Placement weight / capacity: per zone, and the range over nodes (1.0 when raw)."""
    mem = layout.members
    w = layout.weights[mem]
    cap = np.array([nodes[i].capacity for i in mem], dtype=np.float64)
    zone = layout.zone_of[mem]
    return {
        "balanced": not raw,
        "node_factor_min": float((w / cap).min()),
        "node_factor_max": float((w / cap).max()),
        "zone_factor": {
            layout.zone_names[z]: float(w[zone == z].sum() / cap[zone == z].sum())
            for z in sorted(set(zone.tolist()))
        },
    }


def movement(
    old: np.ndarray, new: np.ndarray, must_move: int, ideal_capacity: float, onto: int | None
) -> dict[str, Any]:
    """Replicas whose node changed between two placements of the same chunks."""
    kept = (new[:, :, None] == old[:, None, :]).any(axis=2)
    moved = int((~kept).sum())
    total = old.size
    out = {
        "replicas_moved": moved,
        "fraction_moved": moved / total,
        "ideal_fraction": must_move / total,
        "ideal_capacity_fraction": ideal_capacity,
        "actual_over_ideal": moved / must_move if must_move else None,
        "actual_over_capacity_ideal": moved / total / ideal_capacity,
        "unneeded_moves": moved - must_move,
        "chunks_touched": float((~kept).any(axis=1).mean()),
    }
    if onto is not None:
        out["moved_onto_new_node"] = int(((new == onto) & ~kept).sum())
    return out


# --------------------------------------------------------------------------- driver


def build(
    nodes: int, zones: int, replicas: int, seed: int, raw: bool = False
) -> tuple[list[Node], list[Layout], dict[str, int]]:
    """The node list (N nodes + 1 to add) and every layout to simulate, each with its own
    placement weights (balanced for that layout, or the capacities with ``raw``)."""
    base_nodes, extra = make_nodes(nodes, seed)
    all_nodes = sorted([*base_nodes, extra], key=lambda n: n.id)
    idx = {n.id: i for i, n in enumerate(all_nodes)}
    base = [idx[n.id] for n in base_nodes]
    new = idx[extra.id]
    rng = random.Random(f"{seed}:events")

    zmain = np.zeros(len(all_nodes), dtype=np.int64)
    zmain[base] = zone_assignment(nodes, zones, seed)
    zmain[new] = rng.randrange(zones)
    median = all_nodes[new].capacity
    victim = rng.choice([i for i in base if all_nodes[i].capacity == median])
    zcap = [sum(all_nodes[i].capacity for i in base if zmain[i] == z) for z in range(zones)]
    zone_gone = max(range(zones), key=lambda z: zcap[z])

    def layout(name: str, members: Sequence[int], zone_of: np.ndarray, prefix: str) -> Layout:
        return make_layout(name, all_nodes, members, zone_of, prefix, replicas, raw)

    layouts = [
        layout("base", base, zmain, "zone-"),
        layout("add_node", [*base, new], zmain, "zone-"),
        layout("remove_node", [i for i in base if i != victim], zmain, "zone-"),
    ]
    if zones > 1:
        rest = [i for i in base if zmain[i] != zone_gone]
        layouts.append(layout("remove_zone", rest, zmain, "zone-"))
    for z in sorted({1, 2, replicas} - {zones}):
        if z <= nodes:
            zo = np.zeros(len(all_nodes), dtype=np.int64)
            zo[base] = zone_assignment(nodes, z, seed)
            layouts.append(layout(f"zones_{z}", base, zo, f"z{z}-"))
    events = {"new": new, "victim": victim, "zone_gone": zone_gone}
    return all_nodes, layouts, events


def simulate(
    nodes: int = 100,
    chunks: int = 1_000_000,
    replicas: int = 3,
    zones: int = 10,
    seed: int = 42,
    verify: int = 20_000,
    workers: int = 1,
    block: int = 10_000,
    progress: bool = False,
    raw_weights: bool = False,
) -> dict[str, Any]:
    """Run the whole simulation and return every figure (raises if verification fails).

    Placement weights are ``tossit.placement.balanced`` of each layout, as the brain
    ranks nodes; ``raw_weights`` uses the bare capacities (the algorithm before that)."""
    t0 = time.perf_counter()
    all_nodes, layouts, ev = build(nodes, zones, replicas, seed, raw_weights)
    ids = [n.id for n in all_nodes]
    chunk_ids = make_chunks(chunks, seed)
    timing: dict[str, float] = {"setup_s": time.perf_counter() - t0}
    say = (lambda *a: print(*a, flush=True)) if progress else (lambda *a: None)

    init = (ids, layouts, replicas)
    pool = None
    if workers > 1:
        pool = mp.Pool(workers, initializer=init_worker, initargs=init)
    init_worker(*init)  # also in this process (workers == 1, near-ties, reference)
    try:
        # 1. verification: a sample placed both ways for every layout
        t = time.perf_counter()
        sample = chunk_ids[: min(verify, chunks)]
        vblock = max(1, min(block, -(-len(sample) // max(1, 4 * workers))))
        fast = list(run_blocks(pool, place_block, sample, vblock))
        ref = list(run_blocks(pool, reference_block, sample, vblock))
        mismatches = {}
        for lay in layouts:
            a = np.concatenate([f[0][lay.name] for f in fast])
            b = np.concatenate([r[lay.name] for r in ref])
            bad = np.flatnonzero((a != b).any(axis=1))
            if len(bad):
                mismatches[lay.name] = {
                    "count": len(bad),
                    "first_chunk": sample[bad[0]],
                    "vectorised": [ids[i] for i in a[bad[0]]],
                    "tossit.placement": [ids[i] for i in b[bad[0]]],
                }
        timing["verify_s"] = time.perf_counter() - t
        if mismatches:
            raise VerificationError(f"vectorised placement != tossit.placement: {mismatches}")
        say(
            f"verified: {len(sample):,} chunks x {len(layouts)} layouts identical to "
            f"tossit.placement.desired_nodes ({timing['verify_s']:.1f} s)"
        )

        # 2. the full run
        t = time.perf_counter()
        placed = {lay.name: np.empty((chunks, replicas), dtype=np.int16) for lay in layouts}
        ties = done = 0
        ties_by_layout = {lay.name: 0 for lay in layouts}
        next_report = 0.0
        for res, nt, per_layout in run_blocks(pool, place_block, chunk_ids, block):
            n = len(next(iter(res.values())))
            for name, arr in res.items():
                placed[name][done : done + n] = arr
            done += n
            ties += nt
            for name, k in per_layout.items():
                ties_by_layout[name] += k
            el = time.perf_counter() - t
            if done / chunks >= next_report or done == chunks:
                eta = el / done * (chunks - done)
                say(f"  placed {done:,}/{chunks:,} chunks  {el:6.1f} s  eta {eta:5.1f} s")
                next_report += 0.1
        timing["place_s"] = time.perf_counter() - t
    finally:
        if pool is not None:
            pool.close()
            pool.join()

    # 3. figures
    t = time.perf_counter()
    by = {lay.name: lay for lay in layouts}
    base = placed["base"]
    total_cap = sum(all_nodes[i].capacity for i in by["base"].members)
    new, victim, zone_gone = ev["new"], ev["victim"], ev["zone_gone"]
    zname = by["base"].zone_names
    base_counts = np.bincount(base.ravel(), minlength=len(all_nodes))

    moves: dict[str, Any] = {}
    new_cap = all_nodes[new].capacity
    add_counts = np.bincount(placed["add_node"].ravel(), minlength=len(all_nodes))
    moves["add_node"] = {
        "node": ids[new],
        "zone": zname[by["add_node"].zone_of[new]],
        "capacity_tb": new_cap / TB,
        "new_node_replica_share": float(add_counts[new] / base.size),
        **movement(
            base, placed["add_node"], int(add_counts[new]), new_cap / (total_cap + new_cap), new
        ),
    }
    vcap = all_nodes[victim].capacity
    moves["remove_node"] = {
        "node": ids[victim],
        "zone": zname[by["base"].zone_of[victim]],
        "capacity_tb": vcap / TB,
        **movement(base, placed["remove_node"], int(base_counts[victim]), vcap / total_cap, None),
    }
    if "remove_zone" in placed:
        gone = [i for i in by["base"].members if by["base"].zone_of[i] == zone_gone]
        gcap = sum(all_nodes[i].capacity for i in gone)
        moves["remove_zone"] = {
            "zone": zname[zone_gone],
            "nodes": len(gone),
            "capacity_tb": gcap / TB,
            **movement(
                base,
                placed["remove_zone"],
                int(base_counts[gone].sum()),
                gcap / total_cap,
                None,
            ),
        }

    util = {
        name: utilisation(placed[name], by[name], all_nodes, replicas)
        for name in placed
        if name == "base" or name.startswith("zones_")
    }
    spread = {name: distinct_zones(placed[name], by[name], replicas) for name in placed}
    timing["metrics_s"] = time.perf_counter() - t
    timing["total_s"] = time.perf_counter() - t0
    return {
        "params": {
            "nodes": nodes,
            "chunks": chunks,
            "replicas": replicas,
            "zones": zones,
            "seed": seed,
            "verify": len(sample),
            "workers": workers,
            "block": block,
            "disk_tb": list(DISK_TB),
            "disk_weights": list(DISK_WEIGHTS),
            "zone_sizes": zone_sizes(nodes, zones),
            "weights": "raw" if raw_weights else "balanced",
        },
        "cluster": {
            "total_capacity_tb": total_cap / TB,
            "median_capacity_tb": new_cap / TB,
            "nodes": [
                {
                    "id": all_nodes[i].id,
                    "zone": zname[by["base"].zone_of[i]],
                    "capacity_tb": all_nodes[i].capacity / TB,
                }
                for i in by["base"].members
            ],
        },
        "verification": {
            "chunks": len(sample),
            "layouts": [lay.name for lay in layouts],
            "identical": True,
            "near_ties_redone_exactly": ties,
            "near_ties_by_layout": ties_by_layout,
        },
        "weights": {lay.name: weight_factors(lay, all_nodes, raw_weights) for lay in layouts},
        "utilisation": util,
        "movement": moves,
        "distinct_zones": spread,
        "timing": timing,
    }


# --------------------------------------------------------------------------- report


def summary(res: dict[str, Any]) -> str:
    p, c = res["params"], res["cluster"]
    r = p["replicas"]
    lines = [
        f"TossIt placement simulation: {p['nodes']} nodes ({c['total_capacity_tb']:.0f} TB, "
        f"median disk {c['median_capacity_tb']:.0f} TB), {p['zones']} zones "
        f"(sizes {p['zone_sizes']}), {p['chunks']:,} chunks, R={r}, seed {p['seed']}",
        "weights: "
        + (
            "raw capacities (--raw-weights: no multi-pick correction)"
            if p["weights"] == "raw"
            else "tossit.placement.balanced(layout, R) for each layout, as the brain ranks"
        ),
        f"verified: {res['verification']['chunks']:,} chunks x "
        f"{len(res['verification']['layouts'])} layouts identical to "
        f"tossit.placement.desired_nodes; near-ties re-done exactly: "
        f"{res['verification']['near_ties_redone_exactly']}",
        "",
        "Utilisation: node's share of replicas / its share of capacity (1.00 = proportional)",
        f"{'layout':<10}{'min':>7}{'p1':>7}{'p99':>7}{'max':>7}{'std':>7}{'noise':>7}"
        f"{'model min':>10}{'model max':>10}{'resid':>7}{'full at':>9}",
    ]
    for name, u in res["utilisation"].items():
        q, m = u["ratio"], u.get("model")
        ms = (
            f"{m['min']:>10.3f}{m['max']:>10.3f}{m['residual_std']:>7.3f}"
            if m
            else f"{'-':>10}{'-':>10}{'-':>7}"
        )
        label = f"zones_{u['zones']}" if name == "base" else name
        lines.append(
            f"{label:<10}{q['min']:>7.3f}{q['p1']:>7.3f}"
            f"{q['p99']:>7.3f}{q['max']:>7.3f}{q['std']:>7.3f}{q['noise_std']:>7.3f}"
            f"{ms}{u['fill_at_first_full']:>8.1%}"
        )
    lines.append(
        "  noise = std from binomial sampling alone if placement were exactly proportional;"
        " model = skew predicted by"
    )
    lines.append(
        f"  successive sampling under the {p['weights']} weights (>= R zones, or of nodes with"
        " 1 zone); resid = std of measured / model;"
    )
    lines.append("  full at = cluster fill when the fullest node is full (1/max)")
    names = list(res["utilisation"])
    labels = [f"zones_{res['utilisation'][n]['zones']}" if n == "base" else n for n in names]
    lines += ["", "Mean ratio by disk size (nodes):  " + "  ".join(f"{x:>10}" for x in labels)]
    for tb in DISK_TB:
        cells = []
        for name in names:
            d = res["utilisation"][name]["by_disk_tb"].get(str(tb))
            cells.append(f"{d['mean_ratio']:.3f} ({d['nodes']:>2})" if d else "-")
        lines.append(f"  {tb:>2} TB" + " " * 21 + "  ".join(f"{x:>10}" for x in cells))
    for name, u in res["utilisation"].items():
        if u["zones"] == 1:
            continue
        lines += [
            "",
            f"Per zone ({name}, {u['zones']} zones): zone share of replicas vs of capacity",
            f"  {'zone':<9}{'nodes':>6}{'TB':>7}{'cap %':>8}{'repl %':>8}{'ratio':>7}{'model':>7}",
        ]
        for z in u["per_zone"]:
            model = f"{z['model_ratio']:>7.3f}" if "model_ratio" in z else f"{'-':>7}"
            lines.append(
                f"  {z['zone']:<9}{z['nodes']:>6}{z['capacity_tb']:>7.0f}"
                f"{z['capacity_share']:>8.1%}{z['replica_share']:>8.1%}{z['ratio']:>7.3f}{model}"
            )
    lines += [
        "",
        "Movement (fraction of all replicas that change node)",
        f"  {'event':<36}{'moved':>8}{'ideal':>8}{'x ideal':>8}{'cap ideal':>10}{'x cap':>7}"
        f"{'unneeded':>9}{'chunks':>8}",
    ]
    for name, m in res["movement"].items():
        what = {
            "add_node": f"add {m['capacity_tb']:.0f} TB node in {m.get('zone')}",
            "remove_node": f"remove {m['capacity_tb']:.0f} TB node in {m.get('zone')}",
            "remove_zone": f"remove {m.get('zone')} ({m.get('nodes')} nodes,"
            f" {m['capacity_tb']:.0f} TB)",
        }[name]
        lines.append(
            f"  {what:<36}{m['fraction_moved']:>8.3%}{m['ideal_fraction']:>8.3%}"
            f"{m['actual_over_ideal']:>8.3f}{m['ideal_capacity_fraction']:>10.3%}"
            f"{m['fraction_moved'] / m['ideal_capacity_fraction']:>7.3f}"
            f"{m['unneeded_moves']:>9}{m['chunks_touched']:>8.2%}"
        )
    lines.append(
        "  ideal = replicas the new node receives / the removed node(s) held (the minimum);"
        " cap ideal = capacity share;"
    )
    lines.append("  unneeded = moves beyond the minimum; chunks = chunks with >= 1 replica moved")
    lines += ["", f"Zone spreading: chunks whose {r} replicas are in min(R, zones) distinct zones"]
    for name, s in res["distinct_zones"].items():
        hist = ", ".join(f"{k} zones: {v:,}" for k, v in s["histogram"].items())
        lines.append(
            f"  {name:<12} zones={s['zones']:<3} want {s['expected_distinct']}: "
            f"{s['share_spread']:.4%}   ({hist})"
        )
        if "share_with_2plus_replicas" in s:
            two = ", ".join(f"{z}: {v:.1%}" for z, v in s["share_with_2plus_replicas"].items())
            lines.append(f"  {'':<12} chunks with 2+ replicas in one zone: {two}")
    t = res["timing"]
    lines += [
        "",
        f"time: {t['total_s']:.1f} s (verify {t['verify_s']:.1f} s, place {t['place_s']:.1f} s,"
        f" metrics {t['metrics_s']:.1f} s) with {p['workers']} workers",
    ]
    return "\n".join(lines)


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--chunks", type=int, default=1_000_000)
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--zones", type=int, default=10)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--verify", type=int, default=20_000, help="sample checked against tossit")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--block", type=int, default=10_000, help="chunks per work unit")
    ap.add_argument(
        "--raw-weights",
        action="store_true",
        help="weights = capacities, no multi-pick correction (placement before balancing)",
    )
    ap.add_argument(
        "--out",
        type=Path,
        help="default bench/results/sim-placement.json (sim-placement-raw.json with"
        " --raw-weights)",
    )
    a = ap.parse_args(argv)
    if a.out is None:
        name = "sim-placement-raw.json" if a.raw_weights else "sim-placement.json"
        a.out = ROOT / "bench/results" / name
    if a.replicas < 1 or a.nodes < a.replicas or not 1 <= a.zones <= a.nodes:
        ap.error("need 1 <= replicas <= nodes and 1 <= zones <= nodes")
    print(
        f"simulating {a.chunks:,} chunks on {a.nodes} nodes, {a.zones} zones, R={a.replicas}, "
        f"{'raw' if a.raw_weights else 'balanced'} weights, {a.workers} workers",
        flush=True,
    )
    try:
        res = simulate(
            a.nodes,
            a.chunks,
            a.replicas,
            a.zones,
            a.seed,
            a.verify,
            a.workers,
            a.block,
            True,
            a.raw_weights,
        )
    except VerificationError as e:
        print(f"ABORT: {e}", file=sys.stderr)
        return 2
    res["machine"] = {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
    }
    res["git_commit"] = git_commit()
    res["command"] = " ".join(["bench/sim_placement.py", *(argv or sys.argv[1:])])
    print()
    print(summary(res))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"\nwrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
