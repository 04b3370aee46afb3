"""The node's chunk API: store, fetch, check and delete blobs by id, one or many,
and page through what the node holds.

Ids are validated before they touch a path, bodies are size-capped while they
are read, and every disk call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from tossit import chunkbatch
from tossit.chunkbatch import MAX_BATCH_BYTES, MAX_BATCH_CHUNKS
from tossit.chunking import DATA, KINDS
from tossit.config import MAX_CHUNK_SIZE
from tossit.errors import ApiError
from tossit.node.parts import (
    BYTES,
    KIND_PATTERN,
    ChunkId,
    Kind,
    NodeParts,
    Parts,
    check_id,
    check_signed_body,
    signed,
    signed_digest,
)
from tossit.node.storage import HashMismatch, StorageFull, Unreadable

log = logging.getLogger("tossit.node")
router = APIRouter()
_CHUNK_BODY = {"requestBody": {"required": True, **BYTES}}
_BATCH_BODY = {"requestBody": {
    "required": False, "description": "frames of (SHA-256, 4-byte length, bytes); none: "
    "nothing to do", **BYTES}}


class DeleteOrder(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]] = Field(max_length=1000)


async def _read_capped(request: Request, cap: int, code: str, what: str) -> bytearray:
    body = bytearray()
    try:
        async for piece in request.stream():
            body += piece
            if len(body) > cap:
                raise ApiError(413, code, what)
    except ClientDisconnect as exc:
        if isinstance(exc, HTTPException):
            raise  # the body limits cut it off: answered by their middleware
        # The brain gave up on this write (a straggler cut off, an upload that
        # ended): nothing is stored, and it is no server error to log.
        raise ApiError(400, "client_disconnected",
                       "the request body ended before its end") from None
    return body


async def _write(p: NodeParts, cid: str, data: bytes | bytearray | memoryview,
                 kind: str) -> tuple[str, str]:
    """Store one blob; its outcome (created, exists, hash_mismatch, full or
    disk_error) and why, for the last three."""
    try:
        created = await asyncio.to_thread(p.store.write, cid, data, True, kind)
    except HashMismatch:
        p.ops.labels("put", "hash_mismatch").inc()
        return "hash_mismatch", f"the body does not hash to the chunk id (kind {kind})"
    except StorageFull as exc:
        p.ops.labels("put", "full").inc()
        return "full", str(exc)
    except OSError as exc:
        # The disk refused the write (permissions, read-only after an error, I/O):
        # said plainly, so that the brain's log and events name the node's trouble.
        p.ops.labels("put", "disk_error").inc()
        log.error("cannot store chunk %s: %s", cid[:12], exc)
        return "disk_error", f"this node cannot write to its disk: {exc.strerror or exc}"
    p.ops.labels("put", "ok").inc()
    p.bytes_io.labels("in").inc(len(data))
    return ("created" if created else "exists"), ""


@router.put("/chunks/{chunk_id}", status_code=201, openapi_extra=_CHUNK_BODY, responses={
    200: {"description": "The chunk was already stored", "content": {"application/json": {}}},
    **signed(400, 413, 422, 500, 507, e422="The body does not hash to the chunk id",
             e500="This node's disk refused the write (disk_error)"),
})
async def put_chunk(chunk_id: ChunkId, request: Request, p: Parts,
                    kind: Kind = DATA) -> JSONResponse:
    """Store a chunk; the body must hash (SHA-256) to ``chunk_id``."""
    check_id(chunk_id)
    if signed_digest(request) not in (None, chunk_id):
        raise ApiError(401, "unauthorized", "the signed body hash is not the chunk id")
    too_large = f"a chunk is at most {MAX_CHUNK_SIZE} bytes"
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_CHUNK_SIZE):
        raise ApiError(413, "chunk_too_large", too_large)
    body = await _read_capped(request, MAX_CHUNK_SIZE, "chunk_too_large", too_large)
    outcome, why = await _write(p, chunk_id, body, kind)
    if outcome == "hash_mismatch":
        raise ApiError(422, "hash_mismatch", why)
    if outcome == "full":
        raise ApiError(507, "storage_full", why)
    if outcome == "disk_error":
        raise ApiError(500, "disk_error", why)
    return JSONResponse(
        {"id": chunk_id, "size": len(body), "created": outcome == "created"},
        status_code=201 if outcome == "created" else 200,
    )


@router.post("/chunk-batch", summary="Store several small chunks at once",
             openapi_extra=_BATCH_BODY, responses=signed(400, 413))
async def put_batch(request: Request, p: Parts) -> dict[str, Any]:
    """Body: frames of (32-byte SHA-256, 4-byte big-endian length, bytes); see
    ``tossit.chunkbatch``. Each chunk is stored as by ``PUT /chunks/{id}``, all
    of them concurrently; the answer gives each one's outcome."""
    body = await _read_capped(request, MAX_BATCH_BYTES + MAX_BATCH_CHUNKS * 36,
                              "batch_too_large", f"a batch is at most {MAX_BATCH_BYTES} bytes")
    check_signed_body(request, body)
    try:
        frames = chunkbatch.decode(body)
    except chunkbatch.BatchFormatError as exc:
        raise ApiError(400, "invalid_batch", str(exc)) from None
    outcomes = await asyncio.gather(*(_write(p, cid, data, kind) for cid, data, kind in frames))
    return {"results": [{"id": cid, "status": outcome, **({"message": why} if why else {})}
                        for (cid, _, _), (outcome, why) in zip(frames, outcomes, strict=True)]}


@router.get("/chunks/{chunk_id}", response_class=Response,
            responses={200: BYTES, **signed(400, 404)})
async def get_chunk(chunk_id: ChunkId, p: Parts) -> Response:
    """The chunk's bytes (the caller verifies them against the id)."""
    check_id(chunk_id)
    try:
        data = await asyncio.to_thread(p.store.read, chunk_id)
    except FileNotFoundError:
        p.ops.labels("get", "missing").inc()
        raise ApiError(404, "chunk_not_found", f"no chunk {chunk_id} here") from None
    except Unreadable as exc:
        # Damaged, as if its bytes failed their hash: moved aside and reported (the
        # brain has it re-made); to the reader it is not here.
        p.ops.labels("get", "unreadable").inc()
        await asyncio.to_thread(p.scrubber.found_corrupt, chunk_id)
        raise ApiError(404, "chunk_not_found",
                       f"chunk {chunk_id} cannot be read from this disk ({exc.strerror}): "
                       "quarantined") from None
    p.ops.labels("get", "ok").inc()
    p.bytes_io.labels("out").inc(len(data))
    return Response(data, media_type="application/octet-stream")


@router.head("/chunks/{chunk_id}", response_class=Response,
             responses={200: {"description": "The chunk is here (Content-Length: its size)"},
                        404: {"description": "No such chunk here"}, **signed(400)})
async def head_chunk(chunk_id: ChunkId, p: Parts) -> Response:
    check_id(chunk_id)
    found = await asyncio.to_thread(p.store.locate, chunk_id)
    try:
        if found is None:
            raise FileNotFoundError(chunk_id)
        size = (await asyncio.to_thread(os.stat, found[0])).st_size
    except FileNotFoundError:
        return Response(status_code=404)
    return Response(headers={"content-length": str(size), "x-tossit-kind": found[1]})


@router.delete("/chunks/{chunk_id}", responses=signed(400))
async def delete_chunk(chunk_id: ChunkId, p: Parts) -> dict[str, Any]:
    """Remove a chunk (idempotent: deleting a missing chunk is not an error)."""
    check_id(chunk_id)
    deleted = await asyncio.to_thread(p.store.delete, chunk_id)
    p.ops.labels("delete", "ok" if deleted else "missing").inc()
    return {"id": chunk_id, "deleted": deleted}


@router.post("/chunk-deletes", responses=signed(400))
async def delete_chunks(order: DeleteOrder, request: Request, p: Parts) -> dict[str, Any]:
    """Remove many chunks (or manifest packs) at once: what the brain's garbage
    collector sends. Idempotent; the answer lists the ids that were here."""
    check_signed_body(request, await request.body())
    deleted = await asyncio.to_thread(p.store.delete_many, order.ids)
    p.ops.labels("delete", "ok").inc(len(deleted))
    p.ops.labels("delete", "missing").inc(len(order.ids) - len(deleted))
    return {"deleted": deleted}


@router.api_route("/chunks/{rest:path}", methods=["GET", "PUT", "DELETE", "HEAD"],
                  include_in_schema=False)
async def bad_chunk_path(rest: str) -> Response:
    """Anything under /chunks/ that is not one plain chunk id (``../``, slashes)."""
    raise ApiError(400, "invalid_chunk_id", "a chunk id is 64 lowercase hex digits")


@router.get("/inventory", responses=signed())
async def inventory(
    p: Parts,
    after: str = Query("", max_length=64, pattern="^[0-9a-f]*$"),
    limit: int = Query(10000, ge=1, le=100000),
    kind: str | None = Query(None, pattern=KIND_PATTERN, description="only this kind [both]"),
) -> dict[str, Any]:
    """A page of the blobs this node holds, sorted by id (``after`` = cursor)."""
    kinds = (kind,) if kind else KINDS
    page = await asyncio.to_thread(p.store.inventory, after, limit, kinds)
    return {
        "chunks": [{"id": c, "size": s, "mtime": m, "kind": k} for c, s, m, k in page],
        "next": page[-1][0] if len(page) == limit else None,
    }
