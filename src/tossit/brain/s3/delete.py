"""DeleteObject and DeleteObjects, through ``CommitBatcher.delete`` as the REST
API deletes (so the manifests, the trash and the activity log see them too)."""

from __future__ import annotations

import asyncio

from starlette.responses import Response

from tossit.brain.activity import DELETED
from tossit.brain.models import Bucket
from tossit.brain.s3.bucket import xml_response
from tossit.brain.s3.conditions import (
    DeleteCondition,
    delete_condition_of,
    delete_refusal,
)
from tossit.brain.s3.context import S3Context
from tossit.brain.s3.errors import S3Error, from_domain
from tossit.brain.s3.get import current_of
from tossit.brain.s3.xml import MAX_XML_BODY, document, el, parse_delete
from tossit.errors import TossitError

_PARALLEL = 32  # deletes of one request in flight together (group commit batches them)


async def _delete(ctx: S3Context, bucket: Bucket, key: str,
                  condition: DeleteCondition | None = None) -> None:
    """Delete one key; a key that is not there is no error (S3 answers 204),
    condition or not. A condition its object fails is
    PreconditionFailed and deletes nothing; one it meets deletes that object,
    by id: if the key is written meanwhile, the new object stays."""
    found = await ctx.brain.store.object_by_key(bucket.id, key, chunks=False)
    obj = found[0] if found else None
    refused = delete_refusal(condition, current_of(obj))
    if refused is not None:
        raise S3Error(refused)
    if obj is None:
        return
    if await ctx.brain.commits.delete(obj.id):
        ctx.note(DELETED, bucket.name, obj)


async def delete_object(ctx: S3Context) -> Response:
    bucket = await ctx.existing_bucket()
    await _delete(ctx, bucket, ctx.key or "", delete_condition_of(ctx.headers))
    return Response(status_code=204)


async def delete_objects(ctx: S3Context) -> Response:
    bucket = await ctx.existing_bucket()
    request = parse_delete(await ctx.small_body(MAX_XML_BODY))
    slots = asyncio.Semaphore(_PARALLEL)

    async def one(key: str, condition: DeleteCondition | None) -> str:
        async with slots:
            try:
                await _delete(ctx, bucket, key, condition)
            except (TossitError, S3Error) as exc:
                err = exc if isinstance(exc, S3Error) else from_domain(exc)
                return (f"<Error>{el('Key', key)}{el('Code', err.code)}"
                        f"{el('Message', err.message)}</Error>")
            return "" if request.quiet else f"<Deleted>{el('Key', key)}</Deleted>"

    results = await asyncio.gather(*(one(k, c) for k, c in request.objects))
    return xml_response(document("DeleteResult", results))
