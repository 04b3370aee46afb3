"""ListObjects (V1) and ListObjectsV2.

``list_page`` holds the pagination rules apart from the database (table-tested
with a list as the store): keys in byte order from a cursor, keys sharing the
part up to the delimiter folded into one common prefix, ``max-keys`` counting
keys and prefixes alike. A common prefix is skipped with one seek past its end
(``prefix_end``), so a folder of 100,000 keys costs one query, not 100,000
rows; each query reads a range of the (bucket, key) index.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import quote

from starlette.responses import Response

from tossit.brain.models import Object
from tossit.brain.s3.bucket import OWNER_ID, xml_response
from tossit.brain.s3.context import S3Context
from tossit.brain.s3.errors import S3Error
from tossit.brain.s3.get import etag_of
from tossit.brain.s3.router import NULL_VERSION
from tossit.brain.s3.xml import decode_token, document, el, encode_token, iso8601, owner
from tossit.brain.store import prefix_end

MAX_KEYS = 1000
# fetch(after=..., start=..., limit=...): objects with the prefix, in key order,
# after ``after`` (exclusive) or from ``start`` (inclusive).
Fetch = Callable[..., Awaitable[list[Object]]]


@dataclass
class Page:
    contents: list[Object] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    truncated: bool = False
    last: str | None = None  # the last key or prefix listed: where the next page starts

    @property
    def count(self) -> int:
        return len(self.contents) + len(self.prefixes)


def _common_prefix(key: str, prefix: str, delimiter: str) -> str | None:
    if not delimiter:
        return None
    at = key.find(delimiter, len(prefix))
    return key[: at + len(delimiter)] if at >= 0 else None


async def list_page(fetch: Fetch, prefix: str, delimiter: str, after: str | None,
                    max_keys: int) -> Page:
    """One page of a listing after ``after`` (a key or a common prefix listed
    before: the keys under such a prefix are not listed again)."""
    page = Page()
    start: str | None = None
    if after is not None and _common_prefix(after, prefix, delimiter) == after:
        start, after = prefix_end(after), None
        if start is None:
            return page
    if max_keys == 0:
        return page
    limit = min(max_keys, MAX_KEYS) + 1  # one more than a page: is there a next one?
    while True:
        batch = await fetch(after=after, start=start, limit=limit)
        if not batch:
            return page
        folded: str | None = None
        for obj in batch:
            if folded is not None and obj.key.startswith(folded):
                continue
            common = _common_prefix(obj.key, prefix, delimiter)
            if page.count == max_keys:
                page.truncated = True
                return page
            if common is not None:
                page.prefixes.append(common)
                page.last = folded = common
            else:
                page.contents.append(obj)
                page.last = obj.key
                folded = None
        if len(batch) < limit:
            return page  # the range is exhausted
        if folded is not None:
            start, after = prefix_end(folded), None
            if start is None:
                return page
        else:
            start, after = None, batch[-1].key


def _max_keys(ctx: S3Context) -> int:
    value = ctx.query.get("max-keys", str(MAX_KEYS))
    if not (value.isascii() and value.isdigit()):
        raise S3Error("InvalidArgument", "max-keys must be a number from 0")
    return min(int(value), MAX_KEYS)


def key_encoder(ctx: S3Context) -> Callable[[str | None], str | None]:
    kind = ctx.query.get("encoding-type")
    if kind is None:
        return lambda v: v
    if kind != "url":
        raise S3Error("InvalidArgument", "encoding-type must be url")
    return lambda v: None if v is None else quote(v, safe="/")


async def _page(ctx: S3Context, after: str | None) -> tuple[Page, str, str, int]:
    bucket = await ctx.existing_bucket()
    prefix = ctx.query.get("prefix", "")
    delimiter = ctx.query.get("delimiter", "")
    max_keys = _max_keys(ctx)
    store = ctx.brain.store

    async def fetch(after: str | None, start: str | None, limit: int) -> list[Object]:
        return await store.keys_in_order(bucket.id, prefix=prefix, after=after, start=start,
                                         limit=limit)

    return await list_page(fetch, prefix, delimiter, after, max_keys), prefix, delimiter, \
        max_keys


def _entries(page: Page, enc: Callable[[str | None], str | None], with_owner: bool,
             versions: bool = False) -> list[str]:
    """The page's keys and common prefixes; ``versions``: as ListObjectVersions
    shows them (each key's one version, null, the latest)."""
    who = owner(OWNER_ID, OWNER_ID) if with_owner else ""
    tag = "Version" if versions else "Contents"
    version = el("VersionId", NULL_VERSION) + el("IsLatest", True) if versions else ""
    parts = [
        f"<{tag}>{el('Key', enc(o.key))}{version}{el('LastModified', iso8601(o.created_at))}"
        f"{el('ETag', chr(34) + etag_of(o) + chr(34))}{el('Size', o.size)}{who}"
        f"{el('StorageClass', 'STANDARD')}</{tag}>" for o in page.contents]
    parts += [f"<CommonPrefixes>{el('Prefix', enc(p))}</CommonPrefixes>" for p in page.prefixes]
    return parts


async def list_objects_v2(ctx: S3Context) -> Response:
    enc = key_encoder(ctx)
    token = ctx.query.get("continuation-token")
    start_after = ctx.query.get("start-after")
    after = decode_token(token) if token is not None else start_after
    page, prefix, delimiter, max_keys = await _page(ctx, after)
    parts = [el("Name", ctx.bucket), el("Prefix", enc(prefix)),
             el("Delimiter", enc(delimiter) if delimiter else None),
             el("MaxKeys", max_keys), el("KeyCount", page.count),
             el("IsTruncated", page.truncated),
             el("EncodingType", ctx.query.get("encoding-type")),
             el("ContinuationToken", token),
             el("StartAfter", enc(start_after) if start_after is not None else None)]
    if page.truncated and page.last is not None:
        parts.append(el("NextContinuationToken", encode_token(page.last)))
    parts += _entries(page, enc, ctx.query.get("fetch-owner") == "true")
    return xml_response(document("ListBucketResult", parts))


async def list_objects_v1(ctx: S3Context) -> Response:
    enc = key_encoder(ctx)
    marker = ctx.query.get("marker")
    page, prefix, delimiter, max_keys = await _page(ctx, marker or None)
    # V1 sends its Prefix back as given, even with encoding-type=url (as S3 does:
    # botocore decodes V1's Marker, NextMarker, Delimiter and keys, not its Prefix).
    parts = [el("Name", ctx.bucket), el("Prefix", prefix), el("Marker", enc(marker or "")),
             el("MaxKeys", max_keys),
             el("Delimiter", enc(delimiter) if delimiter else None),
             el("IsTruncated", page.truncated),
             el("EncodingType", ctx.query.get("encoding-type"))]
    if page.truncated and page.last is not None:
        parts.append(el("NextMarker", enc(page.last)))
    parts += _entries(page, enc, True)
    return xml_response(document("ListBucketResult", parts))


async def list_object_versions(ctx: S3Context) -> Response:
    """ListObjectVersions of a bucket where versioning is never on: each key's
    one version, "null", the latest; no delete markers. Tools list versions to
    empty a bucket, or to see what is kept: this is the truthful answer."""
    enc = key_encoder(ctx)
    key_marker = ctx.query.get("key-marker") or None
    version_marker = ctx.query.get("version-id-marker") or None
    if version_marker is not None and key_marker is None:
        raise S3Error("InvalidArgument", "A version-id marker cannot be specified without "
                                         "a key marker.")
    if version_marker not in (None, NULL_VERSION):
        raise S3Error("InvalidArgument", "Invalid version id specified")
    # After (key, null) comes the next key: each key has that one version.
    page, prefix, delimiter, max_keys = await _page(ctx, key_marker)
    parts = [el("Name", ctx.bucket), el("Prefix", enc(prefix)),
             el("KeyMarker", enc(key_marker or "")),
             el("VersionIdMarker", version_marker or ""), el("MaxKeys", max_keys),
             el("Delimiter", enc(delimiter) if delimiter else None),
             el("IsTruncated", page.truncated),
             el("EncodingType", ctx.query.get("encoding-type"))]
    if page.truncated and page.last is not None:
        parts += [el("NextKeyMarker", enc(page.last)), el("NextVersionIdMarker", NULL_VERSION)]
    parts += _entries(page, enc, True, versions=True)
    return xml_response(document("ListVersionsResult", parts))

