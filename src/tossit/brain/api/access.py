"""Who may call what: API keys for users, the cluster MAC for nodes.

Routers declare their rule once (``app.py``): reads need a ``readonly`` key,
changes to files a ``readwrite`` key, node/key management and admin one-shots an
``admin`` key. Node-protocol routes (register, heartbeat) need a request signed
with the cluster secret instead.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tossit.auth.keys import Role
from tossit.auth.mac import MacError
from tossit.brain.api.common import brain_of
from tossit.brain.keys import KeyInfo
from tossit.errors import ApiError

_bearer = HTTPBearer(
    auto_error=False, scheme_name="api_key",
    description="An API key secret: `Authorization: Bearer <secret>` (`tossit key create`).",
)
_READ_METHODS = {"GET", "HEAD"}
_NO_AUTH = KeyInfo("-", "auth disabled", Role.admin, 0.0, None, None)

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "No key, or an unknown, revoked or expired key"},
    403: {"description": "The key's role does not allow this"},
}


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


async def current_key(
    request: Request, creds: HTTPAuthorizationCredentials | None = Depends(_bearer),
) -> KeyInfo:
    """The caller's key; 401 if it is missing, unknown, revoked or expired."""
    brain = brain_of(request)
    if not brain.auth:
        return _NO_AUTH
    if creds is None:
        raise _unauthorized("an API key is required: send 'Authorization: Bearer <secret>'")
    key = await brain.keys.authenticate(creds.credentials)
    if key is None:
        raise _unauthorized("unknown API key")
    problem = key.problem(time.time())
    if problem:
        raise _unauthorized(problem)
    request.state.key = key
    return key


def _forbidden(key: KeyInfo, needed: Role) -> ApiError:
    article = "an" if needed.value[0] in "aeiou" else "a"
    return ApiError(403, "forbidden",
                    f"key {key.id} ({key.role.value}) cannot do this: it needs "
                    f"{article} {needed.value} key")


def requires(role: Role) -> Callable[..., Awaitable[KeyInfo]]:
    """A dependency: the caller's key must have at least ``role``."""

    async def check(key: KeyInfo = Depends(current_key)) -> KeyInfo:
        if not key.role.allows(role):
            raise _forbidden(key, role)
        return key

    return check


def by_method(write: Role) -> Callable[..., Awaitable[KeyInfo]]:
    """A dependency: GET/HEAD need a readonly key, other methods ``write``."""

    async def check(request: Request, key: KeyInfo = Depends(current_key)) -> KeyInfo:
        needed = Role.readonly if request.method in _READ_METHODS else write
        if not key.role.allows(needed):
            raise _forbidden(key, needed)
        return key

    return check


async def signed_by_node(request: Request) -> str | None:
    """A dependency for node-protocol routes: the request must carry the cluster
    MAC, over a body that hashes to what was signed. Returns the sender."""
    verifier = brain_of(request).node_verifier
    if verifier is None:
        return None
    try:
        # The path and query exactly as the server decoded them (as the node's
        # middleware does): request.url would normalise some characters away.
        sender, digest = verifier.verify(request.method, request.scope["path"],
                                         request.scope["query_string"].decode("latin-1"),
                                         request.headers)
    except MacError as exc:
        raise ApiError(401, "unauthorized", str(exc)) from None
    if hashlib.sha256(await request.body()).hexdigest() != digest:
        raise ApiError(401, "unauthorized", "the body does not match its signed hash")
    return sender
