"""Cluster-wide answers: health and readiness, status, events, scrub and the
admin one-shots."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tossit.brain.api.wire.base import Bytes, Seconds, Timestamp, Wire
from tossit.brain.states import AdminState, EventKind, NodeState

Role = Literal["leader", "follower"]


class Health(Wire):
    status: Literal["ok"]
    database: str
    version: str
    role: Role
    nodes_online: int
    nodes_total: int
    uptime_s: Seconds


class Unhealthy(Wire):
    status: Literal["unhealthy"]
    database: str = Field(description="error: and the exception's type")


class Readiness(Wire):
    """``/ready`` (200 when ready, else 503) and ``readiness`` in the status.
    A brain that cannot tell (no database, no leader) gives the reason alone."""

    status: Literal["ready", "not_ready"]
    reason: str | None = Field(default=None, description="why not ready")
    role: Role | None = None
    nodes_writable: int | None = Field(default=None, description="nodes that take writes now")
    write_quorum: int | None = None
    replicas: int | None = None


class NodeCounts(Wire):
    total: int
    online: int
    by_state: dict[str, int] = Field(description="nodes by NodeState")


class Capacity(Wire):
    """Over the readable nodes; a disk shared by several nodes counts once."""

    raw: Bytes
    used: Bytes
    free: Bytes
    usable: Bytes = Field(description="file data the nodes hold at R copies")
    room: Bytes = Field(description="more file data that fits at R copies (0 when fewer "
                        "than R nodes have room left)")
    nodes_with_room: int | None = Field(default=None, description=(
        "nodes that take new data (not draining) and have room left"))
    room_fewer_copies: Bytes | None = Field(default=None, description=(
        "when fewer than R nodes have room left: the file data that fits at "
        "nodes_with_room copies, below R (0 otherwise)"))


class SharedFate(Wire):
    kind: Literal["disk", "host"]
    where: str
    nodes: list[str]
    message: str


class FilesBytes(Wire):
    files: int
    bytes: Bytes


class TrashTotals(FilesBytes):
    keep_s: Seconds


class ChunksBytes(Wire):
    chunks: int
    bytes: Bytes


class Waiting(Wire):
    """A silent node within its grace period: repair waits for it."""

    node_id: str
    name: str
    state: NodeState
    dead_in_s: Seconds


class RepairStuck(Wire):
    """The last repair pass found chunks below R with nowhere to put the missing
    copies (too few nodes can take them): the ``repair_stuck`` event, in figures."""

    chunks: int = Field(description="chunks (and manifest packs) the repair cannot bring to R")
    nodes_can_take: int = Field(description="nodes that can take a copy now")
    replicas: int
    why: list[str] = Field(description="each node that cannot take a copy, and why "
                           "(\"node-3 is dead\", \"nas-2 is full\")")
    message: str = Field(description="the event's words: \"repair is stuck: 298 chunks need "
                         "a 3rd copy but only 2 nodes can take them (node-3 is dead)\"")
    advice: str = Field(description="what to do: \"add a node, or bring back node-3\"")
    since: Timestamp = Field(description="since when the repair has been stuck")


class ReplicationTotals(Wire):
    by_copies: dict[str, ChunksBytes] = Field(description="chunks by copies (key: copies)")
    chunks_below_target: int
    chunks_unavailable: int
    bytes_at_risk: Bytes
    waiting_for: list[Waiting]
    repair_stuck: RepairStuck | None = Field(default=None, description=(
        "the repair cannot bring every chunk to R copies (null: it is not stuck)"))


class CopiesBytes(Wire):
    copies: int
    bytes: Bytes


class ManifestTotals(Wire):
    packs: int
    bytes: Bytes
    by_copies: dict[str, int]
    below_target: int
    waiting: int = Field(description="packs stuck on their way to the nodes")
    outbox: int = Field(description="packs not yet recorded as on the nodes")
    last_error: str | None
    deletions_frozen: str | None = Field(description="why deletions wait, if they do")
    unknown_kept: CopiesBytes = Field(description="copies no file names: kept, never deleted "
                                      "on absence alone")


class SnapshotState(Wire):
    last: dict[str, Any] | None = Field(description="the last snapshot's record")
    age_s: Seconds | None
    kept: int
    interval_s: Seconds
    last_error: str | None


class DrillState(Wire):
    last: dict[str, Any] | None = Field(description="the last fire drill's answer")
    age_s: Seconds | None


class RepairProgress(Wire):
    running: bool
    started: Timestamp | None
    chunks_total: int
    chunks_done: int = Field(description="copies made (a chunk two short counts twice)")
    bytes_total: Bytes
    bytes_done: Bytes
    failed: int
    chunks_at_risk_by_copies: dict[str, int]
    chunks_unavailable: int
    rate_bytes_per_s: int
    eta_s: Seconds | None


class BrainEntry(Wire):
    id: str
    url: str
    role: str = Field(description="leader, follower or silent")
    version: str
    this: bool
    seconds_since_seen: Seconds


class Brains(Wire):
    shared: bool = Field(description="several brains share the metadata (PostgreSQL)")
    this: str
    role: Role
    list: list[BrainEntry]


class TrafficPoint(Wire):
    t: Timestamp
    in_: int = Field(alias="in", description="bytes/s received")
    out: int = Field(description="bytes/s sent")


class Throughput(Wire):
    bucket_s: Seconds
    in_bytes_per_s: int
    out_bytes_per_s: int
    history: list[TrafficPoint]


class ScrubSummary(Wire):
    nodes: int
    by_state: dict[str, int]
    progress: float | None = Field(description="the mean progress of the passes, 0 to 1")
    oldest_full_pass: float | None = Field(description="epoch seconds: when the least "
                                           "recently finished full pass ended")
    nodes_never_scrubbed: int
    corrupt_found: int


class Status(Wire):
    """``GET /api/status`` (also pushed as ``status`` by ``/api/stream``)."""

    cluster_id: str | None
    needs_recovery: str | None = Field(description="why this brain's metadata may not be the "
                                       "cluster's")
    replicas: int
    write_quorum: int
    chunk_size: Bytes
    nodes: NodeCounts
    capacity: Capacity
    shared_fate: list[SharedFate]
    trash: TrashTotals
    objects: int
    object_bytes: Bytes
    system_objects: int = Field(description="the brain's own files (metadata snapshots)")
    system_bytes: Bytes
    chunks: int
    chunk_bytes: Bytes
    replication: ReplicationTotals
    manifests: ManifestTotals
    readiness: Readiness
    snapshot: SnapshotState
    drill: DrillState
    repair: RepairProgress
    brains: Brains
    throughput: Throughput
    scrub: ScrubSummary


class Event(Wire):
    """An entry of the activity log; a repeating event is one entry."""

    id: int
    time: Timestamp = Field(description="the last time it happened")
    kind: EventKind
    severity: Literal["info", "warning", "error"]
    message: str
    node_id: str | None
    node_name: str | None = Field(description="the node's name now (none once removed)")
    data: dict[str, Any] | None
    count: int = Field(description="how often it happened")
    first_time: Timestamp
    repeat_key: str | None = Field(description="what the next repeat replaces it by")


class ScrubRow(Wire):
    """One node's scrub, or why there is none (offline, no answer)."""

    node_id: str
    name: str
    node_state: NodeState
    admin_state: AdminState | None
    scrub: dict[str, Any] | None = Field(description="the node's scrub status")
    error: str | None


class ScrubStatus(Wire):
    nodes: list[ScrubRow]
    summary: ScrubSummary


class ScrubDone(Wire):
    nodes: list[ScrubRow]


class ScrubRateSet(ScrubDone):
    rate: int = Field(description="bytes/s")


class StateChange(Wire):
    node: str
    from_: str = Field(alias="from")
    to: str


class MonitorPass(Wire):
    changes: list[StateChange]


class GcPass(Wire):
    """What a garbage-collection pass did. Copies count only those a node had and
    deleted; the sweep fields are there only when the orphan sweep ran."""

    replicas_deleted: int = Field(description="copies of chunks no file uses any more")
    chunks_dropped: int = Field(description="chunks no file uses any more, forgotten")
    orphans_deleted: int = Field(description="copies on nodes that no file names")
    adopted: int = Field(description="copies found on a node that the metadata now records")
    bytes_freed: Bytes
    missing: int | None = Field(default=None, description="copies the metadata expected but "
                                "the node did not have (marked missing, repaired)")
    unknown_kept: int | None = Field(default=None, description="copies no file or intent "
                                     "names: kept, never deleted on absence alone")
    unknown_kept_bytes: Bytes | None = None
    held_for_manifests: int | None = Field(default=None, description="garbage held until the "
                                           "manifests of the commits that made it are out")


class RepairPass(Wire):
    """What a repair pass did (docs/api.md, ``POST /api/admin/repair``)."""

    chunks_below_target: int
    unavailable: int = Field(description="chunks with no readable copy")
    copies_planned: int
    copies_done: int = Field(description="repaired + moved")
    repaired: int = Field(description="copies that restored R")
    moved: int = Field(description="rebalancing copies towards the desired placement")
    repair_order: list[int] = Field(description="the copies left of the chunks repaired, in "
                                    "the order they ran")
    drops_planned: int
    drops_done: int
    failed: int
    bytes_copied: Bytes
    scope: Literal["all chunks", "flagged chunks"]
    seconds: Seconds


class NodeScrub(Wire):
    """One node's full scrub: what it checked, or why it could not be asked."""

    node: str = Field(description="the node's id")
    name: str
    started: float | None = Field(default=None, description="epoch seconds")
    seconds: Seconds | None = None
    chunks: int | None = None
    bytes: Bytes | None = None
    corrupt: list[str] | None = Field(default=None, description="ids of the chunks found "
                                      "bad (quarantined on the node)")
    error: str | None = None


class ScrubPass(Wire):
    nodes: list[NodeScrub]


class Snapshot(Wire):
    """A metadata snapshot: a file in the brain's own bucket, stored on the nodes."""

    at: Timestamp
    as_of: int = Field(description="the newest manifest version in it")
    id: int = Field(description="the snapshot file's id")
    key: str = Field(description="the snapshot file's name")
    size: Bytes
    sha256: str
    seconds: Seconds = Field(description="how long taking it took")


class DrillResult(Wire):
    """A fire drill's answer: what a brain lost now would lose, bring back wrong or
    resurrect. Each finding lists at most 50 names (bucket/name); its ``_count``
    is complete."""

    at: Timestamp
    seconds: Seconds = Field(description="how long the drill took")
    ok: bool = Field(description="nothing would be lost, wrong or resurrected")
    summary: str
    nodes_read: int
    nodes_unreachable: dict[str, str] = Field(description="why each source was not read")
    files: int = Field(description="live files compared")
    recoverable: int
    trash: int = Field(description="files in the trash compared")
    lost: list[str]
    wrong: list[str] = Field(description="would come back as another version")
    incomplete: list[str] = Field(description="would miss chunks")
    reappear: list[str] = Field(description="deleted, would come back")
    manifest_below: list[str]
    chunks_below: list[str]
    trash_lost: list[str]
    trash_reappear: list[str]
    lost_count: int
    wrong_count: int
    incomplete_count: int
    reappear_count: int
    manifest_below_count: int
    chunks_below_count: int
    trash_lost_count: int
    trash_reappear_count: int
    buckets: int = Field(0, description="buckets compared")
    buckets_lost: list[str] = Field(default_factory=list,
                                    description="bucket names a rebuild would not make")
    buckets_reappear: list[str] = Field(default_factory=list,
                                        description="deleted buckets a rebuild would make")
    buckets_lost_count: int = 0
    buckets_reappear_count: int = 0
    packs_unreadable: int
    snapshot_age_s: Seconds | None
