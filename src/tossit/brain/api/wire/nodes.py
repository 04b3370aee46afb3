"""Nodes: the listing, one node, what stopping or draining it would do, and
the answers the node protocol gets (registration, heartbeat, join)."""

from __future__ import annotations

from pydantic import Field

from tossit.brain.api.wire.base import Bytes, Seconds, Timestamp, Wire
from tossit.brain.states import AdminState, NodeState


class Node(Wire):
    """A storage node as the brain sees it (``GET /api/nodes``)."""

    id: str
    name: str
    address: str = Field(description="where the brain reaches it (http(s)://host:port)")
    zone: str = Field(description="failure domain: copies of a chunk go to distinct zones")
    state: NodeState
    admin_state: AdminState | None
    capacity: Bytes = Field(description="the most it may store")
    used: Bytes
    free: Bytes = Field(description="what it may still store (capacity and disk allowing)")
    disk_total: Bytes
    disk_free: Bytes
    chunk_count: int = Field(description="file chunks it holds")
    manifest_count: int = Field(description="manifest packs it holds")
    load: float
    version: str
    disk_id: str | None = Field(description="the disk it stores on: nodes with the same one "
                                "share a fate")
    address_problem: str | None = Field(description="why the brain cannot reach it "
                                        "(state unreachable)")
    write_error: str | None = Field(default=None, description="why its disk refuses writes "
                                    "(no copies are placed there meanwhile; reads go on)")
    full: bool = Field(default=False, description="no room for another MiB under its high-water "
                       "mark or on its disk: no new copies go there (reads and deletes go on)")
    latency_ms: float | None = Field(description="heartbeat round trip, while online")
    transfer_ms: float | None = Field(description="this brain's recent transfer time to it "
                                      "(orders reads)")
    registered_at: Timestamp | None
    last_heartbeat: Timestamp | None
    seconds_since_heartbeat: Seconds


class NodeRemoved(Node):
    removed: bool


class IfStopped(Wire):
    chunks: int = Field(description="chunk copies it holds")
    bytes: Bytes
    by_copies_after: dict[str, int] = Field(
        description="chunks by the copies they would have left (key: number of copies)")
    chunks_unavailable: int
    files_unavailable: int
    bytes_at_risk: Bytes = Field(description="bytes of chunks left below the target copies")
    summary: str


class DrainPlan(Wire):
    allowed: bool
    chunks: int
    bytes: Bytes
    targets: list[str] = Field(description="names of the nodes its copies would go to")
    summary: str
    reason: str | None = Field(description="why it is refused now")


class RemovePlan(Wire):
    allowed: bool
    reason: str | None


class NodeImpact(Wire):
    """What stopping, draining or removing a node would do (``/impact``)."""

    node: Node
    if_stopped: IfStopped
    drain: DrainPlan
    remove: RemovePlan


class Registered(Wire):
    """The brain's answer to a node registering (node protocol)."""

    id: str
    heartbeat_interval: Seconds
    cluster: str | None = Field(description="the cluster id the node must keep (none yet to "
                                "a node whose data may belong to another metadata)")


class HeartbeatAnswer(Wire):
    ok: bool
    cluster: str | None


class Joined(Wire):
    """A join token redeemed: what the new node needs to join (node protocol)."""

    cluster: str
    sealed: str = Field(description="the cluster secret, sealed with the token's secret")
    brains: list[str]
    heartbeat_interval: Seconds
