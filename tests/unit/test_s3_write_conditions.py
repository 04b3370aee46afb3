"""Conditional writes and deletes of the S3 layer, table-tested: PutObject's
If-Match and If-None-Match: * (what the commit is told to check again), and
DeleteObject's and DeleteObjects' ETag, size and last-modified conditions."""

from __future__ import annotations

import pytest

from tossit.brain.models import Object
from tossit.brain.s3.conditions import (
    Current,
    DeleteCondition,
    delete_condition,
    delete_condition_of,
    delete_refusal,
    write_refusal,
)
from tossit.brain.s3.errors import S3Error
from tossit.brain.s3.put import conditional, on_conflict
from tossit.brain.s3.xml import parse_delete
from tossit.brain.store import ReplaceOnly

ETAG, SIZE, MTIME = "abc123", 10, 1_700_000_000.4  # Tue, 14 Nov 2023 22:13:20 GMT
NOW = Current(ETAG, SIZE, MTIME)
SECOND = 1_700_000_000  # MTIME in whole seconds, as Last-Modified shows it

# -- PutObject ----------------------------------------------------------------


@pytest.mark.parametrize(("headers", "current", "want"), [
    ({}, NOW, None),
    ({}, None, None),
    ({"if-match": '"abc123"'}, NOW, None),
    ({"if-match": "abc123"}, NOW, None),
    ({"if-match": '"other", "abc123"'}, NOW, None),
    ({"if-match": "*"}, NOW, None),
    ({"if-match": '"other"'}, NOW, "PreconditionFailed"),
    ({"if-match": ""}, NOW, "PreconditionFailed"),
    # If-Match on a key with no object: S3 answers NoSuchKey, '*' included.
    ({"if-match": '"abc123"'}, None, "NoSuchKey"),
    ({"if-match": "*"}, None, "NoSuchKey"),
    ({"if-none-match": "*"}, None, None),
    ({"if-none-match": "*"}, NOW, "PreconditionFailed"),
    # If-None-Match with ETags: refused only by an object that has one of them.
    ({"if-none-match": '"abc123"'}, NOW, "PreconditionFailed"),
    ({"if-none-match": '"x", "abc123"'}, NOW, "PreconditionFailed"),
    ({"if-none-match": '"other"'}, NOW, None),
    ({"if-none-match": '"abc123"'}, None, None),
    # Both: they cannot hold together, whichever way.
    ({"if-match": '"abc123"', "if-none-match": "*"}, NOW, "PreconditionFailed"),
    ({"if-match": '"abc123"', "if-none-match": "*"}, None, "NoSuchKey"),
])
def test_write_refusal(headers: dict[str, str], current: Current | None,
                       want: str | None) -> None:
    assert write_refusal(headers, current) == want


def _obj(etag: str | None = ETAG, sha256: str = "f" * 64) -> Object:
    return Object(id=7, bucket_id=1, key="k", size=SIZE, sha256=sha256, etag=etag,
                  content_type="text/plain", chunk_size=SIZE, chunk_count=1,
                  created_at=MTIME)


@pytest.mark.parametrize(("headers", "current", "want"), [
    ({}, None, "replace"),
    ({"if-none-match": "*"}, None, "fail"),
    ({"if-none-match": " * "}, None, "fail"),
    # The commit replaces only the object the ETag named, by id...
    ({"if-match": '"abc123"'}, _obj(), ReplaceOnly(7)),
    # ... or any object for '*' (S3: "only if an object exists").
    ({"if-match": "*"}, _obj(), ReplaceOnly(None)),
    ({"if-match": '"x", *'}, _obj(), ReplaceOnly(None)),
    # An object stored before ETags has its SHA-256 as ETag.
    ({"if-match": '"' + "f" * 64 + '"'}, _obj(etag=None), ReplaceOnly(7)),
    # If-None-Match with ETags holds for the object seen: only it is replaced;
    # a free key must still be free.
    ({"if-none-match": '"other"'}, _obj(), ReplaceOnly(7)),
    ({"if-none-match": '"other"'}, None, "fail"),
])
def test_on_conflict(headers: dict[str, str], current: Object | None,
                     want: str | ReplaceOnly) -> None:
    assert conditional(headers) is (want != "replace")
    assert on_conflict(headers, current) == want


@pytest.mark.parametrize(("headers", "current", "code"), [
    ({"if-match": '"other"'}, _obj(), "PreconditionFailed"),
    ({"if-match": '"abc123"'}, None, "NoSuchKey"),
    ({"if-none-match": "*"}, _obj(), "PreconditionFailed"),
    ({"if-none-match": '"abc123"'}, _obj(), "PreconditionFailed"),
])
def test_a_failed_write_condition_is_refused_before_the_body(
        headers: dict[str, str], current: Object | None, code: str) -> None:
    with pytest.raises(S3Error) as exc:
        on_conflict(headers, current)
    assert exc.value.code == code


# -- deletes ------------------------------------------------------------------


@pytest.mark.parametrize(("etag", "size", "modified", "want"), [
    (None, None, None, None),
    ('"abc123"', None, None, DeleteCondition(etag='"abc123"')),
    (None, "10", None, DeleteCondition(size=10)),
    (None, " 10 ", None, DeleteCondition(size=10)),
    (None, None, "Tue, 14 Nov 2023 22:13:20 GMT", DeleteCondition(modified=SECOND)),
    (None, None, "2023-11-14T22:13:20.999Z", DeleteCondition(modified=SECOND)),
    (None, None, "2023-11-14T22:13:20+00:00", DeleteCondition(modified=SECOND)),
    (None, None, "2023-11-14T23:13:20+01:00", DeleteCondition(modified=SECOND)),
    (None, None, "2023-11-14T22:13:20", DeleteCondition(modified=SECOND)),  # UTC
    ("*", "0", "Tue, 14 Nov 2023 22:13:20 GMT", DeleteCondition("*", 0, SECOND)),
])
def test_delete_condition(etag: str | None, size: str | None, modified: str | None,
                          want: DeleteCondition | None) -> None:
    assert delete_condition(etag, size, modified) == want


@pytest.mark.parametrize(("size", "modified"), [
    ("ten", None), ("-1", None), ("1.5", None), ("", None),
    (None, "yesterday"), (None, ""), (None, "2023-13-45T00:00:00Z"),
])
def test_a_condition_that_cannot_be_judged_is_refused(size: str | None,
                                                      modified: str | None) -> None:
    with pytest.raises(S3Error) as exc:
        delete_condition(None, size, modified)
    assert exc.value.code == "InvalidArgument"


def test_delete_condition_of_headers() -> None:
    assert delete_condition_of({}) is None
    assert delete_condition_of({"if-none-match": "*"}) is None  # not a delete condition
    assert delete_condition_of({
        "if-match": '"abc123"', "x-amz-if-match-size": "10",
        "x-amz-if-match-last-modified-time": "Tue, 14 Nov 2023 22:13:20 GMT",
    }) == DeleteCondition('"abc123"', 10, SECOND)


@pytest.mark.parametrize(("condition", "current", "want"), [
    (None, NOW, None),
    (None, None, None),  # a missing key without a condition: 204, as ever
    (DeleteCondition(etag='"abc123"'), NOW, None),
    (DeleteCondition(etag="abc123"), NOW, None),
    (DeleteCondition(etag="*"), NOW, None),
    (DeleteCondition(etag='"other"'), NOW, "PreconditionFailed"),
    (DeleteCondition(size=10), NOW, None),
    (DeleteCondition(size=11), NOW, "PreconditionFailed"),
    (DeleteCondition(size=0), NOW, "PreconditionFailed"),
    (DeleteCondition(modified=SECOND), NOW, None),  # 20.4 s is 20 s, as Last-Modified
    (DeleteCondition(modified=SECOND - 1), NOW, "PreconditionFailed"),
    (DeleteCondition(modified=SECOND + 1), NOW, "PreconditionFailed"),
    (DeleteCondition('"abc123"', 10, SECOND), NOW, None),
    # Every condition must hold.
    (DeleteCondition('"abc123"', 11, SECOND), NOW, "PreconditionFailed"),
    (DeleteCondition('"other"', 10, SECOND), NOW, "PreconditionFailed"),
    (DeleteCondition('"abc123"', 10, SECOND + 1), NOW, "PreconditionFailed"),
    # No object: nothing to delete, no error (204), whatever the condition.
    (DeleteCondition(etag='"abc123"'), None, None),
    (DeleteCondition(etag="*"), None, None),
    (DeleteCondition(size=10), None, None),
    (DeleteCondition(modified=SECOND), None, None),
])
def test_delete_refusal(condition: DeleteCondition | None, current: Current | None,
                        want: str | None) -> None:
    assert delete_refusal(condition, current) == want


def test_parse_delete_with_conditions() -> None:
    body = (b'<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            b"<Object><Key>plain</Key></Object>"
            b"<Object><Key>tagged</Key><ETag>&quot;abc123&quot;</ETag></Object>"
            b"<Object><ETag>abc123</ETag><Size>10</Size>"
            b"<LastModifiedTime>Tue, 14 Nov 2023 22:13:20 GMT</LastModifiedTime>"
            b"<Key> spaced </Key></Object>"
            b"<Object><Key>empty-etag</Key><ETag></ETag></Object>"
            b"</Delete>")
    request = parse_delete(body)
    assert request.objects == [
        ("plain", None),
        ("tagged", DeleteCondition(etag='"abc123"')),
        (" spaced ", DeleteCondition("abc123", 10, SECOND)),
        ("empty-etag", DeleteCondition(etag="")),  # matches no object: never a wildcard
    ]
    assert request.keys == ["plain", "tagged", " spaced ", "empty-etag"]
    assert delete_refusal(request.objects[3][1], NOW) == "PreconditionFailed"


@pytest.mark.parametrize("element", [b"<Size>big</Size>", b"<Size></Size>",
                                     b"<LastModifiedTime>soon</LastModifiedTime>"])
def test_bad_conditions_in_a_delete_body(element: bytes) -> None:
    with pytest.raises(S3Error) as exc:
        parse_delete(b"<Delete><Object><Key>k</Key>" + element + b"</Object></Delete>")
    assert exc.value.code == "InvalidArgument"
