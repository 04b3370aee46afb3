"""Nodes: listing for users, registration and heartbeats for the nodes."""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from tossit.brain.api.access import node_signature, signed_by_node, who
from tossit.brain.api.common import before_body, brain_of, iso
from tossit.brain.api.wire.nodes import (
    HeartbeatAnswer,
    Node,
    NodeImpact,
    NodeRemoved,
    Registered,
)
from tossit.brain.registry import (
    DEAD,
    DRAINED,
    DRAINING,
    OFFLINE,
    ONLINE,
    PROBE_AFTER_STRIKES,
    READABLE_STATES,
    UNREACHABLE,
    NodeView,
    ready_room,
)
from tossit.brain.service import Brain
from tossit.brain.states import EventKind
from tossit.brain.strangers import Suspect, cluster_refusal
from tossit.config import format_duration, format_size, plural
from tossit.errors import ApiError, error_responses

log = logging.getLogger("tossit.brain.nodes")
router = APIRouter(tags=["nodes"])
# Called by nodes, not users: authenticated by the cluster MAC (tossit.auth.mac),
# from the headers before the body is read.
protocol = APIRouter(tags=["node protocol"], route_class=before_body(node_signature))
_ID = r"^[A-Za-z0-9_-]{1,64}$"
_BIG = 2**62
REPROBE_EVERY = 10.0  # seconds between probes of a node the brain could not reach


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
    chunk_count: int = Field(ge=0, le=_BIG, description="file chunks it holds")
    manifest_count: int = Field(default=0, ge=0, le=_BIG,
                                description="manifest packs it holds")
    load: float = Field(default=0.0, ge=0, le=1e6)
    rtt_ms: float | None = Field(default=None, ge=0, le=1e6,
                                 description="the round trip of the node's previous heartbeat")
    disk_id: str | None = Field(default=None, max_length=300)
    write_error: str | None = Field(default=None, max_length=500,
                                    description="why its disk refused the last write, "
                                    "and refuses a test write still (none: it writes)")
    cluster: str | None = Field(default=None, pattern=r"^[0-9a-f]{16,64}$",
                                description="the cluster the node joined before (none: new)")
    adopt: str | None = Field(default=None, pattern=r"^[0-9a-f]{16,64}$",
                              description="join this cluster even if the node belongs to "
                              "another (the operator's --adopt-cluster)")
    corrupt: list[Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]] = Field(
        default_factory=list, max_length=1000,
        description="chunks the node's scrubber found corrupt (and quarantined)")


def node_json(view: NodeView, brain: Brain) -> dict[str, Any]:
    out = view.to_dict()
    room = ready_room(brain.settings.chunk_size)
    out["full"] = not view.has_room(room, brain.registry.high_water)
    out["registered_at"] = iso(view.registered_at)
    out["last_heartbeat"] = iso(view.last_heartbeat)
    return out


@router.get("/api/nodes", summary="Every node with its state and capacity",
            response_model=list[Node])
async def list_nodes(request: Request) -> list[dict[str, Any]]:
    return nodes_body(brain_of(request))


def nodes_body(brain: Brain) -> list[dict[str, Any]]:
    """What ``GET /api/nodes`` answers (also pushed by ``/api/stream``)."""
    views = sorted(brain.registry.nodes.values(), key=lambda v: v.name)
    return [node_json(v, brain) for v in views]


@router.get("/api/nodes/{node_id}", summary="One node", response_model=Node,
            responses=error_responses(404))
async def get_node(request: Request, node_id: str = Path(pattern=_ID)) -> dict[str, Any]:
    brain = brain_of(request)
    view = brain.registry.get(node_id)
    if view is None:
        raise ApiError(404, "node_not_found", f"no node {node_id}")
    return node_json(view, brain)


def _check_sender(sender: str | None, node_id: str) -> None:
    if sender is not None and sender != node_id:
        raise ApiError(403, "forbidden", f"signed by {sender}, not by node {node_id}")


def _cluster_for(brain: Brain, report: NodeReport) -> str | None:
    """The cluster id to tell this node (it remembers it and refuses other brains
    from then on): not to a stranger, which must still be able to join the
    database its data belongs to."""
    if report.cluster is None and not brain.collector.alarm.may_learn_cluster(
            report.id, report.chunk_count + report.manifest_count):
        return None
    return brain.cluster_id


async def _check_cluster(brain: Brain, report: NodeReport) -> None:
    """A node of another cluster is refused, loudly on both sides: this brain's
    metadata is probably not the one its chunks belong to."""
    why = cluster_refusal(brain.cluster_id, report.cluster, report.adopt)
    if why is None:
        if brain.collector.alarm.refused.pop(report.id, None) is not None:
            await brain.collector.publish_alarm()
        return
    first = report.id not in brain.collector.alarm.refused
    brain.collector.alarm.refused[report.id] = Suspect(report.name, why)
    await brain.collector.publish_alarm()
    log.warning("refused node %s (%s): %s", report.name, report.address, why)
    if first:
        await brain.store.add_event(EventKind.NODE_REFUSED, f"{report.name} refused: {why}",
                                    severity="error", data={
                                        "node": report.id, "address": report.address,
                                        "cluster": report.cluster})
    raise ApiError(409, "wrong_cluster", why, cluster=brain.cluster_id)


@protocol.post("/api/nodes/register", summary="A node joins (or rejoins) the cluster",
               responses={200: {"model": Registered},
                          **error_responses(403, 409, 413, e403="Signed by another node")})
async def register(report: NodeReport, request: Request,
                   sender: str | None = Depends(signed_by_node)) -> dict[str, Any]:
    _check_sender(sender, report.id)
    brain = brain_of(request)
    await _check_cluster(brain, report)
    if await brain.store.node_row_state(report.id) == "removed":
        raise ApiError(409, "node_removed",
                       "this node was removed from the cluster; to join again as a new "
                       "node, start it with an empty data dir")
    data = report.model_dump(exclude={"corrupt"})
    before = brain.registry.get(report.id)
    # The registry updates its views in place: note what changes before it does.
    was = (before.state, before.capacity, before.zone) if before is not None else None
    write_error = before.write_error if before is not None else None
    if any(v.address == report.address and v.id != report.id
           and v.state not in (OFFLINE, DEAD) for v in brain.registry.nodes.values()):
        raise ApiError(409, "address_in_use",
                       f"another live node already serves {report.address}")
    new = await brain.store.upsert_node(data, ONLINE)
    view = brain.registry.update(data, ONLINE)
    await _probe(brain, view)
    if new:
        msg = f"{report.name} joined ({report.address}, zone {report.zone})"
        await brain.store.add_event(EventKind.NODE_JOINED, msg, node_id=report.id)
        brain.repairer.wake()  # placement changed: rebalance
    elif was is not None:
        if was[0] != ONLINE and view.state == ONLINE:
            await _back_online(brain, report, was[0])
        await _placement_inputs_changed(brain, report, was[1], was[2])
    await _write_error_changed(brain, view, write_error)
    brain.collector.request_sweep()  # reconcile its inventory with the metadata
    brain.manifests.wake()  # manifest packs that waited for nodes may go now
    await _corrupt_reported(brain, report)
    return {"id": report.id, "heartbeat_interval": brain.settings.heartbeat_interval,
            "cluster": _cluster_for(brain, report)}


async def _probe(brain: Brain, view: NodeView) -> None:
    """Heartbeats prove the node reaches the brain, not the other way round: a
    node registered at an address the brain cannot reach (no --advertise-url, an
    unresolvable name) is shown as unreachable, and nothing goes to or comes
    from it, instead of it looking online while every transfer fails."""
    problem = await brain.nodes.probe(view)
    view.probed_mono = time.monotonic()
    if problem == view.address_problem:
        return
    view.set_address_problem(problem)
    if problem is not None:
        view.state = UNREACHABLE
        await brain.store.set_node_state(view.id, UNREACHABLE, view.rtt_ms)
        log.warning("node %s is unreachable: %s", view.name, problem)
        await brain.store.add_event(EventKind.NODE_UNREACHABLE,
                                    f"{view.name} unreachable: {problem}",
                                    severity="error", node_id=view.id)
    elif view.state == UNREACHABLE:
        view.state = ONLINE
        await brain.store.set_node_state(view.id, ONLINE, view.rtt_ms)
        await brain.store.add_event(EventKind.NODE_ONLINE, f"{view.name} reachable again at "
                                    f"{view.address}", node_id=view.id)
        brain.repairer.wake()


async def _back_online(brain: Brain, report: NodeReport, was: str) -> None:
    if was == DEAD:
        msg = (f"{report.name} back online after being declared dead: its copies count "
               "again and the extra ones are removed once every chunk has R copies")
    else:
        msg = f"{report.name} back online (was {was}); no repair needed"
    await brain.store.add_event(EventKind.NODE_ONLINE, msg, node_id=report.id)
    brain.repairer.wake()
    brain.collector.request_sweep()  # what did it lose or keep while away?


async def _placement_inputs_changed(brain: Brain, report: NodeReport, capacity: int,
                                    zone: str) -> None:
    """A node restarted with another capacity or zone: placement wants some chunks
    elsewhere now, so rebalance without waiting for the periodic pass."""
    changes = []
    if capacity != report.capacity:
        changes.append(f"capacity {format_size(capacity)} -> {format_size(report.capacity)}")
    if zone != report.zone:
        changes.append(f"zone {zone} -> {report.zone}")
    if changes:
        await brain.store.add_event(
            EventKind.NODE_CHANGED, f"{report.name}: {', '.join(changes)}; rebalancing towards "
            "the new placement", node_id=report.id)
        brain.repairer.wake()


async def _write_error_changed(brain: Brain, view: NodeView, before: str | None) -> None:
    """The node's disk started or stopped refusing writes (its heartbeat says,
    after a test write): said once each way, not with every heartbeat."""
    if (view.write_error is None) == (before is None):
        return
    if view.write_error is not None:
        msg = (f"{view.name}'s disk refuses writes ({view.write_error}): no new copies go "
               "there, reads from it go on; check its disk (kernel log, mount options, "
               "permissions of its data dir)")
        log.error("%s", msg)
        await brain.store.add_event(EventKind.NODE_DISK_ERROR, msg, severity="error",
                                    node_id=view.id)
        return
    await brain.store.add_event(EventKind.NODE_DISK_OK, f"{view.name}'s disk takes writes "
                                "again", node_id=view.id)
    brain.repairer.wake()  # copies that had nowhere to go may go there now


async def _corrupt_reported(brain: Brain, report: NodeReport) -> None:
    """The node's scrubber quarantined these: repair them from good copies."""
    await brain.record_corrupt(
        report.id, report.corrupt, f"{report.name}'s scrubber found "
        f"{plural(len(report.corrupt), 'corrupt chunk')} on disk; repairing them from good copies")


@protocol.post("/api/nodes/{node_id}/heartbeat", summary="A node's periodic report",
               responses={200: {"model": HeartbeatAnswer},
                          **error_responses(403, 404, 413, e403="Signed by another node",
                                            e404="Unknown node: register first")})
async def heartbeat(report: NodeReport, request: Request,
                    node_id: str = Path(pattern=_ID),
                    sender: str | None = Depends(signed_by_node)) -> dict[str, Any]:
    _check_sender(sender, node_id)
    brain = brain_of(request)
    view = brain.registry.get(node_id)
    if view is None or report.id != node_id:
        raise ApiError(404, "node_not_found", "unknown node: register first")
    await _check_cluster(brain, report)
    was, write_error = view.state, view.write_error
    data = report.model_dump(exclude={"corrupt"})
    brain.registry.update(data, ONLINE)
    await brain.store.save_heartbeat(node_id, data)
    # Probed again while unreachable, and when transfers to it keep failing though
    # it heartbeats (its data port hangs): then it is shown unreachable, not online.
    if ((view.address_problem or view.strikes >= PROBE_AFTER_STRIKES)
            and time.monotonic() - view.probed_mono >= REPROBE_EVERY):
        await _probe(brain, view)
    if was != view.state and view.state == ONLINE:
        await brain.store.set_node_state(node_id, ONLINE, view.rtt_ms)
        await _back_online(brain, report, was)
    elif was != view.state:
        await brain.store.set_node_state(node_id, view.state, view.rtt_ms)
    await _write_error_changed(brain, view, write_error)
    await _corrupt_reported(brain, report)
    return {"ok": True, "cluster": _cluster_for(brain, report)}


# -- drain and remove (admin) ------------------------------------------------


def _node(brain: Brain, node_id: str) -> NodeView:
    view = brain.registry.get(node_id)
    if view is None:
        raise ApiError(404, "node_not_found", f"no node {node_id}")
    return view


@router.post("/api/nodes/{node_id}/drain", summary="Copy every chunk off a node",
             response_model=Node,
             responses=error_responses(404, 409, e409="Too few other nodes to hold R copies"))
async def drain(request: Request, node_id: str = Path(pattern=_ID)) -> dict[str, Any]:
    """The node takes no new chunks; the repairer copies its chunks to the nodes
    placement now wants (never below R copies), removes them from it, and marks it
    ``drained`` when it holds nothing."""
    brain = brain_of(request)
    view = _node(brain, node_id)
    refusal = _drain_refusal(brain, view)
    if refusal is not None:
        raise refusal
    if view.admin_state is None:
        view.admin_state = DRAINING
        await brain.store.set_admin_state(node_id, DRAINING)
        await brain.store.add_event(
            EventKind.NODE_DRAINING, f"draining {view.name} {who(request)}: "
            f"{plural(view.chunk_count, 'chunk')} will be copied to other nodes",
            node_id=node_id)
        brain.repairer.wake()
    return node_json(view, brain)


@router.post("/api/nodes/{node_id}/undrain", summary="Let a drained node take chunks again",
             response_model=Node, responses=error_responses(404))
async def undrain(request: Request, node_id: str = Path(pattern=_ID)) -> dict[str, Any]:
    brain = brain_of(request)
    view = _node(brain, node_id)
    if view.admin_state is not None:
        view.admin_state = None
        await brain.store.set_admin_state(node_id, None)
        await brain.store.add_event(
            EventKind.NODE_UNDRAINED, f"{view.name} takes new chunks again (drain cancelled "
            f"{who(request)})", node_id=node_id)
        brain.repairer.wake()
    return node_json(view, brain)


def _drain_refusal(brain: Brain, view: NodeView) -> ApiError | None:
    """Why this node cannot start draining (the 409 to answer), or None."""
    r = brain.settings.replicas
    others = [n for n in brain.registry.nodes.values()
              if n.id != view.id and n.admin_state is None and n.state != DEAD]
    online = [n for n in others if n.state == ONLINE]
    if view.admin_state is not None:
        return None
    if len(others) < r:
        return ApiError(409, "not_enough_nodes",
                        f"draining {view.name} would leave {plural(len(others), 'node')} for "
                        f"{r} copies of each chunk: add a node first",
                        needed=r, available=len(others))
    if len(online) < r:
        # A drain never takes a chunk below R online copies, so it would only stand
        # still until the missing node returns: say so now instead.
        away = ", ".join(sorted(f"{n.name} is {n.state}" for n in others if n not in online))
        return ApiError(409, "not_enough_nodes",
                        f"draining {view.name} needs {r} other online nodes to take its "
                        f"copies and {len(online)} are online ({away}): bring it back "
                        "or wait until it is declared dead and repaired, then drain",
                        needed=r, available=len(online))
    return None


async def _removal_refusal(brain: Brain, view: NodeView) -> ApiError | None:
    """Why this node cannot be removed now (the 409 to answer), or None."""
    others = [n.id for n in brain.registry.nodes.values()
              if n.id != view.id and n.state in (ONLINE, "suspect")]
    held = await brain.store.ok_replica_count(view.id)
    if held and view.state != DEAD and view.admin_state != DRAINED:
        if view.state == ONLINE:
            then = f"drain it first (tossit node drain {view.name})"
        else:  # a drain needs it to answer: the way out is its death, or its return
            then = (f"it is {view.state}: once it is declared dead (after "
                    f"{format_duration(brain.settings.dead_after)} of silence) it can be "
                    "removed; or bring it back and drain it")
        return ApiError(409, "not_drained",
                        f"{view.name} still holds {plural(held, 'copy', 'copies')} (of chunks "
                        f"or manifest packs): {then}", chunks=held)
    sole = await brain.store.sole_copies(view.id, others)
    if sole:
        return ApiError(409, "only_copies",
                        f"{view.name} holds the only copy of {plural(sole, 'chunk')}: drain it "
                        f"first (tossit node drain {view.name})", chunks=sole)
    return None


@router.delete("/api/nodes/{node_id}", summary="Remove a node from the cluster",
               response_model=NodeRemoved,
               responses=error_responses(404, 409, e409="It still holds the only copy of "
                                         "some chunks"))
async def remove(request: Request, node_id: str = Path(pattern=_ID)) -> dict[str, Any]:
    """Refused while the node holds the only readable copy of any chunk (drain it
    first). Its other copies are forgotten and re-made elsewhere by the repairer."""
    brain = brain_of(request)
    view = _node(brain, node_id)
    refusal = await _removal_refusal(brain, view)
    if refusal is not None:
        raise refusal
    await brain.store.forget_node(node_id)
    brain.registry.nodes.pop(node_id, None)
    await brain.store.add_event(EventKind.NODE_REMOVED,
                                f"{view.name} removed from the cluster {who(request)}",
                                node_id=node_id)
    brain.repairer.wake()
    return {**node_json(view, brain), "removed": True}


def _plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else words or word + 's'}"


@router.get("/api/nodes/{node_id}/impact",
            summary="What stopping, draining or removing this node would do",
            response_model=NodeImpact, responses=error_responses(404))
async def impact(request: Request, node_id: str = Path(pattern=_ID)) -> dict[str, Any]:
    """Computed from where the copies really are (the replica table), for the
    dashboard's confirmations and for anyone about to reboot a machine."""
    brain = brain_of(request)
    view = _node(brain, node_id)
    r = brain.settings.replicas
    live = [n.id for n in brain.registry.nodes.values()
            if n.id != node_id and n.state in READABLE_STATES]
    found = await brain.store.node_impact(node_id, live)
    after: dict[int, dict[str, int]] = found["by_copies_after"]
    held = sum(v["chunks"] for v in after.values())
    held_bytes = sum(v["bytes"] for v in after.values())
    lost = after.get(0, {"chunks": 0, "bytes": 0})
    at_risk = sum(v["bytes"] for n, v in after.items() if n < r)

    drops = [f"{_plural(v['chunks'], 'chunk')} drop to {_plural(n, 'copy', 'copies')}"
             for n, v in sorted(after.items()) if 0 < n < r]
    if not held:
        stop_text = f"If {view.name} stops now, nothing changes: it holds no chunk copies."
    else:
        parts = drops or [f"every chunk keeps at least {r} copies"]
        unavailable = (f"{_plural(lost['chunks'], 'chunk')} in "
                       f"{_plural(found['files_unavailable'], 'file')} "
                       f"{'becomes' if lost['chunks'] == 1 else 'become'} unavailable"
                       if lost["chunks"] else "none become unavailable")
        stop_text = f"If {view.name} stops now, {', '.join(parts)}; {unavailable}."

    # Where the copies would go: nodes that take new chunks and answer now.
    targets = sorted(n.name for n in brain.registry.nodes.values()
                     if n.id != node_id and n.admin_state is None and n.state in (
                         ONLINE, "suspect"))
    drain_refusal = _drain_refusal(brain, view)
    if drain_refusal is not None:
        drain_text = f"Refused now: {drain_refusal.message}."
    elif view.admin_state is not None:
        drain_text = f"{view.name} is already {view.admin_state}."
    elif held:
        drain_text = (f"{format_size(held_bytes)} ({_plural(held, 'chunk')}) will be copied "
                      f"to {_plural(len(targets), 'other node')} ({', '.join(targets)}), "
                      f"then removed from {view.name}.")
    else:
        drain_text = f"{view.name} holds nothing to copy."
    refusal = await _removal_refusal(brain, view)
    return {
        "node": node_json(view, brain),
        "if_stopped": {
            "chunks": held, "bytes": held_bytes,
            "by_copies_after": {str(n): v["chunks"] for n, v in after.items()},
            "chunks_unavailable": lost["chunks"],
            "files_unavailable": found["files_unavailable"],
            "bytes_at_risk": at_risk,
            "summary": stop_text,
        },
        "drain": {"allowed": drain_refusal is None, "chunks": held, "bytes": held_bytes,
                  "targets": targets, "summary": drain_text,
                  "reason": drain_refusal.message if drain_refusal is not None else None},
        "remove": {"allowed": refusal is None,
                   "reason": refusal.message if refusal is not None else None},
    }
