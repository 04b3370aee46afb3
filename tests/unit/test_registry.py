"""The registry's per-chunk lists agree with placement (no servers)."""

from __future__ import annotations

from tossit.brain.registry import DEAD, OFFLINE, Registry
from tossit.placement import Candidate, desired_nodes


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
