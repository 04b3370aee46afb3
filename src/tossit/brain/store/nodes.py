"""Nodes as the metadata records them."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select, update

from tossit.brain.models import (
    Node,
)
from tossit.brain.store.base import StoreBase

# Reported with every heartbeat; kept in the row for follower brains (``Registry.mirror``).
_DISK_FIELDS = ("disk_id", "write_error")


class NodeStore(StoreBase):
    # -- nodes --------------------------------------------------------------

    async def upsert_node(self, report: dict[str, Any], state: str) -> bool:
        """Insert or refresh a node from its registration; True if it is new."""
        now = time.time()
        values = {
            "name": report["name"], "address": report["address"], "zone": report["zone"],
            "state": state, "capacity": report["capacity"], "used": report["used"],
            "free": report["free"], "disk_total": report["disk_total"],
            "disk_free": report["disk_free"], "chunk_count": report["chunk_count"],
            "load": report.get("load", 0.0), "version": report.get("version", "?"),
            "last_heartbeat": now,
        }
        values.update({k: report[k] for k in _DISK_FIELDS if k in report})
        async with self.write() as s:
            existing = await s.get(Node, report["id"])
            if existing is None:
                s.add(Node(id=report["id"], registered_at=now, **values))
                return True
            await s.execute(update(Node).where(Node.id == report["id"]).values(**values))
            return False

    async def save_heartbeat(self, node_id: str, report: dict[str, Any]) -> bool:
        values: dict[str, Any] = {k: report[k] for k in (
            "capacity", "used", "free", "disk_total", "disk_free", "chunk_count", "load",
            *_DISK_FIELDS) if k in report}
        values["last_heartbeat"] = time.time()
        if report.get("rtt_ms") is not None:
            values["latency_ms"] = report["rtt_ms"]  # the column shown as the node's latency
        async with self.write() as s:
            res = await s.execute(update(Node).where(Node.id == node_id).values(**values))
            return bool(res.rowcount)  # type: ignore[attr-defined]

    async def set_node_state(self, node_id: str, state: str, latency_ms: float | None) -> None:
        async with self.write() as s:
            await s.execute(
                update(Node).where(Node.id == node_id).values(state=state, latency_ms=latency_ms)
            )

    async def list_nodes(self) -> list[Node]:
        """Every node but the removed ones."""
        async with self.read() as s:
            return list((await s.execute(
                select(Node).where(Node.state != "removed").order_by(Node.name)
            )).scalars().all())
