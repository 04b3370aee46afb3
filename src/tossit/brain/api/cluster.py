"""Cluster-wide views: health, status, events, metrics and admin one-shots."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tossit import __version__
from tossit.brain.api.common import brain_of, iso
from tossit.brain.api.wire.cluster import (
    DrillResult,
    Event,
    GcPass,
    Health,
    MonitorPass,
    Readiness,
    RepairPass,
    ScrubPass,
    Snapshot,
    Status,
    Unhealthy,
)
from tossit.brain.gc import ALARM_STATE
from tossit.brain.metrics import TRAFFIC
from tossit.brain.models import Event as EventRow
from tossit.brain.registry import (
    OFFLINE,
    READABLE_STATES,
    SUSPECT,
    UNREACHABLE,
    cluster_capacity,
    ready_room,
    shared_fates,
)
from tossit.brain.repair import STUCK_STATE, Progress
from tossit.brain.scrubs import summary as scrub_summary
from tossit.brain.service import Brain
from tossit.config import plural

router = APIRouter()
# Room the disk under the SQLite metadata must have for /ready: below it, the next
# commits may be refused (a full disk refuses only the writes that need a new page).
MIN_ROOM = 1 << 20
STUCK_AFTER = 5.0  # seconds a manifest pack may take to reach the nodes before it counts
public = APIRouter()  # the only route that needs no key: load balancers and probes
_UNHEALTHY = {"model": Unhealthy, "description": "The metadata database does not answer"}


@public.get("/health", tags=["cluster"], summary="Brain health (200 only if metadata answers)",
            response_model=Health, responses={503: _UNHEALTHY})
async def health(request: Request) -> Response:
    brain = brain_of(request)
    try:
        await brain.store.ping()
        db = "ok"
    except Exception as exc:
        return JSONResponse(
            {"status": "unhealthy", "database": f"error: {type(exc).__name__}"}, status_code=503
        )
    online = sum(1 for n in brain.registry.nodes.values() if n.state == "online")
    return JSONResponse({
        "status": "ok", "database": db, "version": __version__,
        "role": "leader" if brain.leader else "follower",
        "nodes_online": online, "nodes_total": len(brain.registry.nodes),
        "uptime_s": round(time.time() - brain.started, 1),
    })


_NOT_READY = {"model": Readiness, "description": "Not ready for writes: the reason says why"}


@public.get("/ready", tags=["cluster"], response_model=Readiness,
            response_model_exclude_unset=True, responses={503: _NOT_READY},
            summary="Readiness: 200 only when the cluster can take a write now")
async def ready(request: Request) -> Response:
    """For load balancers, orchestrators and scripts (``tossit ready --wait``): the
    database answers and at least ``write_quorum`` nodes are online with room, so
    an upload would be accepted. ``/health`` only says the process is alive."""
    body = await readiness(brain_of(request))
    return JSONResponse(body, status_code=200 if body["status"] == "ready" else 503)


async def readiness(brain: Brain) -> dict[str, Any]:
    """The readiness answer (also shown by ``tossit status``)."""
    try:
        await brain.store.ping()
    except Exception as exc:
        return {"status": "not_ready",
                "reason": f"the metadata database does not answer ({type(exc).__name__})"}
    room = brain.store.room_left()
    if brain.store.full_since is not None or (room is not None and room < MIN_ROOM):
        return {"status": "not_ready",
                "reason": "the metadata database has no room left: changes are refused "
                          "until there is space where it keeps its data"}
    if brain.lock.shared and not brain.leader and await brain.directory.leader_url() is None:
        return {"status": "not_ready", "role": "follower",
                "reason": "no brain leads the cluster right now (one takes over within "
                          "seconds of the leader stopping)"}
    quorum = brain.settings.quorum
    # Room for a real write, not one byte: nodes a few bytes under their
    # high-water mark were counted while every upload got 503.
    writable = brain.registry.writable(ready_room(brain.settings.chunk_size))
    out: dict[str, Any] = {"nodes_writable": len(writable), "write_quorum": quorum,
                           "replicas": brain.settings.replicas}
    if len(writable) < quorum:
        now = time.monotonic()
        others = sorted(f"{n.name} is {n.why_not_writable(now)}"
                        for n in brain.registry.nodes.values() if n not in writable)
        why = (f"{plural(len(writable), 'storage node')} can take writes, {quorum} needed "
               f"(write quorum)")
        if others:
            why += ": " + ", ".join(others)
        elif not brain.registry.nodes:
            why += ": no node has joined yet"
        return {"status": "not_ready", "reason": why, **out}
    return {"status": "ready", **out}


@router.get("/api/status", tags=["cluster"], summary="Capacity, usage and replication health",
            response_model=Status, response_model_exclude_unset=True)
async def status(request: Request) -> dict[str, Any]:
    return await status_body(brain_of(request))


async def status_body(brain: Brain) -> dict[str, Any]:
    """What ``GET /api/status`` answers (also pushed by ``/api/stream``)."""
    nodes = list(brain.registry.nodes.values())
    live = [n for n in nodes if n.state in READABLE_STATES]
    totals = await brain.store.totals([n.id for n in live])
    r = brain.settings.replicas
    hist = totals.pop("replica_histogram")
    packs = totals.pop("manifests")
    # Files in the trash: their bytes are in the figures above (still stored),
    # shown apart with when they go.
    totals["trash"]["keep_s"] = brain.settings.trash_keep
    pack_hist = packs.pop("replica_histogram")
    at_risk = sum(v["bytes"] for k, v in hist.items() if k < r)
    below = sum(v["chunks"] for k, v in hist.items() if k < r)
    alarm = await _alarm(brain)
    kept, kept_bytes = brain.collector.unknown_kept
    return {
        "cluster_id": brain.cluster_id,
        # Not None: this brain's metadata may not be the cluster's (strangers, packs
        # newer than it, nodes of another cluster); see tossit.brain.strangers.
        "needs_recovery": alarm["message"],
        "replicas": r,
        "write_quorum": brain.settings.quorum,
        "chunk_size": brain.settings.chunk_size,
        "nodes": {"total": len(nodes), "online": sum(1 for n in nodes if n.state == "online"),
                  "by_state": {s: sum(1 for n in nodes if n.state == s)
                               for s in sorted({n.state for n in nodes})}},
        "capacity": cluster_capacity(live, r),
        "shared_fate": [{"kind": f.kind, "where": f.where, "nodes": list(f.nodes),
                         "message": f.message()} for f in shared_fates(nodes)],
        **totals,
        "replication": {
            "by_copies": {str(k): v for k, v in hist.items()},
            "chunks_below_target": below,
            "chunks_unavailable": hist.get(0, {}).get("chunks", 0),
            "bytes_at_risk": at_risk,
            "waiting_for": _grace(brain),
            "repair_stuck": await repair_stuck(
                brain, below + sum(v["chunks"] for k, v in pack_hist.items() if k < r)),
        },
        "manifests": {
            **packs,
            "by_copies": {str(k): v["chunks"] for k, v in pack_hist.items()},
            "below_target": sum(v["chunks"] for k, v in pack_hist.items() if k < r),
            # Manifests on their way take milliseconds: "waiting" counts the ones
            # stuck, "outbox" all those not yet recorded as on the nodes: packs of
            # the outbox, and changes in no pack yet (one each).
            "waiting": await brain.store.log.not_out(older_than=STUCK_AFTER),
            "outbox": await brain.store.log.not_out(),
            "last_error": brain.manifests.last_error,
            "deletions_frozen": alarm["message"] if alarm["blocks_deletion"] else None,
            # Copies no file and no intent names: kept, never deleted on absence alone.
            "unknown_kept": {"copies": kept, "bytes": kept_bytes},
        },
        "readiness": await readiness(brain),
        "snapshot": await _snapshot(brain),
        "drill": await _drill(brain),
        "repair": (brain.repairer.progress.to_dict() if brain.leader
                   else await brain.store.get_state("repair") or Progress().to_dict()),
        "brains": await _brains(brain),
        "throughput": TRAFFIC.snapshot(),
        # The nodes' last answers (refreshed in the background: never waits on a node).
        "scrub": scrub_summary(brain.scrubs.cached()),
    }


async def _snapshot(brain: Brain) -> dict[str, Any]:
    last = await brain.store.get_state("snapshot")
    return {
        "last": None if last is None else {**last, "at": iso(last["at"])},
        "age_s": None if last is None else round(time.time() - float(last["at"]), 1),
        "kept": len(await brain.snapshots.listing()),
        "interval_s": brain.settings.snapshot_interval,
        "last_error": brain.snapshots.last_error,
    }


async def _brains(brain: Brain) -> dict[str, Any]:
    """Which brains serve this metadata and which leads (several on PostgreSQL)."""
    if not brain.lock.shared:
        return {"shared": False, "this": brain.directory.id, "role": "leader", "list": []}
    return {"shared": True, "this": brain.directory.id,
            "role": "leader" if brain.leader else "follower",
            "list": await brain.directory.listing()}


async def _drill(brain: Brain) -> dict[str, Any]:
    last = await brain.store.get_state("drill")
    return {"last": None if last is None else {**last, "at": iso(last["at"])},
            "age_s": None if last is None else round(time.time() - float(last["at"]), 1)}


async def _alarm(brain: Brain) -> dict[str, Any]:
    """The recovery alarm: this brain's own when it leads (its loops see the
    nodes), else what the leader last wrote to the shared database."""
    if brain.leader:
        return {"message": brain.collector.alarm.message(),
                "blocks_deletion": brain.collector.alarm.blocks_deletion}
    return await brain.store.get_state(ALARM_STATE) or {"message": None,
                                                         "blocks_deletion": False}


async def repair_stuck(brain: Brain, below: int) -> dict[str, Any] | None:
    """The last repair pass's "repair is stuck" (what its event says, and what to
    do), or None. The leader's own; a follower reads what the leader published.
    ``below``: the chunks and manifest packs below R now; none, and a stuck
    repair the last pass saw is over whatever it said."""
    if not below:
        return None
    if brain.leader:
        return brain.repairer.stuck
    published = await brain.store.get_state(STUCK_STATE) or {}
    stuck: dict[str, Any] | None = published.get("stuck")
    return stuck


def _grace(brain: Brain) -> list[dict[str, Any]]:
    """Silent (or unreachable) nodes within their grace period: their copies
    still count, so the repairer deliberately waits; this says for how much longer."""
    now = time.monotonic()
    out = []
    for n in sorted(brain.registry.nodes.values(), key=lambda v: v.name):
        if n.state in (SUSPECT, OFFLINE):
            since = n.seen_mono
        elif n.state == UNREACHABLE and n.unreachable_since is not None and not n.written_off:
            since = n.unreachable_since
        else:
            continue
        out.append({"node_id": n.id, "name": n.name, "state": n.state, "dead_in_s": round(
            max(0.0, brain.settings.dead_after - (now - since)), 1)})
    return out


@router.get("/api/events", tags=["cluster"], summary="What the cluster did and why, newest first",
            response_model=list[Event])
async def events(
    request: Request,
    limit: int = Query(100, ge=1, le=1000),
    kind: str | None = Query(None, max_length=48, pattern=r"^[a-z_]+$"),
    after: int | None = Query(None, ge=0, le=2**62, description=(
        "only the `limit` events right after this id (page forward with the newest id seen)")),
) -> list[dict[str, Any]]:
    brain = brain_of(request)
    rows = await brain.store.list_events(limit=limit, kind=kind, after_id=after)
    return [event_json(e, brain) for e in rows]


def event_json(e: EventRow, brain: Brain) -> dict[str, Any]:
    """An event as the API gives it, with the node's name as it is now (a page
    opened on the events alone need not look the nodes up; None once removed)."""
    node = brain.registry.get(e.node_id) if e.node_id else None
    return {"id": e.id, "time": iso(e.ts), "kind": e.kind, "severity": e.severity,
            "message": e.message, "node_id": e.node_id,
            "node_name": node.name if node is not None else None, "data": e.data,
            # A repeating event is one entry: how often, since when (``time`` is
            # the last time), and the key that the next repeat will replace it by.
            "count": e.count or 1, "first_time": iso(e.first_at or e.ts),
            "repeat_key": e.repeat_key}


@router.post("/api/admin/gc", tags=["admin"], summary="Run one garbage-collection pass now",
             response_model=GcPass, response_model_exclude_unset=True)
async def run_gc(request: Request, orphans: bool = True) -> dict[str, Any]:
    return await brain_of(request).collector.run_once(sweep_orphans=orphans)


@router.post("/api/admin/monitor", tags=["admin"], summary="Run one failure-detection pass now",
             response_model=MonitorPass)
async def run_monitor(request: Request) -> dict[str, Any]:
    changes = await brain_of(request).monitor.run_once()
    return {"changes": [{"node": n, "from": a, "to": b} for n, a, b in changes]}


@router.post("/api/admin/repair", tags=["admin"],
             summary="Run one repair and rebalance pass now (waits for it)",
             response_model=RepairPass, response_model_exclude_unset=True)
async def run_repair(request: Request, rebalance: bool = True,
                     full: bool = True) -> dict[str, Any]:
    """``full=false`` plans only the chunks the database flags as short or
    misplaced, as the background loop does while the nodes stay the same."""
    return await brain_of(request).repairer.run_once(rebalance=rebalance, full=full)


@router.post("/api/admin/scrub", tags=["admin"],
             summary="Have every online node re-hash all its chunks now (waits for it)",
             response_model=ScrubPass, response_model_exclude_unset=True)
async def run_scrub(request: Request) -> dict[str, Any]:
    """Corrupt chunks are quarantined by the nodes, marked corrupt here, and
    repaired by the next repair pass (which this wakes)."""
    brain = brain_of(request)
    return {"nodes": await brain.scrub_all()}


@router.post("/api/admin/snapshot", tags=["admin"],
             summary="Take a metadata snapshot now and store it on the nodes (waits for it)",
             response_model=Snapshot)
async def take_snapshot(request: Request) -> dict[str, Any]:
    record = await brain_of(request).snapshots.run_once(force=True)
    assert record is not None
    return {**record, "at": iso(record["at"])}


@router.post("/api/admin/drill", tags=["admin"],
             summary="Fire drill: rebuild the metadata from the nodes into a scratch database "
                     "and compare it with the live one (waits for it)",
             response_model=DrillResult)
async def run_drill(request: Request) -> dict[str, Any]:
    """Nothing changes on the nodes or in the live metadata. The answer says, with
    names, what a brain lost now would lose, bring back wrong, or resurrect."""
    result = await brain_of(request).run_drill()
    return {**result, "at": iso(result["at"])}


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    from tossit.brain.metrics import refresh

    await refresh(brain_of(request))
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

