"""CopyObject, without copying a byte: chunks are content-addressed and
reference-counted, so a copy is a new object row over the same chunks,
committed by group commit like any upload (manifests, trash, activity log).
Its chunks are pinned meanwhile, so the collector cannot free them if the
source is deleted at that moment."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from starlette.responses import Response

from tossit.brain.activity import UPLOADED
from tossit.brain.models import Bucket, Object
from tossit.brain.s3 import metadata
from tossit.brain.s3.bucket import xml_response
from tossit.brain.s3.checksums import kept_of
from tossit.brain.s3.conditions import evaluate
from tossit.brain.s3.context import S3Context
from tossit.brain.s3.errors import S3Error, not_implemented
from tossit.brain.s3.get import etag_of
from tossit.brain.s3.put import content_type
from tossit.brain.s3.router import MAX_KEY_BYTES, NULL_VERSION
from tossit.brain.s3.xml import document, el, iso8601
from tossit.brain.store import ChunkPlacement, NewObject
from tossit.ranges import ByteRange

_COPY_CONDITIONS = ("if-match", "if-none-match", "if-modified-since", "if-unmodified-since")
_COPY_RANGE = re.compile(r"^bytes=(\d+)-(\d+)$")


def parse_copy_source(value: str) -> tuple[str, str]:
    """(bucket, key) of ``x-amz-copy-source: /bucket/key`` (URL-encoded)."""
    path, _, query = value.partition("?")
    if query and query != f"versionId={NULL_VERSION}":  # null: the object itself
        raise not_implemented("copying a version of an object (versionId)")
    bucket, _, key = unquote(path).lstrip("/").partition("/")
    if not bucket or not key or len(key.encode()) > MAX_KEY_BYTES:
        raise S3Error("InvalidArgument", "x-amz-copy-source must be /bucket/key")
    return bucket, key


def parse_copy_range(value: str, size: int) -> ByteRange:
    """UploadPartCopy's ``x-amz-copy-source-range: bytes=FIRST-LAST`` (both
    given, inclusive, within the source's ``size`` bytes), as S3 requires it."""
    m = _COPY_RANGE.match(value.strip())
    if m is None:
        raise S3Error("InvalidArgument", "x-amz-copy-source-range must be bytes=FIRST-LAST")
    first, last = int(m.group(1)), int(m.group(2))
    if first > last:
        raise S3Error("InvalidArgument", "x-amz-copy-source-range must be bytes=FIRST-LAST "
                                         "with FIRST <= LAST")
    if last >= size:
        raise S3Error("InvalidRange", f"Range specified is not valid for source object of "
                                      f"size: {size}")
    return ByteRange(first, last)


@dataclass(frozen=True)
class CopySource:
    bucket: Bucket
    key: str
    obj: Object
    placements: list[ChunkPlacement]


async def copy_source(ctx: S3Context) -> CopySource:
    """The object ``x-amz-copy-source`` names (CopyObject, UploadPartCopy),
    with its ``x-amz-copy-source-if-*`` conditions checked (PreconditionFailed)."""
    src_bucket_name, src_key = parse_copy_source(ctx.headers["x-amz-copy-source"])
    src_bucket = await ctx.existing_bucket(src_bucket_name)
    found = await ctx.brain.store.object_by_key(src_bucket.id, src_key)
    if found is None:
        raise S3Error("NoSuchKey")
    src, placements = found
    conditions = {name: ctx.headers[f"x-amz-copy-source-{name}"] for name in _COPY_CONDITIONS
                  if f"x-amz-copy-source-{name}" in ctx.headers}
    if evaluate(conditions, etag_of(src), src.created_at, read=False) is not None:
        raise S3Error("PreconditionFailed")
    return CopySource(src_bucket, src_key, src, placements)


async def copy_object(ctx: S3Context) -> Response:
    target = await ctx.existing_bucket()
    source = await copy_source(ctx)
    src_bucket, src_key, src, placements = (source.bucket, source.key, source.obj,
                                            source.placements)
    directive = ctx.headers.get("x-amz-metadata-directive", "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise S3Error("InvalidArgument", "x-amz-metadata-directive is COPY or REPLACE")
    key = ctx.key or ""
    if directive == "COPY" and (src_bucket.id, src_key) == (target.id, key):
        raise S3Error("InvalidRequest", "This copy request is illegal because it is trying "
                                        "to copy an object to itself without changing the "
                                        "object's metadata")
    if directive == "REPLACE":  # new headers; the same bytes, so the same checksums
        ctype, user_meta = content_type(ctx.headers.get("content-type")), \
            metadata.from_headers(ctx.headers, kept_of(src.user_meta))
    else:
        ctype, user_meta = src.content_type, src.user_meta
    pins = ctx.brain.pins
    pinned = sorted({p.chunk_id for p in placements})
    for cid in pinned:
        await pins.pin(cid)
    try:
        # Pinned now, the chunks stay; still there, the source still holds them.
        again = await ctx.brain.store.object_by_key(src_bucket.id, src_key, chunks=False)
        if again is None or again[0].id != src.id:
            raise S3Error("NoSuchKey", "the source object was deleted or replaced meanwhile")
        obj = await ctx.brain.commits.commit(NewObject(
            bucket=target.name, key=key, size=src.size, sha256=src.sha256,
            content_type=ctype, chunk_size=src.chunk_size,
            chunks=[(p.chunk_id, p.size) for p in placements],
            replicas={p.chunk_id: p.ok_nodes() for p in placements},
            user_meta=user_meta, etag=etag_of(src)))
    finally:
        for cid in pinned:
            pins.unpin(cid)
    ctx.note(UPLOADED, target.name, obj)
    return xml_response(document("CopyObjectResult", [
        el("LastModified", iso8601(obj.created_at)), el("ETag", f'"{obj.etag}"')]))
