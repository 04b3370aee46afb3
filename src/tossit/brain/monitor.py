"""Failure detection: ages heartbeats into node states.

``online`` -> ``suspect`` after ``suspect_after`` seconds of silence (still
used for reads, no new writes) -> ``offline`` after ``offline_after`` (skipped
by reads and writes, but its copies still count: a reboot must not start a
repair storm) -> ``dead`` after ``dead_after`` (its copies stop counting and the
repairer re-replicates them). Every change wakes the repairer.

Silence is counted only while the brain itself was running: after a pause of
the brain (CPU starvation, a stalled event loop, SIGSTOP, a suspended VM) the
heartbeats that arrived meanwhile still wait in its sockets, so the pause is
not held against the nodes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from tossit.brain.registry import (
    DEAD,
    OFFLINE,
    ONLINE,
    SUSPECT,
    UNREACHABLE,
    NodeView,
    Registry,
)
from tossit.brain.states import EventKind
from tossit.brain.store import Store
from tossit.config import BrainSettings, format_duration, plural
from tossit.periodic import Periodic

log = logging.getLogger("tossit.brain.monitor")


class Monitor(Periodic):
    name = "monitor"

    def __init__(self, settings: BrainSettings, store: Store, registry: Registry,
                 on_change: Callable[[], None] = lambda: None) -> None:
        super().__init__()
        self.settings = settings
        self.store = store
        self.registry = registry
        self.on_change = on_change
        self.period = min(1.0, self.settings.heartbeat_interval / 2)
        self.retry_after = self.period
        self._last_pass: float | None = None

    async def next_delay(self) -> float:
        return self.period

    def _excuse_own_pause(self, now: float) -> None:
        """Passes come every ``period``; a longer gap is time the brain was not
        running, and nodes get it back (the dead stay dead)."""
        if self._last_pass is not None:
            paused = now - self._last_pass - self.period
            if paused > self.settings.heartbeat_interval:
                log.warning("the brain was paused for %.1f s: not counted as node silence",
                            paused)
                for node in self.registry.nodes.values():
                    if node.state != DEAD:
                        node.seen_mono = min(now, node.seen_mono + paused)
        self._last_pass = now

    def _what_now(self, lost: NodeView) -> str:
        """What happens to a lost node's copies, truthfully: re-made on the
        others, or (too few nodes left for R copies) not until one joins."""
        chunks = plural(lost.chunk_count, "chunk")
        left = sum(1 for n in self.registry.nodes.values()
                   if n.id != lost.id and not n.gone and n.admin_state is None)
        r = self.settings.replicas
        if left >= r:
            return f"re-making copies of its {chunks} on the other nodes"
        return (f"only {plural(left, 'node')} left for {r} copies: its {chunks} stay below "
                f"{r} copies until another node joins (copies are made up to what the "
                "remaining nodes can hold)" if left else
                f"no other node is left to make copies of its {chunks} on")

    async def _write_off(self, node: NodeView, now: float) -> bool:
        """A node that heartbeats but has been unreachable for ``dead_after``:
        its copies stop counting and are re-made elsewhere (it is never silent,
        so it would otherwise never be declared dead, while nothing can be read
        from it). Its copies count again once it answers."""
        since = node.unreachable_since
        if (node.written_off or since is None or node.state == DEAD
                or now - since < self.settings.dead_after):
            return False
        node.written_off = True
        msg = (f"{node.name} unreachable for {format_duration(now - since)} "
               f"({node.address_problem}): its copies no longer count; {self._what_now(node)}")
        log.error(msg)
        await self.store.add_event(EventKind.NODE_UNREACHABLE, msg, severity="error",
                                   node_id=node.id)
        return True

    async def run_once(self) -> list[tuple[str, str, str]]:
        """Update every node's state from its heartbeat age; returns the changes."""
        changes = []
        now = time.monotonic()
        self._excuse_own_pause(now)
        for node in list(self.registry.nodes.values()):
            if await self._write_off(node, now):
                changes.append((node.id, node.state, "written_off"))
            silent = now - node.seen_mono
            if silent >= self.settings.dead_after:
                state = DEAD
            elif silent >= self.settings.offline_after:
                state = OFFLINE
            elif silent >= self.settings.suspect_after:
                state = SUSPECT
            else:
                state = UNREACHABLE if node.address_problem else ONLINE
            if state == node.state:
                continue
            old, node.state = node.state, state
            changes.append((node.id, old, state))
            await self.store.set_node_state(node.id, state, node.rtt_ms)
            # Durations, not clock times: the event's own time is shown in the
            # reader's time zone, a time in the text would be in the brain's.
            missed = int(silent // self.settings.heartbeat_interval)
            if state == DEAD:
                msg = (f"{node.name} dead: no heartbeat for {format_duration(silent)}; "
                       f"{self._what_now(node)}")
                sev = "error"
            elif state == OFFLINE:
                msg = (f"{node.name} offline: {plural(missed, 'heartbeat')} missed "
                       f"({format_duration(silent)}); its copies still count, and are re-made "
                       f"elsewhere if it is still silent after "
                       f"{format_duration(self.settings.dead_after)} in all")
                sev = "error"
            elif state == SUSPECT:
                msg = f"{node.name} suspect: no heartbeat for {format_duration(silent)}"
                sev = "warning"
            elif state == UNREACHABLE:
                msg = (f"{node.name} heartbeats again, but this brain cannot reach it: "
                       f"{node.address_problem}")
                sev = "warning"
            else:
                msg = f"{node.name} back online"
                sev = "info"
            log.warning(msg) if sev != "info" else log.info(msg)
            await self.store.add_event(EventKind(f"node_{state}"), msg, severity=sev,
                                       node_id=node.id)
        if changes:
            self.on_change()
        return changes
