"""Resumable uploads: a big file sent as numbered parts, several at once, over
the multipart service the S3 API also uses (``tossit.brain.multipart_uploads``,
docs/multipart.md).

A single ``PUT /api/files/{name}`` that breaks at 90% of 50 GiB must be sent
again whole. Here each part is its own request, stored and acknowledged on its
own, so a client that was interrupted asks which parts the brain holds (with
their MD5s, to compare with its file) and sends only the others. Nothing is
visible under the name until the upload completes; an upload left alone is
aborted after ``multipart_keep``. The routes are thin: the service checks
part numbers, sizes and digests, and completion commits like any upload.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response
from starlette.requests import ClientDisconnect

from tossit.brain.activity import UPLOADED
from tossit.brain.api.common import AuthBeforeBody, brain_of, check_name, content_type_for, iso
from tossit.brain.api.files import OnConflict, file_fields, noted, refuse_taken
from tossit.brain.api.wire.uploads import (
    MAX_PARTS,
    CompletedUpload,
    CompleteUpload,
    UploadAborted,
    UploadList,
    UploadPart,
    UploadParts,
    UploadStarted,
)
from tossit.brain.multipart_uploads import Part, Upload
from tossit.brain.service import Brain
from tossit.errors import ApiError, NoSuchUpload, error_responses

log = logging.getLogger("tossit.brain.api")
# The key is checked before a malformed completion body is judged (401, not 400).
router = APIRouter(tags=["uploads"], route_class=AuthBeforeBody)
BUCKET = "default"  # the bucket the REST file routes serve
UploadId = Annotated[str, Path(pattern="^[0-9a-f]{1,64}$", description="the upload's id")]
PartNumber = Annotated[int, Path(ge=1, le=MAX_PARTS, description="the part's number")]
_NO_UPLOAD = "No upload in progress with this id (completed, aborted or expired)"
_RAW_PART = {
    "requestBody": {
        "required": False,  # no body: an empty part (only the last may be small)
        "content": {"application/octet-stream": {"schema": {"type": "string",
                                                             "format": "binary"}}},
    }
}


def _started(u: Upload) -> UploadStarted:
    return UploadStarted(id=u.id, name=u.key, content_type=u.content_type,
                         created=iso(u.initiated) or "")


def _part(p: Part) -> UploadPart:
    return UploadPart(number=p.number, size=p.size, md5=p.etag.strip('"'),
                      uploaded=iso(p.last_modified) or "")


async def _name_of(brain: Brain, upload_id: str) -> str:
    """The name an upload of the files' bucket was started for (the service
    takes bucket and key with the id, as S3 requests carry them)."""
    row = await brain.store.get_upload(upload_id)
    if row is None or await brain.store.bucket_name(row.bucket_id) != BUCKET:
        raise NoSuchUpload(upload_id)
    return row.key


def _md5_hex(content_md5: str | None) -> str | None:
    """``Content-MD5`` (RFC 1864: base64 of the 16 digest bytes) in hex."""
    if content_md5 is None:
        return None
    try:
        raw = base64.b64decode(content_md5, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 16:
        raise ApiError(400, "invalid_digest", "Content-MD5 must be the base64 of the body's "
                       "16-byte MD5 digest")
    return raw.hex()


@router.post("/api/uploads", status_code=201, response_model=UploadStarted,
             summary="Start a resumable upload (a big file sent in parts)",
             responses=error_responses(400, 409,
                                       e409="on_conflict=fail and a file of that name exists"))
async def start_upload(
    request: Request,
    name: str = Query(max_length=4096, description="the file's name once completed"),
    content_type: str | None = Query(None, max_length=255,
                                     description="stored media type [guessed from the name]"),
    on_conflict: OnConflict = "replace",
) -> UploadStarted:
    """Nothing is visible under ``name`` until the upload completes. With
    ``on_conflict=fail`` a name taken now is refused at once (completion
    checks again)."""
    brain = brain_of(request)
    key = check_name(name)
    await refuse_taken(brain, key, on_conflict)
    upload = await brain.multipart.create(BUCKET, key, content_type_for(key, content_type))
    return _started(upload)


@router.get("/api/uploads", response_model=UploadList,
            summary="Uploads in progress (started, neither completed nor aborted)")
async def list_uploads(
    request: Request,
    prefix: str = Query("", max_length=1024, description="only names starting with this"),
    after_name: str = Query("", max_length=1024,
                            description="continue after this name (next_name)"),
    after_id: str = Query("", max_length=64,
                          description="with after_name: continue after this upload (next_id)"),
    limit: int = Query(1000, ge=1, le=1000),
) -> UploadList:
    """By name, then oldest first."""
    got = await brain_of(request).multipart.list_uploads(BUCKET, prefix, after_name, after_id,
                                                         limit)
    return UploadList(uploads=[_started(u) for u in got.uploads], truncated=got.truncated,
                      next_name=got.next_key_marker, next_id=got.next_upload_id_marker)


@router.get("/api/uploads/{upload_id}", response_model=UploadParts,
            summary="The parts an upload holds (number, size, MD5): what a resume needs",
            responses=error_responses(404, e404=_NO_UPLOAD))
async def list_parts(
    upload_id: UploadId, request: Request,
    after: int = Query(0, ge=0, le=MAX_PARTS, description="continue after this part number"),
    limit: int = Query(1000, ge=1, le=1000),
) -> UploadParts:
    brain = brain_of(request)
    got = await brain.multipart.list_parts(BUCKET, await _name_of(brain, upload_id), upload_id,
                                           after, limit)
    return UploadParts(upload=_started(got.upload), parts=[_part(p) for p in got.parts],
                       truncated=got.truncated, next_after=got.next_marker)


@router.put("/api/uploads/{upload_id}/parts/{number}", response_model=UploadPart,
            openapi_extra=_RAW_PART,
            summary="Send part N (raw body; sent again, it replaces the first)",
            responses=error_responses(400, 404, 503, 507, e404=_NO_UPLOAD))
async def upload_part(
    upload_id: UploadId, number: PartNumber, request: Request,
    content_md5: str | None = Header(None, alias="Content-MD5", max_length=64,
                                     description="base64 of the body's MD5: a body that "
                                     "does not match is refused (400 bad_digest)"),
) -> UploadPart | Response:
    """Streamed to the nodes as it arrives, acknowledged once on W nodes. Every
    part but the last must be at least 5 MiB (checked at completion)."""
    brain = brain_of(request)
    expected = _md5_hex(content_md5)
    key = await _name_of(brain, upload_id)
    declared = request.headers.get("content-length")
    size_hint = int(declared) if declared and declared.isdigit() else None
    try:
        part = await brain.multipart.upload_part(BUCKET, key, upload_id, number,
                                                 request.stream(), expected, size_hint)
    except ClientDisconnect:
        log.info("client went away during part %d of upload %s; not recorded", number,
                 upload_id)
        return Response(status_code=499)
    return _part(part)


@router.post("/api/uploads/{upload_id}/complete", status_code=201,
             response_model=CompletedUpload,
             summary="Complete an upload: the file is the parts named, in order",
             responses=error_responses(400, 404, 409, 503, e404=_NO_UPLOAD,
                                       e409="on_conflict=fail and a file of that name exists"))
async def complete_upload(
    upload_id: UploadId, body: CompleteUpload, request: Request, response: Response,
    on_conflict: OnConflict = "replace",
) -> CompletedUpload:
    """Writes no data: the file's chunks are its parts' chunks. The brain reads
    the file once to record its SHA-256 (a few seconds per GB). A refused
    completion changes nothing; parts uploaded but not named are freed."""
    brain = brain_of(request)
    key = await _name_of(brain, upload_id)
    done = await brain.multipart.complete(
        BUCKET, key, upload_id, [(p.number, p.md5.lower()) for p in body.parts],
        on_conflict=on_conflict)
    if not done.again:
        noted(request, UPLOADED, BUCKET, done.obj)
    response.headers["Location"] = f"/api/files/{done.obj.id}"
    per_obj = await brain.store.ok_replica_nodes([done.obj.id])
    return CompletedUpload(**file_fields(brain, done.obj, per_obj.get(done.obj.id, [])),
                           bucket=BUCKET, etag=done.etag.strip('"'))


@router.delete("/api/uploads/{upload_id}", response_model=UploadAborted,
               summary="Abort an upload: its parts are dropped and their space freed",
               responses=error_responses(404, e404=_NO_UPLOAD))
async def abort_upload(upload_id: UploadId, request: Request) -> UploadAborted:
    brain = brain_of(request)
    await brain.multipart.abort(BUCKET, await _name_of(brain, upload_id), upload_id)
    return UploadAborted(id=upload_id)
