"""Helpers shared by the route modules."""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import posixpath
import unicodedata
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from fastapi import Request, Response
from fastapi.responses import StreamingResponse
from fastapi.routing import APIRoute

from tossit.brain.reader import Download
from tossit.brain.service import Brain
from tossit.errors import ApiError, MalformedJson
from tossit.names import unsafe_char, valid_media_type

MAX_NAME_BYTES = 1024
log = logging.getLogger("tossit.brain.api")


def brain_of(request: Request) -> Brain:
    brain: Brain = request.app.state.brain
    return brain


# A reader that takes none of a slice this long is cut off: a client that stopped
# reading (or reads slower than SEND_SLICE / SEND_TIMEOUT, about 4 KB/s) would
# otherwise hold its connection and the chunks read ahead for it for ever.
SEND_TIMEOUT = 60.0
SEND_SLICE = 256 * 1024


class ReaderStalled(Exception):
    """The client stopped taking a download's bytes."""


class PacedStreamingResponse(StreamingResponse):
    """A streamed download sent in slices, each of which the client must take
    within ``SEND_TIMEOUT``."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def paced(message: Any) -> None:
            body = message.get("body", b"")
            if message["type"] != "http.response.body" or len(body) <= SEND_SLICE:
                await _timed(send, message)
                return
            view, more = memoryview(body), message.get("more_body", False)
            for at in range(0, len(view), SEND_SLICE):
                last = at + SEND_SLICE >= len(view)
                await _timed(send, {"type": "http.response.body",
                                    "body": view[at:at + SEND_SLICE],
                                    "more_body": more or not last})

        try:
            await super().__call__(scope, receive, paced)
        except ReaderStalled:
            log.info("%s %s: the client took nothing for %g s; download cut off",
                     scope.get("method"), scope.get("path"), SEND_TIMEOUT)


async def _timed(send: Any, message: Any) -> None:
    try:
        await asyncio.wait_for(send(message), SEND_TIMEOUT)
    except TimeoutError:
        raise ReaderStalled from None


def download_response(dl: Download, status_code: int, headers: dict[str, str],
                      media_type: str | None = None) -> Response:
    """A prepared download as a response: one body when it is all in hand, else
    streamed chunk by chunk (``PacedStreamingResponse``)."""
    if dl.whole is not None:
        return Response(dl.whole, status_code=status_code, headers=headers,
                        media_type=media_type)
    return PacedStreamingResponse(dl.body, status_code=status_code, headers=headers,
                                  media_type=media_type)


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def check_name(name: str) -> str:
    """A file name (object key): 1-1024 UTF-8 bytes, no control characters, no
    empty, ``.`` or ``..`` path segments, no leading slash."""
    name = unicodedata.normalize("NFC", name)
    if not name or len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise ApiError(400, "invalid_name", f"a file name is 1 to {MAX_NAME_BYTES} bytes")
    bad = unsafe_char(name)
    if bad is not None:
        raise ApiError(400, "invalid_name", f"a file name cannot contain control or "
                       f"text-direction characters (found {bad})")
    if name.startswith("/") or any(seg in ("", ".", "..") for seg in name.split("/")):
        raise ApiError(
            400, "invalid_name", "a file name cannot start with '/' or contain '.', '..' "
            "or empty path segments"
        )
    return name


def upload_filename(raw: str) -> str:
    """The name a browser or curl sent in a multipart part, without any directory."""
    base = raw.replace("\\", "/").rsplit("/", 1)[-1].strip()
    return check_name(base)


def content_type_for(name: str, declared: str | None) -> str:
    """The media type to store: the one declared (checked: it goes back out as a
    header on every download), else a guess from the name."""
    generic = ("application/octet-stream", "")
    if declared and not valid_media_type(declared):
        raise ApiError(400, "invalid_content_type",
                       f"the Content-Type {declared[:80]!r} is not a valid media type "
                       "(type/subtype, ASCII, optional ;name=value parameters)")
    if declared and declared.lower() not in generic:
        return declared.strip()
    guess, _ = mimetypes.guess_type(posixpath.basename(name), strict=False)
    return guess or "application/octet-stream"


Gate = Callable[[Request], Awaitable[Any]]


class AuthBeforeBody(APIRoute):
    """A route class whose access checks run before its body is read.

    FastAPI reads a route's whole body, and decodes it as JSON, before it runs
    any dependency: a caller with no key (or no cluster signature) made the
    server read and hold whatever it sent (only ``tossit.limits`` bounds it),
    and malformed or too deeply nested JSON got a 400 where every other
    unauthenticated request gets a 401. Here the router's ``gates`` (checks of
    the headers alone: ``tossit.brain.api.access``) run first; then a body
    that does not decode is handed on as ``MalformedJson``, so the
    dependencies run before validation refuses it with the usual 400.

    ``before_body(*gates)`` makes the class for a router.
    """

    gates: tuple[Gate, ...] = ()

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        gates = self.gates

        async def run(request: Request) -> Response:
            later = _JsonLater(request.scope, request.receive)
            for gate in gates:
                await gate(later)
            return await handler(later)

        return run


def before_body(*gates: Gate) -> type[AuthBeforeBody]:
    """An ``AuthBeforeBody`` route class that runs ``gates`` before the body is read."""
    return type("AuthBeforeBody", (AuthBeforeBody,), {"gates": gates})


class _JsonLater(Request):
    async def json(self) -> Any:
        try:
            return await super().json()
        # JSONDecodeError, bytes that are not UTF-8, or nesting deeper than the
        # decoder's recursion limit
        except (ValueError, RecursionError) as exc:
            return MalformedJson(exc)


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": code, "message": message, **extra}
