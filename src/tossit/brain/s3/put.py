"""PutObject: the request body streamed into ``Ingest.put``, the REST API's own
write path, with the client's digests checked before the commit."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from starlette.requests import ClientDisconnect
from starlette.responses import Response

from tossit.brain.activity import UPLOADED
from tossit.brain.models import Object
from tossit.brain.s3 import metadata
from tossit.brain.s3.checksums import checksum_headers, expected_digests, to_keep
from tossit.brain.s3.conditions import any_etag, write_refusal
from tossit.brain.s3.context import S3Context
from tossit.brain.s3.errors import S3Error
from tossit.brain.s3.get import current_of
from tossit.brain.store import ReplaceOnly
from tossit.errors import NameTaken, ObjectChanged

log = logging.getLogger("tossit.brain.s3")
DEFAULT_TYPE = "binary/octet-stream"  # what S3 records when the upload names none


def content_type(value: str | None) -> str:
    return (value or DEFAULT_TYPE)[:255]


def conditional(headers: Mapping[str, str]) -> bool:
    """Is the write conditional: ``If-Match`` (only over the object it names) or
    ``If-None-Match`` (``*``: only if the key is free; ETags: only if the key's
    object has none of them)?"""
    return "if-none-match" in headers or "if-match" in headers


def on_conflict(headers: Mapping[str, str], current: Object | None) -> str | ReplaceOnly:
    """Ingest's ``on_conflict`` for a write whose conditions hold for the key's
    object now (``current``; None: no object); the S3 error when they do not, so
    that a refused write is answered before its body is read. The commit checks
    them again in its transaction, where no other write slips in: If-Match as
    "replace only this object" (any, for '*'), If-None-Match: * as "fail". An
    If-None-Match with ETags holds for the object seen now, so the commit
    replaces only that one, or fails if the key was free and is taken: a write
    under the key meanwhile is refused (412) even if its ETag would have done,
    never let through unchecked."""
    refused = write_refusal(headers, current_of(current))
    if refused is not None:
        raise S3Error(refused)
    if_match = headers.get("if-match")
    if if_match is not None and current is not None:
        return ReplaceOnly(None if any_etag(if_match) else current.id)
    if "if-none-match" in headers:
        return "fail" if current is None else ReplaceOnly(current.id)
    return "replace"


async def put_object(ctx: S3Context) -> Response:
    bucket = await ctx.existing_bucket()
    key = ctx.key or ""
    conflict: str | ReplaceOnly = "replace"
    if conditional(ctx.headers):
        found = await ctx.brain.store.object_by_key(bucket.id, key, chunks=False)
        conflict = on_conflict(ctx.headers, found[0] if found else None)
    body, trailers = ctx.body()
    expect = expected_digests(ctx.headers, trailers) + ctx.payload_checks()
    user_meta = metadata.from_headers(ctx.headers, to_keep(expect))
    try:
        result = await ctx.brain.ingest.put(
            body, key=key, content_type=content_type(ctx.headers.get("content-type")),
            bucket=bucket.name, size_hint=ctx.size_hint, user_meta=user_meta, expect=expect,
            on_conflict=conflict)
    except NameTaken:
        raise S3Error("PreconditionFailed") from None  # written meanwhile by another
    except ObjectChanged as exc:  # replaced or deleted meanwhile by another
        gone = not exc.found and "if-match" in ctx.headers  # If-Match's "no object"
        raise S3Error("NoSuchKey" if gone else "PreconditionFailed") from None
    except ClientDisconnect:
        log.info("client went away during an S3 upload of %r; nothing committed", key)
        raise S3Error("IncompleteBody", "the client closed the connection") from None
    ctx.note(UPLOADED, bucket.name, result.obj)
    return Response(status_code=200, headers={"ETag": f'"{result.obj.etag}"',
                                              **checksum_headers(expect)})

