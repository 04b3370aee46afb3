"""Failure detection ages silence only while the brain runs (no servers)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tossit.brain.monitor import Monitor
from tossit.brain.registry import DEAD, OFFLINE, ONLINE, Registry
from tossit.config import BrainSettings


class RecordingStore:
    def __init__(self) -> None:
        self.events: list[str] = []

    async def set_node_state(self, *args: Any) -> None:
        pass

    async def add_event(self, kind: str, *args: Any, **kwargs: Any) -> None:
        self.events.append(kind)


def make_monitor() -> tuple[Monitor, Registry, RecordingStore]:
    settings = BrainSettings(heartbeat_interval=0.5, suspect_after=1.5, offline_after=3,
                             dead_after=10)
    reg = Registry(replicas=3, high_water=0.95)
    for i in range(3):
        reg.update({"id": f"n{i}", "name": f"node-{i}", "address": f"127.0.0.1:{9000 + i}",
                    "zone": "z", "capacity": 10**9, "used": 0, "free": 10**9,
                    "disk_total": 10**12, "disk_free": 10**12, "chunk_count": 0})
    store = RecordingStore()
    return Monitor(settings, store, reg), reg, store  # type: ignore[arg-type]


def test_a_pause_of_the_brain_is_not_node_silence() -> None:
    mon, reg, store = make_monitor()
    now = time.monotonic()
    asyncio.run(mon.run_once())
    # The brain stops for 5 s (no passes, no heartbeats handled); node-2 had been
    # silent for 2 s already, node-1 was dead.
    mon._last_pass = now - 5 - mon.period
    for v in reg.nodes.values():
        v.seen_mono = now - 5
    reg.nodes["n2"].seen_mono = now - 7
    reg.nodes["n1"].state = DEAD
    reg.nodes["n1"].seen_mono = now - 60
    asyncio.run(mon.run_once())
    assert reg.nodes["n0"].state == ONLINE
    assert reg.nodes["n2"].state == "suspect"  # its own 2 s still count
    assert reg.nodes["n1"].state == DEAD
    assert store.events == ["node_suspect"]


def test_silence_while_the_brain_runs_still_counts() -> None:
    mon, reg, store = make_monitor()
    asyncio.run(mon.run_once())
    reg.nodes["n0"].seen_mono -= 4  # passes kept coming: the node really was silent
    asyncio.run(mon.run_once())
    assert reg.nodes["n0"].state == OFFLINE
    assert store.events == ["node_offline"]


def test_a_lost_node_is_said_to_be_repaired_only_when_the_others_can_hold_r_copies() -> None:
    mon, reg, _ = make_monitor()  # three nodes, R = 3
    reg.update({"id": "n3", "name": "node-3", "address": "127.0.0.1:9003", "zone": "z",
                "capacity": 10**9, "used": 0, "free": 10**9, "disk_total": 10**12,
                "disk_free": 10**12, "chunk_count": 7})
    lost = reg.nodes["n3"]
    assert mon._what_now(lost) == "re-making copies of its 7 chunks on the other nodes"
    reg.nodes["n2"].state = DEAD
    assert mon._what_now(lost).startswith(
        "only 2 nodes left for 3 copies: its 7 chunks stay below 3 copies until another "
        "node joins")
    reg.nodes["n1"].written_off = True  # unreachable too long counts as gone
    reg.nodes["n0"].admin_state = "draining"
    assert mon._what_now(lost) == "no other node is left to make copies of its 7 chunks on"
