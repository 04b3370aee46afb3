"""The node's HTTP API: store, fetch and delete chunks by id, report usage.

Chunk ids are validated before they touch a path, bodies are size-capped, and
every blocking disk call runs in a worker thread so one slow fsync never stalls
the other requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

from fastapi import FastAPI, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from tossit import __version__, chunkbatch
from tossit.auth.asgi import SignedRequests
from tossit.auth.mac import Signer, Verifier
from tossit.chunkbatch import MAX_BATCH_BYTES, MAX_BATCH_CHUNKS
from tossit.chunking import DATA, KINDS, is_chunk_id
from tossit.config import MAX_CHUNK_SIZE, NodeSettings
from tossit.errors import ApiError, error_responses, install_error_handlers
from tossit.node.heartbeat import Heartbeat
from tossit.node.identity import load_join_secret, load_or_create, record_address
from tossit.node.peers import CopyFailed, PeerFetcher
from tossit.node.scrubber import Scrubber
from tossit.node.storage import ChunkStore, HashMismatch, StorageFull

log = logging.getLogger("tossit.node")
DISK_THREADS = 32
# Reachable without the cluster secret: nothing here reveals or changes a chunk.
OPEN_PATHS = frozenset({"/health", "/metrics", "/docs", "/openapi.json"})
# The pattern is documented, not enforced by FastAPI: _check_id answers a bad id
# with its own error code.
ChunkId = Annotated[str, Path(description="the chunk's SHA-256, 64 lowercase hex digits",
                              json_schema_extra={"pattern": "^[0-9a-f]{64}$"})]
_BYTES = {"content": {"application/octet-stream": {"schema": {"type": "string",
                                                              "format": "binary"}}}}
_CHUNK_BODY = {"requestBody": {"required": True, **_BYTES}}
_BATCH_BODY = {"requestBody": {
    "required": False, "description": "frames of (SHA-256, 4-byte length, bytes); none: "
    "nothing to do", **_BYTES}}


def _signed(*codes: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route behind the cluster signature (401 without it)."""
    return error_responses(401, *codes, e401="Not signed with the cluster secret",
                           **descriptions)


def _check_id(chunk_id: str) -> str:
    if not is_chunk_id(chunk_id):
        raise ApiError(400, "invalid_chunk_id", "a chunk id is 64 lowercase hex digits")
    return chunk_id


class Source(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    address: str = Field(pattern=r"^https?://[^\s/]+$", max_length=255)


_KIND_PATTERN = "^(" + "|".join(KINDS) + ")$"
Kind = Annotated[str, Query(pattern=_KIND_PATTERN, description=(
    "data: a piece of a file (id = SHA-256 of the bytes); meta: a pack of manifests "
    "(id = SHA-256 of a fixed prefix and the bytes, see tossit.chunking)"))]


class DeleteOrder(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]] = Field(max_length=1000)


class ReplicateOrder(BaseModel):
    model_config = ConfigDict(extra="forbid")
    chunk_id: str = Field(pattern=r"^[0-9a-f]{64}$")
    sources: list[Source] = Field(min_length=1, max_length=8)
    kind: str = Field(default=DATA, pattern=_KIND_PATTERN)


def create_app(settings: NodeSettings) -> FastAPI:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    node_id = load_or_create(settings.data_dir)
    record_address(settings.data_dir, settings.node_name(), settings.public_url(), settings.zone)
    secret = load_join_secret(settings)
    store = ChunkStore(settings.data_dir, settings.capacity)
    signer = Signer(secret, node_id) if secret else None
    scrubber = Scrubber(store, settings.scrub_rate, settings.scrub_interval)
    heartbeat = Heartbeat(settings, node_id, store, signer, scrubber)
    peers = PeerFetcher(settings, store, signer)
    registry = CollectorRegistry()
    ops = Counter("tossit_node_chunk_ops", "Chunk operations", ["op", "result"], registry=registry)
    bytes_io = Counter("tossit_node_bytes", "Chunk bytes moved", ["direction"], registry=registry)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Concurrent fsyncs share journal commits: many disk threads turn a disk
        # that does ~200 fsynced creates/s one at a time into ~1500/s.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(DISK_THREADS, thread_name_prefix="disk"))
        await asyncio.to_thread(store.open)
        u = store.usage()
        log.info(
            "node %s (%s) serving %d chunks, %d of %d bytes used",
            node_id, settings.node_name(), u.chunk_count, u.used, u.limit,
        )
        heartbeat.start()
        scrubber.start()
        try:
            yield
        finally:
            await scrubber.stop()
            await heartbeat.stop()
            await peers.close()

    app = FastAPI(
        title="TossIt node",
        version=__version__,
        lifespan=lifespan,
        description="Chunk storage API of one TossIt node (called by the brain and other nodes).",
    )
    install_error_handlers(app)
    app.state.store = store
    app.state.node_id = node_id
    if secret:
        app.add_middleware(SignedRequests, verifier=Verifier(secret, node_id),
                           open_paths=OPEN_PATHS)
    else:
        log.warning("no cluster secret: this node accepts unsigned requests (loopback only)")

    def signed_digest(request: Request) -> str | None:
        """The body hash the caller signed (None when running without a secret)."""
        digest: str | None = getattr(request.state, "content_sha256", None)
        return digest

    @app.put("/chunks/{chunk_id}", status_code=201, openapi_extra=_CHUNK_BODY, responses={
        200: {"description": "The chunk was already stored", "content": {"application/json": {}}},
        **_signed(400, 413, 422, 507, e422="The body does not hash to the chunk id"),
    })
    async def put_chunk(chunk_id: ChunkId, request: Request, kind: Kind = DATA) -> JSONResponse:
        """Store a chunk; the body must hash (SHA-256) to ``chunk_id``."""
        _check_id(chunk_id)
        if signed_digest(request) not in (None, chunk_id):
            raise ApiError(401, "unauthorized", "the signed body hash is not the chunk id")
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_CHUNK_SIZE):
            raise ApiError(413, "chunk_too_large", f"a chunk is at most {MAX_CHUNK_SIZE} bytes")
        body = bytearray()
        async for piece in request.stream():
            body += piece
            if len(body) > MAX_CHUNK_SIZE:
                raise ApiError(413, "chunk_too_large", f"a chunk is at most {MAX_CHUNK_SIZE} bytes")
        try:
            created = await asyncio.to_thread(store.write, chunk_id, body, True, kind)
        except HashMismatch:
            ops.labels("put", "hash_mismatch").inc()
            raise ApiError(
                422, "hash_mismatch", f"the body does not hash to the chunk id (kind {kind})"
            ) from None
        except StorageFull as exc:
            ops.labels("put", "full").inc()
            raise ApiError(507, "storage_full", str(exc)) from None
        ops.labels("put", "ok").inc()
        bytes_io.labels("in").inc(len(body))
        return JSONResponse(
            {"id": chunk_id, "size": len(body), "created": created},
            status_code=201 if created else 200,
        )

    @app.post("/chunk-batch", summary="Store several small chunks at once",
              openapi_extra=_BATCH_BODY, responses=_signed(400, 413))
    async def put_batch(request: Request) -> dict[str, Any]:
        """Body: frames of (32-byte SHA-256, 4-byte big-endian length, bytes); see
        ``tossit.chunkbatch``. Each chunk is stored as by ``PUT /chunks/{id}``, all
        of them concurrently; the answer gives each one's outcome."""
        body = bytearray()
        async for piece in request.stream():
            body += piece
            if len(body) > MAX_BATCH_BYTES + MAX_BATCH_CHUNKS * 36:
                raise ApiError(413, "batch_too_large",
                               f"a batch is at most {MAX_BATCH_BYTES} bytes")
        digest = signed_digest(request)
        if digest is not None and hashlib.sha256(body).hexdigest() != digest:
            raise ApiError(401, "unauthorized", "the body does not match its signed hash")
        try:
            frames = chunkbatch.decode(body)
        except chunkbatch.BatchFormatError as exc:
            raise ApiError(400, "invalid_batch", str(exc)) from None

        async def one(cid: str, data: memoryview, kind: str) -> dict[str, Any]:
            try:
                created = await asyncio.to_thread(store.write, cid, data, True, kind)
            except HashMismatch:
                ops.labels("put", "hash_mismatch").inc()
                return {"id": cid, "status": "hash_mismatch"}
            except StorageFull:
                ops.labels("put", "full").inc()
                return {"id": cid, "status": "full"}
            ops.labels("put", "ok").inc()
            bytes_io.labels("in").inc(len(data))
            return {"id": cid, "status": "created" if created else "exists"}

        results = await asyncio.gather(*(one(cid, data, kind) for cid, data, kind in frames))
        return {"results": list(results)}

    @app.get("/chunks/{chunk_id}", response_class=Response,
             responses={200: _BYTES, **_signed(400, 404)})
    async def get_chunk(chunk_id: ChunkId) -> Response:
        """The chunk's bytes (the caller verifies them against the id)."""
        _check_id(chunk_id)
        try:
            data = await asyncio.to_thread(store.read, chunk_id)
        except FileNotFoundError:
            ops.labels("get", "missing").inc()
            raise ApiError(404, "chunk_not_found", f"no chunk {chunk_id} here") from None
        ops.labels("get", "ok").inc()
        bytes_io.labels("out").inc(len(data))
        return Response(data, media_type="application/octet-stream")

    @app.head("/chunks/{chunk_id}", response_class=Response,
              responses={200: {"description": "The chunk is here (Content-Length: its size)"},
                         404: {"description": "No such chunk here"}, **_signed(400)})
    async def head_chunk(chunk_id: ChunkId) -> Response:
        _check_id(chunk_id)
        found = await asyncio.to_thread(store.locate, chunk_id)
        try:
            if found is None:
                raise FileNotFoundError(chunk_id)
            size = (await asyncio.to_thread(os.stat, found[0])).st_size
        except FileNotFoundError:
            return Response(status_code=404)
        return Response(headers={"content-length": str(size), "x-tossit-kind": found[1]})

    @app.delete("/chunks/{chunk_id}", responses=_signed(400))
    async def delete_chunk(chunk_id: ChunkId) -> dict[str, Any]:
        """Remove a chunk (idempotent: deleting a missing chunk is not an error)."""
        _check_id(chunk_id)
        deleted = await asyncio.to_thread(store.delete, chunk_id)
        ops.labels("delete", "ok" if deleted else "missing").inc()
        return {"id": chunk_id, "deleted": deleted}

    @app.post("/chunk-deletes", responses=_signed(400))
    async def delete_chunks(order: DeleteOrder, request: Request) -> dict[str, Any]:
        """Remove many chunks (or manifest packs) at once: what the brain's garbage
        collector sends. Idempotent; the answer lists the ids that were here."""
        digest = signed_digest(request)
        if digest is not None and hashlib.sha256(await request.body()).hexdigest() != digest:
            raise ApiError(401, "unauthorized", "the body does not match its signed hash")

        deleted = await asyncio.to_thread(store.delete_many, order.ids)
        ops.labels("delete", "ok").inc(len(deleted))
        ops.labels("delete", "missing").inc(len(order.ids) - len(deleted))
        return {"deleted": deleted}

    @app.api_route("/chunks/{rest:path}", methods=["GET", "PUT", "DELETE", "HEAD"],
                   include_in_schema=False)
    async def bad_chunk_path(rest: str) -> Response:
        """Anything under /chunks/ that is not one plain chunk id (``../``, slashes)."""
        raise ApiError(400, "invalid_chunk_id", "a chunk id is 64 lowercase hex digits")

    @app.get("/inventory", responses=_signed())
    async def inventory(
        after: str = Query("", max_length=64, pattern="^[0-9a-f]*$"),
        limit: int = Query(10000, ge=1, le=100000),
        kind: str | None = Query(None, pattern=_KIND_PATTERN,
                                 description="only this kind [both]"),
    ) -> dict[str, Any]:
        """A page of the blobs this node holds, sorted by id (``after`` = cursor)."""
        kinds = (kind,) if kind else KINDS
        page = await asyncio.to_thread(store.inventory, after, limit, kinds)
        return {
            "chunks": [{"id": c, "size": s, "mtime": m, "kind": k} for c, s, m, k in page],
            "next": page[-1][0] if len(page) == limit else None,
        }

    @app.get("/status", responses=_signed())
    async def status() -> dict[str, Any]:
        report = await asyncio.to_thread(heartbeat.report)
        return {**report, "brain_connected": heartbeat.connected}

    @app.post("/replicate", responses=_signed(400, 502, 507, e502="No source could supply "
                                              "a verified copy"))
    async def replicate(order: ReplicateOrder, request: Request) -> dict[str, Any]:
        """The brain's order: fetch this chunk from one of ``sources`` (other nodes),
        verify it against its id and store it (fsynced before the answer)."""
        digest = signed_digest(request)
        if digest is not None and hashlib.sha256(await request.body()).hexdigest() != digest:
            raise ApiError(401, "unauthorized", "the body does not match its signed hash")
        try:
            result = await peers.fetch(order.chunk_id,
                                       [src.model_dump() for src in order.sources], order.kind)
        except CopyFailed as exc:
            ops.labels("replicate", "failed").inc()
            raise ApiError(502, "copy_failed", str(exc)) from None
        except StorageFull as exc:
            ops.labels("replicate", "full").inc()
            raise ApiError(507, "storage_full", str(exc)) from None
        ops.labels("replicate", "ok").inc()
        bytes_io.labels("in").inc(result["size"])
        return result

    @app.post("/scrub", responses=_signed())
    async def scrub() -> dict[str, Any]:
        """Re-hash every chunk now (unthrottled); corrupt ones are quarantined and
        listed. The background scrubber does the same at ``scrub_rate``."""
        result = await scrubber.run_once(paced=False)
        scrubber.acknowledge(result["corrupt"])  # reported in this answer already
        return result

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "id": node_id}

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app
