"""Who may call what: API keys for users, the cluster MAC for nodes.

Routers declare their rule once (``app.py``): reads need a ``readonly`` key,
changes to files a ``readwrite`` key, node/key management and admin one-shots an
``admin`` key. A key arrives as ``Authorization: Bearer <secret>`` or, from the
dashboard, as a session cookie (``tossit.brain.sessions``); a request that
changes something with the cookie must also carry ``X-Tossit-CSRF: 1``, which a
page on another site cannot send without the brain's consent (CORS), so a
signed-in browser cannot be tricked into deleting files.

Node-protocol routes (register, heartbeat) need a request signed with the
cluster secret instead.

The check is one plain dependency (no sub-dependencies): it runs on every
request, and FastAPI's dependency machinery costs more than the check itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from math import ceil
from typing import Any

from fastapi import Request

from tossit.auth.keys import Role
from tossit.auth.mac import MacError
from tossit.brain.api.common import brain_of
from tossit.brain.keys import KeyInfo
from tossit.brain.service import Brain
from tossit.brain.sessions import COOKIE
from tossit.brain.states import EventKind
from tossit.config import format_duration, plural
from tossit.errors import ApiError

log = logging.getLogger("tossit.brain.access")
CSRF_HEADER = "x-tossit-csrf"
SECURITY_SCHEME = {
    "api_key": {
        "type": "http", "scheme": "bearer",
        "description": "An API key secret: `Authorization: Bearer <secret>` "
                       "(`tossit key create`). The dashboard uses a session cookie instead.",
    },
}
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_NO_AUTH = KeyInfo("-", "auth disabled", Role.admin, 0.0, None, None)

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "No key, or an unknown, revoked or expired key"},
    403: {"description": "The key's role does not allow this"},
    429: {"description": "Too many wrong keys from this address lately: wait Retry-After "
                         "seconds"},
}


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def key_for(request: Request, secret: str, doing: str) -> KeyInfo | None:
    """The key with this secret, or None (the caller answers 401). Wrong keys
    are counted per address (``tossit.auth.throttle``): past a few, the answer
    comes late and is a 429 with Retry-After. ``doing``: what the caller
    tried, for the event."""
    brain = brain_of(request)
    key = await brain.keys.authenticate(secret)
    if key is not None:
        return key
    address = client_address(request)
    count, lock = await wrong_key(brain, address, doing)
    if lock:
        raise ApiError(429, "too_many_wrong_keys",
                       f"{plural(count, 'wrong key')} from {address} within a minute: wait "
                       f"{format_duration(lock)} before trying another",
                       headers={"Retry-After": str(ceil(lock))})
    return None


async def wrong_key(brain: Brain, address: str, doing: str,
                    what: str = "unknown API key") -> tuple[int, float]:
    """Count a wrong key from ``address`` (``tossit.auth.throttle``): returns the
    wrong keys within the window and how long the address must now wait (0 while
    it has free tries); a locked caller has already waited up to a second here.
    The S3 API counts its unknown keys and wrong signatures with this too."""
    count, lock = brain.wrong_keys.failed(address, time.monotonic())
    # Every refused sign-in is an event (the lock bounds how many); a script's
    # wrong key on the API is one at its first and when the address is locked.
    if doing == SIGNING_IN or count == 1 or (lock and count == brain.wrong_keys.free + 1):
        locked = (f"; {plural(count, 'wrong key')} within a minute, so it waits "
                  f"{format_duration(lock)} before its next try" if lock else "")
        await brain.store.add_event(
            EventKind.SIGN_IN_FAILED if doing == SIGNING_IN else EventKind.KEY_REFUSED,
            f"{doing} refused from {address}: {what}{locked}", severity="warning",
            data={"address": address, "wrong_keys": count, "locked_s": lock})
    if lock:
        await asyncio.sleep(min(lock, 1.0))  # each guess costs the guesser time
    return count, lock


SIGNING_IN = "dashboard sign-in"


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def _forbidden(key: KeyInfo, needed: Role) -> ApiError:
    article = "an" if needed.value[0] in "aeiou" else "a"
    return ApiError(403, "forbidden",
                    f"key {key.id} ({key.role.value}) cannot do this: it needs "
                    f"{article} {needed.value} key")


async def authenticate(request: Request) -> KeyInfo:
    """The caller's usable key (401 if missing, unknown, revoked or expired),
    remembered in ``request.state.key``."""
    brain = brain_of(request)
    if not brain.auth:
        return _NO_AUTH
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret:
            raise _unauthorized("send the key as 'Authorization: Bearer <secret>'")
        key = await key_for(request, secret.strip(), "an API request")
        if key is None:
            raise _unauthorized("unknown API key")
    else:
        token = request.cookies.get(COOKIE)
        if token is None:
            raise _unauthorized("an API key is required: send 'Authorization: Bearer <secret>'")
        digest = await brain.sessions.key_of(token)
        key = await brain.keys.by_digest(digest) if digest else None
        if key is None:
            raise _unauthorized("your session has ended: sign in again")
        if request.method not in _READ_METHODS and request.headers.get(CSRF_HEADER) != "1":
            raise ApiError(403, "csrf", f"a change made with a session cookie needs the "
                                        f"header {CSRF_HEADER.title()}: 1")
    problem = key.problem(time.time())
    if problem:
        raise _unauthorized(problem)
    request.state.key = key
    return key


def who(request: Request) -> str:
    """The caller, for an event: "by laptop (TK..., admin)"."""
    key: KeyInfo | None = getattr(request.state, "key", None)
    if key is None or key is _NO_AUTH:
        return "with authentication off"
    return f"by {key.name} ({key.id}, {key.role.value})"


class Access:
    """The rule of one router, as a dependency: reads (GET/HEAD) need ``read``,
    anything else ``write``."""

    def __init__(self, write: Role, read: Role = Role.readonly) -> None:
        self.write = write
        self.read = read

    async def __call__(self, request: Request) -> KeyInfo:
        # Not remembered from an earlier call: a live stream calls this again
        # on the same request to notice a revoked key. (A router that also
        # runs it as an ``AuthBeforeBody`` gate pays a second, cached lookup.)
        key = await authenticate(request)
        needed = self.needed(request.method)
        if not key.role.allows(needed):
            raise _forbidden(key, needed)
        return key

    def needed(self, method: str) -> Role:
        """The role a request with this method needs (the S3 API asks too)."""
        return self.read if method in _READ_METHODS else self.write


async def node_signature(request: Request) -> None:
    """A gate for node-protocol routes (``AuthBeforeBody``): the cluster MAC in
    the headers must be valid before the body is read. Its sender and signed
    body hash are kept in ``request.state.node_mac`` for ``signed_by_node``
    (verifying twice would trip the nonce's replay check)."""
    verifier = brain_of(request).node_verifier
    if verifier is None:
        request.state.node_mac = None
        return
    try:
        # The path and query exactly as the server decoded them (as the node's
        # middleware does): request.url would normalise some characters away.
        request.state.node_mac = verifier.verify(
            request.method, request.scope["path"],
            request.scope["query_string"].decode("latin-1"), request.headers)
    except MacError as exc:
        # Every time, with who and why: a node with the wrong secret retries every
        # few seconds, and its operator looks here for the reason.
        peer = request.client.host if request.client else "?"
        log.warning("refused a node request from %s to %s: %s", peer, request.scope["path"],
                    exc)
        raise ApiError(401, "unauthorized", str(exc)) from None


async def signed_by_node(request: Request) -> str | None:
    """A dependency for node-protocol routes: the request must carry the cluster
    MAC (checked by the ``node_signature`` gate, or here), over a body that
    hashes to what was signed. Returns the sender."""
    if not hasattr(request.state, "node_mac"):
        await node_signature(request)
    mac: tuple[str, str] | None = request.state.node_mac
    if mac is None:
        return None
    sender, digest = mac
    if hashlib.sha256(await request.body()).hexdigest() != digest:
        raise ApiError(401, "unauthorized", "the body does not match its signed hash")
    return sender
