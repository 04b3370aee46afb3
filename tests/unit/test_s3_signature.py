"""SigV4 as the S3 API checks it, against botocore's signer: requests of many
shapes signed by botocore must verify, and any change to them must not."""

from __future__ import annotations

import datetime
import hashlib
import time
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import botocore.auth
import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tossit.brain.s3.errors import S3Error
from tossit.brain.s3.signature import (
    SignedRequest,
    canonical_query,
    parse_authorization,
    parse_presigned,
    signed_value,
    signing_key,
    verify,
)

KEY_ID, SECRET = "TKEXAMPLEKEYID0000AB", "a-secret-of-the-example-key/with+signs"
CREDS = Credentials(KEY_ID, SECRET)
NOW = datetime.datetime(2026, 12, 6, 9, 30, 0)
NOW_TS = NOW.replace(tzinfo=datetime.UTC).timestamp()


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: NOW)


def _parts(req: Any) -> tuple[str, bytes, str, list[tuple[str, str]]]:
    url = urlsplit(req.url)
    headers = [(k.lower(), v.decode() if isinstance(v, bytes) else v)
               for k, v in req.headers.items()]
    headers.append(("host", url.netloc))
    return req.method, url.path.encode(), url.query, headers


def signed(method: str, url: str, headers: dict[str, str] | None = None,
           body: bytes = b"", region: str = "us-east-1") -> tuple[Any, SignedRequest]:
    req = AWSRequest(method=method, url=url, headers=headers or {}, data=body)
    S3SigV4Auth(CREDS, "s3", region).add_auth(req)
    _, _, _, hdrs = _parts(req)
    lower = dict(hdrs)
    return req, parse_authorization(lower["authorization"], lower)


SHAPES = [
    ("GET", "http://127.0.0.1:9000/", {}),
    ("GET", "http://127.0.0.1:9000/bucket", {}),
    ("GET", "http://127.0.0.1:9000/bucket?list-type=2&prefix=a%2Fb&delimiter=%2F", {}),
    ("GET", "http://127.0.0.1:9000/bucket?location", {}),
    ("PUT", "http://127.0.0.1:9000/bucket/key.txt", {"Content-Type": "text/plain"}),
    ("PUT", "http://127.0.0.1:9000/bucket/dir/sub%20dir/f%2Bplus.txt",
     {"x-amz-meta-owner": "ana  and   bob "}),
    ("GET", "http://127.0.0.1:9000/bucket/%C3%BCn%C3%AFc%C3%B6d%C3%A9/%E6%97%A5.txt", {}),
    ("GET", "http://127.0.0.1:9000/bucket/k?response-content-type=text%2Fhtml", {}),
    ("HEAD", "http://127.0.0.1:9000/bucket/a~b_c-d.e", {"Range": "bytes=0-9"}),
    ("DELETE", "http://127.0.0.1:9000/bucket/key", {}),
    ("POST", "http://127.0.0.1:9000/bucket?delete", {"Content-MD5": "abc="}),
    ("GET", "http://127.0.0.1:9000/bucket?list-type=2&start-after=a%20b&max-keys=5", {}),
    ("GET", "http://bucket.s3.example.lan:9000/key", {}),
]


@pytest.mark.parametrize(("method", "url", "headers"), SHAPES)
def test_botocore_signatures_verify(method: str, url: str, headers: dict[str, str]) -> None:
    body = b"<Delete/>" if method == "POST" else b""
    req, claim = signed(method, url, headers, body)
    m, path, query, hdrs = _parts(req)
    done = verify(claim, SECRET, m, path, query, hdrs, NOW_TS + 5)
    assert done.key_id == KEY_ID
    assert claim.payload == hashlib.sha256(body).hexdigest()


def test_non_ascii_header_values_verify_as_the_bytes_sent() -> None:
    # botocore signs the characters and sends them as UTF-8; the server gets
    # bytes (ASGI). \xa0 is in 'à' read as latin-1: it must not count as a space.
    value = "Hello World\xe9 \xe0 \u65e5"
    req, claim = signed("PUT", "http://127.0.0.1:9000/bucket/k", {"x-amz-meta-meta1": value})
    m, path, query, hdrs = _parts(req)
    wire = [(k, v.encode()) for k, v in hdrs]
    got = [(k, signed_value(raw)) for k, raw in wire]
    assert verify(claim, SECRET, m, path, query, got, NOW_TS).key_id == KEY_ID
    as_latin1 = [(k, raw.decode("latin-1")) for k, raw in wire]  # the old decoding
    with pytest.raises(S3Error) as exc:
        verify(claim, SECRET, m, path, query, as_latin1, NOW_TS)
    assert exc.value.code == "SignatureDoesNotMatch"


@pytest.mark.parametrize(("method", "url", "headers"), SHAPES)
def test_tampered_requests_do_not_verify(method: str, url: str, headers: dict[str, str]) -> None:
    req, claim = signed(method, url, headers)
    m, path, query, hdrs = _parts(req)
    tampered = [
        ("GET" if m != "GET" else "PUT", path, query, hdrs),
        (m, path + b"x", query, hdrs),
        (m, path, query + "&extra=1", hdrs),
        (m, path, query, [(k, v + "x" if k == "x-amz-date" else v) for k, v in hdrs]),
        (m, path, query, [(k, "other:1" if k == "host" else v) for k, v in hdrs]),
    ]
    for t in tampered:
        with pytest.raises(S3Error) as exc:
            verify(claim, SECRET, *t, NOW_TS)
        assert exc.value.code in ("SignatureDoesNotMatch", "AccessDenied")
    with pytest.raises(S3Error) as exc:
        verify(claim, SECRET + "x", m, path, query, hdrs, NOW_TS)
    assert exc.value.code == "SignatureDoesNotMatch"


def test_clock_skew_beyond_15_minutes() -> None:
    req, claim = signed("GET", "http://127.0.0.1:9000/bucket")
    parts = _parts(req)
    verify(claim, SECRET, *parts, NOW_TS + 14 * 60)
    for skew in (16 * 60, -16 * 60):
        with pytest.raises(S3Error) as exc:
            verify(claim, SECRET, *parts, NOW_TS + skew)
        assert (exc.value.code, exc.value.status) == ("RequestTimeTooSkewed", 403)


def presigned(method: str, url: str, expires: int = 300) -> tuple[str, bytes, str, list[
        tuple[str, str]]]:
    req = AWSRequest(method=method, url=url)
    S3SigV4QueryAuth(CREDS, "s3", "us-east-1", expires=expires).add_auth(req)
    return _parts(req)


def test_presigned_urls() -> None:
    m, path, query, hdrs = presigned("GET", "http://127.0.0.1:9000/bucket/a%20b.txt")
    claim = parse_presigned(dict(parse_qsl(query)))
    assert claim.presigned and claim.expires == 300
    assert verify(claim, SECRET, m, path, query, hdrs, NOW_TS + 299).key_id == KEY_ID
    with pytest.raises(S3Error) as exc:
        verify(claim, SECRET, m, path, query, hdrs, NOW_TS + 301)
    assert (exc.value.code, str(exc.value)) == ("AccessDenied", "Request has expired")
    with pytest.raises(S3Error) as exc:
        verify(claim, SECRET, m, path.replace(b"a%20b", b"a%20c"), query, hdrs, NOW_TS)
    assert exc.value.code == "SignatureDoesNotMatch"
    with pytest.raises(S3Error) as exc:
        verify(claim, SECRET, "PUT", path, query, hdrs, NOW_TS)
    assert exc.value.code == "SignatureDoesNotMatch"


@pytest.mark.parametrize(("query", "problem"), [
    ({}, "X-Amz-Algorithm"),
    ({"X-Amz-Algorithm": "AWS4-HMAC-SHA256"}, "lacks"),
    ({"X-Amz-Algorithm": "AWS4-HMAC-SHA256", "X-Amz-Credential": "TK/20261206/r/s3/aws4_request",
      "X-Amz-Date": "20261206T000000Z", "X-Amz-Expires": "604801", "X-Amz-SignedHeaders": "host",
      "X-Amz-Signature": "00"}, "604800"),
    ({"X-Amz-Algorithm": "AWS4-HMAC-SHA256", "X-Amz-Credential": "nonsense",
      "X-Amz-Date": "20261206T000000Z", "X-Amz-Expires": "60", "X-Amz-SignedHeaders": "host",
      "X-Amz-Signature": "00"}, "credential"),
])
def test_malformed_presigned_queries(query: dict[str, str], problem: str) -> None:
    with pytest.raises(S3Error) as exc:
        parse_presigned(query)
    assert exc.value.code == "AuthorizationQueryParametersError"
    assert problem in exc.value.message


@pytest.mark.parametrize(("header", "code"), [
    ("AWS TK:abc", "NotImplemented"),
    ("Bearer xyz", "AuthorizationHeaderMalformed"),
    ("AWS4-HMAC-SHA256 Credential=TK/20261206/us-east-1/s3/aws4_request",
     "AuthorizationHeaderMalformed"),
    ("AWS4-HMAC-SHA256 Credential=TK/2026/us-east-1/s3/aws4_request, SignedHeaders=host, "
     "Signature=00", "AuthorizationHeaderMalformed"),
    ("AWS4-HMAC-SHA256 Credential=TK/20261206/us-east-1/s3/aws4_request, SignedHeaders=x-amz-date, "
     "Signature=00", "AuthorizationHeaderMalformed"),
])
def test_malformed_authorization(header: str, code: str) -> None:
    headers = {"x-amz-date": "20261206T093000Z", "x-amz-content-sha256": "UNSIGNED-PAYLOAD"}
    with pytest.raises(S3Error) as exc:
        parse_authorization(header, headers)
    assert exc.value.code == code


def test_canonical_query_sorts_and_reencodes() -> None:
    assert canonical_query("b=2&a=1&a=0") == "a=0&a=1&b=2"
    assert canonical_query("prefix=a b&x=%7E&empty") == "empty=&prefix=a%20b&x=~"
    assert canonical_query("X-Amz-Signature=s&k=v", drop="X-Amz-Signature") == "k=v"


def test_signing_key_is_derived_once_per_day_and_region() -> None:
    signing_key.cache_clear()
    first = signing_key(SECRET, "20261206", "us-east-1")
    assert signing_key(SECRET, "20261206", "us-east-1") is first
    assert signing_key.cache_info().hits == 1
    assert signing_key(SECRET, "20261207", "us-east-1") != first


def test_verification_is_cheap() -> None:
    """The benchmark's budget (SigV4 at most 10% over the REST path) needs a
    check in tens of microseconds: the cached key leaves one HMAC and a hash."""
    req, claim = signed("GET", "http://127.0.0.1:9000/bucket/some/key.txt")
    parts = _parts(req)
    verify(claim, SECRET, *parts, NOW_TS)
    start = time.perf_counter()
    for _ in range(2000):
        verify(claim, SECRET, *parts, NOW_TS)
    per_call = (time.perf_counter() - start) / 2000
    assert per_call < 500e-6, per_call
