"""The S3 layer's pure rules, table-tested: which operation a request is, bucket
names, listing pages, conditional requests, request XML, metadata, digests."""

from __future__ import annotations

import base64
import hashlib
import zlib
from types import SimpleNamespace
from typing import Any

import botocore.session
import pytest
from botocore.parsers import RestXMLParser

from tossit.brain.s3 import metadata
from tossit.brain.s3.acl import check_unchanged, policy_document
from tossit.brain.s3.bucket import bucket_page, check_expected_owner
from tossit.brain.s3.checksums import expected_digests, kept_headers, to_keep
from tossit.brain.s3.conditions import evaluate
from tossit.brain.s3.errors import S3Error, limit_error
from tossit.brain.s3.listing import list_page
from tossit.brain.s3.router import (
    check_bucket_name,
    check_version,
    operation,
    refuse_form_upload,
    split_target,
)
from tossit.brain.s3.xml import (
    decode_token,
    encode_token,
    iso8601,
    parse_delete,
    parse_location,
)
from tossit.errors import DigestMismatch
from tossit.limits import BodyLimitError, BodyTimeout, BodyTooLarge

# -- operations -------------------------------------------------------------

OPERATIONS = [
    ("GET", None, None, "", {}, "ListBuckets"),
    ("PUT", "b", None, "", {}, "CreateBucket"),
    ("HEAD", "b", None, "", {}, "HeadBucket"),
    ("DELETE", "b", None, "", {}, "DeleteBucket"),
    ("GET", "b", None, "location", {}, "GetBucketLocation"),
    ("GET", "b", None, "versioning", {}, "GetBucketVersioning"),
    ("GET", "b", None, "list-type=2", {}, "ListObjectsV2"),
    ("GET", "b", None, "versions", {}, "ListObjectVersions"),
    ("GET", "b", None, "prefix=a", {}, "ListObjects"),
    ("POST", "b", None, "delete", {}, "DeleteObjects"),
    ("GET", "b", None, "uploads", {}, "ListMultipartUploads"),
    ("PUT", "b", "k", "", {}, "PutObject"),
    ("PUT", "b", "k", "", {"x-amz-copy-source": "/a/b"}, "CopyObject"),
    ("GET", "b", "k", "", {}, "GetObject"),
    ("HEAD", "b", "k", "", {}, "HeadObject"),
    ("DELETE", "b", "k", "", {}, "DeleteObject"),
    ("POST", "b", "k", "uploads", {}, "CreateMultipartUpload"),
    ("PUT", "b", "k", "uploadId=u&partNumber=1", {}, "UploadPart"),
    ("PUT", "b", "k", "uploadId=u&partNumber=1", {"x-amz-copy-source": "/a/b"},
     "UploadPartCopy"),
    ("POST", "b", "k", "uploadId=u", {}, "CompleteMultipartUpload"),
    ("DELETE", "b", "k", "uploadId=u", {}, "AbortMultipartUpload"),
    ("GET", "b", "k", "uploadId=u", {}, "ListParts"),
    ("GET", None, None, "max-buckets=1&continuation-token=x&prefix=a", {}, "ListBuckets"),
    ("GET", "b", None, "acl", {}, "GetBucketAcl"),
    ("PUT", "b", None, "acl", {}, "PutBucketAcl"),
    ("PUT", "b", None, "acl", {"x-amz-acl": "private"}, "PutBucketAcl"),
    ("GET", "b", "k", "acl", {}, "GetObjectAcl"),
    ("PUT", "b", "k", "acl", {}, "PutObjectAcl"),
    ("PUT", "b", "k", "acl", {"x-amz-acl": "private"}, "PutObjectAcl"),
]


@pytest.mark.parametrize(("method", "bucket", "key", "query", "headers", "name"), OPERATIONS)
def test_operations(method: str, bucket: str | None, key: str | None, query: str,
                    headers: dict[str, str], name: str) -> None:
    params = [p.split("=")[0] for p in query.split("&") if p]
    assert operation(method, bucket, key, params, headers) == name


NOT_IMPLEMENTED = [
    ("PUT", "b", None, "versioning", {}),
    ("PUT", "b", None, "policy", {}),
    ("PUT", "b", None, "acl", {"x-amz-acl": "public-read"}),
    ("PUT", "b", "k", "acl", {"x-amz-acl": "authenticated-read"}),
    ("PUT", "b", "k", "acl", {"x-amz-grant-read": 'uri="http://acs.amazonaws.com/groups/'
                                                  'global/AllUsers"'}),
    ("PUT", "b", None, "lifecycle", {}),
    ("GET", "b", None, "website", {}),
    ("PUT", "b", None, "object-lock", {}),
    ("PUT", "b", None, "versions", {}),
    ("PUT", "b", "k", "tagging", {}),
    ("GET", "b", "k", "partNumber", {}),
    ("PUT", "b", "k", "", {"x-amz-server-side-encryption": "aws:kms"}),
    ("PUT", "b", "k", "", {"x-amz-acl": "public-read"}),
    ("PUT", "b", "k", "", {"x-amz-object-lock-mode": "GOVERNANCE"}),
    ("PUT", "b", "k", "", {"x-amz-grant-read": "id=x"}),
    # SSE-C's key without its algorithm (s3-tests' test_encryption_key_no_sse_c)
    ("PUT", "b", "k", "", {"x-amz-server-side-encryption-customer-key": "a2V5",
                           "x-amz-server-side-encryption-customer-key-md5": "bWQ1"}),
    ("PUT", "b", "k", "", {"x-amz-server-side-encryption-bucket-key-enabled": "true"}),
    ("PUT", "b", "k", "", {
        "x-amz-copy-source": "/a/b",
        "x-amz-copy-source-server-side-encryption-customer-algorithm": "AES256"}),
    ("POST", "b", "k", "uploads", {"x-amz-server-side-encryption": "AES256"}),
    ("POST", "b", "k", "restore", {}),
]


@pytest.mark.parametrize(("method", "bucket", "key", "query", "headers"), NOT_IMPLEMENTED)
def test_unsupported_is_501(method: str, bucket: str, key: str | None, query: str,
                            headers: dict[str, str]) -> None:
    with pytest.raises(S3Error) as exc:
        operation(method, bucket, key, [query] if query else [], headers)
    assert (exc.value.code, exc.value.status) == ("NotImplemented", 501)


@pytest.mark.parametrize("header", ["x-amz-server-side-encryption",
                                    "x-amz-server-side-encryption-customer-algorithm"])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_read_naming_server_side_encryption_is_refused(method: str, header: str) -> None:
    # Not ignored (s3-tests' test_sse_kms_read_declare): nothing here is encrypted so.
    with pytest.raises(S3Error) as exc:
        operation(method, "b", "k", [], {header: "aws:kms"})
    assert (exc.value.code, exc.value.status) == ("InvalidArgument", 400)


def test_another_expected_bucket_owner_is_refused() -> None:
    check_expected_owner({})
    check_expected_owner({"x-amz-expected-bucket-owner": "tossit"})
    for name in ("x-amz-expected-bucket-owner", "x-amz-source-expected-bucket-owner"):
        with pytest.raises(S3Error) as exc:
            check_expected_owner({name: "123456789012"})
        assert (exc.value.code, exc.value.status) == ("AccessDenied", 403)


def test_only_the_null_version_exists() -> None:
    check_version({})
    check_version({"versionId": "null"})  # the object itself, as in unversioned S3
    with pytest.raises(S3Error) as exc:
        check_version({"versionId": "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"})
    assert (exc.value.code, exc.value.status) == ("NotImplemented", 501)


def test_a_browser_form_upload_is_501_before_any_signature() -> None:
    form = {"content-type": "multipart/form-data; boundary=x"}
    with pytest.raises(S3Error) as exc:
        refuse_form_upload("POST", "b", None, form)
    assert (exc.value.code, exc.value.status) == ("NotImplemented", 501)
    refuse_form_upload("POST", "b", None, {"content-type": "application/xml"})  # ?delete
    refuse_form_upload("POST", "b", "k", form)  # not a form upload: the key is in the path
    refuse_form_upload("PUT", "b", None, form)


def test_a_private_acl_is_what_every_object_has() -> None:
    assert operation("PUT", "b", "k", [], {"x-amz-acl": "private"}) == "PutObject"


@pytest.mark.parametrize("method", ["POST", "DELETE", "HEAD"])
@pytest.mark.parametrize("key", [None, "k"])
def test_acl_is_only_read_or_put(method: str, key: str | None) -> None:
    with pytest.raises(S3Error) as exc:
        operation(method, "b", key, ["acl"], {})
    assert (exc.value.code, exc.value.status) == ("MethodNotAllowed", 405)


# -- ACLs ---------------------------------------------------------------------

_XSI = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'


def _policy(grants: list[tuple[str, str, str]], owner_id: str = "tossit") -> bytes:
    """An AccessControlPolicy of (grantee type, ID or URI, permission) grants."""
    body = "".join(
        f'<Grant><Grantee {_XSI} xsi:type="{kind}">'
        + (f"<URI>{who}</URI>" if kind == "Group" else f"<ID>{who}</ID>")
        + f"</Grantee><Permission>{perm}</Permission></Grant>" for kind, who, perm in grants)
    return (f'<AccessControlPolicy xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Owner><ID>{owner_id}</ID></Owner><AccessControlList>{body}"
            "</AccessControlList></AccessControlPolicy>").encode()


OWNERS = ("CanonicalUser", "tossit", "FULL_CONTROL")
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


@pytest.mark.parametrize(("canned", "body"), [
    ("private", b""),
    ("bucket-owner-full-control", b""),
    (None, b""),
    (None, _policy([OWNERS])),
    (None, _policy([OWNERS, OWNERS])),
    (None, policy_document()),  # what GET ?acl answers, put back as it is
])
def test_an_acl_that_changes_nothing_is_accepted(canned: str | None, body: bytes) -> None:
    check_unchanged(canned, body)


@pytest.mark.parametrize(("canned", "body", "code"), [
    ("public-read", b"", "NotImplemented"),
    ("authenticated-read", b"", "NotImplemented"),
    (None, _policy([OWNERS, ("Group", ALL_USERS, "READ")]), "NotImplemented"),
    (None, _policy([OWNERS, ("CanonicalUser", "someone", "READ")]), "NotImplemented"),
    (None, _policy([("CanonicalUser", "tossit", "READ")]), "NotImplemented"),
    (None, _policy([]), "NotImplemented"),  # nobody, not even the cluster's keys
    (None, _policy([OWNERS], owner_id="someone"), "NotImplemented"),
    ("private", _policy([OWNERS]), "InvalidRequest"),
    (None, b"<AccessControlPolicy>", "MalformedXML"),
    (None, b"<Other/>", "MalformedXML"),
    (None, b"<AccessControlPolicy><AccessControlList><Grant/></AccessControlList>"
           b"</AccessControlPolicy>", "MalformedXML"),
])
def test_an_acl_that_would_change_something_is_refused(canned: str | None, body: bytes,
                                                       code: str) -> None:
    with pytest.raises(S3Error) as exc:
        check_unchanged(canned, body)
    assert exc.value.code == code


def test_the_policy_is_what_boto3_reads_as_private() -> None:
    model = botocore.session.get_session().get_service_model("s3")
    shape = model.operation_model("GetObjectAcl").output_shape
    parsed = RestXMLParser().parse({"body": policy_document(), "headers": {},
                                    "status_code": 200}, shape)
    assert parsed["Owner"] == {"ID": "tossit", "DisplayName": "tossit"}
    assert parsed["Grants"] == [{"Grantee": {"ID": "tossit", "DisplayName": "tossit",
                                             "Type": "CanonicalUser"},
                                 "Permission": "FULL_CONTROL"}]


# -- bucket listing -----------------------------------------------------------

BUCKETS = ["photos", "backup-2", "backup-1", "logs", "default"]


@pytest.mark.parametrize(("prefix", "after", "limit", "want"), [
    ("", None, None, (["backup-1", "backup-2", "default", "logs", "photos"], False)),
    ("", None, 10_000, (["backup-1", "backup-2", "default", "logs", "photos"], False)),
    ("", None, 2, (["backup-1", "backup-2"], True)),
    ("", "backup-2", 2, (["default", "logs"], True)),
    ("", "logs", 2, (["photos"], False)),
    ("", "photos", 2, ([], False)),
    ("", None, 5, (["backup-1", "backup-2", "default", "logs", "photos"], False)),
    ("backup", None, 1, (["backup-1"], True)),
    ("backup", "backup-1", 1, (["backup-2"], False)),
    ("backup", "a", None, (["backup-1", "backup-2"], False)),
    ("z", None, 1, ([], False)),
])
def test_bucket_pages(prefix: str, after: str | None, limit: int | None,
                      want: tuple[list[str], bool]) -> None:
    assert bucket_page(BUCKETS, prefix, after, limit) == want


def test_bucket_tokens_round_trip() -> None:
    assert decode_token(encode_token("my.bucket-1")) == "my.bucket-1"
    with pytest.raises(S3Error) as exc:
        decode_token("not base64!")
    assert exc.value.code == "InvalidArgument"


@pytest.mark.parametrize("name", ["abc", "my-bucket", "my.bucket.2026", "a" * 63, "0-0"])
def test_valid_bucket_names(name: str) -> None:
    assert check_bucket_name(name) == name


@pytest.mark.parametrize("name", ["ab", "a" * 64, "Abc", "a_b", ".abc", "abc.", "a..b", "a.-b",
                                  "10.0.0.1", "xn--abc", "abc-s3alias", ".tossit", ""])
def test_invalid_bucket_names(name: str) -> None:
    with pytest.raises(S3Error) as exc:
        check_bucket_name(name)
    assert exc.value.code == "InvalidBucketName"


@pytest.mark.parametrize(("path", "host", "domain", "want"), [
    (b"/", "h:9000", "", (None, None)),
    (b"/b", "h:9000", "", ("b", None)),
    (b"/b/", "h:9000", "", ("b", None)),
    (b"/b/a/c%20d", "h", "", ("b", "a/c d")),
    (b"/b//x", "h", "", ("b", "/x")),
    (b"/k/e/y", "photos.s3.lan:9000", "s3.lan", ("photos", "k/e/y")),
    (b"/", "photos.s3.lan", "s3.lan", ("photos", None)),
    (b"/b/k", "s3.lan:9000", "s3.lan", ("b", "k")),
    (b"/b/%E6%97%A5", "h", "", ("b", "日")),
])
def test_split_target(path: bytes, host: str, domain: str,
                      want: tuple[str | None, str | None]) -> None:
    assert split_target(path, host, domain) == want


@pytest.mark.parametrize(("path", "code"), [(b"/b/%FF", "InvalidArgument"),
                                            (b"/b/a%00b", "InvalidArgument"),
                                            (b"/b/" + b"k" * 1025, "KeyTooLongError")])
def test_bad_targets(path: bytes, code: str) -> None:
    with pytest.raises(S3Error) as exc:
        split_target(path, "h", "")
    assert exc.value.code == code


# -- listing pages ----------------------------------------------------------


class FakeStore:
    """Keys in byte order; counts the queries, as the index would serve them."""

    def __init__(self, keys: list[str], prefix: str = "") -> None:
        self.keys = sorted(k for k in keys if k.startswith(prefix))
        self.queries = 0

    async def fetch(self, after: str | None, start: str | None, limit: int) -> list[Any]:
        self.queries += 1
        rows = [k for k in self.keys if (after is None or k > after)
                and (start is None or k >= start)]
        return [SimpleNamespace(key=k) for k in rows[:limit]]


async def pages(keys: list[str], prefix: str, delimiter: str, max_keys: int,
                after: str | None = None) -> list[tuple[list[str], list[str], bool]]:
    store = FakeStore(keys, prefix)
    out = []
    while True:
        page = await list_page(store.fetch, prefix, delimiter, after, max_keys)
        out.append(([o.key for o in page.contents], page.prefixes, page.truncated))
        if not page.truncated:
            return out
        after = page.last


KEYS = ["a", "b/1", "b/2", "b/c/3", "c", "d/4", "e"]


@pytest.mark.parametrize(("prefix", "delimiter", "max_keys", "want"), [
    ("", "", 1000, [(KEYS, [], False)]),
    ("", "/", 1000, [(["a", "c", "e"], ["b/", "d/"], False)]),
    ("", "/", 2, [(["a"], ["b/"], True), (["c"], ["d/"], True), (["e"], [], False)]),
    ("", "/", 1, [(["a"], [], True), ([], ["b/"], True), (["c"], [], True),
                  ([], ["d/"], True), (["e"], [], False)]),
    ("b/", "/", 1000, [(["b/1", "b/2"], ["b/c/"], False)]),
    ("b/", "", 2, [(["b/1", "b/2"], [], True), (["b/c/3"], [], False)]),
    ("z", "/", 10, [([], [], False)]),
    ("", "/", 0, [([], [], False)]),
])
async def test_list_pages(prefix: str, delimiter: str, max_keys: int,
                          want: list[tuple[list[str], list[str], bool]]) -> None:
    assert await pages(KEYS, prefix, delimiter, max_keys) == want


async def test_a_marker_that_is_a_common_prefix_skips_it() -> None:
    assert await pages(KEYS, "", "/", 1000, after="b/") == [(["c", "e"], ["d/"], False)]
    assert await pages(KEYS, "", "/", 1000, after="b/1") == [(["c", "e"], ["b/", "d/"], False)]


async def test_a_big_folder_costs_one_seek_not_its_size() -> None:
    keys = [f"big/{i:06d}" for i in range(50_000)] + ["after"]
    store = FakeStore(keys)
    page = await list_page(store.fetch, "", "/", None, 1000)
    assert page.prefixes == ["big/"] and [o.key for o in page.contents] == ["after"]
    assert store.queries <= 3


async def test_byte_order_is_utf8_order() -> None:
    keys = ["é", "z", "Z", "日本", "a", "\U0001f600", "\uffff"]
    listed = [o.key for o in (await list_page(FakeStore(keys).fetch, "", "", None, 100)).contents]
    assert listed == sorted(keys, key=lambda k: k.encode())


def test_continuation_tokens_round_trip() -> None:
    for last in ["a", "photos/2026/", "日本/x y+z"]:
        assert decode_token(encode_token(last)) == last
    with pytest.raises(S3Error) as exc:
        decode_token("not base64!")
    assert exc.value.code == "InvalidArgument"


# -- conditional requests ---------------------------------------------------

ETAG, MTIME = "abc123", 1_700_000_000.4  # Tue, 14 Nov 2023 22:13:20 GMT
SAME = "Tue, 14 Nov 2023 22:13:20 GMT"
EARLIER, LATER = "Tue, 14 Nov 2023 22:13:19 GMT", "Tue, 14 Nov 2023 22:13:21 GMT"


@pytest.mark.parametrize(("headers", "read", "want"), [
    ({}, True, None),
    ({"if-match": '"abc123"'}, True, None),
    ({"if-match": '"other", "abc123"'}, True, None),
    ({"if-match": "*"}, True, None),
    ({"if-match": '"other"'}, True, 412),
    ({"if-none-match": '"abc123"'}, True, 304),
    ({"if-none-match": '"abc123"'}, False, 412),
    ({"if-none-match": "*"}, True, 304),
    ({"if-none-match": '"other"'}, True, None),
    ({"if-modified-since": SAME}, True, 304),
    ({"if-modified-since": EARLIER}, True, None),
    ({"if-modified-since": "not a date"}, True, None),
    ({"if-unmodified-since": SAME}, True, None),
    ({"if-unmodified-since": EARLIER}, True, 412),
    # If-Match true wins over a false If-Unmodified-Since (S3 and RFC 9110).
    ({"if-match": '"abc123"', "if-unmodified-since": EARLIER}, True, None),
    # If-None-Match false: If-Modified-Since is not looked at.
    ({"if-none-match": '"other"', "if-modified-since": LATER}, True, None),
    ({"if-none-match": '"abc123"', "if-modified-since": EARLIER}, True, 304),
    ({"if-match": '"other"', "if-none-match": '"abc123"'}, True, 412),
])
def test_conditions(headers: dict[str, str], read: bool, want: int | None) -> None:
    assert evaluate(headers, ETAG, MTIME, read=read) == want


# -- request XML, metadata, digests ------------------------------------------


def test_parse_delete() -> None:
    body = (b'<?xml version="1.0"?><Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            b"<Quiet>true</Quiet><Object><Key>a&amp;b</Key></Object><Object><Key>c</Key>"
            b"</Object></Delete>")
    request = parse_delete(body)
    assert request.keys == ["a&b", "c"] and request.quiet
    assert parse_delete(b"<Delete><Object><Key>x</Key></Object></Delete>").quiet is False


@pytest.mark.parametrize(("body", "code"), [
    (b"<Delete>", "MalformedXML"),
    (b"<Other/>", "MalformedXML"),
    (b"<Delete></Delete>", "MalformedXML"),
    (b"<Delete><Object/></Delete>", "MalformedXML"),
    (b"<Delete>" + b"<Object><Key>k</Key></Object>" * 1001 + b"</Delete>", "MalformedXML"),
    (b"<Delete><Object><Key>k</Key><VersionId>1</VersionId></Object></Delete>",
     "NotImplemented"),
])
def test_bad_delete_bodies(body: bytes, code: str) -> None:
    with pytest.raises(S3Error) as exc:
        parse_delete(body)
    assert exc.value.code == code


def test_parse_location() -> None:
    assert parse_location(b"") is None
    assert parse_location(b"<CreateBucketConfiguration><LocationConstraint>eu-west-1"
                          b"</LocationConstraint></CreateBucketConfiguration>") == "eu-west-1"


def test_iso8601() -> None:
    assert iso8601(1_700_000_000.25) == "2023-11-14T22:13:20.250Z"


def test_metadata_kept_and_given_back() -> None:
    headers = {"x-amz-meta-owner": "ana", "cache-control": "no-cache", "content-type": "a/b",
               "content-encoding": "aws-chunked", "authorization": "secret", "expires": "x"}
    kept = metadata.from_headers(headers)
    assert kept == {"x-amz-meta-owner": "ana", "cache-control": "no-cache", "expires": "x"}
    assert metadata.to_headers(kept) == kept
    # Content-Encoding as written (s3-tests' test_object_content_encoding_aws_chunked),
    # less the aws-chunked that only says how the body travelled.
    for sent, kept_as in [("gzip, aws-chunked", "gzip"), ("aws-chunked, gzip", "gzip"),
                          ("deflate, gzip", "deflate, gzip"), ("deflate,gzip", "deflate,gzip"),
                          ("aws-chunked, deflate, gzip", "deflate, gzip"),
                          ("aws-chunked", None), ("aws-chunked, aws-chunked", None)]:
        got = metadata.from_headers({"content-encoding": sent}) or {}
        assert got.get("content-encoding") == kept_as, sent
    with pytest.raises(S3Error):
        metadata.from_headers({"x-amz-meta-big": "x" * 3000})


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_checksums_sent_in_headers_are_kept_and_given_back_when_asked() -> None:
    data = b"A" * 1024
    sha = _b64(hashlib.sha256(data).digest())
    md5 = _b64(hashlib.md5(data).digest())
    kept = to_keep(expected_digests({"x-amz-checksum-sha256": f" {sha} ", "content-md5": md5,
                                     "x-amz-checksum-type": "x"}))
    assert kept == {"x-amz-checksum-sha256": sha}
    meta = metadata.from_headers({"x-amz-meta-a": "b"}, kept)
    assert metadata.to_headers(meta) == {"x-amz-meta-a": "b"}  # not given back as is
    asked = {"x-amz-checksum-mode": "ENABLED"}
    assert kept_headers(meta, asked, whole=True) == {
        "x-amz-checksum-sha256": sha, "x-amz-checksum-type": "FULL_OBJECT"}
    assert kept_headers(meta, {}, whole=True) == {}  # not asked
    assert kept_headers(meta, asked, whole=False) == {}  # a range: not its checksum
    assert kept_headers(None, asked, whole=True) == {}
    with pytest.raises(S3Error) as exc:
        to_keep(expected_digests({"x-amz-checksum-sha256": "bad"}))
    assert exc.value.code == "BadDigest"


def test_expected_digests_check_the_bytes() -> None:
    data = b"some bytes"
    headers = {"content-md5": _b64(hashlib.md5(data).digest()),
               "x-amz-checksum-crc32": _b64(zlib.crc32(data).to_bytes(4, "big")),
               "x-amz-checksum-sha256": _b64(hashlib.sha256(data).digest())}
    checks = expected_digests(headers)
    assert [c.algorithm for c in checks] == ["MD5", "CRC32", "SHA256"]
    for check in checks:
        check.digest.update(data)
        check.check()
    # The CRC-32C check value of "123456789" (RFC 3720, appendix B.4): E3069283.
    (crc32c,) = expected_digests({"x-amz-checksum-crc32c": _b64(bytes.fromhex("e3069283"))})
    crc32c.digest.update(b"1234")
    crc32c.digest.update(b"56789")
    crc32c.check()
    wrong = expected_digests({"content-md5": _b64(hashlib.md5(b"other").digest())})[0]
    wrong.digest.update(data)
    with pytest.raises(DigestMismatch):
        wrong.check()


def test_trailer_digest_is_read_after_the_body() -> None:
    trailers: dict[str, str] = {}
    (check,) = expected_digests({"x-amz-trailer": "x-amz-checksum-crc32"}, lambda: trailers)
    check.digest.update(b"abc")
    trailers["x-amz-checksum-crc32"] = _b64(zlib.crc32(b"abc").to_bytes(4, "big"))
    check.check()


@pytest.mark.parametrize(("headers", "code"), [
    ({"content-md5": "not base64"}, "InvalidDigest"),
    ({"content-md5": _b64(b"short")}, "InvalidDigest"),
    # A malformed checksum is one the bytes do not have (s3-tests: BadDigest).
    ({"x-amz-checksum-sha256": "bad"}, "BadDigest"),
    ({"x-amz-checksum-crc32": _b64(b"12345")}, "BadDigest"),
    ({"x-amz-checksum-crc64nvme": "AAAAAAAAAAA="}, "NotImplemented"),
    ({"x-amz-trailer": "x-amz-meta-x"}, "InvalidRequest"),
])
def test_bad_digest_headers(headers: dict[str, str], code: str) -> None:
    with pytest.raises(S3Error) as exc:
        expected_digests(headers, lambda: {})
    assert exc.value.code == code


@pytest.mark.parametrize(("exc", "status", "code"), [
    (BodyTimeout(30), 400, b"<Code>RequestTimeout</Code>"),
    (BodyTooLarge(1024), 400, b"<Code>EntityTooLarge</Code>"),
])
def test_cut_off_bodies_answer_in_s3_xml(exc: BodyLimitError, status: int, code: bytes) -> None:
    got_status, body, ctype = limit_error(exc, {"path": "/b/k"})
    assert (got_status, ctype) == (status, b"application/xml")
    assert code in body and b"<Resource>/b/k</Resource>" in body and b"<RequestId>" in body
