"""Scrub control: see, start, pause and pace the nodes' background scrubs.

Every route asks the nodes themselves (``tossit.brain.scrubs``) and answers
one row per node: its scrub status, or why there is none (offline, no answer).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from tossit.brain.api.access import who
from tossit.brain.api.common import AuthBeforeBody, brain_of
from tossit.brain.api.wire.cluster import ScrubDone, ScrubRateSet, ScrubStatus
from tossit.brain.registry import NodeView
from tossit.brain.scrubs import summary
from tossit.brain.service import Brain
from tossit.brain.states import EventKind
from tossit.config import format_size, parse_rate
from tossit.errors import ApiError, error_responses

# The key is checked before a malformed body is judged (401, not 400, without one).
router = APIRouter(tags=["scrub"], route_class=AuthBeforeBody)
MIN_RATE = 64 * 1024  # bytes/s: below this a pass over a real disk never ends
MAX_RATE = 2**40  # what a node accepts
_NODE = Query(None, max_length=128, description="a node's id or name (default: every node "
                                                "that answers)")


class RateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rate: str | int = Field(description="bytes/s: 200MiB/s, 50MB, 33554432")
    node: str | None = Field(default=None, max_length=128,
                             description="a node's id or name (default: every node)")


def _targets(brain: Brain, node: str | None) -> list[NodeView]:
    if node is None:
        return brain.scrubs.asked()
    for view in brain.registry.nodes.values():
        if node in (view.id, view.name):
            return [view]
    raise ApiError(404, "node_not_found", f"no node {node!r} (see tossit nodes)")


@router.get("/api/scrub", summary="Every node's scrub: progress, rate, last full pass, "
            "corrupt copies found", response_model=ScrubStatus)
async def scrub_status(request: Request) -> dict[str, Any]:
    brain = brain_of(request)
    rows = await brain.scrubs.status()
    return {"nodes": rows, "summary": summary(
        {r["node_id"]: r["scrub"] for r in rows if r["scrub"] is not None})}


@router.post("/api/scrub/{action}", summary="Start a scrub pass now, pause or resume it",
             response_model=ScrubDone, responses=error_responses(404))
async def scrub_action(request: Request,
                       action: str = Path(pattern="^(start|pause|resume)$"),
                       node: str | None = _NODE) -> dict[str, Any]:
    """``start``: a node begins a pass now (a pass in progress goes on; a paused
    one resumes). ``pause`` stops a pass where it is, ``resume`` goes on from
    there. Each node keeps the choice across restarts."""
    brain = brain_of(request)
    targets = _targets(brain, node)
    rows = await brain.scrubs.call(action, targets)
    done = [r["name"] for r in rows if r["error"] is None]
    if done:
        verb = {"start": "started", "pause": "paused", "resume": "resumed"}[action]
        await brain.store.add_event(EventKind.SCRUB, f"scrub {verb} on {', '.join(done)} "
                                    f"{who(request)}")
    return {"nodes": rows}


@router.put("/api/scrub/rate", summary="Change the scrub rate of every node (or one) now",
            response_model=ScrubRateSet, responses=error_responses(400, 404))
async def scrub_rate(body: RateBody, request: Request) -> dict[str, Any]:
    """Each node keeps the new rate across restarts, until its configured
    ``scrub_rate`` is changed. Pausing, not a rate of 0, stops scrubbing."""
    try:
        rate = parse_rate(body.rate)
    except ValueError as exc:
        raise ApiError(400, "invalid_rate", str(exc)) from None
    if rate > MAX_RATE:
        raise ApiError(400, "invalid_rate", f"a scrub rate is at most {format_size(MAX_RATE)}/s")
    if rate < MIN_RATE:
        raise ApiError(400, "invalid_rate", f"a scrub rate is at least "
                       f"{format_size(MIN_RATE)}/s (to stop scrubbing: tossit scrub pause)")
    brain = brain_of(request)
    rows = await brain.scrubs.call("rate", _targets(brain, body.node), rate)
    done = [r["name"] for r in rows if r["error"] is None]
    if done:
        await brain.store.add_event(EventKind.SCRUB, f"scrub rate set to {format_size(rate)}/s on "
                                    f"{', '.join(done)} {who(request)}")
    return {"nodes": rows, "rate": rate}
