"""Followers send changes to the leader (several brains on PostgreSQL).

A follower serves every read itself (listings, downloads, status, the
dashboard and its event stream) from the shared database and its own view of
the nodes. Whatever changes something (an upload, a delete, a node's heartbeat,
an admin action) it passes, byte for byte and streaming both ways, to the
leader, which authenticates and does it: one brain commits, so group commit,
the manifest log's order and the garbage collector's protection of uploads stay
in one process. Signing in to the dashboard is the exception (it only writes a
session row).

A request a brain already forwarded is not forwarded again (two brains that
both think the other leads answer 503 instead of passing it back and forth).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from tossit.brain.brains import BrainDirectory
from tossit.tlsconfig import client_context

if TYPE_CHECKING:  # imported when a follower first forwards: a lone brain never loads it
    import httpx

log = logging.getLogger("tossit.brain.forward")
FORWARDED = b"x-tossit-forwarded-by"
_READS = frozenset({"GET", "HEAD", "OPTIONS"})
_LOCAL = frozenset({"/api/session"})
_HOP = frozenset({b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization",
                  b"te", b"trailer", b"trailers", b"transfer-encoding", b"upgrade", b"host"})

Scope = dict[str, Any]


class ForwardToLeader:
    def __init__(self, app: Any, is_leader: Callable[[], bool], directory: Callable[[], Any],
                 tls_ca: Any = None) -> None:
        self.app = app
        self.is_leader = is_leader
        self.directory = directory  # () -> BrainDirectory | None (set at start)
        self.tls_ca = tls_ca
        self._http: httpx.AsyncClient | None = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if (scope["type"] != "http" or scope["method"] in _READS or self.is_leader()
                or scope["path"] in _LOCAL or self.directory() is None):
            await self.app(scope, receive, send)
            return
        if any(k == FORWARDED for k, _ in scope["headers"]):
            await _error(send, 503, "no_leader", "the brain this was forwarded to does not "
                         "lead either: a new leader is being chosen; retry in a few seconds")
            return
        directory: BrainDirectory = self.directory()
        leader = await directory.leader_url()
        if leader is None:
            await _error(send, 503, "no_leader", "no brain leads the cluster right now (the "
                         "leader stopped; another takes over within seconds): retry")
            return
        await self._forward(scope, receive, send, leader, directory.id)

    def _client(self) -> httpx.AsyncClient:
        import httpx

        if self._http is None:
            self._http = httpx.AsyncClient(
                verify=client_context(self.tls_ca),
                timeout=httpx.Timeout(None, connect=5.0),
                limits=httpx.Limits(max_connections=256, max_keepalive_connections=32))
        return self._http

    async def _forward(self, scope: Scope, receive: Any, send: Any, leader: str,
                       me: str) -> None:
        import httpx

        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _HOP]
        client = scope.get("client")
        headers += [(FORWARDED, me.encode()),
                    (b"x-forwarded-for", (client[0] if client else "").encode()),
                    (b"x-forwarded-proto", scope.get("scheme", "http").encode())]
        url = leader + scope.get("raw_path", scope["path"].encode()).decode("latin-1")
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")

        async def body() -> AsyncIterator[bytes]:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise httpx.ReadError("the client went away")
                yield message.get("body", b"")
                if not message.get("more_body"):
                    return

        http = self._client()
        try:
            req = http.build_request(scope["method"], url, headers=headers, content=body())
            resp = await http.send(req, stream=True)
        except httpx.HTTPError as exc:
            log.warning("could not forward %s %s to the leader %s: %s", scope["method"],
                        scope["path"], leader, exc)
            await _error(send, 503, "leader_unreachable", f"this brain passes changes to the "
                         f"leader ({leader}), which did not answer: retry in a few seconds")
            return
        try:
            await send({"type": "http.response.start", "status": resp.status_code,
                        "headers": [(k, v) for k, v in resp.headers.raw
                                    if k.lower() not in _HOP]})
            async for piece in resp.aiter_raw():
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await resp.aclose()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()


async def _error(send: Any, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": code, "message": message}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"retry-after", b"2")]})
    await send({"type": "http.response.body", "body": body})
