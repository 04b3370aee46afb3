"""Bucket operations: list, create, delete, head, location, versioning state."""

from __future__ import annotations

from starlette.responses import Response

from tossit.brain.s3.context import S3Context
from tossit.brain.s3.errors import S3Error
from tossit.brain.s3.router import check_bucket_name
from tossit.brain.s3.xml import document, el, iso8601, owner, parse_location

OWNER_ID = "tossit"  # objects belong to the cluster, not to one key
REGION = "us-east-1"  # what clients expect of a single-region store


def xml_response(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="application/xml")


async def list_buckets(ctx: S3Context) -> Response:
    buckets = await ctx.brain.store.live_buckets()
    entries = "".join(f"<Bucket>{el('Name', b.name)}{el('CreationDate', iso8601(b.created_at))}"
                      "</Bucket>" for b in buckets)
    return xml_response(document("ListAllMyBucketsResult", [
        owner(OWNER_ID, OWNER_ID), f"<Buckets>{entries}</Buckets>"]))


async def create_bucket(ctx: S3Context) -> Response:
    name = check_bucket_name(ctx.bucket or "")
    # One cluster is one region: any LocationConstraint names it (as on MinIO).
    parse_location(await ctx.small_body(64 * 1024))
    if not await ctx.brain.store.make_bucket(name):
        raise S3Error("BucketAlreadyOwnedByYou")
    return Response(status_code=200, headers={"Location": f"/{name}"})


async def delete_bucket(ctx: S3Context) -> Response:
    done = await ctx.brain.store.drop_bucket(ctx.bucket or "")
    if done is None:
        raise S3Error("NoSuchBucket")
    if not done:
        raise S3Error("BucketNotEmpty")
    return Response(status_code=204)


async def head_bucket(ctx: S3Context) -> Response:
    await ctx.existing_bucket()
    return Response(status_code=200, headers={"x-amz-bucket-region": REGION})


async def bucket_location(ctx: S3Context) -> Response:
    await ctx.existing_bucket()
    # us-east-1 is an empty LocationConstraint in S3's answer.
    return xml_response(document("LocationConstraint", []))


async def bucket_versioning(ctx: S3Context) -> Response:
    """Never enabled (enabling it answers 501): an empty configuration says so."""
    await ctx.existing_bucket()
    return xml_response(document("VersioningConfiguration", []))
