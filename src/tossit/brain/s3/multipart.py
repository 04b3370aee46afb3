"""The seven S3 multipart operations, translated onto the multipart service
(``tossit.brain.multipart_uploads``, docs/multipart.md).

Each handler parses what S3 sends (query, headers, XML), calls one service
method and writes S3's XML. The body of a part is read as PutObject reads its
body (``S3Context.body``: plain, aws-chunked signed or with a trailer) and
checked with the same digests (Content-MD5, x-amz-checksum-*, the signed
payload hash); the source of an UploadPartCopy is found and its conditions
checked as CopyObject does; errors are the service's domain errors, mapped by
``errors.from_domain``. A completion is answered the way S3 answers it when it
takes long (``keepalive``).
"""

from __future__ import annotations

from starlette.responses import Response

from tossit.brain.activity import UPLOADED
from tossit.brain.multipart_rules import list_limit
from tossit.brain.multipart_uploads import Part, Upload
from tossit.brain.s3 import metadata
from tossit.brain.s3.bucket import OWNER_ID, xml_response
from tossit.brain.s3.checksums import checksum_headers, expected_digests, upload_algorithm
from tossit.brain.s3.context import S3Context
from tossit.brain.s3.copy import copy_source, parse_copy_range
from tossit.brain.s3.errors import S3Error, not_implemented
from tossit.brain.s3.keepalive import answer_when_done
from tossit.brain.s3.listing import key_encoder
from tossit.brain.s3.put import content_type
from tossit.brain.s3.xml import MAX_XML_BODY, document, el, iso8601, owner, parse_complete

STORAGE_CLASS = "STANDARD"


def _int_param(ctx: S3Context, name: str, default: int | None = None) -> int | None:
    value = ctx.query.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise S3Error("InvalidArgument", f"{name} must be an integer, not {value!r}") from None


def _upload_id(ctx: S3Context) -> str:
    return ctx.query.get("uploadId", "")


def _part_number(ctx: S3Context) -> int:
    number = _int_param(ctx, "partNumber")
    if number is None:
        raise S3Error("InvalidArgument", "partNumber is required")
    return number


def _initiator_and_owner() -> str:
    """Uploads belong to the cluster, as objects do (``bucket.OWNER_ID``)."""
    return (f"<Initiator>{el('ID', OWNER_ID)}{el('DisplayName', OWNER_ID)}</Initiator>"
            + owner(OWNER_ID, OWNER_ID))


# -- CreateMultipartUpload --------------------------------------------------------


async def create_multipart_upload(ctx: S3Context) -> Response:
    """The object's content type and kept headers are taken now, as PutObject
    takes them, and given to the object at completion."""
    bucket = await ctx.existing_bucket()
    key = ctx.key or ""
    if "if-none-match" in ctx.headers or "if-match" in ctx.headers:
        raise not_implemented("a conditional multipart upload (If-None-Match, If-Match)")
    algorithm = upload_algorithm(ctx.headers)
    upload = await ctx.brain.multipart.create(
        bucket.name, key, content_type(ctx.headers.get("content-type")),
        metadata.from_headers(ctx.headers))
    response = xml_response(document("InitiateMultipartUploadResult", [
        el("Bucket", bucket.name), el("Key", key), el("UploadId", upload.id)]))
    response.headers.update(algorithm)
    return response


# -- UploadPart, UploadPartCopy -------------------------------------------------------


async def upload_part(ctx: S3Context) -> Response:
    bucket = await ctx.existing_bucket()
    body, trailers = ctx.body()
    checks = expected_digests(ctx.headers, trailers)
    part = await ctx.brain.multipart.upload_part(
        bucket.name, ctx.key or "", _upload_id(ctx), _part_number(ctx), body,
        size_hint=ctx.size_hint, expect=[*checks, *ctx.payload_checks()])
    return Response(status_code=200, headers={"ETag": part.etag, **checksum_headers(checks)})


async def upload_part_copy(ctx: S3Context) -> Response:
    bucket = await ctx.existing_bucket()
    number = _part_number(ctx)
    source = await copy_source(ctx)
    wanted = ctx.headers.get("x-amz-copy-source-range")
    rng = parse_copy_range(wanted, source.obj.size) if wanted is not None else None
    part = await ctx.brain.multipart.upload_part_copy(
        bucket.name, ctx.key or "", _upload_id(ctx), number, source.obj, rng)
    return xml_response(document("CopyPartResult", [
        el("LastModified", iso8601(part.last_modified)), el("ETag", part.etag)]))


# -- CompleteMultipartUpload, AbortMultipartUpload -------------------------------------


async def complete_multipart_upload(ctx: S3Context) -> Response:
    bucket = await ctx.existing_bucket()
    key = ctx.key or ""
    if "if-none-match" in ctx.headers or "if-match" in ctx.headers:
        raise not_implemented("a conditional completion (If-None-Match, If-Match)")
    if any(name.startswith("x-amz-checksum-") and name != "x-amz-checksum-type"
           for name in ctx.headers):
        # Each part's checksum is checked as it arrives; a checksum of the whole
        # object at completion is not, so it is refused rather than ignored.
        raise not_implemented("a whole-object checksum at completion (x-amz-checksum-*)")
    parts = parse_complete(await ctx.small_body(MAX_XML_BODY))
    location = str(ctx.request.url.replace(query=""))

    async def complete() -> bytes:
        done = await ctx.brain.multipart.complete(bucket.name, key, _upload_id(ctx), parts)
        if not done.again:  # a retry's object was logged when it was made
            ctx.note(UPLOADED, bucket.name, done.obj)
        return document("CompleteMultipartUploadResult", [
            el("Location", location), el("Bucket", bucket.name), el("Key", key),
            el("ETag", done.etag)])

    return await answer_when_done(complete(), ctx.request.scope["path"], ctx.request_id)


async def abort_multipart_upload(ctx: S3Context) -> Response:
    bucket = await ctx.existing_bucket()
    await ctx.brain.multipart.abort(bucket.name, ctx.key or "", _upload_id(ctx))
    return Response(status_code=204)


# -- ListParts, ListMultipartUploads ------------------------------------------------------


def _part_entry(p: Part) -> str:
    return (f"<Part>{el('PartNumber', p.number)}{el('LastModified', iso8601(p.last_modified))}"
            f"{el('ETag', p.etag)}{el('Size', p.size)}</Part>")


async def list_parts(ctx: S3Context) -> Response:
    bucket = await ctx.existing_bucket()
    key = ctx.key or ""
    marker = _int_param(ctx, "part-number-marker", 0) or 0
    max_parts = _int_param(ctx, "max-parts")
    got = await ctx.brain.multipart.list_parts(bucket.name, key, _upload_id(ctx), marker,
                                               max_parts)
    return xml_response(document("ListPartsResult", [
        el("Bucket", bucket.name), el("Key", key), el("UploadId", got.upload.id),
        _initiator_and_owner(), el("StorageClass", STORAGE_CLASS),
        el("PartNumberMarker", marker),
        el("NextPartNumberMarker", got.next_marker),
        el("MaxParts", list_limit(max_parts, "max-parts")),
        el("IsTruncated", got.truncated), *(_part_entry(p) for p in got.parts)]))


def _upload_entry(u: Upload, enc_key: str | None) -> str:
    return (f"<Upload>{el('Key', enc_key)}{el('UploadId', u.id)}{_initiator_and_owner()}"
            f"{el('StorageClass', STORAGE_CLASS)}{el('Initiated', iso8601(u.initiated))}"
            "</Upload>")


async def list_multipart_uploads(ctx: S3Context) -> Response:
    """Uploads in progress by key then age. A delimiter (CommonPrefixes) is not
    implemented and answered 501, never ignored: a client relying on it would
    take a flat listing for a folder's."""
    bucket = await ctx.existing_bucket()
    if ctx.query.get("delimiter"):
        raise not_implemented("ListMultipartUploads with a delimiter (CommonPrefixes)")
    enc = key_encoder(ctx)
    prefix = ctx.query.get("prefix", "")
    key_marker = ctx.query.get("key-marker", "")
    id_marker = ctx.query.get("upload-id-marker", "") if key_marker else ""
    max_uploads = _int_param(ctx, "max-uploads")
    got = await ctx.brain.multipart.list_uploads(bucket.name, prefix, key_marker, id_marker,
                                                 max_uploads)
    return xml_response(document("ListMultipartUploadsResult", [
        el("Bucket", bucket.name), el("KeyMarker", enc(key_marker)),
        el("UploadIdMarker", id_marker), el("NextKeyMarker", enc(got.next_key_marker)),
        el("NextUploadIdMarker", got.next_upload_id_marker),
        el("EncodingType", ctx.query.get("encoding-type")), el("Prefix", enc(prefix)),
        el("MaxUploads", list_limit(max_uploads, "max-uploads")),
        el("IsTruncated", got.truncated), *(_upload_entry(u, enc(u.key)) for u in got.uploads)]))


HANDLERS = {
    "CreateMultipartUpload": create_multipart_upload,
    "UploadPart": upload_part,
    "UploadPartCopy": upload_part_copy,
    "CompleteMultipartUpload": complete_multipart_upload,
    "AbortMultipartUpload": abort_multipart_upload,
    "ListParts": list_parts,
    "ListMultipartUploads": list_multipart_uploads,
}
