"""The words of a stuck repair (repair_plan.stuck_plans / stuck_message)."""

from __future__ import annotations

from tossit.brain.repair_plan import (
    REBALANCE,
    UNDER_REPLICATED,
    ChunkPlan,
    Copy,
    NodeInfo,
    plan_chunk,
    stuck_advice,
    stuck_message,
    stuck_plans,
)


def plan(copies: int, making: int = 0, unavailable: bool = False) -> ChunkPlan:
    p = ChunkPlan("c" * 64, copies, unavailable=unavailable)
    p.copy = [Copy("c" * 64, 1, ("a",), f"t{i}", UNDER_REPLICATED, copies)
              for i in range(making)]
    return p


def test_only_chunks_below_r_with_nowhere_to_go_are_stuck() -> None:
    ok, short, making, lost = plan(3), plan(2), plan(2, making=1), plan(0, unavailable=True)
    moving = plan(3)
    moving.copy = [Copy("c" * 64, 1, ("a",), "t", REBALANCE, 3)]
    partly = plan(1, making=1)  # one copy made, a third still has nowhere to go
    assert stuck_plans([ok, short, making, lost, moving, partly], 3) == [short, partly]


def test_stuck_follows_from_the_plan_when_every_writable_node_holds_a_copy() -> None:
    nodes = {n: NodeInfo(n, s) for n, s in (("a", "online"), ("b", "online"),
                                             ("c", "dead"))}
    p = plan_chunk("c" * 64, 10, {"a": "ok", "b": "ok", "c": "ok"}, nodes, 3,
                   ["a", "b"], ["a", "b"])
    assert p.copies == 2 and not p.copy
    assert stuck_plans([p], 3) == [p]


def test_the_message_says_how_many_need_which_copy_and_why_nodes_cannot_take_them() -> None:
    stuck = [plan(2) for _ in range(12)]
    assert stuck_message(stuck, 3, 2, ["nas-2 is full", "nas-3 offline"]) == (
        "repair is stuck: 12 chunks need a 3rd copy but only 2 nodes can take them "
        "(nas-2 is full, nas-3 offline)")
    assert stuck_message([plan(1)], 3, 1, ["nas-3 dead"]) == (
        "repair is stuck: 1 chunk needs a 2nd copy but only 1 node can take it (nas-3 dead)")
    assert stuck_message([plan(1), plan(2), plan(1, making=1)], 3, 0, []) == (
        "repair is stuck: 3 chunks are short of 3 copies but no node can take them")
    assert stuck_message([plan(0, making=0)], 1, 0, []) == (
        "repair is stuck: 1 chunk needs a 1st copy but no node can take it")


def test_what_to_do_about_a_stuck_repair() -> None:
    assert stuck_advice(3, 2, [("node-3", "dead")]) == "add a node, or bring back node-3"
    assert stuck_advice(3, 1, [("a", "offline"), ("b", "full")]) == (
        "add 2 nodes, or bring back a, or free space on b")
    assert stuck_advice(3, 0, [("a", "suspect"), ("b", "unreachable"), ("c", "draining"),
                               ("d", "refusing writes (its disk: EIO)")]) == (
        "add 3 nodes, or bring back a or b, or fix the disk of d, or undrain c")
    # Enough nodes, yet stuck (zones, copies already there): still one more helps.
    assert stuck_advice(2, 3, []) == "add a node"
