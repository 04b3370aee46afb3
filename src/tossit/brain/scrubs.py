"""The nodes' background scrubs, seen and steered from the brain.

Users talk to the brain only, so ``tossit scrub`` goes through it: the brain
asks each node (signed with the cluster secret, ``NodeClient.scrub_call``) for
its scrub status or passes an order on. The last answers are kept for the
places that must not wait on a slow node: ``tossit status`` and ``/metrics``
read them and, when they are older than ``MAX_AGE``, have them refreshed in the
background for the next look.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from tossit.brain.nodeclient import NodeClient, NodeError
from tossit.brain.registry import DRAINED, READABLE_STATES, NodeView, Registry

log = logging.getLogger("tossit.brain.scrubs")
MAX_AGE = 10.0  # seconds the cached answers serve status pages and metrics
ACTIONS = ("start", "pause", "resume")


class ScrubWatch:
    def __init__(self, registry: Registry, nodes: NodeClient) -> None:
        self.registry = registry
        self.nodes = nodes
        self.latest: dict[str, dict[str, Any]] = {}  # node id -> its last scrub status
        self.at = 0.0  # monotonic time of the last poll
        self._refresh: asyncio.Task[Any] | None = None

    def asked(self) -> list[NodeView]:
        """The nodes that can answer: readable and not drained (which hold nothing)."""
        return sorted((n for n in self.registry.nodes.values()
                       if n.state in READABLE_STATES and n.admin_state != DRAINED),
                      key=lambda n: n.name)

    async def call(self, action: str, targets: list[NodeView],
                   rate: int | None = None) -> list[dict[str, Any]]:
        """Ask every target at once; one row per node of the registry (those not
        asked say why), in name order."""
        answers = await asyncio.gather(*(self._one(n, action, rate) for n in targets))
        got = {n.id: a for n, a in zip(targets, answers, strict=True)}
        rows = []
        for n in sorted(self.registry.nodes.values(), key=lambda n: n.name):
            row: dict[str, Any] = {"node_id": n.id, "name": n.name, "node_state": n.state,
                                   "admin_state": n.admin_state, "scrub": None, "error": None}
            if n.id in got:
                scrub, error = got[n.id]
                row.update(scrub=scrub, error=error)
                if scrub is not None:
                    self.latest[n.id] = scrub
            elif action != "status":
                continue  # an order: only the nodes it went to
            else:
                row["error"] = f"not asked: {n.admin_state or n.state}"
                row["scrub"] = self.latest.get(n.id)  # its last known figures
            rows.append(row)
        if action == "status" and len(targets) == len(self.asked()):
            self.at = time.monotonic()
        return rows

    async def _one(self, node: NodeView, action: str,
                   rate: int | None) -> tuple[dict[str, Any] | None, str | None]:
        try:
            return await self.nodes.scrub_call(node, action, rate), None
        except NodeError as exc:
            return None, str(exc)

    async def status(self) -> list[dict[str, Any]]:
        return await self.call("status", self.asked())

    def cached(self) -> dict[str, dict[str, Any]]:
        """The last known status of every node, without waiting; refreshed in
        the background when older than ``MAX_AGE`` (for the next look)."""
        if time.monotonic() - self.at > MAX_AGE and (
                self._refresh is None or self._refresh.done()):
            self._refresh = asyncio.create_task(self._quiet_status())
        known = {n.id for n in self.registry.nodes.values()}
        return {k: v for k, v in self.latest.items() if k in known}

    async def _quiet_status(self) -> None:
        with contextlib.suppress(Exception):
            await self.status()

    async def close(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._refresh


def summary(latest: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A few figures over every node, for ``tossit status`` and the dashboard."""
    states: dict[str, int] = {}
    for s in latest.values():
        states[s["state"]] = states.get(s["state"], 0) + 1
    passes = [s.get("last_full_pass") for s in latest.values()]
    oldest = (None if not passes or any(p is None for p in passes)
              else min(float(p["finished"]) for p in passes if p is not None))
    progress = [s["progress"] for s in latest.values() if s.get("progress") is not None]
    return {
        "nodes": len(latest),
        "by_state": dict(sorted(states.items())),
        "progress": round(sum(progress) / len(progress), 4) if progress else None,
        # The least recently finished full pass: everything was checked since.
        "oldest_full_pass": oldest,
        "nodes_never_scrubbed": sum(1 for p in passes if p is None),
        "corrupt_found": sum(int(s.get("corrupt_found") or 0) for s in latest.values()),
    }
