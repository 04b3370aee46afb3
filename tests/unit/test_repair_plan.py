"""Repair planning rules, one chunk at a time (no servers)."""

from __future__ import annotations

from tossit.brain.repair_plan import (
    CORRUPT,
    DRAIN,
    EXTRA,
    MISSING,
    REBALANCE,
    UNDER_REPLICATED,
    ChunkPlan,
    NodeInfo,
    plan_chunk,
)

R = 3


def cluster(**states: str) -> dict[str, NodeInfo]:
    out = {}
    for node_id, st in states.items():
        state, _, admin = st.partition("/")
        out[node_id] = NodeInfo(node_id, state, admin or None)
    return out


def plan(replicas: dict[str, str], nodes: dict[str, NodeInfo], desired: list[str],
         order: list[str] | None = None) -> ChunkPlan:
    if order is None:
        order = [n for n in desired + sorted(nodes) if nodes[n].state == "online"
                 and nodes[n].admin_state is None]
        order = list(dict.fromkeys(order))
    return plan_chunk("c1", 100, replicas, nodes, R, desired, order)


def test_healthy_chunk_in_place_needs_nothing() -> None:
    nodes = cluster(a="online", b="online", c="online", d="online")
    p = plan({"a": "ok", "b": "ok", "c": "ok"}, nodes, ["a", "b", "c"])
    assert p.copies == 3 and not p.copy and not p.drop and not p.unavailable


def test_dead_node_copy_is_replaced_from_a_live_one() -> None:
    nodes = cluster(a="online", b="online", c="dead", d="online")
    p = plan({"a": "ok", "b": "ok", "c": "ok"}, nodes, ["a", "b", "d"])
    assert p.copies == 2
    assert [(c.target, c.reason, c.copies) for c in p.copy] == [("d", UNDER_REPLICATED, 2)]
    assert set(p.copy[0].sources) == {"a", "b"}
    assert not p.drop  # the dead node's row stays: if it comes back, it is an extra


def test_a_plan_says_whose_copies_no_longer_count() -> None:
    nodes = cluster(a="online", b="online", c="dead", d="online/draining", e="online")
    p = plan({"a": "ok", "b": "corrupt", "c": "ok", "d": "ok", "gone": "ok"}, nodes,
             ["a", "e", "b"])
    assert p.lost_on == (("b", "corrupt copy"), ("c", "dead"), ("d", "draining"),
                         ("gone", "removed"))


def test_offline_node_within_grace_still_counts() -> None:
    nodes = cluster(a="online", b="online", c="offline", d="online")
    p = plan({"a": "ok", "b": "ok", "c": "ok"}, nodes, ["a", "b", "c"], ["a", "b", "d"])
    assert p.copies == 3 and not p.copy and not p.drop


def test_one_copy_left_gets_two_new_ones() -> None:
    nodes = cluster(a="online", b="dead", c="dead", d="online", e="online")
    p = plan({"a": "ok", "b": "ok", "c": "ok"}, nodes, ["a", "d", "e"])
    assert p.copies == 1 and sorted(c.target for c in p.copy) == ["d", "e"]
    assert all(c.copies == 1 for c in p.copy)


def test_no_readable_copy_is_unavailable() -> None:
    nodes = cluster(a="offline", b="dead", c="dead", d="online")
    p = plan({"a": "ok", "b": "ok", "c": "ok"}, nodes, ["a", "d"], ["d"])
    assert p.unavailable and not p.copy


def test_node_back_after_dead_is_an_extra_copy_dropped_once_safe() -> None:
    # c died, d got a copy, then c came back: four copies, c is not wanted.
    nodes = cluster(a="online", b="online", c="online", d="online")
    p = plan({"a": "ok", "b": "ok", "c": "ok", "d": "ok"}, nodes, ["a", "b", "d"])
    assert not p.copy
    assert [(d.node_id, d.reason, d.on_node) for d in p.drop] == [("c", EXTRA, True)]


def test_never_drop_below_r_online() -> None:
    # Four copies but one of the wanted ones is offline: keep the extra for now.
    nodes = cluster(a="online", b="online", c="online", d="offline")
    p = plan({"a": "ok", "b": "ok", "c": "ok", "d": "ok"}, nodes, ["a", "b", "d"],
             ["a", "b", "c"])
    assert not p.drop and not p.copy


def test_rebalance_copies_to_the_new_node_then_drops_the_old() -> None:
    nodes = cluster(a="online", b="online", c="online", d="online")
    step1 = plan({"a": "ok", "b": "ok", "c": "ok"}, nodes, ["a", "b", "d"])
    assert [(c.target, c.reason) for c in step1.copy] == [("d", REBALANCE)]
    assert not step1.drop  # c stays until d has its copy
    step2 = plan({"a": "ok", "b": "ok", "c": "ok", "d": "ok"}, nodes, ["a", "b", "d"])
    assert not step2.copy and [(d.node_id, d.reason) for d in step2.drop] == [("c", EXTRA)]


def test_drain_moves_everything_off_without_going_below_r() -> None:
    nodes = cluster(a="online", b="online", c="online/draining", d="online")
    step1 = plan({"a": "ok", "b": "ok", "c": "ok"}, nodes, ["a", "b", "d"])
    assert step1.copies == 2
    assert [(c.target, c.reason) for c in step1.copy] == [("d", UNDER_REPLICATED)]
    assert step1.copy[0].sources[-1] == "c"  # the draining node is the last resort source
    assert not step1.drop
    step2 = plan({"a": "ok", "b": "ok", "c": "ok", "d": "ok"}, nodes, ["a", "b", "d"])
    assert not step2.copy and [(d.node_id, d.reason) for d in step2.drop] == [("c", DRAIN)]


def test_drain_does_not_wait_for_an_offline_node() -> None:
    # d is offline (within its grace period) and counts; c is draining. The chunk
    # has R counted copies but only two online ones besides c: a spare online copy
    # on e first, then c's copy goes; d's copy becomes an extra later.
    nodes = cluster(a="online", b="online", c="online/draining", d="offline", e="online")
    step1 = plan({"a": "ok", "c": "ok", "d": "ok"}, nodes, ["a", "d", "b"])
    assert [(c.target, c.reason) for c in step1.copy] == [("b", UNDER_REPLICATED)]
    step2 = plan({"a": "ok", "b": "ok", "c": "ok", "d": "ok"}, nodes, ["a", "d", "b"])
    assert [(c.target, c.reason) for c in step2.copy] == [("e", DRAIN)]
    assert not step2.drop  # c stays until e has its copy
    step3 = plan({"a": "ok", "b": "ok", "c": "ok", "d": "ok", "e": "ok"}, nodes,
                 ["a", "d", "b"])
    assert not step3.copy and [(d.node_id, d.reason) for d in step3.drop] == [("c", DRAIN)]
    # With no spare node the drain waits rather than go below R online copies.
    small = cluster(a="online", b="online", c="online/draining", d="offline")
    stuck = plan({"a": "ok", "b": "ok", "c": "ok", "d": "ok"}, small, ["a", "d", "b"])
    assert not stuck.copy and not stuck.drop


def test_corrupt_and_missing_rows() -> None:
    nodes = cluster(a="online", b="online", c="online", d="online")
    p = plan({"a": "ok", "b": "ok", "c": "corrupt"}, nodes, ["a", "b", "c"])
    # The corrupt copy's node is the best target: the copy overwrites (repairs) it.
    assert [(c.target, c.reason) for c in p.copy] == [("c", UNDER_REPLICATED)]
    assert not p.drop
    p = plan({"a": "ok", "b": "ok", "c": "missing", "d": "corrupt"}, nodes, ["a", "b", "c"])
    assert [c.target for c in p.copy] == ["c"]
    assert [(d.node_id, d.reason, d.on_node) for d in p.drop] == [("d", CORRUPT, True)]
    p = plan({"a": "ok", "b": "ok", "d": "ok", "c": "missing"}, nodes, ["a", "b", "d"])
    assert [(d.node_id, d.reason, d.on_node) for d in p.drop] == [("c", MISSING, False)]


def test_a_doubtful_pack_copy_is_neither_counted_nor_forgotten() -> None:
    """A pack write that may have landed (``manifest_rows.DOUBTFUL``): not a copy
    to count or read, and its row stays (the collector asks that node to delete
    the pack when it is dropped); a copy made there turns it into an ok one."""
    nodes = cluster(a="online", b="online", c="online", d="online")
    p = plan({"a": "ok", "b": "ok", "c": "doubtful"}, nodes, ["a", "b", "c"])
    assert p.copies == 2 and [c.target for c in p.copy] == ["c"] and not p.drop
    p = plan({"a": "ok", "b": "ok", "d": "ok", "c": "doubtful"}, nodes, ["a", "b", "d"])
    assert not p.copy and not p.drop


def test_corrupt_copies_stay_while_no_good_copy_can_be_read() -> None:
    nodes = cluster(a="online", b="online", c="online", d="offline")
    every = plan({"a": "corrupt", "b": "corrupt", "c": "corrupt"}, nodes, ["a", "b", "c"])
    assert every.unavailable and not every.copy and not every.drop
    # The one good copy is on a node that is away: the damaged ones wait for it.
    away = plan({"a": "corrupt", "b": "corrupt", "d": "ok"}, nodes, ["a", "b", "d"])
    assert away.unavailable and not away.drop
    # Once a good copy can be read, the damaged one goes (the copies repair the rest).
    back = plan({"a": "corrupt", "b": "ok", "c": "ok"}, nodes, ["b", "c", "d"], ["b", "c"])
    assert [(d.node_id, d.reason, d.on_node) for d in back.drop] == [("a", CORRUPT, True)]


def test_unknown_node_rows_are_dropped_from_metadata() -> None:
    nodes = cluster(a="online", b="online", c="online")
    p = plan({"a": "ok", "b": "ok", "c": "ok", "gone": "ok"}, nodes, ["a", "b", "c"])
    assert [(d.node_id, d.reason, d.on_node) for d in p.drop] == [("gone", MISSING, False)]


# -- which holder a copy is read from ------------------------------------------


def test_copies_are_read_from_every_holder_not_one() -> None:
    from collections import Counter

    from tossit.brain.repair_plan import spread_sources

    holders = ["a", "b", "c"]
    firsts = Counter(spread_sources(f"{i:064x}", holders, {})[0] for i in range(900))
    assert set(firsts) == set(holders)
    assert all(200 < n < 400 for n in firsts.values()), firsts  # about a third each


def test_the_least_busy_holder_is_read_first_and_the_others_stay_as_fallback() -> None:
    from tossit.brain.repair_plan import spread_sources

    for i in range(50):
        order = spread_sources(f"{i:064x}", ["a", "b", "c"], {"a": 2, "b": 1})
        assert order == ["c", "b", "a"]
    # Equal load: a chunk's order is stable (a retry asks in the same order),
    # every holder is in it once.
    order = spread_sources("f" * 64, ["a", "b", "c", "b"], {})
    assert sorted(order) == ["a", "b", "c"]
    assert spread_sources("f" * 64, ["c", "b", "a"], {}) == order


def test_a_better_tier_wins_over_a_lighter_load() -> None:
    from tossit.brain.repair_plan import spread_sources

    tier = {"a": 0, "b": 2, "c": 1}  # b suspect, c draining
    for i in range(50):
        assert spread_sources(f"{i:064x}", ["b", "c", "a"], {"a": 5}, tier) == ["a", "c", "b"]


def test_a_repair_pass_reads_from_every_holder_and_keeps_the_others_as_fallback() -> None:
    """The repairer itself (with a recording node client): a dead node's chunks,
    each held by the same two survivors, are read from both, about half each,
    and every order still names both (the target falls back to the second)."""
    import asyncio
    from collections import Counter
    from typing import Any

    from tossit.brain.registry import NodeView, Registry
    from tossit.brain.repair import Repairer
    from tossit.brain.repair_plan import Copy
    from tossit.config import BrainSettings

    reg = Registry(replicas=3, high_water=0.95)
    for n in ("a", "b", "t"):
        reg.update({"id": n, "name": n, "address": f"http://{n}:1", "zone": "z",
                    "capacity": 10**12, "used": 0, "free": 10**12, "disk_total": 10**12,
                    "disk_free": 10**12, "chunk_count": 0})

    class Nodes:
        def __init__(self) -> None:
            self.orders: list[list[str]] = []

        async def replicate(self, target: NodeView, cid: str, sources: list[NodeView],
                            kind: str) -> None:
            self.orders.append([s.id for s in sources])
            await asyncio.sleep(0.001)

    class Pins:
        async def pin(self, cid: str) -> None: ...
        def unpin(self, cid: str) -> None: ...

    class Store:
        async def add_replicas(self, cid: str, nodes: list[str]) -> None: ...

    nodes = Nodes()
    fakes: Any = (Store(), nodes, Pins())
    repairer = Repairer(BrainSettings(), fakes[0], reg, fakes[1], fakes[2])
    # The plan lists the holders in one fixed order ("a" first), as it used to read.
    copies = [Copy(f"{i:064x}", 100, ("a", "b"), "t", "under-replicated", 2)
              for i in range(40)]
    assert asyncio.run(repairer._copy_all(copies)) == 40
    firsts = Counter(order[0] for order in nodes.orders)
    assert 12 <= firsts["a"] <= 28 and firsts["a"] + firsts["b"] == 40, firsts
    assert all(sorted(order) == ["a", "b"] for order in nodes.orders)
