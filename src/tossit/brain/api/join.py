"""Join tokens: create, list and revoke them (admin), and redeem one (a new node).

``POST /api/join`` is open (the caller has no key and no cluster secret yet: it
proves it holds a token's secret instead), and throttled per address like wrong
API keys; ``GET /api/join/ca`` gives the CA certificate a token pins.
"""

from __future__ import annotations

import asyncio
import logging
import time
from math import ceil
from typing import Any

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from tossit.auth.jointoken import NONCE_PATTERN, TOKEN_ID_PATTERN
from tossit.auth.keys import Role
from tossit.brain.api.access import Access, client_address, who
from tossit.brain.api.common import before_body, brain_of, iso
from tossit.brain.api.wire.access import JoinToken, JoinTokenCreated
from tossit.brain.api.wire.nodes import Joined
from tossit.brain.jointokens import JoinRefused, JoinTokenInfo, JoinTokenNotFound, utc
from tossit.brain.keys import KeyInfo
from tossit.brain.service import Brain
from tossit.brain.states import EventKind
from tossit.config import format_duration, plural
from tossit.errors import ApiError, error_responses

log = logging.getLogger("tossit.brain.join")
_ADMIN = Access(Role.admin, read=Role.admin)
router = APIRouter(tags=["join tokens"], dependencies=[Depends(_ADMIN)],
                   route_class=before_body(_ADMIN))
# Called by a machine that is not part of the cluster yet: no key, no MAC.
public = APIRouter(tags=["node protocol"])
MAX_LIFETIME = 30 * 86400.0
_URL = r"^https?://[^/\s,]+$"


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    expires_in: float = Field(default=3600.0, gt=0, le=MAX_LIFETIME,
                              description="seconds until the token expires [1 h]")
    uses: int = Field(default=1, ge=1, le=1000, description="machines it lets join [1]")
    brains: list[str] | None = Field(
        default=None, min_length=1, max_length=16,
        description="brain URLs the new machine should use [this brain's public URL(s)]",
        json_schema_extra={"items": {"pattern": _URL}})

    def checked_brains(self) -> list[str] | None:
        import re

        if self.brains is None:
            return None
        urls = [u.rstrip("/") for u in self.brains]
        for u in urls:
            if not re.match(_URL, u):
                raise ApiError(400, "invalid_url", f"{u[:100]!r} is not a URL like "
                               "http://HOST:PORT")
        return urls


class JoinRequest(BaseModel):
    """A new node redeeming a token: it proves it holds the token's secret."""

    model_config = ConfigDict(extra="forbid")
    token: str = Field(pattern=TOKEN_ID_PATTERN, description="the token id")
    node: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="the node's id")
    name: str = Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f-\x9f]+$")
    address: str = Field(default="?", max_length=255, pattern=r"^[^\x00-\x1f\x7f-\x9f]*$")
    ts: str = Field(pattern=r"^\d{1,12}(\.\d{1,6})?$", description="unix time of the proof")
    nonce: str = Field(pattern=NONCE_PATTERN)
    proof: str = Field(pattern=r"^[0-9a-f]{64}$",
                       description="HMAC over token, node, ts and nonce with a key derived "
                       "from the token's secret")


def token_json(t: JoinTokenInfo) -> dict[str, Any]:
    return {"id": t.id, "state": t.state(time.time()), "created": iso(t.created_at),
            "created_by": t.created_by, "expires": iso(t.expires_at), "uses": t.max_uses,
            "used": t.uses, "used_at": iso(t.used_at), "used_by": t.used_by,
            "used_by_name": t.used_by_name, "revoked": iso(t.revoked_at)}


async def public_urls(brain: Brain) -> list[str]:
    """Where a new machine reaches the brains: this one first, then every other
    live brain on the same metadata."""
    urls = [brain.directory.url]
    if brain.lock.shared:
        for b in await brain.directory.listing():
            if b["role"] in ("leader", "follower") and b["url"] not in urls:
                urls.append(b["url"])
    return urls


@router.post("/api/join-tokens", status_code=201, responses=error_responses(400, 413, 503),
             response_model=JoinTokenCreated,
             summary="Create a join token (its line is shown once)")
async def create_token(body: TokenCreate, request: Request) -> dict[str, Any]:
    brain = brain_of(request)
    if brain.cluster_id is None:
        raise ApiError(503, "no_cluster_id", "the cluster has no id yet: retry in a moment")
    brains = body.checked_brains() or await public_urls(brain)
    key: KeyInfo | None = getattr(request.state, "key", None)
    by = f"{key.name} ({key.id})" if key is not None else "auth off"
    fp = brain.join_ca[1] if brain.join_ca else None
    info, line = await brain.join_tokens.create(time.time() + body.expires_in, body.uses, by,
                                                brains, brain.cluster_id, fp)
    await brain.store.add_event(
        EventKind.JOIN_TOKEN_CREATED, f"join token {info.id} created {who(request)}: lets "
        f"{plural(info.max_uses, 'machine')} join until {utc(info.expires_at)}")
    return {**token_json(info), "token": line, "brains": brains, "ca_sha256": fp}


@router.get("/api/join-tokens", summary="Every join token (never its secret)",
            response_model=list[JoinToken])
async def list_tokens(request: Request) -> list[dict[str, Any]]:
    return [token_json(t) for t in await brain_of(request).join_tokens.list()]


@router.delete("/api/join-tokens/{token_id}", summary="Revoke a join token",
               response_model=JoinToken, responses=error_responses(404))
async def revoke_token(request: Request,
                       token_id: str = Path(pattern=TOKEN_ID_PATTERN)) -> dict[str, Any]:
    brain = brain_of(request)
    try:
        info = await brain.join_tokens.revoke(token_id)
    except JoinTokenNotFound:
        raise ApiError(404, "join_token_not_found", f"no join token {token_id}") from None
    await brain.store.add_event(EventKind.JOIN_TOKEN_REVOKED,
                                f"join token {info.id} revoked {who(request)}")
    return token_json(info)


@public.post("/api/join", summary="A new node redeems a join token for the cluster secret",
             response_model=Joined,
             responses=error_responses(401, 409, 410, 429, 503, e401="Unknown token, wrong "
                                       "secret, stale proof or clock off",
                                       e409="The token was used up",
                                       e410="The token expired or was revoked"))
async def redeem(body: JoinRequest, request: Request) -> dict[str, Any]:
    brain = brain_of(request)
    address = client_address(request)
    node = f"{body.name} ({body.node}, {body.address}, from {address})"
    lock = brain.wrong_keys.locked(address, time.monotonic())
    if lock:
        raise _too_many(address, lock)
    if brain.cluster_id is None:
        raise ApiError(503, "no_cluster_id", "the cluster has no id yet: retry in a moment")
    try:
        info, sealed = await brain.join_tokens.redeem(
            body.token, body.node, body.name, body.ts, body.nonce, body.proof, brain.cluster_id)
    except JoinRefused as exc:
        log.warning("refused join token %s for node %s: %s", body.token, node, exc.message)
        await brain.store.add_event(
            EventKind.JOIN_REFUSED, f"node {node} refused: {exc.message}", severity="warning",
            data={"token": body.token, "node": body.node, "name": body.name,
                  "address": address, "reason": exc.code})
        if exc.guess:
            _, lock = brain.wrong_keys.failed(address, time.monotonic())
            if lock:
                await asyncio.sleep(min(lock, 1.0))
                raise _too_many(address, lock) from None
        raise ApiError(exc.status, exc.code, exc.message) from None
    await brain.store.add_event(
        EventKind.NODE_JOIN_TOKEN, f"node {node} received the cluster secret with join token "
        f"{info.id} ({info.uses} of {plural(info.max_uses, 'use')})",
        data={"token": info.id, "node": body.node, "name": body.name, "address": address})
    return {"cluster": brain.cluster_id, "sealed": sealed,
            "brains": await public_urls(brain),
            "heartbeat_interval": brain.settings.heartbeat_interval}


def _too_many(address: str, lock: float) -> ApiError:
    return ApiError(429, "too_many_wrong_keys",
                    f"too many wrong join tokens or keys from {address} lately: wait "
                    f"{format_duration(lock)} before trying another",
                    headers={"Retry-After": str(ceil(lock))})


@public.get("/api/join/ca", summary="The CA certificate a join token pins (PEM)",
            response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "The CA certificate (PEM)"},
                       **error_responses(404, e404="This brain has no CA of its own")})
async def join_ca(request: Request) -> Response:
    ca = brain_of(request).join_ca
    if ca is None:
        raise ApiError(404, "no_ca", "this brain serves no TLS with a CA of its own")
    return PlainTextResponse(ca[0])
