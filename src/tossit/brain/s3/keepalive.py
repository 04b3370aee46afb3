"""Answers that may take long, sent the way S3 sends CompleteMultipartUpload's.

A completion reads the whole object once (its SHA-256, docs/multipart.md): a
few seconds per GB, longer than a client's read timeout for a big object. S3
answers such a request ``200 OK`` at once, sends whitespace while it works (XML
allows it after the declaration), then the result document, or an error
document inside the 200, which the SDKs and aws-cli recognise and raise (or
retry). The short case keeps its ordinary answer: if the work ends within
``first_wait`` seconds, its errors keep their own status codes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable

from starlette.responses import Response, StreamingResponse

from tossit.brain.s3.errors import S3Error, error_document, from_domain
from tossit.brain.s3.xml import HEADER
from tossit.errors import TossitError

log = logging.getLogger("tossit.brain.s3")
FIRST_WAIT = 2.0  # seconds before the answer starts with whitespace
INTERVAL = 5.0  # seconds between two whitespace bytes (clients wait 60 s by default)


async def answer_when_done(work: Awaitable[bytes], resource: str, request_id: str,
                           first_wait: float = FIRST_WAIT, interval: float = INTERVAL,
                           ) -> Response:
    """The XML document ``work`` makes (a whole document with its declaration),
    as an ordinary answer if it comes within ``first_wait`` seconds, else as a
    200 kept alive by whitespace. The work is a task of its own: a client that
    goes away does not cancel it (a completion must end as it began)."""
    task = asyncio.ensure_future(work)
    task.add_done_callback(_retrieve)  # its error is logged or sent, never "unretrieved"
    await asyncio.wait({task}, timeout=first_wait)
    if task.done():
        return Response(task.result(), media_type="application/xml")  # errors: raised
    return StreamingResponse(_kept_alive(task, resource, request_id, interval),
                             media_type="application/xml")


async def _kept_alive(task: asyncio.Future[bytes], resource: str, request_id: str,
                      interval: float) -> AsyncIterator[bytes]:
    yield HEADER.encode()
    while True:
        await asyncio.wait({task}, timeout=interval)
        if task.done():
            break
        yield b" "
    yield _without_header(await _outcome(task, resource, request_id))


async def _outcome(task: asyncio.Future[bytes], resource: str, request_id: str) -> bytes:
    try:
        return task.result()
    except S3Error as err:
        return error_document(err, resource, request_id)
    except TossitError as exc:
        return error_document(from_domain(exc), resource, request_id)
    except Exception:
        log.exception("S3 %s failed after its answer began", resource)
        return error_document(S3Error("InternalError"), resource, request_id)


def _retrieve(task: asyncio.Future[bytes]) -> None:
    if not task.cancelled():
        task.exception()


def _without_header(document: bytes) -> bytes:
    """A document's body after its XML declaration (sent first already)."""
    head = HEADER.encode()
    return document[len(head):] if document.startswith(head) else document


