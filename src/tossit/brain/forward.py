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

A forwarded request has no read timeout of its own (a long upload, a drill or a
big delete may legitimately take minutes), but it lasts only as long as the
brain it went to leads: a leader that stops renewing its row (a paused process,
a frozen VM) or that another brain replaced ends the forwards waiting on it, so
a client gets an answer (503, retry) instead of hanging for the whole pause.
"""

from __future__ import annotations

import asyncio
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
WATCH_EVERY = 2.0  # seconds between checks that the leader a forward waits on still leads


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
        await self._forward(scope, receive, send, leader, directory)

    def _client(self) -> httpx.AsyncClient:
        import httpx

        if self._http is None:
            self._http = httpx.AsyncClient(
                verify=client_context(self.tls_ca),
                timeout=httpx.Timeout(None, connect=5.0),
                limits=httpx.Limits(max_connections=256, max_keepalive_connections=32))
        return self._http

    async def _forward(self, scope: Scope, receive: Any, send: Any, leader: str,
                       directory: BrainDirectory) -> None:
        import httpx

        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _HOP]
        client = scope.get("client")
        headers += [(FORWARDED, directory.id.encode()),
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

        started = False

        async def relay() -> None:
            nonlocal started
            http = self._client()
            try:
                req = http.build_request(scope["method"], url, headers=headers, content=body())
                resp = await http.send(req, stream=True)
            except httpx.HTTPError as exc:
                log.warning("could not forward %s %s to the leader %s: %s", scope["method"],
                            scope["path"], leader, exc)
                await _unreachable(send, leader, "did not answer")
                return
            try:
                started = True
                await send({"type": "http.response.start", "status": resp.status_code,
                            "headers": [(k, v) for k, v in resp.headers.raw
                                        if k.lower() not in _HOP]})
                async for piece in resp.aiter_raw():
                    await send({"type": "http.response.body", "body": piece, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            finally:
                await resp.aclose()

        work = asyncio.ensure_future(relay())
        watch = asyncio.ensure_future(_still_leads(leader, directory))
        try:
            await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
            if not work.done():
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)
        if not work.cancelled():
            work.result()
            return
        log.warning("%s %s forwarded to %s: that brain no longer leads (silent or replaced);"
                    " the request is cut off", scope["method"], scope["path"], leader)
        if not started:
            await _unreachable(send, leader, "stopped answering and no longer leads")
        # Otherwise the answer had begun: returning without its end makes the server
        # close the connection, which the client sees as a cut-off response.

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()


async def _still_leads(leader: str, directory: BrainDirectory) -> None:
    """Return once ``leader`` is no longer the brain that leads (its row went
    unrenewed for ``brains.FRESH`` seconds, or another brain's row leads)."""
    while True:
        await asyncio.sleep(WATCH_EVERY)
        try:
            if await directory.leader_url() != leader:
                return
        except Exception as exc:  # the database hiccuped: the leader is not known to be gone
            log.debug("could not check the leader: %s", exc)


async def _unreachable(send: Any, leader: str, why: str) -> None:
    await _error(send, 503, "leader_unreachable", f"this brain passes changes to the leader "
                 f"({leader}), which {why}: retry in a few seconds")


async def _error(send: Any, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": code, "message": message}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"retry-after", b"2")]})
    await send({"type": "http.response.body", "body": body})
