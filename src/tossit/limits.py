"""Limits on slow and oversized requests, for every TossIt server.

uvicorn with httptools bounds neither the size nor the arrival time of a
request's headers, nor the pauses inside its body: one client sending a byte
every few seconds (slowloris) holds a connection and its buffers forever. Two
guards, both installed by ``tossit.serve.serve``:

* ``HeaderGuard`` (an uvicorn protocol) sees bytes before there is a request:
  request line + headers must be complete within ``header_timeout`` of their
  first byte (408) and stay under ``max_header_bytes`` / ``max_headers`` (431).
  It also counts connections (``ConnectionLimits``): past the cap per client
  address or overall, a new connection makes room by closing the oldest idle
  one, so idle sockets cannot use up the file descriptors.
* ``RequestLimits`` (pure ASGI middleware, so streamed bodies stay streamed)
  guards the body: a pause longer than ``body_timeout`` between two pieces ends
  it (408), and every body but a streamed upload is capped at ``max_body``
  (413), whatever its Content-Type: frameworks read a body whole into memory
  before the handler, or its access checks, can refuse it.

Errors use the project's JSON shape ``{"error": code, "message": text}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any, cast

import httptools
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

HEADER_TIMEOUT = 10.0
MAX_HEADER_BYTES = 64 * 1024
MAX_HEADERS = 100
BODY_TIMEOUT = 30.0
MAX_CONNECTIONS = 4096
MAX_CONNECTIONS_PER_CLIENT = 256
MAX_BODY = 1 << 20
# (method, path prefix) of the routes whose body is a streamed upload, read
# piece by piece by its handler (which bounds it itself where it must): the
# brain's file uploads (raw and multipart) and the parts of resumable uploads
# (5 GiB at most, refused past that by the multipart service), a node's chunks
# and chunk batches. Every other body is capped, whatever its Content-Type.
UPLOAD_ROUTES: tuple[tuple[str, str], ...] = (
    ("PUT", "/api/files/"), ("POST", "/api/files/upload"), ("PUT", "/api/uploads/"),
    ("PUT", "/chunks/"), ("POST", "/chunk-batch"),
)
# Bodies that are small by nature get a smaller cap: a sign-in carries one key
# (at most 256 characters) and is read before anything can be checked.
SMALL_BODIES: dict[tuple[str, str], int] = {("POST", "/api/session"): 4 * 1024}
# After refusing a request the server keeps reading (and dropping) what the
# client still sends for this long: closing a socket with unread input makes
# the kernel answer with a reset, which can destroy the error response in flight.
LINGER = 2.0

log = logging.getLogger("tossit.limits")


# -- request line + headers: an uvicorn protocol ------------------------------


class _Rejected(Exception):
    """Raised from a parser callback to stop httptools after we have answered."""


class _Discard:
    """Stands in for the parser once a connection is refused: input is dropped."""

    def feed_data(self, data: bytes) -> None:
        pass


_DISCARD = _Discard()


def _raw_error(status: int, code: str, message: str,
               default_headers: list[tuple[bytes, bytes]]) -> bytes:
    body = json.dumps({"error": code, "message": message}).encode()
    out = [STATUS_LINE[status]]
    for name, value in default_headers:
        out += [name, b": ", value, b"\r\n"]
    out += [b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n", body]
    return b"".join(out)


class ConnectionLimits:
    """Open connections per client address and overall, with room made by
    closing idle ones.

    Each connection holds a file descriptor, and an idle one costs its client
    nothing: with 1,100 idle connections a server at the usual 1024-descriptor
    limit could no longer accept anything, ``/health`` included. A refusal
    would lock out whoever comes next, the health probe or a real user behind
    the same address as the attacker (a NAT, a proxy, loopback in tests); so a
    connection past a cap is let in and the *oldest idle* connection of the
    same address (past the overall cap: of the address holding the most) is
    closed instead. Idle means no request in progress: a fresh connection that
    has sent nothing or only part of its headers, or a kept-alive one between
    requests; its client loses nothing but the connection (browsers and HTTP
    libraries reconnect). Only when every connection concerned is busy
    answering a request is the new one refused, with a 503.

    Connections are kept in arrival order per address, so finding the oldest
    idle one is a scan that stops at the first, and only when a cap is hit.
    """

    def __init__(self, max_connections: int = MAX_CONNECTIONS,
                 per_client: int = MAX_CONNECTIONS_PER_CLIENT) -> None:
        self.max_connections = max_connections
        self.per_client = per_client
        self.by_client: dict[str, dict[HeaderGuard, None]] = {}
        self.total = 0
        self.evicted = 0  # idle connections closed to make room

    def admit(self, conn: HeaderGuard) -> bool:
        """Count ``conn`` in, closing idle ones as needed; False: refuse it."""
        mine = self.by_client.setdefault(conn.client_key, {})
        if len(mine) >= self.per_client and not self._evict_from(mine):
            return False
        if self.total >= self.max_connections:
            biggest = sorted(self.by_client.values(), key=len, reverse=True)
            if not any(self._evict_from(conns) for conns in biggest):
                return False
        mine[conn] = None
        self.total += 1
        return True

    def release(self, conn: HeaderGuard) -> None:
        """Count ``conn`` out (idempotent: an evicted one is out already)."""
        conns = self.by_client.get(conn.client_key)
        if conns is None:
            return
        if conns.pop(conn, False) is None:  # it was counted (values are None)
            self.total -= 1
        if not conns:
            del self.by_client[conn.client_key]

    def _evict_from(self, conns: dict[HeaderGuard, None]) -> bool:
        for old in conns:
            if not old.busy():
                self.release(old)
                self.evicted += 1
                if self.evicted == 1 or self.evicted % 1000 == 0:  # a flood logs a few lines
                    log.warning("connection caps reached (%d per address, %d in all): "
                                "closed an idle connection from %s to make room (%d so far)",
                                self.per_client, self.max_connections, old.client_key,
                                self.evicted)
                old.evict()
                return True
        return False


class HeaderGuard(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline and a size cap on headers.

    Cost on the fast path: requests whose headers arrive in one read arm no
    timer and do one ``if`` per read; the header count and size are checked
    once per request when the parser reports the headers complete. Only while a
    header block is split over reads is each read's length added and compared
    (httptools buffers partial headers itself, so that count is what bounds its
    memory; the read in which a request begins is not counted, so a block can
    grow to the limit plus one read before it is refused).

    The deadline runs from the read holding the request's first byte. A fresh
    connection gets the same time to send that byte, then is closed silently;
    idle keep-alive connections are left to uvicorn's ``timeout_keep_alive``.
    While an earlier request on the connection is still being answered the
    deadline is pushed back (uvicorn may not be reading the connection then, so
    the lateness can be ours). Only ``transport.write/close/write_eof`` are used, so the guard
    works the same over TLS.

    Limits are class attributes; ``header_guard()`` makes a configured subclass
    because uvicorn instantiates the protocol class itself.
    """

    header_timeout: float = HEADER_TIMEOUT
    max_header_bytes: int = MAX_HEADER_BYTES
    max_headers: int = MAX_HEADERS
    conn_limits: ConnectionLimits | None = None  # one per server: a class attribute

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.client_key = "unknown"  # the client's address, for ConnectionLimits
        self._in_headers = False  # a request has begun and its headers are incomplete
        self._hdr_fresh = False  # ... and it began in the read being processed
        self._hdr_bytes = 0  # bytes of later reads while still incomplete
        self._hdr_timer: asyncio.TimerHandle | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.conn_limits is not None:
            self.client_key = self.client[0] if self.client else "unix"
            if not self.conn_limits.admit(self):
                log.warning("%s: refused: every connection from it (or every one, past %d) "
                            "is busy", self._peer(), self.conn_limits.max_connections)
                self.parser = _DISCARD  # type: ignore[assignment]
                transport.write(_raw_error(503, "too_many_connections",
                                           "too many connections: try again shortly",
                                           self.server_state.default_headers))
                transport.close()
                return
        self._hdr_timer = self.loop.call_later(self.header_timeout, self._deadline)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        if self.conn_limits is not None:
            self.conn_limits.release(self)
        super().connection_lost(exc)

    def busy(self) -> bool:
        """A request on this connection is being answered (it cannot be evicted)."""
        return self._busy()

    def evict(self) -> None:
        """Close this idle connection to make room for a new one."""
        self._cancel_timer()
        self.parser = _DISCARD  # type: ignore[assignment]
        if not self.transport.is_closing():
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        # uvicorn 0.54's data_received (pinned), except that a refusal raised from
        # a parser callback is not reported as a malformed request.
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _Rejected):
                return
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._in_headers:
            if self._hdr_fresh:  # the request began in this read: start its clock
                self._hdr_fresh = False
                self._cancel_timer()
                self._hdr_timer = self.loop.call_later(self.header_timeout, self._deadline)
            else:
                self._hdr_bytes += len(data)
                if self._hdr_bytes > self.max_header_bytes:
                    self._refuse_large("request line and headers exceed "
                                       f"{self.max_header_bytes} bytes")
                elif len(self.headers) > self.max_headers:
                    self._refuse_large(f"more than {self.max_headers} header fields")

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes that do not parse as HTTP, in the JSON error
        shape of every other answer (uvicorn's own is plain text)."""
        self._cancel_timer()
        self.parser = _DISCARD  # type: ignore[assignment]
        self.transport.write(_raw_error(400, "invalid_request", msg,
                                        self.server_state.default_headers))
        self.transport.close()

    # httptools callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._hdr_fresh = True
        self._hdr_bytes = 0

    def on_headers_complete(self) -> None:
        self._in_headers = False
        if self._hdr_timer is not None:
            self._hdr_timer.cancel()
            self._hdr_timer = None
        headers = self.headers
        if len(headers) > self.max_headers:
            self._refuse_large(f"more than {self.max_headers} header fields")
            raise _Rejected
        # The wire size give or take the method and version: enough for a cap.
        size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in headers)
        if size > self.max_header_bytes:
            self._refuse_large(f"request line and headers exceed {self.max_header_bytes} bytes")
            raise _Rejected
        super().on_headers_complete()

    # refusing

    def _cancel_timer(self) -> None:
        if self._hdr_timer is not None:
            self._hdr_timer.cancel()
            self._hdr_timer = None

    def _busy(self) -> bool:
        """An earlier request on this connection is still being answered."""
        cycle = self.cycle
        return bool(self.pipeline) or (cycle is not None and not cycle.response_complete)

    def _deadline(self) -> None:
        self._hdr_timer = None
        if self.transport.is_closing():
            return
        if not self._in_headers:  # connected but sent nothing
            self.transport.close()
            return
        if self._busy():
            self._hdr_timer = self.loop.call_later(self.header_timeout, self._deadline)
            return
        log.info("%s: request headers not complete after %g s; closing",
                 self._peer(), self.header_timeout)
        self._refuse(408, "request_timeout",
                     f"request headers not complete within {self.header_timeout:g} s")

    def _refuse_large(self, message: str) -> None:
        log.info("%s: %s; refused", self._peer(), message)
        self._refuse(431, "headers_too_large", message)

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer ``status`` if the connection is free to, then close it."""
        self._in_headers = False
        self._cancel_timer()
        self.parser = _DISCARD  # type: ignore[assignment]
        if self.transport.is_closing():
            return
        if self._busy():  # no room for our answer: close once the current one is out
            self.pipeline.clear()
            self.cycle.keep_alive = False
            return
        self.transport.write(_raw_error(status, code, message, self.server_state.default_headers))
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._hdr_timer = self.loop.call_later(LINGER, self.transport.close)
        else:  # TLS: no half-close
            self.transport.close()

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "client"


def header_guard(header_timeout: float = HEADER_TIMEOUT,
                 max_header_bytes: int = MAX_HEADER_BYTES,
                 max_headers: int = MAX_HEADERS,
                 conn_limits: ConnectionLimits | None = None) -> type[HeaderGuard]:
    """A ``HeaderGuard`` subclass with these limits, for ``uvicorn.Config(http=...)``."""
    return cast(type[HeaderGuard], type("HeaderGuard", (HeaderGuard,), {
        "header_timeout": header_timeout,
        "max_header_bytes": max_header_bytes,
        "max_headers": max_headers,
        "conn_limits": conn_limits,
    }))


# -- request body: ASGI middleware --------------------------------------------


class BodyLimitError(ClientDisconnect, HTTPException):
    """Raised from ``receive()`` when the middleware cuts a request body off.

    A ``ClientDisconnect``, so upload handlers abort exactly as when the client
    goes away (nothing half-received is committed); an ``HTTPException``, so a
    FastAPI app that does not catch it answers it like any 4xx instead of
    logging a traceback. Whatever the app answers, the middleware sends its own
    error instead.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        HTTPException.__init__(self, status, message)
        self.code = code


class BodyTimeout(BodyLimitError):
    def __init__(self, seconds: float) -> None:
        super().__init__(408, "request_timeout",
                         f"no request body data for {seconds:g} s")


class BodyTooLarge(BodyLimitError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, "body_too_large",
                         f"this request's body is at most {limit} bytes")


# How an app's clients expect a cut-off body answered: (status, body, content type).
ErrorRenderer = Callable[[BodyLimitError, Scope], tuple[int, bytes, bytes]]


def json_error(exc: BodyLimitError, scope: Scope) -> tuple[int, bytes, bytes]:
    """The REST API's JSON error body."""
    body = json.dumps({"error": exc.code, "message": exc.detail}).encode()
    return exc.status_code, body, b"application/json"


async def _send_error(send: Send, exc: BodyLimitError, scope: Scope,
                      render: ErrorRenderer = json_error) -> None:
    status, body, ctype = render(exc, scope)
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", ctype),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),  # the rest of the body is not read
    ]})
    await send({"type": "http.response.body", "body": body})


class RequestLimits:
    """Body idle timeout and size cap around an ASGI app.

    Requests without a body (no Content-Length or a zero one, not chunked) go
    straight to the app at no cost. Every body is capped at ``max_body`` (or
    its entry in ``small_bodies``) except on ``upload_routes``; the cap goes by
    route, not by Content-Type, because FastAPI reads any body of a route with
    a body model whole (text/plain, none, octet-stream...) before its
    dependencies run. Requests
    with a body get a ``receive`` that waits at most ``body_timeout`` for each
    piece (only until the body is complete: waiting for ``http.disconnect``
    afterwards is not limited) and a ``send`` that replaces the app's answer
    once the body was cut off.

    A timer per ``receive()`` (``asyncio.timeout``) measured 10-20 µs of timer
    churn per call here, several times this layer's other costs; so a waiting
    ``receive`` only notes when it began, and one watchdog task per server,
    alive while someone waits, looks every ``tick`` seconds for waits past the
    limit and cancels them (a stall is cut off within ``body_timeout + tick``).
    """

    def __init__(self, app: ASGIApp, *, body_timeout: float = BODY_TIMEOUT,
                 max_body: int = MAX_BODY,
                 upload_routes: tuple[tuple[str, str], ...] = UPLOAD_ROUTES,
                 small_bodies: dict[tuple[str, str], int] | None = None,
                 render: ErrorRenderer = json_error) -> None:
        """``render``: the error body of a refused or cut-off body (the S3 API
        answers in its XML)."""
        self.app = app
        self.render = render
        self.body_timeout = body_timeout
        self.max_body = max_body
        self.upload_routes = upload_routes
        self.small_bodies = SMALL_BODIES if small_bodies is None else small_bodies
        self.tick = min(1.0, body_timeout / 4)
        self.waiting: set[_BodyGuard] = set()
        self._watchdog: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length: bytes | None = None
        ctype: bytes | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"content-type":
                ctype = value
            elif name == b"transfer-encoding":
                chunked = True
        if not chunked and (length is None or length == b"0"):
            await self.app(scope, receive, send)
            return
        cap = self.cap_for(scope["method"], scope["path"])
        if cap is not None and length is not None and length.isdigit() and int(length) > cap:
            log.info("%s %s: %s-byte %s body refused", scope["method"], scope["path"],
                     length.decode(), (ctype or b"untyped").decode("latin-1"))
            await _send_error(send, BodyTooLarge(cap), scope, self.render)
            return
        guard = _BodyGuard(self, scope, receive, send, cap)
        try:
            await self.app(scope, guard.receive, guard.send)
        except Exception:
            # An app failing after its body was cut off is failing because of
            # it: our answer stands in, unless the app had already begun its own.
            if guard.error is None or guard.app_started:
                raise
        if guard.error is not None and not guard.app_started and not guard.answered:
            await guard.answer()

    def cap_for(self, method: str, path: str) -> int | None:
        """The most body bytes this route may get; None for a streamed upload."""
        for upload_method, prefix in self.upload_routes:
            if method == upload_method and path.startswith(prefix):
                return None
        return self.small_bodies.get((method, path), self.max_body)

    def watch(self, guard: _BodyGuard) -> None:
        """Note that ``guard`` waits for body data; start the watchdog if needed."""
        self.waiting.add(guard)
        dog = self._watchdog
        if dog is None or dog.done():
            self._watchdog = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while self.waiting:
            await asyncio.sleep(self.tick)
            limit = time.monotonic() - self.body_timeout
            for guard in [g for g in self.waiting if g.since < limit]:
                guard.expire()


class _BodyGuard:
    """One request's wrapped ``receive`` / ``send``."""

    __slots__ = ("_receive", "_send", "answered", "app_started", "cancelling", "cap", "done",
                 "error", "expired", "limits", "received", "scope", "since", "task")

    def __init__(self, limits: RequestLimits, scope: Scope, receive: Receive, send: Send,
                 cap: int | None) -> None:
        self.limits = limits
        self.scope = scope
        self._receive = receive
        self._send = send
        self.cap = cap
        self.received = 0
        self.done = False  # the body is complete: receive() now only reports disconnects
        self.error: BodyLimitError | None = None
        self.app_started = False  # the app's response start went out
        self.answered = False  # our error response went out
        self.since = 0.0  # when the current wait for body data began
        self.task: asyncio.Task[Any] | None = None  # the task waiting
        self.expired = False  # the watchdog cancelled that wait
        self.cancelling = 0  # the task's pending cancellations before the watchdog's

    async def receive(self) -> Message:
        if self.done:
            return await self._receive()
        if self.error is not None:
            return {"type": "http.disconnect"}
        self.since = time.monotonic()
        self.task = asyncio.current_task()
        self.limits.watch(self)
        try:
            message = await self._receive()
        except asyncio.CancelledError:
            if not self.expired or self.task is None or self.task.uncancel() > self.cancelling:
                raise  # not (only) ours: let the other canceller see it
            raise self._fail(BodyTimeout(self.limits.body_timeout)) from None
        finally:
            self.limits.waiting.discard(self)
            self.task = None
        if message["type"] != "http.request":
            self.done = True
            return message
        if self.cap is not None:
            self.received += len(message.get("body", b""))
            if self.received > self.cap:
                raise self._fail(BodyTooLarge(self.cap))
        if not message.get("more_body", False):
            self.done = True
        return message

    def expire(self) -> None:
        """Called by the watchdog: this wait went on too long."""
        self.limits.waiting.discard(self)
        if self.task is not None and not self.expired:
            self.expired = True
            self.cancelling = self.task.cancelling()
            self.task.cancel()

    async def send(self, message: Message) -> None:
        if self.error is not None and not self.app_started:
            if not self.answered:
                await self.answer()
            return  # the app's answer to a body it never fully got is dropped
        if message["type"] == "http.response.start":
            self.app_started = True
        await self._send(message)

    async def answer(self) -> None:
        assert self.error is not None
        self.answered = True
        await _send_error(self._send, self.error, self.scope, self.limits.render)

    def _fail(self, exc: BodyLimitError) -> BodyLimitError:
        self.error = exc
        client = self.scope.get("client")
        log.info("%s %s from %s: %s", self.scope["method"], self.scope["path"],
                 f"{client[0]}:{client[1]}" if client else "client", exc.detail)
        return exc
