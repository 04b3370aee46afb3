"""Bucket operations: list, create, delete, head, location, versioning state."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from starlette.responses import Response

from tossit.brain.s3.context import S3Context
from tossit.brain.s3.errors import S3Error
from tossit.brain.s3.router import check_bucket_name
from tossit.brain.s3.xml import (
    decode_token,
    document,
    el,
    encode_token,
    iso8601,
    owner,
    parse_location,
)

OWNER_ID = "tossit"  # objects belong to the cluster, not to one key
REGION = "us-east-1"  # what clients expect of a single-region store
MAX_BUCKETS = 10_000  # the most ``max-buckets`` may ask for (as on AWS)


def check_expected_owner(headers: Mapping[str, str]) -> None:
    """``x-amz-expected-bucket-owner`` (and the copy source's): a request that
    names another owner than the cluster's is refused, as S3 refuses it, rather
    than served as if it had named none."""
    for name in ("x-amz-expected-bucket-owner", "x-amz-source-expected-bucket-owner"):
        expected = headers.get(name)
        if expected is not None and expected.strip() != OWNER_ID:
            raise S3Error("AccessDenied", f"{name}: the bucket's owner is {OWNER_ID!r}, "
                                          f"not {expected.strip()!r}")


def xml_response(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="application/xml")


def bucket_page(names: Iterable[str], prefix: str, after: str | None,
                limit: int | None) -> tuple[list[str], bool]:
    """The names of one ListBuckets page, sorted (bucket names are ASCII, so this
    is S3's byte order whatever the database's collation), and whether more
    remain. ``after`` is the last name of the page before; no ``limit``: all."""
    chosen = sorted(n for n in names if n.startswith(prefix) and (after is None or n > after))
    if limit is None or len(chosen) <= limit:
        return chosen, False
    return chosen[:limit], True


def _max_buckets(ctx: S3Context) -> int | None:
    """``max-buckets``: None without it (all buckets, as before AWS paged them)."""
    value = ctx.query.get("max-buckets")
    if value is None:
        return None
    if not (value.isascii() and value.isdigit() and 1 <= int(value) <= MAX_BUCKETS):
        raise S3Error("InvalidArgument", f"max-buckets must be a number from 1 to {MAX_BUCKETS}")
    return int(value)


async def list_buckets(ctx: S3Context) -> Response:
    limit = _max_buckets(ctx)
    token = ctx.query.get("continuation-token")
    after = decode_token(token) if token else None
    prefix = ctx.query.get("prefix")
    buckets = {b.name: b for b in await ctx.brain.store.live_buckets()}
    names, more = bucket_page(buckets, prefix or "", after, limit)
    entries = "".join(f"<Bucket>{el('Name', n)}"
                      f"{el('CreationDate', iso8601(buckets[n].created_at))}</Bucket>"
                      for n in names)
    return xml_response(document("ListAllMyBucketsResult", [
        owner(OWNER_ID, OWNER_ID), f"<Buckets>{entries}</Buckets>",
        el("ContinuationToken", encode_token(names[-1]) if more else None),
        el("Prefix", prefix)]))


async def create_bucket(ctx: S3Context) -> Response:
    """Make the bucket. Making one that exists is a success that changes nothing
    (its objects and creation date kept): in us-east-1, REGION, AWS answers
    200 to the owner re-creating its bucket, and every bucket is the owner's."""
    name = check_bucket_name(ctx.bucket or "")
    # One cluster is one region: any LocationConstraint names it (as on MinIO).
    parse_location(await ctx.small_body(64 * 1024))
    await ctx.brain.store.make_bucket(name)  # False: it exists, and is left as it is
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
