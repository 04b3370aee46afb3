"""GetObject and HeadObject: conditions, ranges, and the object's stored headers,
streamed by ``Reader``, the REST API's own read path."""

from __future__ import annotations

from starlette.responses import Response

from tossit.brain.api.common import download_response
from tossit.brain.models import Object
from tossit.brain.s3 import metadata
from tossit.brain.s3.checksums import kept_headers
from tossit.brain.s3.conditions import Current, evaluate
from tossit.brain.s3.context import S3Context
from tossit.brain.s3.errors import S3Error
from tossit.brain.s3.xml import http_date
from tossit.brain.store import ChunkPlacement
from tossit.names import servable_media_type
from tossit.ranges import ByteRange, MalformedRange, RangeNotSatisfiable, parse_range


def etag_of(obj: Object) -> str:
    """The object's ETag: the MD5 of its bytes. An object stored before ETags
    existed (REST uploads of older versions) has its SHA-256 instead, as the
    REST API shows it."""
    return obj.etag or obj.sha256


def current_of(obj: Object | None) -> Current | None:
    """What a write's or a delete's condition is judged against (None: no object)."""
    return Current(etag_of(obj), obj.size, obj.created_at) if obj else None


def object_headers(obj: Object, ctx: S3Context) -> dict[str, str]:
    headers = {
        "ETag": f'"{etag_of(obj)}"',
        "Last-Modified": http_date(obj.created_at),
        "Accept-Ranges": "bytes",
        "Content-Type": servable_media_type(obj.content_type),
        **metadata.to_headers(obj.user_meta),
    }
    for param, header in metadata.RESPONSE_OVERRIDES.items():
        value = ctx.query.get(param)
        if value is not None:
            headers[header] = value
    return headers


async def _find(ctx: S3Context, chunks: bool) -> tuple[Object, list[ChunkPlacement]]:
    bucket = await ctx.existing_bucket()
    found = await ctx.brain.store.object_by_key(bucket.id, ctx.key or "", chunks=chunks)
    if found is None:
        raise S3Error("NoSuchKey")
    return found


def _condition(ctx: S3Context, obj: Object, headers: dict[str, str]) -> Response | None:
    status = evaluate(ctx.headers, etag_of(obj), obj.created_at)
    if status == 304:
        kept = {k: v for k, v in headers.items() if k in ("ETag", "Last-Modified")}
        return Response(status_code=304, headers=kept)
    if status == 412:
        raise S3Error("PreconditionFailed")
    return None


def _range(ctx: S3Context, obj: Object) -> ByteRange | None:
    try:
        return parse_range(ctx.headers.get("range"), obj.size)
    except MalformedRange:
        return None  # S3 ignores a Range it cannot read and sends the whole object
    except RangeNotSatisfiable:
        raise S3Error("InvalidRange", headers={
            "Content-Range": f"bytes */{obj.size}"}) from None


async def head_object(ctx: S3Context) -> Response:
    obj, _ = await _find(ctx, chunks=False)
    headers = object_headers(obj, ctx)
    stop = _condition(ctx, obj, headers)
    if stop is not None:
        return stop
    rng = _range(ctx, obj)
    length = rng.length if rng else obj.size
    headers["Content-Length"] = str(length)
    if rng is not None:
        headers["Content-Range"] = rng.content_range(obj.size)
    headers.update(kept_headers(obj.user_meta, ctx.headers, whole=rng is None))
    return Response(status_code=206 if rng else 200, headers=headers)


async def get_object(ctx: S3Context) -> Response:
    obj, placements = await _find(ctx, chunks=True)
    headers = object_headers(obj, ctx)
    stop = _condition(ctx, obj, headers)
    if stop is not None:
        return stop
    rng = _range(ctx, obj)
    download = await ctx.brain.reader.open(placements, rng)
    headers["Content-Length"] = str(download.length)
    if rng is not None:
        headers["Content-Range"] = rng.content_range(obj.size)
    headers.update(kept_headers(obj.user_meta, ctx.headers, whole=rng is None))
    return download_response(download, 206 if rng else 200, headers)
