"""Nodes: listing for users, registration and heartbeats for the nodes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from tossit.brain.api.access import signed_by_node
from tossit.brain.api.common import brain_of, iso
from tossit.brain.registry import OFFLINE, ONLINE, NodeView
from tossit.errors import ApiError

router = APIRouter(tags=["nodes"])
# Called by nodes, not users: authenticated by the cluster MAC (tossit.auth.mac).
protocol = APIRouter(tags=["node protocol"])
_ID = r"^[A-Za-z0-9_-]{1,64}$"
_BIG = 2**62


class NodeReport(BaseModel):
    """What a node sends when it registers and with every heartbeat."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=_ID)
    name: str = Field(min_length=1, max_length=128)
    address: str = Field(pattern=r"^https?://[^\s/]+$", max_length=255)
    zone: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    version: str = Field(default="?", max_length=32)
    capacity: int = Field(ge=0, le=_BIG)
    used: int = Field(ge=0, le=_BIG)
    free: int = Field(ge=0, le=_BIG)
    disk_total: int = Field(ge=0, le=_BIG)
    disk_free: int = Field(ge=0, le=_BIG)
    chunk_count: int = Field(ge=0, le=_BIG)
    load: float = Field(default=0.0, ge=0, le=1e6)
    disk_id: str | None = Field(default=None, max_length=300)


def node_json(view: NodeView) -> dict[str, Any]:
    out = view.to_dict()
    out["registered_at"] = iso(view.registered_at)
    out["last_heartbeat"] = iso(view.last_heartbeat)
    return out


@router.get("/api/nodes", summary="Every node with its state and capacity")
async def list_nodes(request: Request) -> list[dict[str, Any]]:
    brain = brain_of(request)
    return [node_json(v) for v in sorted(brain.registry.nodes.values(), key=lambda v: v.name)]


@router.get("/api/nodes/{node_id}", summary="One node")
async def get_node(request: Request, node_id: str = Path(pattern=_ID)) -> dict[str, Any]:
    view = brain_of(request).registry.get(node_id)
    if view is None:
        raise ApiError(404, "node_not_found", f"no node {node_id}")
    return node_json(view)


def _check_sender(sender: str | None, node_id: str) -> None:
    if sender is not None and sender != node_id:
        raise ApiError(403, "forbidden", f"signed by {sender}, not by node {node_id}")


@protocol.post("/api/nodes/register", summary="A node joins (or rejoins) the cluster")
async def register(report: NodeReport, request: Request,
                   sender: str | None = Depends(signed_by_node)) -> dict[str, Any]:
    _check_sender(sender, report.id)
    brain = brain_of(request)
    data = report.model_dump()
    before = brain.registry.get(report.id)
    if any(v.address == report.address and v.id != report.id and v.state != OFFLINE
           for v in brain.registry.nodes.values()):
        raise ApiError(409, "address_in_use",
                       f"another online node already serves {report.address}")
    new = await brain.store.upsert_node(data, ONLINE)
    brain.registry.update(data, ONLINE)
    if new:
        msg = f"{report.name} joined ({report.address}, zone {report.zone})"
        await brain.store.add_event("node_joined", msg, node_id=report.id)
    elif before is not None and before.state != ONLINE:
        await brain.store.add_event("node_online", f"{report.name} back online",
                                    node_id=report.id)
    return {"id": report.id, "heartbeat_interval": brain.settings.heartbeat_interval}


@protocol.post("/api/nodes/{node_id}/heartbeat", summary="A node's periodic report")
async def heartbeat(report: NodeReport, request: Request,
                    node_id: str = Path(pattern=_ID),
                    sender: str | None = Depends(signed_by_node)) -> dict[str, Any]:
    _check_sender(sender, node_id)
    brain = brain_of(request)
    view = brain.registry.get(node_id)
    if view is None or report.id != node_id:
        raise ApiError(404, "node_not_found", "unknown node: register first")
    was = view.state
    data = report.model_dump()
    brain.registry.update(data, ONLINE)
    await brain.store.save_heartbeat(node_id, data)
    if was != ONLINE:
        await brain.store.set_node_state(node_id, ONLINE, view.latency_ms)
        await brain.store.add_event("node_online", f"{report.name} back online (was {was})",
                                    node_id=node_id)
    return {"ok": True}
