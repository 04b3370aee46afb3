"""S3 multipart uploads with boto3, against a real brain and nodes: parts out
of order, ListParts pages, completion (bytes, the ``"…-N"`` ETag, metadata),
the errors clients branch on (code and status), abort, ListMultipartUploads,
UploadPartCopy of a range, a retried completion, and boto3's TransferManager
sending parts concurrently."""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
from s3_clients import STEADY, blob, error_of, make_key, s3_client

from cluster import Cluster

MiB = 1024 * 1024
PART = 5 * MiB  # S3's smallest part but the last


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("s3mp"), nodes=3, replicas=2, chunk_size="1MiB",
                brain_args=STEADY)
    c.start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def s3(cluster: Cluster) -> Any:
    return s3_client(cluster, make_key(cluster))


@pytest.fixture
def bucket(s3: Any, request: pytest.FixtureRequest) -> str:
    name = request.node.name.lower().replace("_", "-")[:50]
    s3.create_bucket(Bucket=name)
    return name


def s3_etag(parts: list[bytes]) -> str:
    joined = b"".join(hashlib.md5(p).digest() for p in parts)
    return f'"{hashlib.md5(joined).hexdigest()}-{len(parts)}"'


def keys_of(s3: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_parts_out_of_order_listed_in_pages_then_completed(s3: Any, bucket: str) -> None:
    parts = [blob(PART, 1), blob(PART, 2), blob(123_456, 3)]
    up = s3.create_multipart_upload(Bucket=bucket, Key="movie.mkv", ContentType="video/x-mkv",
                                    Metadata={"owner": "ana"}, CacheControl="max-age=60")
    uid = up["UploadId"]
    etags = {}
    for number in (3, 1, 2):
        etags[number] = s3.upload_part(Bucket=bucket, Key="movie.mkv", UploadId=uid,
                                       PartNumber=number, Body=parts[number - 1])["ETag"]
    assert etags[2] == f'"{hashlib.md5(parts[1]).hexdigest()}"'
    # Invisible until complete: no object, no listing entry.
    assert keys_of(s3, bucket) == []
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="movie.mkv")
    assert error_of(exc)[1] == 404

    first = s3.list_parts(Bucket=bucket, Key="movie.mkv", UploadId=uid, MaxParts=2)
    assert [p["PartNumber"] for p in first["Parts"]] == [1, 2]
    assert first["IsTruncated"] is True and first["NextPartNumberMarker"] == 2
    assert first["MaxParts"] == 2 and first["UploadId"] == uid
    rest = s3.list_parts(Bucket=bucket, Key="movie.mkv", UploadId=uid, MaxParts=2,
                         PartNumberMarker=first["NextPartNumberMarker"])
    assert [(p["PartNumber"], p["Size"], p["ETag"]) for p in rest["Parts"]] == [
        (3, 123_456, etags[3])]
    assert rest["IsTruncated"] is False

    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="movie.mkv", UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etags[n]} for n in (1, 2, 3)]})
    assert done["ETag"] == s3_etag(parts) and done["Key"] == "movie.mkv"
    got = s3.get_object(Bucket=bucket, Key="movie.mkv")
    assert got["Body"].read() == b"".join(parts)
    assert got["ETag"] == s3_etag(parts) and got["ContentLength"] == 2 * PART + 123_456
    assert got["ContentType"] == "video/x-mkv" and got["Metadata"] == {"owner": "ana"}
    assert got["CacheControl"] == "max-age=60"
    ranged = s3.get_object(Bucket=bucket, Key="movie.mkv", Range=f"bytes={PART - 10}-{PART + 9}")
    assert ranged["Body"].read() == parts[0][-10:] + parts[1][:10]
    # Completed, the upload is gone from the listings.
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_completion_errors_change_nothing(s3: Any, bucket: str) -> None:
    key = "e.bin"
    uid = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    small = [s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=n,
                            Body=blob(1000, n))["ETag"] for n in (1, 2)]

    def complete(parts: list[dict[str, Any]], upload_id: str = uid) -> Any:
        return s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                            MultipartUpload={"Parts": parts})

    with pytest.raises(ClientError) as exc:
        complete([{"PartNumber": 2, "ETag": small[1]}, {"PartNumber": 1, "ETag": small[0]}])
    assert error_of(exc) == ("InvalidPartOrder", 400)
    with pytest.raises(ClientError) as exc:
        complete([{"PartNumber": 1, "ETag": small[0]}, {"PartNumber": 7, "ETag": small[1]}])
    assert error_of(exc) == ("InvalidPart", 400)
    with pytest.raises(ClientError) as exc:
        complete([{"PartNumber": 1, "ETag": small[1]}])  # part 2's ETag
    assert error_of(exc) == ("InvalidPart", 400)
    with pytest.raises(ClientError) as exc:
        complete([{"PartNumber": 1, "ETag": small[0]}, {"PartNumber": 2, "ETag": small[1]}])
    assert error_of(exc) == ("EntityTooSmall", 400)
    with pytest.raises(ClientError) as exc:
        complete([{"PartNumber": 1, "ETag": small[0]}], upload_id="0" * 32)
    assert error_of(exc) == ("NoSuchUpload", 404)
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=10_001, Body=b"x")
    assert error_of(exc) == ("InvalidArgument", 400)
    with pytest.raises(ClientError) as exc:  # the right id under another key
        s3.list_parts(Bucket=bucket, Key="other", UploadId=uid)
    assert error_of(exc) == ("NoSuchUpload", 404)
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=3, Body=b"abc",
                       ContentMD5="1B2M2Y8AsgTpgAmY7PhCfg==")  # the MD5 of b""
    assert error_of(exc) == ("BadDigest", 400)
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=3, Body=b"abc",
                       ChecksumCRC32="AAAAAQ==")
    assert error_of(exc) == ("BadDigest", 400)
    crc = base64.b64encode(zlib.crc32(b"abc").to_bytes(4, "big")).decode()
    sent = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=3, Body=b"abc",
                          ChecksumCRC32=crc)
    assert sent["ChecksumCRC32"] == crc  # checked, and given back as S3 does
    with pytest.raises(ClientError) as exc:  # a whole-object checksum is not checked: 501
        s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=uid, ChecksumCRC32=crc,
                                     MultipartUpload={"Parts": [{"PartNumber": 3,
                                                                 "ETag": sent["ETag"]}]})
    assert error_of(exc) == ("NotImplemented", 501)
    assert keys_of(s3, bucket) == []
    # Refused completions left the upload whole: the last part alone completes it.
    assert [p["PartNumber"] for p in s3.list_parts(Bucket=bucket, Key=key,
                                                   UploadId=uid)["Parts"]] == [1, 2, 3]
    complete([{"PartNumber": 2, "ETag": small[1]}])
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == blob(1000, 2)


def test_a_retried_completion_succeeds_again(s3: Any, bucket: str) -> None:
    """aws-cli retries a completion whose answer it lost: the same request gets
    the same success; other parts, or an object since replaced, do not."""
    uid = s3.create_multipart_upload(Bucket=bucket, Key="r")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="r", UploadId=uid, PartNumber=1,
                          Body=b"retried")["ETag"]
    parts = {"Parts": [{"PartNumber": 1, "ETag": etag}]}
    first = s3.complete_multipart_upload(Bucket=bucket, Key="r", UploadId=uid,
                                         MultipartUpload=parts)
    again = s3.complete_multipart_upload(Bucket=bucket, Key="r", UploadId=uid,
                                         MultipartUpload=parts)
    assert again["ETag"] == first["ETag"] == s3_etag([b"retried"])
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(Bucket=bucket, Key="r", UploadId=uid, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": '"' + "0" * 32 + '"'}]})
    assert error_of(exc) == ("NoSuchUpload", 404)
    s3.put_object(Bucket=bucket, Key="r", Body=b"replaced")
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(Bucket=bucket, Key="r", UploadId=uid,
                                     MultipartUpload=parts)
    assert error_of(exc) == ("NoSuchUpload", 404)
    assert s3.get_object(Bucket=bucket, Key="r")["Body"].read() == b"replaced"


def test_abort_and_list_uploads(s3: Any, bucket: str) -> None:
    ids: dict[str, list[str]] = {}
    for key in ("a/1", "a/2", "a/2", "b/1"):
        ids.setdefault(key, []).append(
            s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"])
    listed = s3.list_multipart_uploads(Bucket=bucket)
    assert [(u["Key"], u["UploadId"]) for u in listed["Uploads"]] == [
        ("a/1", ids["a/1"][0]), ("a/2", ids["a/2"][0]), ("a/2", ids["a/2"][1]),
        ("b/1", ids["b/1"][0])]
    page = s3.list_multipart_uploads(Bucket=bucket, Prefix="a/", MaxUploads=2)
    assert [u["Key"] for u in page["Uploads"]] == ["a/1", "a/2"] and page["IsTruncated"]
    assert page["MaxUploads"] == 2 and page["Prefix"] == "a/"
    after = s3.list_multipart_uploads(Bucket=bucket, Prefix="a/",
                                      KeyMarker=page["NextKeyMarker"],
                                      UploadIdMarker=page["NextUploadIdMarker"])
    assert [u["UploadId"] for u in after["Uploads"]] == [ids["a/2"][1]]
    assert not after["IsTruncated"]
    with pytest.raises(ClientError) as exc:
        s3.list_multipart_uploads(Bucket=bucket, Delimiter="/")
    assert error_of(exc) == ("NotImplemented", 501)

    s3.upload_part(Bucket=bucket, Key="b/1", UploadId=ids["b/1"][0], PartNumber=1, Body=b"x")
    assert s3.abort_multipart_upload(Bucket=bucket, Key="b/1", UploadId=ids["b/1"][0])[
        "ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as exc:
        s3.list_parts(Bucket=bucket, Key="b/1", UploadId=ids["b/1"][0])
    assert error_of(exc) == ("NoSuchUpload", 404)
    with pytest.raises(ClientError) as exc:
        s3.abort_multipart_upload(Bucket=bucket, Key="b/1", UploadId=ids["b/1"][0])
    assert error_of(exc) == ("NoSuchUpload", 404)
    assert "b/1" not in [u["Key"] for u in
                         s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]
    assert keys_of(s3, bucket) == []


def test_upload_part_copy_with_a_range(s3: Any, bucket: str) -> None:
    source = blob(7 * MiB + 99, 9)
    s3.put_object(Bucket=bucket, Key="src", Body=source)
    uid = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    lo, hi = 1000, 1000 + PART - 1  # cuts chunks at both ends
    one = s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=uid, PartNumber=1,
                              CopySource={"Bucket": bucket, "Key": "src"},
                              CopySourceRange=f"bytes={lo}-{hi}")["CopyPartResult"]
    assert one["ETag"] == f'"{hashlib.md5(source[lo:hi + 1]).hexdigest()}"'
    two = s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=uid, PartNumber=2,
                              CopySource={"Bucket": bucket, "Key": "src"})["CopyPartResult"]
    with pytest.raises(ClientError) as exc:
        s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=uid, PartNumber=3,
                            CopySource={"Bucket": bucket, "Key": "src"},
                            CopySourceRange=f"bytes=0-{len(source)}")
    assert error_of(exc) == ("InvalidRange", 416)  # past the end, as s3-tests has it
    with pytest.raises(ClientError) as exc:
        s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=uid, PartNumber=3,
                            CopySource={"Bucket": bucket, "Key": "src"},
                            CopySourceIfMatch='"' + "0" * 32 + '"')
    assert error_of(exc) == ("PreconditionFailed", 412)
    done = s3.complete_multipart_upload(Bucket=bucket, Key="dst", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": one["ETag"]}, {"PartNumber": 2, "ETag": two["ETag"]}]})
    want = source[lo:hi + 1] + source
    assert done["ETag"] == s3_etag([source[lo:hi + 1], source])
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == want


def test_upload_file_sends_concurrent_parts(cluster: Cluster, s3: Any, bucket: str,
                                            tmp_path: Path) -> None:
    """boto3's TransferManager: 5 MiB parts, 4 threads, its default checksums."""
    def uploads_counted() -> tuple[float, float]:
        text = cluster.http.get("/metrics").text
        ok = sum(float(x.split()[-1]) for x in text.splitlines()
                 if x.startswith('tossit_uploads_total{result="ok"}'))
        size = sum(float(x.split()[-1]) for x in text.splitlines()
                   if x.startswith("tossit_upload_bytes_total "))
        return ok, size

    data = blob(23 * MiB + 7, 11)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    before = uploads_counted()
    config = TransferConfig(multipart_threshold=PART, multipart_chunksize=PART,
                            max_concurrency=4)
    s3.upload_file(str(path), bucket, "big.bin", Config=config,
                   ExtraArgs={"Metadata": {"k": "v"}, "ContentType": "application/x-big"})
    head = s3.head_object(Bucket=bucket, Key="big.bin")
    assert head["ETag"].endswith('-5"') and head["Metadata"] == {"k": "v"}
    assert head["ContentType"] == "application/x-big"
    # One completed upload counted once, with its bytes (not once per part).
    assert uploads_counted() == (before[0] + 1, before[1] + len(data))
    out = tmp_path / "back.bin"
    s3.download_file(bucket, "big.bin", str(out), Config=config)
    assert out.read_bytes() == data
