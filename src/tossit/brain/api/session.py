"""Dashboard sign-in and sign-out: trade a key for an HttpOnly session cookie.

The page never keeps the key: it sends it once here, and from then on the
browser sends the cookie, which scripts cannot read. ``SameSite=Strict`` keeps
other sites' pages from using it, and changes need ``X-Tossit-CSRF: 1`` as well
(``tossit.brain.api.access``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from tossit.auth.keys import secret_hash
from tossit.brain.api.access import CSRF_HEADER, SIGNING_IN, authenticate, key_for
from tossit.brain.api.common import brain_of
from tossit.brain.api.keys import key_json
from tossit.brain.api.wire.access import Key
from tossit.brain.sessions import COOKIE
from tossit.brain.states import EventKind
from tossit.errors import ApiError, error_responses

router = APIRouter(tags=["session"])
log = logging.getLogger("tossit.brain.session")


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(min_length=1, max_length=256, description="an API key's secret")


@router.post("/api/session", summary="Sign in (the dashboard): sets the session cookie",
             response_model=Key, responses=error_responses(401, 403, 429))
async def sign_in(body: SignIn, request: Request, response: Response) -> dict[str, Any]:
    """Answers like ``GET /api/keys/me``. Needs ``X-Tossit-CSRF: 1``, so that no
    other site can sign a browser in with a key of its own."""
    brain = brain_of(request)
    if request.headers.get(CSRF_HEADER) != "1":
        raise ApiError(403, "csrf", f"signing in needs the header {CSRF_HEADER.title()}: 1")
    if not brain.auth:
        return key_json(await authenticate(request))
    secret = body.key.strip()
    key = await key_for(request, secret, SIGNING_IN)
    problem = "unknown API key" if key is None else key.problem(time.time())
    if key is None or problem:
        log.warning("dashboard sign-in refused from %s: %s",
                    request.client.host if request.client else "?", problem)
        raise ApiError(401, "unauthorized", problem or "unknown API key")
    token, expires = await brain.sessions.create(secret_hash(secret), key.expires_at)
    response.set_cookie(
        COOKIE, token, max_age=max(1, int(expires - time.time())), path="/", httponly=True,
        samesite="strict", secure=request.url.scheme == "https")
    await brain.store.add_event(EventKind.SIGNED_IN, f"{key.name} ({key.id}, {key.role.value}) "
                                "signed in to the dashboard")
    return key_json(key)


@router.delete("/api/session", status_code=204, summary="Sign out: ends the session")
async def sign_out(request: Request) -> Response:
    token = request.cookies.get(COOKIE)
    if token:
        await brain_of(request).sessions.end(token)
    response = Response(status_code=204)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")
    return response
