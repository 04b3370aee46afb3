"""The node's routes for the rest of the cluster: copy a chunk from a peer on
the brain's order, scrub now, report status, health and metrics."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from tossit.chunking import DATA
from tossit.errors import ApiError
from tossit.node.parts import KIND_PATTERN, Parts, check_signed_body, signed
from tossit.node.peers import CopyFailed
from tossit.node.scrubber import Scrubber
from tossit.node.storage import StorageFull

router = APIRouter()
log = logging.getLogger("tossit.node")


class Source(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    address: str = Field(pattern=r"^https?://[^\s/]+$", max_length=255)


class ReplicateOrder(BaseModel):
    model_config = ConfigDict(extra="forbid")
    chunk_id: str = Field(pattern=r"^[0-9a-f]{64}$")
    sources: list[Source] = Field(min_length=1, max_length=8)
    kind: str = Field(default=DATA, pattern=KIND_PATTERN)


@router.get("/status", responses=signed())
async def status(p: Parts) -> dict[str, Any]:
    report = await asyncio.to_thread(p.heartbeat.report)
    return {**report, "brain_connected": p.heartbeat.connected}


@router.post("/replicate", responses=signed(
    400, 500, 502, 507, e500="This node's disk refused the write (disk_error)",
    e502="No source could supply a verified copy"))
async def replicate(order: ReplicateOrder, request: Request, p: Parts) -> dict[str, Any]:
    """The brain's order: fetch this chunk from one of ``sources`` (other nodes),
    verify it against its id and store it (fsynced before the answer)."""
    check_signed_body(request, await request.body())
    try:
        result = await p.peers.fetch(order.chunk_id,
                                     [src.model_dump() for src in order.sources], order.kind)
    except CopyFailed as exc:
        p.ops.labels("replicate", "failed").inc()
        raise ApiError(502, "copy_failed", str(exc)) from None
    except StorageFull as exc:
        p.ops.labels("replicate", "full").inc()
        raise ApiError(507, "storage_full", str(exc)) from None
    except OSError as exc:  # the disk refused the write: said as a chunk write says it
        p.ops.labels("replicate", "disk_error").inc()
        log.error("cannot store a copy of %s: %s", order.chunk_id[:12], exc)
        raise ApiError(500, "disk_error", "this node cannot write to its disk: "
                       f"{exc.strerror or exc}") from None
    p.ops.labels("replicate", "ok").inc()
    p.bytes_io.labels("in").inc(result["size"])
    return result


@router.post("/scrub", responses=signed())
async def scrub(p: Parts) -> dict[str, Any]:
    """Re-hash every chunk now (unthrottled); corrupt ones are quarantined and
    listed. The background scrubber does the same at ``scrub_rate``."""
    result = await p.scrubber.run_once(paced=False)
    p.scrubber.acknowledge(result["corrupt"])  # reported in this answer already
    return result


class ScrubRate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rate: int = Field(gt=0, le=2**40, description="bytes/s")


@router.get("/scrub", responses=signed())
async def scrub_status(p: Parts) -> dict[str, Any]:
    """Where the background scrub is: its pass's progress, its rate, the last
    full pass and the corrupt copies it found (``tossit scrub status``)."""
    return await asyncio.to_thread(p.scrubber.status)


@router.post("/scrub/{action}", responses=signed(404, 409, 500, e409="Scrubbing is off (rate 0)"))
async def scrub_control(action: str, p: Parts) -> dict[str, Any]:
    """``start`` a pass now (resuming if paused; a pass in progress goes on),
    ``pause`` the pass where it is, ``resume`` it. Kept across restarts."""
    s = p.scrubber
    started = None
    if action == "start":
        try:
            started = s.start_pass()
        except ValueError as exc:
            raise ApiError(409, "scrub_off", str(exc)) from None
    elif action == "pause":
        s.pause()
    elif action == "resume":
        s.resume()
    else:
        raise ApiError(404, "not_found", "scrub actions: start, pause, resume")
    await _keep(s)
    return {**await asyncio.to_thread(s.status), "started": started}


@router.put("/scrub/rate", responses=signed(400, 500))
async def scrub_rate(body: ScrubRate, request: Request, p: Parts) -> dict[str, Any]:
    """Change the background scrub's rate now; kept across restarts until the
    configured ``scrub_rate`` itself is changed."""
    check_signed_body(request, await request.body())
    p.scrubber.set_rate(body.rate)
    await _keep(p.scrubber)
    return await asyncio.to_thread(p.scrubber.status)


async def _keep(scrubber: Scrubber) -> None:
    """Save an operator's scrub order, or say it applies only until a restart."""
    try:
        await scrubber.persist(strict=True)
    except OSError as exc:
        raise ApiError(500, "disk_error", "done for now, but this node could not save it "
                       f"({exc.strerror or exc}): it is undone when the node restarts") from None


@router.get("/health")
async def health(p: Parts) -> dict[str, Any]:
    return {"status": "ok", "id": p.node_id}


@router.get("/metrics", include_in_schema=False)
async def metrics(p: Parts) -> Response:
    return Response(generate_latest(p.registry), media_type=CONTENT_TYPE_LATEST)
