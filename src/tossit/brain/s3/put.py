"""PutObject: the request body streamed into ``Ingest.put``, the REST API's own
write path, with the client's digests checked before the commit."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from starlette.requests import ClientDisconnect
from starlette.responses import Response

from tossit.brain.activity import UPLOADED
from tossit.brain.s3 import metadata
from tossit.brain.s3.checksums import expected_digests
from tossit.brain.s3.context import S3Context
from tossit.brain.s3.errors import S3Error, not_implemented
from tossit.errors import NameTaken

log = logging.getLogger("tossit.brain.s3")
DEFAULT_TYPE = "binary/octet-stream"  # what S3 records when the upload names none


def content_type(value: str | None) -> str:
    return (value or DEFAULT_TYPE)[:255]


def on_conflict(headers: Mapping[str, str]) -> str:
    """Ingest's ``on_conflict`` for a conditional write: ``If-None-Match: *`` (write
    only if the key is free) is checked in the commit's transaction; ``If-Match``
    cannot be, so it is refused rather than ignored."""
    if "if-match" in headers:
        raise not_implemented("a conditional write with If-Match")
    if_none = headers.get("if-none-match")
    if if_none is None:
        return "replace"
    if if_none.strip() != "*":
        raise not_implemented("a conditional write with If-None-Match other than '*'")
    return "fail"


async def put_object(ctx: S3Context) -> Response:
    bucket = await ctx.existing_bucket()
    key = ctx.key or ""
    conflict = on_conflict(ctx.headers)
    if conflict == "fail" and await ctx.brain.store.name_taken(bucket.name, key):
        raise S3Error("PreconditionFailed")  # before the body is read
    body, trailers = ctx.body()
    expect = expected_digests(ctx.headers, trailers) + ctx.payload_checks()
    user_meta = metadata.from_headers(ctx.headers)
    try:
        result = await ctx.brain.ingest.put(
            body, key=key, content_type=content_type(ctx.headers.get("content-type")),
            bucket=bucket.name, size_hint=ctx.size_hint, user_meta=user_meta, expect=expect,
            on_conflict=conflict)
    except NameTaken:
        raise S3Error("PreconditionFailed") from None  # written meanwhile by another
    except ClientDisconnect:
        log.info("client went away during an S3 upload of %r; nothing committed", key)
        raise S3Error("IncompleteBody", "the client closed the connection") from None
    ctx.note(UPLOADED, bucket.name, result.obj)
    return Response(status_code=200, headers={"ETag": f'"{result.obj.etag}"'})

