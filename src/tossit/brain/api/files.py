"""Files: the seed-compatible REST API over objects in the ``default`` bucket, and
the list of buckets whose files it can list too."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Annotated, Any, Literal
from urllib.parse import quote, unquote_to_bytes

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.convertors import PathConvertor, register_url_convertor
from starlette.requests import ClientDisconnect

from tossit.brain.activity import DELETED, UPLOADED
from tossit.brain.api.access import who
from tossit.brain.api.common import (
    brain_of,
    check_name,
    content_type_for,
    download_response,
    iso,
    upload_filename,
)
from tossit.brain.api.wire.files import (
    BucketEntry,
    ChunkEntry,
    ChunkReplica,
    FileDeleted,
    FileInfo,
    FileMeta,
    FolderEntry,
    ListingEntry,
    Replication,
    UploadedFile,
)
from tossit.brain.ingest import UploadResult
from tossit.brain.keys import KeyInfo
from tossit.brain.models import Object
from tossit.brain.multipart import StreamingMultipart
from tossit.brain.service import Brain
from tossit.brain.states import EventKind, ReplicationState
from tossit.brain.store import sort_folders
from tossit.brain.store.base import DEFAULT_BUCKET
from tossit.errors import ApiError, NameTaken, error_responses
from tossit.manifests import SYSTEM_BUCKET
from tossit.names import servable_media_type
from tossit.ranges import MalformedRange, RangeNotSatisfiable, parse_range

log = logging.getLogger("tossit.brain.api")
router = APIRouter(tags=["files"])
# Ids are 32-bit on every metadata engine: a bigger number is a 400, not a database error.
FileId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the file's id")]

_MULTIPART_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"],
            "properties": {"file": {"type": "string", "format": "binary"}},
        }}},
    }
}
_DOWNLOAD = {
    "description": "The file's bytes (206: the requested range), with the content type it "
                   "was stored with",
    "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
}
_RANGE_DOC = ("bytes=START-END, bytes=START- or bytes=-SUFFIX (another syntax is a 400; "
              "several ranges get the whole file)")
# Documented, not enforced by FastAPI: tossit.ranges answers a bad range itself.
_RANGE_PATTERN = r"^bytes=(\d+-\d*|-\d+)(, *(\d+-\d*|-\d+))*$"
_RAW_BODY = {
    "requestBody": {
        "required": False,  # no body: an empty file
        "content": {"application/octet-stream": {"schema": {"type": "string",
                                                             "format": "binary"}}},
    }
}


class _AnyPath(PathConvertor):
    """Starlette's ``path`` (``.*``) never matches a newline, so ``PUT
    /api/files/a%0Ab`` found no upload route and got a 405. This one matches
    everything, and ``check_name`` answers such a name with a 400."""

    regex = r"[\s\S]*"


register_url_convertor("anypath", _AnyPath())


def _replication(brain: Brain, chunk_nodes: list[set[str]]) -> Replication:
    live = set(brain.registry.online_ids())
    target = brain.settings.replicas
    if not chunk_nodes:
        return Replication(state=ReplicationState.HEALTHY, min_copies=target, target=target,
                           under_replicated_chunks=0)
    counts = [len(nodes & live) for nodes in chunk_nodes]
    low = min(counts)
    state = (ReplicationState.HEALTHY if low >= target else
             ReplicationState.DEGRADED if low > 0 else ReplicationState.UNAVAILABLE)
    return Replication(state=state, min_copies=low, target=target,
                       under_replicated_chunks=sum(1 for c in counts if c < target))


def file_fields(brain: Brain, o: Object, chunk_nodes: list[set[str]]) -> dict[str, Any]:
    """A file's wire fields, for whichever ``FileMeta`` model the route answers with
    (built directly: a listing of thousands is not validated twice)."""
    return {"id": o.id, "name": o.key, "size": o.size, "content_type": o.content_type,
            "sha256": o.sha256, "chunks": o.chunk_count, "chunk_size": o.chunk_size,
            "replication": _replication(brain, chunk_nodes), "created": iso(o.created_at)}


async def _describe(brain: Brain, objs: list[Object]) -> list[FileMeta]:
    per_obj = await brain.store.ok_replica_nodes([o.id for o in objs])
    return [FileMeta(**file_fields(brain, o, per_obj.get(o.id, []))) for o in objs]


def noted(request: Request, action: EventKind, bucket: str, obj: Object) -> None:
    """Count the change for the activity log, with who made it."""
    key: KeyInfo | None = getattr(request.state, "key", None)
    brain_of(request).activity.note(action, who(request), key.id if key else None, bucket,
                                    obj.key, obj.size, obj.id)


def _declared_length(request: Request) -> int | None:
    """The request's Content-Length; None for a chunked body."""
    declared = request.headers.get("content-length")
    return int(declared) if declared and declared.isdigit() else None


def _uploaded(request: Request, response: Response, result: UploadResult) -> UploadedFile:
    brain = brain_of(request)
    noted(request, UPLOADED, result.bucket, result.obj)
    # The upload knows where its chunks went: no need to ask the database again.
    unique = {cid: set(nodes) for cid, nodes in result.replicas.items()}
    response.headers["Location"] = f"/api/files/{result.obj.id}"
    return UploadedFile(**file_fields(brain, result.obj, list(unique.values())),
                        bucket=result.bucket)


async def _object(brain: Brain, file_id: int) -> Object:
    return await _users(brain, await brain.store.get_object(file_id), file_id)


async def _users(brain: Brain, obj: Object | None, file_id: int) -> Object:
    """``obj`` if it is a user's file, else 404 as if there were none. The brain's
    own files (its metadata snapshots, in the system bucket) are no user's to
    read or delete by id: a snapshot holds every key's hash and every file's
    name, and deleting one takes away a way back after a lost brain."""
    if obj is None or obj.bucket_id == await brain.store.bucket_id(SYSTEM_BUCKET,
                                                                   create=False):
        raise ApiError(404, "file_not_found", f"no file with id {file_id}")
    return obj


OnConflict = Annotated[Literal["replace", "rename", "fail"], Query(
    description="when a file of that name exists: replace it (new id), rename this one "
    "(\"name (2).ext\", keep both), or fail with 409 name_taken")]


_TAKEN = "on_conflict=fail and a file of that name exists"


async def refuse_taken(brain: Brain, key: str, on_conflict: str) -> None:
    """on_conflict=fail: answer 409 before the body is read when the name is taken
    now (the commit checks again, for an upload racing this one)."""
    if on_conflict == "fail" and await brain.store.name_taken("default", key):
        raise NameTaken("default", key)


@router.post("/api/files/upload", status_code=201, openapi_extra=_MULTIPART_BODY,
             summary="Upload a file (multipart form field 'file')", response_model=UploadedFile,
             responses=error_responses(400, 409, 503, e409=_TAKEN))
async def upload_multipart(request: Request, response: Response,
                           on_conflict: OnConflict = "replace") -> UploadedFile | Response:
    """Streams the ``file`` part to the nodes as it arrives; nothing is spooled.

    A file with the same name replaces the old one atomically (new id), unless
    ``on_conflict`` says to keep both (``rename``) or to refuse (``fail``, 409).
    """
    brain = brain_of(request)
    brain.ingest.check_capacity()
    form = StreamingMultipart(request.headers.get("content-type", ""), request.stream())
    try:
        part = await form.file_part("file")
        name = upload_filename(part.filename)
        await refuse_taken(brain, name, on_conflict)
        result = await brain.ingest.put(
            part.body, key=name, content_type=content_type_for(name, part.content_type),
            on_conflict=on_conflict, size_hint=_declared_length(request),  # (the whole form's)
        )
        await form.drain()
    except ClientDisconnect:
        log.info("client went away during an upload; nothing committed")
        return Response(status_code=499)
    return _uploaded(request, response, result)


@router.put("/api/files/{name:anypath}", status_code=201, openapi_extra=_RAW_BODY,
            summary="Upload a file from the raw request body (curl -T)",
            response_model=UploadedFile,
            responses=error_responses(400, 409, 503, 507, e409=_TAKEN))
async def upload_raw(name: str, request: Request, response: Response,
                     on_conflict: OnConflict = "replace") -> UploadedFile | Response:
    """For scripts and big files: ``curl -T big.iso http://HOST:8000/api/files/big.iso``,
    also from a pipe (chunked transfer encoding, no Content-Length)."""
    brain = brain_of(request)
    key = check_name(name)
    try:  # the server decoded the path leniently: a bad byte would become U+FFFD
        unquote_to_bytes(request.scope.get("raw_path") or b"").decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_name", "a file name must be valid UTF-8") from None
    size_hint = _declared_length(request)
    await refuse_taken(brain, key, on_conflict)
    try:
        result = await brain.ingest.put(
            request.stream(), key=key,
            content_type=content_type_for(key, request.headers.get("content-type")),
            size_hint=size_hint, on_conflict=on_conflict,
        )
    except ClientDisconnect:
        log.info("client went away during an upload of %r; nothing committed", key)
        return Response(status_code=499)
    if size_hint is not None and result.obj.size != size_hint:  # pragma: no cover - uvicorn checks
        raise ApiError(400, "size_mismatch", "body length differs from Content-Length")
    return _uploaded(request, response, result)


@router.get("/api/files", summary="List files", response_model=list[ListingEntry],
            responses=error_responses(404, e404="No such bucket"))
async def list_files(
    request: Request,
    response: Response,
    search: str | None = Query(None, max_length=1024, description="substring of the name"),
    prefix: str | None = Query(None, max_length=1024,
                               description="only names that start with this (case-sensitive)"),
    delimiter: Literal["/"] | None = Query(
        None, description="list one folder level: the files whose name has no '/' after "
        "the prefix, after the folders there (entries with \"type\": \"folder\")"),
    sort: str = Query("created", pattern="^(created|name|size|id)$",
                      description="name sorts case-insensitively"),
    order: str = Query("desc", pattern="^(asc|desc)$"),
    limit: int = Query(1000, ge=1, le=10000),
    offset: int = Query(0, ge=0, le=10**9),
    bucket: str = Query(DEFAULT_BUCKET, min_length=1, max_length=63,
                        description="the S3 bucket to list (the REST API's files are in "
                        "'default'); a file of any bucket is read, described and deleted "
                        "by its id"),
) -> Sequence[FolderEntry | FileMeta]:
    """A JSON list, newest first by default; ``X-Total-Count`` has the total.

    With ``delimiter=/`` the list is one level of a folder tree: first the
    folders under ``prefix`` (``{"type": "folder", "name": "photos/2024/", "files":
    12, "size": 3400000, "created": newest upload}``), then the files of that level;
    ``limit`` and ``offset`` page through both, ``X-Total-Count`` counts both and
    ``X-Folder-Count`` the folders."""
    brain = brain_of(request)
    descending = order == "desc"
    # (A bucket deleted over S3 keeps its row: asked by name, it is not there.)
    if bucket != DEFAULT_BUCKET and await brain.store.live_bucket(bucket) is None:
        raise ApiError(404, "bucket_not_found", f"no bucket {bucket!r}")
    if delimiter is None:
        objs, total = await brain.store.list_objects(
            bucket=bucket, search=search, prefix=prefix, sort=sort, descending=descending,
            limit=limit, offset=offset,
        )
        response.headers["X-Total-Count"] = str(total)
        return await _describe(brain, objs)
    folders = sort_folders(
        await brain.store.list_folders(bucket=bucket, prefix=prefix, delimiter=delimiter,
                                       search=search),
        sort, descending)
    shown = folders[offset:offset + limit]
    objs, files = await brain.store.list_objects(
        bucket=bucket, search=search, prefix=prefix, delimiter=delimiter, sort=sort,
        descending=descending,
        limit=max(1, limit - len(shown)), offset=max(0, offset - len(folders)),
    )
    response.headers["X-Total-Count"] = str(len(folders) + files)
    response.headers["X-Folder-Count"] = str(len(folders))
    body: list[FolderEntry | FileMeta] = [
        FolderEntry(name=f.name, files=f.files, size=f.size, created=iso(f.newest))
        for f in shown]
    if len(shown) < limit:
        body += await _describe(brain, objs)
    return body


@router.get("/api/buckets", summary="List the buckets", response_model=list[BucketEntry])
async def list_buckets(request: Request) -> list[BucketEntry]:
    """The buckets that exist, by name, with their files and bytes: what the
    dashboard offers to browse (``GET /api/files?bucket=NAME``). ``default``, where
    the REST API's uploads go, is always listed; the brain's own bucket never."""
    brain = brain_of(request)
    rows = await brain.store.live_buckets()
    usage = await brain.store.bucket_usage()
    found: dict[str, BucketEntry] = {}
    for b in rows:
        files, size = usage.get(b.id, (0, 0))
        found[b.name] = BucketEntry(name=b.name, created=iso(b.created_at), files=files,
                                    bytes=size)
    # Deleted over S3 (it was empty): still where the REST API's uploads go.
    found.setdefault(DEFAULT_BUCKET, BucketEntry(name=DEFAULT_BUCKET, created=None, files=0,
                                                 bytes=0))
    return [found[name] for name in sorted(found)]


@router.get("/api/files/{file_id}", summary="One file's metadata",
            responses=error_responses(404))
async def get_file(file_id: FileId, request: Request) -> FileMeta:
    brain = brain_of(request)
    (body,) = await _describe(brain, [await _object(brain, file_id)])
    return body


@router.get("/api/files/{file_id}/info", summary="A file's chunk map",
            responses=error_responses(404))
async def file_info(file_id: FileId, request: Request) -> FileInfo:
    """Each chunk's hash, size, offset, the nodes holding it and where placement wants it."""
    brain = brain_of(request)
    obj = await _object(brain, file_id)
    per_obj = await brain.store.ok_replica_nodes([obj.id])
    placements = await brain.store.object_chunks(obj.id)
    chunks = []
    offset = 0
    for p in placements:
        nodes = []
        for node_id, state in p.replicas:
            view = brain.registry.get(node_id)
            nodes.append(ChunkReplica(id=node_id, name=view.name if view else node_id,
                                      node_state=view.state if view else "unknown",
                                      replica_state=state))
        chunks.append(ChunkEntry(index=p.seq, id=p.chunk_id, size=p.size, offset=offset,
                                 nodes=nodes, desired_nodes=brain.registry.desired(p.chunk_id)))
        offset += p.size
    return FileInfo(**file_fields(brain, obj, per_obj.get(obj.id, [])), chunk_map=chunks)


@router.get("/api/files/{file_id}/download", summary="Download a file (Range supported)",
            response_class=StreamingResponse,
            responses={200: _DOWNLOAD, 206: _DOWNLOAD, **error_responses(400, 404, 416, 503)})
async def download(
    file_id: FileId,
    request: Request,
    range_: str | None = Header(None, alias="Range", description=_RANGE_DOC,
                                json_schema_extra={"pattern": _RANGE_PATTERN}),
    if_range: str | None = Header(None, alias="If-Range",
                                  description="the ETag the range applies to"),
) -> Response:
    brain = brain_of(request)
    found, placements = await brain.store.object_with_chunks(file_id) or (None, [])
    obj = await _users(brain, found, file_id)
    try:
        rng = parse_range(range_, obj.size)
    except MalformedRange as exc:
        raise ApiError(400, "invalid_range", str(exc)) from None
    except RangeNotSatisfiable:
        return JSONResponse(
            {"error": "range_not_satisfiable", "message": f"the file has {obj.size} bytes"},
            status_code=416, headers={"Content-Range": f"bytes */{obj.size}"},
        )
    if if_range and if_range.strip('"') != obj.sha256:
        rng = None
    dl = await brain.reader.open(placements, rng)
    headers = _download_headers(obj, dl.length)
    status = 200
    if rng is not None:
        status = 206
        headers["Content-Range"] = rng.content_range(obj.size)
    return download_response(dl, status, headers, servable_media_type(obj.content_type))


@router.head("/api/files/{file_id}/download", include_in_schema=False)
async def download_head(file_id: FileId, request: Request) -> Response:
    obj = await _object(brain_of(request), file_id)
    return Response(headers=_download_headers(obj, obj.size),
                    media_type=servable_media_type(obj.content_type))


def _download_headers(obj: Object, length: int) -> dict[str, str]:
    filename = obj.key.rsplit("/", 1)[-1]
    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return {
        "Content-Length": str(length),
        "Accept-Ranges": "bytes",
        "ETag": f'"{obj.sha256}"',
        "Content-Disposition": (
            f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"
        ),
        "X-Content-SHA256": obj.sha256,
    }


@router.delete("/api/files/{file_id}", summary="Delete a file",
               responses=error_responses(404))
async def delete_file(file_id: FileId, request: Request) -> FileDeleted:
    """Gone from listings at once. With the trash on (``trash_keep``, 7 days by
    default) the file goes there, restorable (``/api/trash``); else its chunks
    no other file uses are freed on the nodes."""
    brain = brain_of(request)
    obj = await _object(brain, file_id)  # its name, for the activity log
    if not await brain.commits.delete(file_id):
        raise ApiError(404, "file_not_found", f"no file with id {file_id}")
    noted(request, DELETED, await brain.store.bucket_name(obj.bucket_id), obj)
    return FileDeleted(id=file_id, deleted=True, trash=brain.settings.trash_keep > 0)

