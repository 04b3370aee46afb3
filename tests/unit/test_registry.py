"""The registry's per-chunk lists agree with placement (no servers)."""

from __future__ import annotations

import pytest

from tossit.brain.registry import (
    DEAD,
    DRAINED,
    OFFLINE,
    NodeView,
    Registry,
    cluster_capacity,
    room_at,
    shared_fates,
)
from tossit.chunking import META_ROOM
from tossit.placement import Candidate, balanced, desired_nodes


def make_registry() -> Registry:
    reg = Registry(replicas=3, high_water=0.95)
    for i in range(7):
        reg.update({"id": f"n{i}", "name": f"node-{i}", "address": f"127.0.0.1:{9000 + i}",
                    "zone": f"z{i % 3}", "capacity": (i + 1) * 10**9, "used": 0,
                    "free": 10**12, "disk_total": 10**12, "disk_free": 10**12,
                    "chunk_count": 0})
    reg.nodes["n1"].state = OFFLINE
    reg.nodes["n2"].state = DEAD
    reg.nodes["n3"].admin_state = "draining"
    return reg


def test_repair_targets_match_placement_and_write_order() -> None:
    reg = make_registry()
    counted = [n for n in reg.nodes.values() if n.state != DEAD and n.admin_state is None]
    for i in range(300):
        cid = f"{i:064x}"
        desired, order = reg.repair_targets(cid, 4096)
        assert desired == desired_nodes(
            cid, [Candidate(n.id, float(n.capacity), n.zone) for n in counted], 3)
        assert order == [n.id for n in reg.write_order(cid, 4096, set())]
        assert "n1" not in order and "n2" not in order and "n3" not in order
        assert "n2" not in desired and "n3" not in desired


def test_every_ranking_uses_the_weights_balanced_over_the_counted_nodes() -> None:
    # Uneven zones: the weights are corrected for the multi-pick skew, over the
    # nodes whose copies count, and writers, the repairer and the file info all
    # rank with them (else a write would land where the repairer moves it from).
    reg = Registry(replicas=2, high_water=0.95)
    zones = ["a", "b", "b", "c", "c", "c", "d"]
    for i, z in enumerate(zones):
        reg.update({"id": f"n{i}", "name": f"node-{i}", "address": f"127.0.0.1:{9000 + i}",
                    "zone": z, "capacity": (1 + i % 3) * 10**9, "used": 0, "free": 10**12,
                    "disk_total": 10**12, "disk_free": 10**12, "chunk_count": 0})
    reg.nodes["n6"].state = DEAD

    def expected() -> list[Candidate]:
        counted = [n for n in reg.nodes.values() if n.state != DEAD]
        return balanced([Candidate(n.id, float(n.capacity), n.zone) for n in counted], 2)

    weights = {c.id: c.weight for c in expected()}
    assert weights != {n.id: float(n.capacity) for n in reg.nodes.values() if n.id != "n6"}
    for i in range(200):
        cid = f"{i:064x}"
        want = desired_nodes(cid, expected(), 2)
        desired, order = reg.repair_targets(cid, 4096)
        assert desired == want == reg.desired(cid)
        assert [n.id for n in reg.write_order(cid, 4096, set())] == order
    # A capacity change is seen at once.
    reg.update({"id": "n0", "capacity": 9 * 10**9})
    assert reg.desired(f"{7:064x}") == desired_nodes(f"{7:064x}", expected(), 2)
    assert reg.candidates([reg.nodes["n0"]])[0].weight == next(
        c.weight for c in expected() if c.id == "n0")


def test_the_repairer_plans_every_chunk_only_when_the_nodes_change() -> None:
    import time
    from typing import Any

    from tossit.brain.repair import Repairer
    from tossit.config import BrainSettings

    reg = make_registry()
    none: Any = None
    rep = Repairer(BrainSettings(), none, reg, none, none)
    assert rep._needs_full_pass()  # never planned yet
    rep._full_key, rep._full_at = rep.registry.placement_key(), time.monotonic()
    rep._full_work = False
    assert not rep._needs_full_pass()
    reg.nodes["n0"].state = OFFLINE  # its copies still count: nothing to re-plan
    reg.nodes["n4"].rtt_ms = 3.0
    reg.nodes["n4"].transfer_ms = 3.0
    assert not rep._needs_full_pass()
    for change in ("dead", "drain", "capacity", "zone", "joined"):
        reg = make_registry()
        rep.registry = reg
        rep._full_key = rep.registry.placement_key()
        assert not rep._needs_full_pass()
        if change == "dead":
            reg.nodes["n0"].state = DEAD
        elif change == "drain":
            reg.nodes["n0"].admin_state = "draining"
        elif change == "capacity":
            reg.nodes["n0"].capacity *= 2
        elif change == "zone":
            reg.nodes["n0"].zone = "elsewhere"
        else:
            reg.update({"id": "n9", "name": "node-9", "address": "127.0.0.1:9999",
                        "zone": "z0", "capacity": 10**9, "used": 0, "free": 10**12,
                        "disk_total": 10**12, "disk_free": 10**12, "chunk_count": 0})
        assert rep._needs_full_pass(), change
    rep._full_key = rep.registry.placement_key()
    rep._full_work = True  # the last full pass left moves for later
    assert rep._needs_full_pass()
    rep._full_work, rep._full_at = False, time.monotonic() - 4000  # an hour went by
    assert rep._needs_full_pass()


def _view(name: str, disk: str | None, capacity: int = 100, used: int = 0, free: int = 100,
          zone: str = "z", admin: str | None = None) -> NodeView:
    return NodeView(id=name, name=name, address="", zone=zone, state="online",
                    capacity=capacity, used=used, free=free, disk_total=1000, disk_free=free,
                    chunk_count=0, disk_id=disk, admin_state=admin)


def test_shared_fates_name_the_disks_and_machines_copies_share() -> None:
    cases: list[tuple[list[NodeView], list[tuple[str, str, tuple[str, ...]]]]] = [
        # Three machines, a disk each: nothing to say.
        ([_view("a", "h1:1"), _view("b", "h2:1"), _view("c", "h3:1")], []),
        # tossit up: three nodes on one disk (one warning, not a second for the host).
        ([_view("n1", "lab:7"), _view("n2", "lab:7"), _view("n3", "lab:7")],
         [("disk", "lab:7", ("n1", "n2", "n3"))]),
        # Two disks in one machine, one node each, and a machine of its own.
        ([_view("a", "nas:1"), _view("b", "nas:2"), _view("c", "pi:1")],
         [("host", "nas", ("a", "b"))]),
        # Both: a shared disk, and a third node on the same machine's other disk.
        ([_view("a", "nas:1"), _view("b", "nas:1"), _view("c", "nas:2"), _view("d", "pi:1")],
         [("disk", "nas:1", ("a", "b")), ("host", "nas", ("a", "b", "c"))]),
        # A drained node holds nothing; nodes that never said their disk are left out.
        ([_view("a", "h:1"), _view("b", "h:1", admin=DRAINED), _view("c", None),
          _view("d", None)], []),
    ]
    for nodes, want in cases:
        got = [(f.kind, f.where, f.nodes) for f in shared_fates(nodes)]
        assert got == want, (nodes, got)
    fate = shared_fates([_view("n1", "lab:7"), _view("n2", "lab:7"), _view("n3", "lab:7")])[0]
    assert fate.message() == ("n1, n2 and n3 store on one disk (lab:7): copies on them do not "
                              "protect against that disk failing")


def test_a_reinstalled_node_is_told_apart_and_a_dead_one_left_out() -> None:
    """A node re-installed on the same disk (a new id, its old self offline and
    not removed yet) was named twice, 'node-1, node-1 and node-2 store on one
    disk': each is told apart by its id's start. A dead node's copies no longer
    count: it is left out."""
    old = _view("node-1", "lab:7")
    old.id, old.state = "50d779e0aaaa", "offline"
    new = _view("node-1", "lab:7")
    new.id = "011b497dbbbb"
    dead = _view("node-0", "lab:7")
    dead.state = "dead"
    fates = shared_fates([old, new, _view("node-2", "lab:7"), dead])
    assert [(f.kind, f.nodes) for f in fates] == [("disk", ("node-1", "node-1", "node-2"))]
    assert fates[0].message() == (
        "node-1 (011b497d), node-1 (50d779e0) and node-2 store on one disk (lab:7): copies "
        "on them do not protect against that disk failing")
    assert shared_fates([dead, _view("node-2", "lab:7")]) == []


def test_room_is_what_fits_more_at_r_copies() -> None:
    # Three equal nodes, a third full: room for what is left of one node.
    even = [_view(n, f"{n}:1", capacity=300, used=100, free=200) for n in "abc"]
    assert room_at(even, 3, free=600) == 200
    # A small node caps the room at what it has left (copies need distinct nodes).
    uneven = [*even[:2], _view("c", "c:1", capacity=100, used=90, free=10)]
    assert room_at(uneven, 3, free=410) == 10
    # One shared disk: no more than its free space over R, whatever the limits say.
    shared = [_view(n, "h:1", capacity=1000, used=0, free=90) for n in "abc"]
    assert room_at(shared, 3, free=90) == 30
    # A draining node takes no new data.
    assert room_at([*even, _view("d", "d:1", capacity=900, free=900, admin="draining")], 3,
                   free=1500) == 200


def test_no_room_at_r_copies_when_fewer_nodes_than_r_can_take_them() -> None:
    """R = 3 on two nodes with room (the third dead, full or draining): nothing
    more fits at 3 copies. What the two can take goes in at 2 copies, said apart
    (the dashboard said "room for about 19.2 GiB more at 3 copies")."""
    two = [_view(n, f"{n}:1", capacity=300, used=100, free=200) for n in "ab"]
    assert room_at(two, 3, free=400) == 0
    cap = cluster_capacity(two, 3)
    assert cap["room"] == 0 and cap["nodes_with_room"] == 2
    assert cap["room_fewer_copies"] == 200  # 2 copies of 200 more on two nodes
    # A full node or a draining one takes no copy either.
    full = _view("c", "c:1", capacity=300, used=300, free=0)
    draining = _view("d", "d:1", capacity=900, free=900, admin="draining")
    cap = cluster_capacity([*two, full, draining], 3)
    assert cap["room"] == 0 and cap["nodes_with_room"] == 2
    assert cap["room_fewer_copies"] == 200
    # Enough nodes: the room at R, and nothing said apart.
    cap = cluster_capacity([*two, _view("c", "c:1", capacity=300, used=100, free=200)], 3)
    assert cap["room"] == 200 and cap["nodes_with_room"] == 3
    assert cap["room_fewer_copies"] == 0
    # No node with room at all.
    cap = cluster_capacity([full], 3)
    assert cap["room"] == 0 and cap["nodes_with_room"] == 0 and cap["room_fewer_copies"] == 0


def test_an_unreachable_node_is_gone_only_once_written_off() -> None:
    """The probe's outcome starts (and a later answer ends) the unreachable
    clock; a new problem text does not restart it; ``gone`` (copies no longer
    count) is the dead state or a write-off, which an answer undoes."""
    v = _view("a", None)
    assert v.unreachable_since is None and not v.gone
    v.set_address_problem("does not answer")
    since = v.unreachable_since
    assert since is not None and not v.gone  # unreachable: still counts, for now
    v.set_address_problem("connection refused")
    assert v.unreachable_since == since  # the same episode
    v.written_off = True
    assert v.gone
    v.set_address_problem(None)
    assert v.unreachable_since is None and not v.written_off and not v.gone
    v.state = "dead"
    assert v.gone


def test_reads_go_to_the_copy_expected_to_answer_first() -> None:
    """Read order: penalties first, then (reads on their way + 1) x the node's
    usual transfer time, so reads spread over the copies in proportion to speed
    instead of all going to the fastest node."""
    reg = Registry(replicas=3, high_water=0.95)
    for i in range(3):
        reg.update({"id": f"n{i}", "name": f"node-{i}", "address": f"127.0.0.1:{9000 + i}",
                    "zone": "z", "capacity": 10**12, "used": 0, "free": 10**12,
                    "disk_total": 10**12, "disk_free": 10**12, "chunk_count": 0})
    ids = ["n0", "n1", "n2"]
    fast, mid, slow = (reg.nodes[n] for n in ids)
    fast.transfer_ms, mid.transfer_ms, slow.transfer_ms = 10.0, 20.0, 50.0

    def order() -> list[str]:
        return [v.id for v in reg.read_order(ids)]

    cases = [  # reads on their way to n0, n1, n2 -> expected order (ties: id order)
        ((0, 0, 0), ["n0", "n1", "n2"]),  # 10, 20, 50
        ((1, 0, 0), ["n0", "n1", "n2"]),  # 20, 20, 50
        ((2, 0, 0), ["n1", "n0", "n2"]),  # 30, 20, 50
        ((4, 1, 0), ["n1", "n0", "n2"]),  # 50, 40, 50
        ((5, 2, 0), ["n2", "n0", "n1"]),  # 60, 60, 50
    ]
    for out, expected in cases:
        fast.reads_out, mid.reads_out, slow.reads_out = out
        assert order() == expected, out
    # Penalties come before load: a late or unreachable node is asked last
    # however many reads the others have on their way.
    fast.reads_out, mid.reads_out, slow.reads_out = 0, 50, 50
    fast.slow_until = 1e18
    assert order() == ["n1", "n2", "n0"]
    fast.slow_until = 0.0
    mid.unreachable_until = 1e18
    assert order() == ["n0", "n2", "n1"]


def test_why_a_node_takes_no_writes_is_said_in_a_few_words() -> None:
    """What /ready lists for the nodes that cannot take a write."""
    full = _view("n1", None, capacity=100, used=100, free=0)
    drained = _view("n2", None, admin="draining")
    assert not full.writable(1, 1.0, 0.0) and full.why_not_writable(0.0) == "full"
    assert drained.why_not_writable(0.0) == "draining"
    drained.admin_state, drained.state = None, "suspect"
    assert drained.why_not_writable(0.0) == "suspect"
    skipped = _view("n3", None)
    skipped.unreachable_until = 10.0
    assert not skipped.writable(1, 1.0, 5.0)
    assert skipped.why_not_writable(5.0).startswith("skipped for a few seconds")
    # Over the high-water mark (95%): no data, but a manifest pack still goes,
    # into the room kept over the limit, and no further.
    high = _view("n5", None, capacity=1000, used=960, free=40)
    high.disk_free = 10 << 20
    assert not high.writable(1, 0.95, 0.0) and high.writable(1000, 0.95, 0.0, meta=True)
    high.used = 1000 + META_ROOM
    assert not high.writable(1, 0.95, 0.0, meta=True)
    read_only = _view("n4", None)
    read_only.write_error = "Read-only file system"
    assert not read_only.writable(1, 1.0, 0.0)
    assert read_only.why_not_writable(0.0) == (
        "refusing writes (its disk: Read-only file system)")
    assert read_only.to_dict()["write_error"] == "Read-only file system"


def test_a_node_whose_transfers_keep_failing_is_skipped_longer_despite_its_heartbeats(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Its data port hangs, its heartbeats arrive: each failed transfer doubles
    the time writers skip it, and a heartbeat does not end it; a transfer that
    works does, and so does a heartbeat after a silence (a paused node woke)."""
    from tossit.brain import registry as reg_mod

    clock = [1000.0]
    monkeypatch.setattr(reg_mod.time, "monotonic", lambda: clock[0])
    reg = make_registry()
    n0 = reg.nodes["n0"]
    report = {"id": "n0", "used": 0}

    def skipped_for() -> float:
        return n0.unreachable_until - clock[0]

    reg.update(report)
    reg.mark_unreachable("n0")
    assert skipped_for() == 5.0
    clock[0] += 1
    reg.update(report)  # heartbeats go on: the penalty stands
    reg.mark_unreachable("n0")
    assert skipped_for() == 10.0 and n0.strikes == 2
    for _ in range(10):
        reg.mark_unreachable("n0")
    assert skipped_for() == reg_mod.UNREACHABLE_MAX_PENALTY
    reg.observe_latency("n0", 0.01)  # a transfer worked
    assert n0.unreachable_until == 0.0 and n0.strikes == 0

    reg.mark_unreachable("n0")
    clock[0] += reg.away_after + 1  # silent meanwhile: paused, then woke
    reg.update(report)
    assert n0.unreachable_until == 0.0 and n0.strikes == 0

    reg.mark_unreachable("n0", transfer=False)  # a disk error: its heartbeat says more
    clock[0] += 1
    reg.update(report)
    assert n0.unreachable_until == 0.0


def test_a_node_marked_away_is_tried_again_when_it_reports_however_short_its_silence(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed and restarted within ``away_after`` (a test cluster's short
    timeouts, a quick systemd restart): the brain had marked it offline, so its
    next report ends the penalty its failed transfers earned while it was down."""
    from tossit.brain import registry as reg_mod

    clock = [1000.0]
    monkeypatch.setattr(reg_mod.time, "monotonic", lambda: clock[0])
    reg = make_registry()
    n0 = reg.nodes["n0"]
    report = {"id": "n0", "used": 0}
    reg.update(report)
    for _ in range(4):
        reg.mark_unreachable("n0")
    n0.state = reg_mod.OFFLINE
    clock[0] += reg.away_after / 2
    reg.update(report)
    assert n0.unreachable_until == 0.0 and n0.strikes == 0 and n0.state == reg_mod.ONLINE
