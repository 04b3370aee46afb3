"""PutObject: the request body streamed into ``Ingest.put``, the REST API's own
write path, with the client's digests checked before the commit."""

from __future__ import annotations

import logging

from starlette.requests import ClientDisconnect
from starlette.responses import Response

from tossit.brain.activity import UPLOADED
from tossit.brain.s3 import metadata
from tossit.brain.s3.checksums import expected_digests
from tossit.brain.s3.context import S3Context
from tossit.brain.s3.errors import S3Error

log = logging.getLogger("tossit.brain.s3")
DEFAULT_TYPE = "binary/octet-stream"  # what S3 records when the upload names none


def content_type(value: str | None) -> str:
    return (value or DEFAULT_TYPE)[:255]


async def put_object(ctx: S3Context) -> Response:
    bucket = await ctx.existing_bucket()
    key = ctx.key or ""
    body, trailers = ctx.body()
    expect = expected_digests(ctx.headers, trailers) + ctx.payload_checks()
    user_meta = metadata.from_headers(ctx.headers)
    try:
        result = await ctx.brain.ingest.put(
            body, key=key, content_type=content_type(ctx.headers.get("content-type")),
            bucket=bucket.name, size_hint=ctx.size_hint, user_meta=user_meta, expect=expect)
    except ClientDisconnect:
        log.info("client went away during an S3 upload of %r; nothing committed", key)
        raise S3Error("IncompleteBody", "the client closed the connection") from None
    ctx.note(UPLOADED, bucket.name, result.obj)
    return Response(status_code=200, headers={"ETag": f'"{result.obj.etag}"'})

