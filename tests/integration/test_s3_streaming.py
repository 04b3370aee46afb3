"""Streaming uploads over a real (HTTPS) cluster: boto3's default aws-chunked
body with a CRC32 trailer, and bodies signed chunk by chunk
(STREAMING-AWS4-HMAC-SHA256-PAYLOAD), each checked before it commits; the
same bodies as the parts of multipart uploads."""

from __future__ import annotations

import base64
import datetime
import hashlib
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import boto3.s3.transfer
import httpx
import pytest
from botocore.config import Config
from s3_clients import STEADY, make_key

from cluster import Cluster
from tossit.brain.s3.signature import (
    canonical_request,
    chunk_string_to_sign,
    sign,
    signing_key,
    string_to_sign,
    uri_encode,
)

REGION = "us-east-1"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    import trustme

    root = tmp_path_factory.mktemp("s3tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    tls = root / "tls"
    tls.mkdir()
    ca.cert_pem.write_to_path(str(tls / "ca.pem"))
    cert.private_key_pem.write_to_path(str(tls / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tls / "cert.pem"))
    c = Cluster(root / "c", nodes=3, replicas=2, chunk_size="64KiB", tls=tls, brain_args=STEADY)
    c.start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def key(cluster: Cluster) -> tuple[str, str]:
    return make_key(cluster)


@pytest.fixture(scope="module")
def s3(cluster: Cluster, key: tuple[str, str]) -> Any:
    assert cluster.tls is not None
    client = boto3.client(
        "s3", endpoint_url=cluster.s3_url, aws_access_key_id=key[0],
        aws_secret_access_key=key[1], region_name=REGION, verify=str(cluster.tls / "ca.pem"),
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
    client.create_bucket(Bucket="stream")
    return client


def test_boto3_sends_a_crc32_trailer_over_https(s3: Any, tmp_path: Path) -> None:
    sent: list[dict[str, str]] = []
    s3.meta.events.register("before-send.s3.PutObject",
                            lambda request, **_: sent.append(
                                {k.lower(): v for k, v in request.headers.items()}))
    data = bytes(range(256)) * 1500  # several chunks of the cluster and of aws-chunked
    path = tmp_path / "up.bin"
    path.write_bytes(data)
    with open(path, "rb") as fh:
        s3.upload_fileobj(fh, "stream", "up.bin")
    s3.meta.events.unregister("before-send.s3.PutObject")
    (headers,) = sent
    assert headers["x-amz-content-sha256"] == b"STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert headers["x-amz-trailer"] == b"x-amz-checksum-crc32"
    got = s3.get_object(Bucket="stream", Key="up.bin")
    assert got["Body"].read() == data
    assert got["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'


class Signer:
    """Signs a request as an SDK does (the parts unit-tested against AWS's vectors)."""

    def __init__(self, key: tuple[str, str]) -> None:
        self.key_id, self.secret = key
        now = datetime.datetime.now(datetime.UTC)
        self.amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        self.scope = f"{self.amz_date[:8]}/{REGION}/s3/aws4_request"
        self.signing_key = signing_key(self.secret, self.amz_date[:8], REGION)

    def headers(self, method: str, host: str, path: str, payload: str,
                extra: dict[str, str], query: str = "") -> tuple[dict[str, str], str]:
        """``query``: canonical already (sorted, encoded)."""
        headers = {"host": host, "x-amz-date": self.amz_date, "x-amz-content-sha256": payload,
                   **extra}
        names = sorted(headers)
        canonical = canonical_request(method, uri_encode(path), query, names,
                                      list(headers.items()), payload)
        seed = sign(self.signing_key, string_to_sign(self.amz_date, self.scope, canonical))
        headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={self.key_id}/{self.scope}, "
                                    f"SignedHeaders={';'.join(names)}, Signature={seed}")
        del headers["host"]
        return headers, seed

    def chunks(self, seed: str, pieces: list[bytes]) -> bytes:
        out, previous = b"", seed
        for piece in [*pieces, b""]:
            previous = sign(self.signing_key, chunk_string_to_sign(
                self.amz_date, self.scope, previous, hashlib.sha256(piece).hexdigest()))
            out += f"{len(piece):x};chunk-signature={previous}\r\n".encode() + piece + b"\r\n"
        return out


def _put(cluster: Cluster, key: tuple[str, str], name: str, payload: str, body: bytes,
         decoded: int, pieces_signed: list[bytes] | None = None,
         extra: dict[str, str] | None = None, query: str = "",
         tamper: int | None = None) -> httpx.Response:
    """A PUT of an aws-chunked body (a part with ``query``); ``tamper``: a byte
    of the signed body to flip after signing."""
    signer = Signer(key)
    host = cluster.s3_url.split("://")[1]
    headers, seed = signer.headers("PUT", host, f"/stream/{name}", payload, {
        "content-encoding": "aws-chunked", "x-amz-decoded-content-length": str(decoded),
        **(extra or {})}, query)
    if pieces_signed is not None:
        body = signer.chunks(seed, pieces_signed)
    if tamper is not None:
        body = body[:tamper] + bytes([body[tamper] ^ 1]) + body[tamper + 1:]
    url = f"{cluster.s3_url}/stream/{name}" + (f"?{query}" if query else "")
    return httpx.put(url, content=body, headers=headers, verify=cluster.verify, timeout=60)


def test_signed_chunks_upload_and_a_tampered_chunk_is_refused(
        cluster: Cluster, key: tuple[str, str], s3: Any) -> None:
    pieces = [b"x" * 65536, b"y" * 70000, b"z" * 10]
    data = b"".join(pieces)
    ok = _put(cluster, key, "signed.bin", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", b"", len(data),
              pieces)
    assert ok.status_code == 200, ok.text
    assert s3.get_object(Bucket="stream", Key="signed.bin")["Body"].read() == data
    signer = Signer(key)
    host = cluster.s3_url.split("://")[1]
    headers, seed = signer.headers("PUT", host, "/stream/tampered.bin",
                                   "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", {
                                       "content-encoding": "aws-chunked",
                                       "x-amz-decoded-content-length": str(len(data))})
    body = bytearray(signer.chunks(seed, pieces))
    body[100] ^= 1
    bad = httpx.put(f"{cluster.s3_url}/stream/tampered.bin", content=bytes(body),
                    headers=headers, verify=cluster.verify, timeout=60)
    assert bad.status_code == 403 and b"<Code>SignatureDoesNotMatch</Code>" in bad.content
    names = [o["Key"] for o in s3.list_objects_v2(Bucket="stream")["Contents"]]
    assert "tampered.bin" not in names


def _unsigned_trailer_body(data: bytes, crc: bytes) -> bytes:
    body = b""
    for i in range(0, len(data), 8192):
        piece = data[i:i + 8192]
        body += f"{len(piece):x}".encode() + b"\r\n" + piece + b"\r\n"
    return body + b"0\r\nx-amz-checksum-crc32:" + base64.b64encode(crc) + b"\r\n\r\n"


def test_a_wrong_trailer_checksum_commits_nothing(cluster: Cluster, key: tuple[str, str],
                                                  s3: Any) -> None:
    data = b"trailer checked " * 5000
    extra = {"x-amz-trailer": "x-amz-checksum-crc32"}
    wrong = _put(cluster, key, "crc.bin", "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                 _unsigned_trailer_body(data, b"\0\0\0\0"), len(data), extra=extra)
    assert wrong.status_code == 400 and b"<Code>BadDigest</Code>" in wrong.content
    listed = s3.list_objects_v2(Bucket="stream", Prefix="crc.bin")
    assert listed["KeyCount"] == 0
    short = _put(cluster, key, "crc.bin", "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                 _unsigned_trailer_body(data, zlib.crc32(data).to_bytes(4, "big")),
                 len(data) + 1, extra=extra)
    assert short.status_code == 400 and b"<Code>IncompleteBody</Code>" in short.content
    right = _put(cluster, key, "crc.bin", "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                 _unsigned_trailer_body(data, zlib.crc32(data).to_bytes(4, "big")), len(data),
                 extra=extra)
    assert right.status_code == 200, right.text
    assert s3.get_object(Bucket="stream", Key="crc.bin")["Body"].read() == data


def test_a_payload_hash_that_does_not_match_commits_nothing(
        cluster: Cluster, key: tuple[str, str], s3: Any) -> None:
    signer = Signer(key)
    host = cluster.s3_url.split("://")[1]
    claimed = hashlib.sha256(b"what was signed").hexdigest()
    headers, _ = signer.headers("PUT", host, "/stream/sha.bin", claimed, {})
    resp = httpx.put(f"{cluster.s3_url}/stream/sha.bin", content=b"what was sent",
                     headers=headers, verify=cluster.verify, timeout=60)
    assert resp.status_code == 400 and b"<Code>XAmzContentSHA256Mismatch</Code>" in resp.content
    assert s3.list_objects_v2(Bucket="stream", Prefix="sha.bin")["KeyCount"] == 0


def test_parts_stream_as_put_bodies_do(cluster: Cluster, key: tuple[str, str], s3: Any,
                                       tmp_path: Path) -> None:
    """boto3's TransferManager sends its parts with a CRC32 trailer over HTTPS;
    a part may also be signed chunk by chunk. Each is checked as PutObject's
    body is: a tampered chunk or a wrong trailer stores no part."""
    sent: list[dict[str, str]] = []
    s3.meta.events.register("before-send.s3.UploadPart", lambda request, **_: sent.append(
        {k.lower(): v for k, v in request.headers.items()}))
    data = bytes(range(251)) * (45 * 1024)  # 11 MiB and a bit: 3 parts of 5 MiB at most
    path = tmp_path / "parts.bin"
    path.write_bytes(data)
    mib5 = 5 * 1024 * 1024
    with open(path, "rb") as fh:
        s3.upload_fileobj(fh, "stream", "parts.bin", Config=boto3.s3.transfer.TransferConfig(
            multipart_threshold=mib5, multipart_chunksize=mib5))
    s3.meta.events.unregister("before-send.s3.UploadPart")
    assert len(sent) == 3
    assert {h["x-amz-content-sha256"] for h in sent} == {b"STREAMING-UNSIGNED-PAYLOAD-TRAILER"}
    got = s3.get_object(Bucket="stream", Key="parts.bin")
    assert got["Body"].read() == data and got["ETag"].endswith('-3"')

    uid = s3.create_multipart_upload(Bucket="stream", Key="signed-parts.bin")["UploadId"]
    first = [data[i:i + 65536] for i in range(0, mib5, 65536)]
    last = b"the last part " * 100
    crc = zlib.crc32(last).to_bytes(4, "big")
    trailer = {"x-amz-trailer": "x-amz-checksum-crc32"}

    def part(number: int, payload: str, body: bytes, decoded: int,
             pieces: list[bytes] | None = None, extra: dict[str, str] | None = None,
             tamper: int | None = None) -> httpx.Response:
        return _put(cluster, key, "signed-parts.bin", payload, body, decoded, pieces, extra,
                    query=f"partNumber={number}&uploadId={uid}", tamper=tamper)

    bad = part(1, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", b"", mib5, first, tamper=200)
    assert bad.status_code == 403 and b"<Code>SignatureDoesNotMatch</Code>" in bad.content
    wrong = part(2, "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                 _unsigned_trailer_body(last, b"\0\0\0\0"), len(last), extra=trailer)
    assert wrong.status_code == 400 and b"<Code>BadDigest</Code>" in wrong.content
    assert s3.list_parts(Bucket="stream", Key="signed-parts.bin", UploadId=uid).get(
        "Parts", []) == []
    one = part(1, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", b"", mib5, first)
    two = part(2, "STREAMING-UNSIGNED-PAYLOAD-TRAILER", _unsigned_trailer_body(last, crc),
               len(last), extra=trailer)
    assert one.status_code == two.status_code == 200, (one.text, two.text)
    assert two.headers["x-amz-checksum-crc32"] == base64.b64encode(crc).decode()
    s3.complete_multipart_upload(Bucket="stream", Key="signed-parts.bin", UploadId=uid,
                                 MultipartUpload={"Parts": [
                                     {"PartNumber": 1, "ETag": one.headers["etag"]},
                                     {"PartNumber": 2, "ETag": two.headers["etag"]}]})
    assert s3.get_object(Bucket="stream", Key="signed-parts.bin")["Body"].read() == \
        data[:mib5] + last
