"""The S3 API with boto3, against a real brain and nodes: buckets, objects,
ranges, conditions, metadata, copies, batch deletes, listings, presigned URLs
and the errors clients branch on (by code and status)."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import botocore.auth
import httpx
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from s3_clients import STEADY, blob, error_of, make_key, s3_client

from cluster import Cluster, wait_until

CHUNK = 64 * 1024  # small chunks: a few hundred KiB span several


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("s3"), nodes=3, replicas=2, chunk_size="64KiB",
                brain_args=["--s3-domain", "s3.test", *STEADY])
    c.start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def key(cluster: Cluster) -> tuple[str, str]:
    return make_key(cluster)


@pytest.fixture(scope="module")
def s3(cluster: Cluster, key: tuple[str, str]) -> Any:
    return s3_client(cluster, key)


@pytest.fixture
def bucket(s3: Any, request: pytest.FixtureRequest) -> str:
    name = request.node.name.lower().replace("_", "-")[:50]
    s3.create_bucket(Bucket=name)
    return name


# -- buckets ----------------------------------------------------------------


def test_buckets_create_head_list_location_delete(s3: Any) -> None:
    s3.create_bucket(Bucket="photos-2026")
    assert "photos-2026" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert s3.head_bucket(Bucket="photos-2026")["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert s3.get_bucket_location(Bucket="photos-2026")["LocationConstraint"] is None
    s3.put_object(Bucket="photos-2026", Key="a.jpg", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket="photos-2026")
    assert error_of(exc) == ("BucketNotEmpty", 409)
    s3.delete_object(Bucket="photos-2026", Key="a.jpg")
    s3.delete_bucket(Bucket="photos-2026")
    assert "photos-2026" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    with pytest.raises(ClientError) as exc:
        s3.head_bucket(Bucket="photos-2026")
    assert error_of(exc)[1] == 404
    with pytest.raises(ClientError) as exc:
        s3.list_objects_v2(Bucket="photos-2026")
    assert error_of(exc) == ("NoSuchBucket", 404)
    # The name can be used again, and the bucket is empty.
    s3.create_bucket(Bucket="photos-2026")
    assert s3.list_objects_v2(Bucket="photos-2026")["KeyCount"] == 0


def test_creating_a_bucket_again_is_ok_and_keeps_it(s3: Any) -> None:
    """us-east-1: AWS answers 200 to the owner making its bucket again, and
    changes nothing: the objects and the creation date stay."""
    s3.create_bucket(Bucket="made-twice")
    s3.put_object(Bucket="made-twice", Key="kept.txt", Body=b"still here")
    created = {b["Name"]: b["CreationDate"] for b in s3.list_buckets()["Buckets"]}
    again = s3.create_bucket(Bucket="made-twice")
    assert again["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert again["Location"] == "/made-twice"
    assert s3.get_object(Bucket="made-twice", Key="kept.txt")["Body"].read() == b"still here"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="made-twice")["Contents"]] == \
        ["kept.txt"]
    after = {b["Name"]: b["CreationDate"] for b in s3.list_buckets()["Buckets"]}
    assert after["made-twice"] == created["made-twice"]
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket="Made-Twice")
    assert error_of(exc) == ("InvalidBucketName", 400)


def test_list_buckets_in_pages_and_by_prefix(s3: Any) -> None:
    for name in ("paged-c", "paged-a", "paged-b"):
        s3.create_bucket(Bucket=name)
    whole = s3.list_buckets()
    everything = [b["Name"] for b in whole["Buckets"]]
    assert everything == sorted(everything) and "ContinuationToken" not in whole
    assert "Prefix" not in whole and len(everything) > 3
    paged: list[str] = []
    token: dict[str, str] = {}
    while True:
        page = s3.list_buckets(MaxBuckets=1, **token)
        assert len(page["Buckets"]) == 1
        paged += [b["Name"] for b in page["Buckets"]]
        if "ContinuationToken" not in page:
            break
        token = {"ContinuationToken": page["ContinuationToken"]}
    assert paged == everything  # in order, each once
    by_prefix = s3.list_buckets(Prefix="paged-")
    assert [b["Name"] for b in by_prefix["Buckets"]] == ["paged-a", "paged-b", "paged-c"]
    assert by_prefix["Prefix"] == "paged-" and "ContinuationToken" not in by_prefix
    first = s3.list_buckets(Prefix="paged-", MaxBuckets=2)
    assert [b["Name"] for b in first["Buckets"]] == ["paged-a", "paged-b"]
    rest = s3.list_buckets(Prefix="paged-", MaxBuckets=2,
                           ContinuationToken=first["ContinuationToken"])
    assert [b["Name"] for b in rest["Buckets"]] == ["paged-c"]
    assert "ContinuationToken" not in rest
    pages = s3.get_paginator("list_buckets").paginate(Prefix="paged-",
                                                      PaginationConfig={"PageSize": 1})
    assert [b["Name"] for p in pages for b in p["Buckets"]] == ["paged-a", "paged-b", "paged-c"]
    assert s3.list_buckets(Prefix="no-such-")["Buckets"] == []
    for bad in ({"MaxBuckets": 10_001}, {"MaxBuckets": 1, "ContinuationToken": "not a token"}):
        with pytest.raises(ClientError) as exc:
            s3.list_buckets(**bad)
        assert error_of(exc) == ("InvalidArgument", 400), bad


@pytest.mark.parametrize("name", ["ab", "Upper", "a..b", "-start", "end-", "192.168.1.1",
                                  "xn--bucket", "a" * 64, "under_score"])
def test_invalid_bucket_names(s3: Any, name: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket=name)
    assert error_of(exc) == ("InvalidBucketName", 400)


# -- objects ----------------------------------------------------------------


def test_conditional_put_if_none_match(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="once", Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="once", Body=b"second", IfNoneMatch="*")
    assert error_of(exc) == ("PreconditionFailed", 412)
    # With an ETag: refused by an object that has it, not by another (s3-tests).
    etag = s3.head_object(Bucket=bucket, Key="once")["ETag"]
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="once", Body=b"third", IfNoneMatch=etag)
    assert error_of(exc) == ("PreconditionFailed", 412)
    assert s3.get_object(Bucket=bucket, Key="once")["Body"].read() == b"first"
    s3.put_object(Bucket=bucket, Key="once", Body=b"fourth", IfNoneMatch='"badetag"')
    assert s3.get_object(Bucket=bucket, Key="once")["Body"].read() == b"fourth"
    s3.put_object(Bucket=bucket, Key="new", Body=b"fifth", IfNoneMatch=etag)
    assert s3.get_object(Bucket=bucket, Key="new")["Body"].read() == b"fifth"


def test_conditional_put_if_match(s3: Any, bucket: str) -> None:
    old = s3.put_object(Bucket=bucket, Key="doc", Body=b"version 1")["ETag"]
    new = s3.put_object(Bucket=bucket, Key="doc", Body=b"version 2", IfMatch=old)
    assert new["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert new["ETag"] == f'"{hashlib.md5(b"version 2").hexdigest()}"'
    assert s3.get_object(Bucket=bucket, Key="doc")["Body"].read() == b"version 2"
    # The ETag it had: 412, and the bytes there stay (across chunks too).
    data = blob(3 * CHUNK + 5, seed=9)
    s3.put_object(Bucket=bucket, Key="doc", Body=data, IfMatch=new["ETag"])
    for stale in (old, new["ETag"], '"nothing-like-it"'):
        with pytest.raises(ClientError) as exc:
            s3.put_object(Bucket=bucket, Key="doc", Body=b"lost update", IfMatch=stale)
        assert error_of(exc) == ("PreconditionFailed", 412)
    assert s3.get_object(Bucket=bucket, Key="doc")["Body"].read() == data
    # '*': any object will do; none there is NoSuchKey, '*' or not, and stores nothing.
    s3.put_object(Bucket=bucket, Key="doc", Body=b"star", IfMatch="*")
    assert s3.get_object(Bucket=bucket, Key="doc")["Body"].read() == b"star"
    for tag in ("*", old):
        with pytest.raises(ClientError) as exc:
            s3.put_object(Bucket=bucket, Key="missing", Body=b"x", IfMatch=tag)
        assert error_of(exc) == ("NoSuchKey", 404)
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["doc"]


def test_concurrent_if_match_writes_one_wins(s3: Any, bucket: str) -> None:
    """Read-modify-write by several clients at once: each sends the ETag it read;
    the commit checks it in its transaction, so exactly one replaces the object
    and the others are refused (no lost update)."""
    seen = s3.put_object(Bucket=bucket, Key="counter", Body=b"0")["ETag"]

    def write(n: int) -> str:
        try:
            s3.put_object(Bucket=bucket, Key="counter", Body=blob(CHUNK + n, seed=n),
                          IfMatch=seen)
        except ClientError as exc:
            return str(exc.response["Error"]["Code"])
        return f"won {n}"

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(write, range(8)))
    won = [r for r in results if r.startswith("won")]
    assert len(won) == 1, results
    assert results.count("PreconditionFailed") == 7, results
    n = int(won[0].split()[1])
    assert s3.get_object(Bucket=bucket, Key="counter")["Body"].read() == blob(CHUNK + n, seed=n)


def test_put_get_head_delete_across_chunks(s3: Any, bucket: str) -> None:
    data = blob(5 * CHUNK + 123)
    put = s3.put_object(Bucket=bucket, Key="dir/file.bin", Body=data)
    assert put["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    got = s3.get_object(Bucket=bucket, Key="dir/file.bin")
    assert got["Body"].read() == data
    assert got["ETag"] == put["ETag"] and got["ContentLength"] == len(data)
    head = s3.head_object(Bucket=bucket, Key="dir/file.bin")
    assert head["ContentLength"] == len(data) and head["ETag"] == put["ETag"]
    # An overwrite replaces it; a delete removes it, and deleting again is no error.
    s3.put_object(Bucket=bucket, Key="dir/file.bin", Body=b"short")
    assert s3.get_object(Bucket=bucket, Key="dir/file.bin")["Body"].read() == b"short"
    s3.delete_object(Bucket=bucket, Key="dir/file.bin")
    s3.delete_object(Bucket=bucket, Key="dir/file.bin")
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="dir/file.bin")
    assert error_of(exc) == ("NoSuchKey", 404)
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="dir/file.bin")
    assert error_of(exc)[1] == 404


def test_s3_requests_are_counted(cluster: Cluster, s3: Any, bucket: str) -> None:
    def count(operation: str, result: str) -> float:
        text = cluster.http.get("/metrics").text
        line = f'tossit_s3_requests_total{{operation="{operation}",result="{result}"}} '
        return sum(float(x.split()[-1]) for x in text.splitlines() if x.startswith(line))

    before = count("PutObject", "ok"), count("GetObject", "NoSuchKey")
    s3.put_object(Bucket=bucket, Key="counted", Body=b"1")
    with pytest.raises(ClientError):
        s3.get_object(Bucket=bucket, Key="not-there")
    assert (count("PutObject", "ok"), count("GetObject", "NoSuchKey")) == (
        before[0] + 1, before[1] + 1)


def test_empty_object_and_odd_keys(s3: Any, bucket: str) -> None:
    for k in ["empty", "spaces and+plus.txt", "ünïcödé/日本.txt", "a//b", "x?y#z%20"]:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode() if k != "empty" else b"")
        assert s3.get_object(Bucket=bucket, Key=k)["Body"].read() == (
            k.encode() if k != "empty" else b"")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == sorted(keys, key=lambda k: k.encode())
    assert set(keys) == {"empty", "spaces and+plus.txt", "ünïcödé/日本.txt", "a//b", "x?y#z%20"}


def test_s3_and_rest_share_the_object_store(cluster: Cluster, s3: Any) -> None:
    data = blob(3 * CHUNK + 7, seed=1)
    s3.put_object(Bucket="default", Key="from-s3.bin", Body=data)
    files = cluster.http.get("/api/files", params={"search": "from-s3.bin"}).json()
    assert [f["name"] for f in files] == ["from-s3.bin"]
    assert cluster.http.get(f"/api/files/{files[0]['id']}/download").content == data
    rest = cluster.http.put("/api/files/from-rest.bin", content=data[::-1])
    assert rest.status_code == 201
    assert s3.get_object(Bucket="default", Key="from-rest.bin")["Body"].read() == data[::-1]
    assert s3.head_object(Bucket="default", Key="from-rest.bin")["ETag"] == \
        f'"{hashlib.md5(data[::-1]).hexdigest()}"'


def test_ranges(s3: Any, bucket: str) -> None:
    data = blob(3 * CHUNK + 10, seed=2)
    s3.put_object(Bucket=bucket, Key="r", Body=data)
    cases = {"bytes=0-0": data[:1], f"bytes={CHUNK - 5}-{CHUNK + 5}": data[CHUNK - 5:CHUNK + 6],
             "bytes=-10": data[-10:], f"bytes={2 * CHUNK}-": data[2 * CHUNK:],
             "bytes=5-999999999": data[5:]}
    for rng, want in cases.items():
        got = s3.get_object(Bucket=bucket, Key="r", Range=rng)
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert got["Body"].read() == want, rng
        assert got["ContentRange"].endswith(f"/{len(data)}")
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="r", Range=f"bytes={len(data)}-")
    assert error_of(exc) == ("InvalidRange", 416)


def test_conditional_get_and_head(s3: Any, bucket: str) -> None:
    put = s3.put_object(Bucket=bucket, Key="c", Body=b"conditions")
    etag = put["ETag"]
    modified = s3.head_object(Bucket=bucket, Key="c")["LastModified"]
    before, after = modified - datetime.timedelta(hours=1), modified + datetime.timedelta(hours=1)
    assert s3.get_object(Bucket=bucket, Key="c", IfMatch=etag)["Body"].read() == b"conditions"
    ok = s3.get_object(Bucket=bucket, Key="c", IfNoneMatch='"other"', IfModifiedSince=before)
    assert ok["Body"].read() == b"conditions"
    failing = [({"IfMatch": '"other"'}, 412), ({"IfUnmodifiedSince": before}, 412),
               ({"IfNoneMatch": etag}, 304), ({"IfModifiedSince": after}, 304),
               ({"IfMatch": etag, "IfNoneMatch": etag}, 304)]
    for args, status in failing:
        for call in (s3.get_object, s3.head_object):
            with pytest.raises(ClientError) as exc:
                call(Bucket=bucket, Key="c", **args)
            assert error_of(exc)[1] == status, (call, args)


def test_metadata_and_headers_are_kept(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="m.html", Body=b"<p>hi</p>", ContentType="text/html",
                  Metadata={"owner": "ana", "camera": "x100"}, CacheControl="max-age=60",
                  ContentDisposition='attachment; filename="m.html"', ContentEncoding="identity",
                  Expires=datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC),
                  ContentLanguage="fr")
    for call in (s3.get_object, s3.head_object):
        got = call(Bucket=bucket, Key="m.html")
        assert got["ContentType"] == "text/html"
        assert got["Metadata"] == {"owner": "ana", "camera": "x100"}
        assert got["CacheControl"] == "max-age=60"
        assert got["ContentDisposition"] == 'attachment; filename="m.html"'
        assert got["ContentEncoding"] == "identity"
        assert got["ContentLanguage"] == "fr"
        assert got["ExpiresString"].startswith("Tue, 01 Jan 2030")


def test_copy_object(s3: Any, bucket: str) -> None:
    data = blob(2 * CHUNK + 3, seed=3)
    s3.put_object(Bucket=bucket, Key="src", Body=data, Metadata={"a": "1"},
                  ContentType="image/png")
    s3.create_bucket(Bucket=bucket + "-other")
    copied = s3.copy_object(Bucket=bucket + "-other", Key="dst",
                            CopySource={"Bucket": bucket, "Key": "src"})
    assert copied["CopyObjectResult"]["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    got = s3.get_object(Bucket=bucket + "-other", Key="dst")
    assert got["Body"].read() == data
    assert got["Metadata"] == {"a": "1"} and got["ContentType"] == "image/png"
    s3.copy_object(Bucket=bucket, Key="src", CopySource={"Bucket": bucket, "Key": "src"},
                   MetadataDirective="REPLACE", Metadata={"b": "2"}, ContentType="text/plain")
    got = s3.get_object(Bucket=bucket, Key="src")
    assert got["Body"].read() == data
    assert got["Metadata"] == {"b": "2"} and got["ContentType"] == "text/plain"
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="src", CopySource={"Bucket": bucket, "Key": "src"})
    assert error_of(exc) == ("InvalidRequest", 400)
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="x", CopySource={"Bucket": bucket, "Key": "nope"})
    assert error_of(exc) == ("NoSuchKey", 404)
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="x", CopySource={"Bucket": bucket, "Key": "src"},
                       CopySourceIfMatch='"nope"')
    assert error_of(exc) == ("PreconditionFailed", 412)
    # The source deleted, the copy keeps its bytes (they are shared chunks).
    s3.delete_object(Bucket=bucket, Key="src")
    assert s3.get_object(Bucket=bucket + "-other", Key="dst")["Body"].read() == data


def test_delete_objects(s3: Any, bucket: str) -> None:
    for i in range(20):
        s3.put_object(Bucket=bucket, Key=f"k{i:02d}", Body=b"x")
    loud = s3.delete_objects(Bucket=bucket, Delete={
        "Objects": [{"Key": f"k{i:02d}"} for i in range(10)] + [{"Key": "never-there"}]})
    assert sorted(d["Key"] for d in loud["Deleted"]) == sorted(
        [f"k{i:02d}" for i in range(10)] + ["never-there"])
    quiet = s3.delete_objects(Bucket=bucket, Delete={
        "Objects": [{"Key": f"k{i:02d}"} for i in range(10, 20)], "Quiet": True})
    assert "Deleted" not in quiet and "Errors" not in quiet
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    # The most one request may name: 1,000 keys of 1 KiB (a body over 1 MiB).
    longest = [{"Key": f"{i:04d}" + "k" * 1020} for i in range(1000)]
    done = s3.delete_objects(Bucket=bucket, Delete={"Objects": longest})
    assert len(done["Deleted"]) == 1000
    with pytest.raises(ClientError) as exc:
        s3.delete_objects(Bucket=bucket, Delete={"Objects": longest + [{"Key": "one more"}]})
    assert error_of(exc) == ("MalformedXML", 400)


def test_conditional_delete_object(s3: Any, bucket: str) -> None:
    data = blob(2 * CHUNK + 1, seed=5)
    etag = s3.put_object(Bucket=bucket, Key="c", Body=data)["ETag"]
    modified = s3.head_object(Bucket=bucket, Key="c")["LastModified"]
    wrong: list[dict[str, Any]] = [
        {"IfMatch": '"not-its-etag"'}, {"IfMatchSize": len(data) + 1},
        {"IfMatchLastModifiedTime": modified - datetime.timedelta(seconds=1)},
        {"IfMatchLastModifiedTime": modified + datetime.timedelta(hours=1)},
        # Every condition must hold: a right ETag with a wrong size deletes nothing.
        {"IfMatch": etag, "IfMatchSize": 1},
    ]
    for args in wrong:
        with pytest.raises(ClientError) as exc:
            s3.delete_object(Bucket=bucket, Key="c", **args)
        assert error_of(exc) == ("PreconditionFailed", 412), args
        assert s3.get_object(Bucket=bucket, Key="c")["Body"].read() == data, args
    done = s3.delete_object(Bucket=bucket, Key="c", IfMatch=etag, IfMatchSize=len(data),
                            IfMatchLastModifiedTime=modified)
    assert done["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="c")
    assert error_of(exc)[1] == 404
    # A key with no object: nothing to delete, 204, condition or not.
    for args in ({"IfMatch": etag}, {"IfMatch": "*"}, {"IfMatch": '"bad"'},
                 {"IfMatchSize": len(data)}):
        assert s3.delete_object(Bucket=bucket, Key="c", **args)["ResponseMetadata"][
            "HTTPStatusCode"] == 204, args
    assert s3.delete_object(Bucket=bucket, Key="c")["ResponseMetadata"][
        "HTTPStatusCode"] == 204
    # Each condition alone, right: deletes.
    for name in ("IfMatch", "IfMatchSize", "IfMatchLastModifiedTime"):
        s3.put_object(Bucket=bucket, Key="d", Body=b"abc")
        head = s3.head_object(Bucket=bucket, Key="d")
        right = {"IfMatch": "*", "IfMatchSize": 3,
                 "IfMatchLastModifiedTime": head["LastModified"]}[name]
        s3.delete_object(Bucket=bucket, Key="d", **{name: right})
        assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0, name


def test_delete_objects_with_conditions(s3: Any, bucket: str) -> None:
    tags = {k: s3.put_object(Bucket=bucket, Key=k, Body=k.encode() * 3)["ETag"]
            for k in ("keep", "gone", "sized", "dated", "wrong-size", "plain")}
    modified = s3.head_object(Bucket=bucket, Key="dated")["LastModified"]
    done = s3.delete_objects(Bucket=bucket, Delete={"Objects": [
        {"Key": "keep", "ETag": tags["gone"]},  # another object's ETag
        {"Key": "gone", "ETag": tags["gone"]},
        {"Key": "sized", "Size": len(b"sized") * 3},
        {"Key": "dated", "LastModifiedTime": modified},
        {"Key": "wrong-size", "ETag": tags["wrong-size"], "Size": 1},
        {"Key": "never-there", "ETag": tags["plain"]},
        {"Key": "plain"},
    ]})
    assert sorted(d["Key"] for d in done["Deleted"]) == [
        "dated", "gone", "never-there", "plain", "sized"]
    errors = {e["Key"]: e["Code"] for e in done["Errors"]}
    assert errors == {"keep": "PreconditionFailed", "wrong-size": "PreconditionFailed"}
    left = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert left == ["keep", "wrong-size"]
    assert s3.get_object(Bucket=bucket, Key="keep")["Body"].read() == b"keepkeepkeep"
    # Quiet mode reports the refused keys still (only deletions are left out).
    quiet = s3.delete_objects(Bucket=bucket, Delete={"Quiet": True, "Objects": [
        {"Key": "keep", "ETag": '"stale"'}, {"Key": "wrong-size", "Size": 30}]})
    assert "Deleted" not in quiet
    assert [(e["Key"], e["Code"]) for e in quiet["Errors"]] == [("keep", "PreconditionFailed")]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["keep"]


# -- listing ----------------------------------------------------------------


def test_listing_v1_v2_with_delimiter_and_pagination(s3: Any, bucket: str) -> None:
    keys = [f"logs/2026/{i:04d}.log" for i in range(1010)] + \
        [f"img/{n}.jpg" for n in ("a", "b", "ä")] + ["top.txt", "Zed", "zed"]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=k.encode()), keys))
    by_bytes = sorted(keys, key=lambda k: k.encode())
    for method in ("list_objects_v2", "list_objects"):
        pages = list(s3.get_paginator(method).paginate(Bucket=bucket, PaginationConfig={
            "PageSize": 1000}))
        assert len(pages) == 2, method
        listed = [o["Key"] for p in pages for o in p.get("Contents", [])]
        assert listed == by_bytes, method
        small = list(s3.get_paginator(method).paginate(Bucket=bucket, Delimiter="/",
                                                       PaginationConfig={"PageSize": 2}))
        prefixes = [c["Prefix"] for p in small for c in p.get("CommonPrefixes", [])]
        flat = [o["Key"] for p in small for o in p.get("Contents", [])]
        assert prefixes == ["img/", "logs/"], method
        assert flat == ["Zed", "top.txt", "zed"], method
    nested = s3.list_objects_v2(Bucket=bucket, Prefix="logs/", Delimiter="/")
    assert [c["Prefix"] for c in nested["CommonPrefixes"]] == ["logs/2026/"]
    after = s3.list_objects_v2(Bucket=bucket, Prefix="logs/2026/", StartAfter="logs/2026/1005.log")
    assert [o["Key"] for o in after["Contents"]] == [f"logs/2026/{i:04d}.log"
                                                     for i in range(1006, 1010)]
    limited = s3.list_objects_v2(Bucket=bucket, MaxKeys=3, FetchOwner=True)
    assert limited["IsTruncated"] and limited["KeyCount"] == 3
    assert all("Owner" in o for o in limited["Contents"])
    assert "Owner" not in s3.list_objects_v2(Bucket=bucket, MaxKeys=1)["Contents"][0]
    marker = s3.list_objects(Bucket=bucket, Marker="logs/2026/1008.log", MaxKeys=2)
    assert [o["Key"] for o in marker["Contents"]] == ["logs/2026/1009.log", "top.txt"]


def test_virtual_host_style(cluster: Cluster, key: tuple[str, str], s3: Any,
                            bucket: str) -> None:
    """With s3_domain set, Host: BUCKET.s3.test:PORT selects the bucket."""
    s3.put_object(Bucket=bucket, Key="v/h.txt", Body=b"virtual host")
    port = cluster.s3_port

    def signed_get(url: str) -> httpx.Response:
        req = AWSRequest(method="GET", url=url)
        S3SigV4Auth(Credentials(*key), "s3", "us-east-1").add_auth(req)
        headers = {k: v for k, v in req.headers.items()}
        headers["Host"] = url.split("/")[2]
        path = url.split("/", 3)[3]
        return httpx.get(f"{cluster.s3_url}/{path}", headers=headers)

    got = signed_get(f"http://{bucket}.s3.test:{port}/v/h.txt")
    assert got.status_code == 200 and got.content == b"virtual host"
    listed = signed_get(f"http://{bucket}.s3.test:{port}/?list-type=2&prefix=v%2F")
    assert listed.status_code == 200 and b"<Key>v/h.txt</Key>" in listed.content
    missing = signed_get(f"http://no-such-bucket.s3.test:{port}/v/h.txt")
    assert missing.status_code == 404 and b"<Code>NoSuchBucket</Code>" in missing.content


# -- presigned URLs ---------------------------------------------------------


def test_presigned_get_with_curl_and_presigned_put(s3: Any, bucket: str, tmp_path: Path) -> None:
    data = blob(CHUNK + 1, seed=4)
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "p.bin"},
                                        ExpiresIn=300)
    assert httpx.put(put_url, content=data).status_code == 200
    get_url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p.bin"},
                                        ExpiresIn=300)
    assert httpx.get(get_url).content == data
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    out = tmp_path / "p.bin"
    done = subprocess.run([curl, "-sS", "-f", "-o", str(out), get_url], capture_output=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == data
    tampered = get_url.replace("p.bin", "q.bin")
    assert httpx.get(tampered).status_code == 403


def test_signature_version_2_answers_501(cluster: Cluster, key: tuple[str, str],
                                         bucket: str) -> None:
    v2 = s3_client(cluster, key, signature_version="s3")
    with pytest.raises(ClientError) as exc:
        v2.list_objects(Bucket=bucket)
    assert error_of(exc) == ("NotImplemented", 501)
    url = v2.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"})
    assert "AWSAccessKeyId=" in url
    resp = httpx.get(url)
    assert resp.status_code == 501 and b"<Code>NotImplemented</Code>" in resp.content


def test_expired_presigned_url(s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    s3.put_object(Bucket=bucket, Key="old", Body=b"x")
    an_hour_ago = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - \
        datetime.timedelta(hours=1)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: an_hour_ago)
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "old"},
                                    ExpiresIn=60)
    monkeypatch.undo()
    resp = httpx.get(url)
    assert resp.status_code == 403 and b"<Code>AccessDenied</Code>" in resp.content


# -- errors -----------------------------------------------------------------


def test_authentication_errors(cluster: Cluster, key: tuple[str, str], bucket: str,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    wrong_secret = s3_client(cluster, (key[0], key[1][:-1] + ("A" if key[1][-1] != "A" else "B")))
    with pytest.raises(ClientError) as exc:
        wrong_secret.list_objects_v2(Bucket=bucket)
    assert error_of(exc) == ("SignatureDoesNotMatch", 403)
    unknown = s3_client(cluster, ("TK" + "Z" * 18, key[1]))
    with pytest.raises(ClientError) as exc:
        unknown.list_buckets()
    assert error_of(exc) == ("InvalidAccessKeyId", 403)
    anonymous = httpx.get(f"{cluster.s3_url}/{bucket}")
    assert anonymous.status_code == 403 and b"<Code>AccessDenied</Code>" in anonymous.content
    assert b"<RequestId>" in anonymous.content and f"<Resource>/{bucket}</Resource>".encode() \
        in anonymous.content
    skewed = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - \
        datetime.timedelta(minutes=20)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: skewed)
    with pytest.raises(ClientError) as exc:
        s3_client(cluster, key).list_buckets()
    assert error_of(exc) == ("RequestTimeTooSkewed", 403)


def test_wrong_keys_are_throttled_as_on_rest(make_cluster: Any) -> None:
    c = make_cluster(nodes=1, replicas=1, brain_env={"TOSSIT_WRONG_KEYS_FREE": "2"},
                     brain_args=STEADY)
    key_id, secret = make_key(c)
    wrong = s3_client(c, (key_id, secret[::-1]))
    unknown = s3_client(c, ("TK" + "Q" * 18, secret))
    codes = []
    for client in (wrong, unknown, wrong):
        with pytest.raises(ClientError) as exc:
            client.list_buckets()
        codes.append(error_of(exc))
    assert codes == [("SignatureDoesNotMatch", 403), ("InvalidAccessKeyId", 403),
                     ("SlowDown", 503)]
    events = c.http.get("/api/events", params={"limit": 50}).json()
    refused = [e["message"] for e in events if e["kind"] == "key_refused"]
    assert any("an S3 request refused from 127.0.0.1" in m for m in refused), refused


def test_roles_apply(cluster: Cluster, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="r.txt", Body=b"readable")
    reader = s3_client(cluster, make_key(cluster, "readonly"))
    assert reader.get_object(Bucket=bucket, Key="r.txt")["Body"].read() == b"readable"
    assert [o["Key"] for o in reader.list_objects_v2(Bucket=bucket)["Contents"]] == ["r.txt"]
    for call in (lambda: reader.put_object(Bucket=bucket, Key="w.txt", Body=b"no"),
                 lambda: reader.delete_object(Bucket=bucket, Key="r.txt"),
                 lambda: reader.create_bucket(Bucket="by-a-reader")):
        with pytest.raises(ClientError) as exc:
            call()
        assert error_of(exc) == ("AccessDenied", 403)
    assert s3.get_object(Bucket=bucket, Key="r.txt")["Body"].read() == b"readable"


def test_bad_digest_commits_nothing(s3: Any, bucket: str) -> None:
    wrong = base64.b64encode(hashlib.md5(b"something else").digest()).decode()
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="d", Body=b"the real bytes", ContentMD5=wrong)
    assert error_of(exc) == ("BadDigest", 400)
    wrong_crc = base64.b64encode(b"\x00\x00\x00\x01").decode()
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="d", Body=b"the real bytes", ChecksumCRC32=wrong_crc)
    assert error_of(exc) == ("BadDigest", 400)
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    right = base64.b64encode(hashlib.md5(b"the real bytes").digest()).decode()
    s3.put_object(Bucket=bucket, Key="d", Body=b"the real bytes", ContentMD5=right)
    sha = base64.b64encode(hashlib.sha256(b"sha bytes").digest()).decode()
    s3.put_object(Bucket=bucket, Key="s", Body=b"sha bytes", ChecksumSHA256=sha)
    assert s3.get_object(Bucket=bucket, Key="s")["Body"].read() == b"sha bytes"


def test_unsupported_operations_answer_501(s3: Any, bucket: str) -> None:
    calls = [
        lambda: s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={
            "Status": "Enabled"}),
        lambda: s3.put_bucket_policy(Bucket=bucket, Policy="{}"),
        lambda: s3.get_bucket_lifecycle_configuration(Bucket=bucket),
        lambda: s3.put_bucket_website(Bucket=bucket, WebsiteConfiguration={
            "IndexDocument": {"Suffix": "index.html"}}),
        lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"x", ServerSideEncryption="aws:kms"),
        lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"x", ACL="public-read"),
    ]
    for call in calls:
        with pytest.raises(ClientError) as exc:
            call()
        assert error_of(exc) == ("NotImplemented", 501)
    assert s3.get_bucket_versioning(Bucket=bucket).get("Status") is None
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


PRIVATE = [{"Grantee": {"ID": "tossit", "DisplayName": "tossit", "Type": "CanonicalUser"},
            "Permission": "FULL_CONTROL"}]


def test_acls_are_read_and_private_only(s3: Any, bucket: str) -> None:
    """Everything belongs to the cluster, readable by its keys: read as AWS shows a
    private object; setting it private changes nothing; granting others is 501."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"acl", ACL="private")
    for got in (s3.get_bucket_acl(Bucket=bucket), s3.get_object_acl(Bucket=bucket, Key="k")):
        assert got["Owner"]["ID"] == "tossit"
        assert got["Grants"] == PRIVATE
    s3.put_bucket_acl(Bucket=bucket, ACL="private")
    s3.put_object_acl(Bucket=bucket, Key="k", ACL="private")
    policy = s3.get_object_acl(Bucket=bucket, Key="k")
    s3.put_object_acl(Bucket=bucket, Key="k", AccessControlPolicy={
        "Owner": policy["Owner"], "Grants": policy["Grants"]})
    refused = [
        lambda: s3.put_object_acl(Bucket=bucket, Key="k", ACL="public-read"),
        lambda: s3.put_bucket_acl(Bucket=bucket, ACL="public-read-write"),
        lambda: s3.put_bucket_acl(Bucket=bucket, GrantRead="id=someone"),
        lambda: s3.put_object_acl(Bucket=bucket, Key="k", AccessControlPolicy={
            "Owner": policy["Owner"], "Grants": [*PRIVATE, {"Grantee": {
                "Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"},
                "Permission": "READ"}]}),
    ]
    for call in refused:
        with pytest.raises(ClientError) as exc:
            call()
        assert error_of(exc) == ("NotImplemented", 501)
    assert s3.get_object_acl(Bucket=bucket, Key="k")["Grants"] == PRIVATE
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"acl"
    missing = [(lambda: s3.get_object_acl(Bucket=bucket, Key="nope"), ("NoSuchKey", 404)),
               (lambda: s3.put_object_acl(Bucket=bucket, Key="nope", ACL="private"),
                ("NoSuchKey", 404)),
               (lambda: s3.get_bucket_acl(Bucket="no-such-bucket-acl"), ("NoSuchBucket", 404)),
               (lambda: s3.put_bucket_acl(Bucket="no-such-bucket-acl", ACL="private"),
                ("NoSuchBucket", 404))]
    for call, want in missing:
        with pytest.raises(ClientError) as exc:
            call()
        assert error_of(exc) == want


def test_a_readonly_key_reads_acls_but_cannot_put_them(cluster: Cluster, s3: Any,
                                                       bucket: str) -> None:
    reader = s3_client(cluster, make_key(cluster, "readonly"))
    assert reader.get_bucket_acl(Bucket=bucket)["Grants"] == PRIVATE
    with pytest.raises(ClientError) as exc:
        reader.put_bucket_acl(Bucket=bucket, ACL="private")
    assert error_of(exc) == ("AccessDenied", 403)


def test_boto3_default_checksums_on_upload(s3: Any, bucket: str, tmp_path: Path) -> None:
    """Recent boto3 sends a CRC32 with every upload: in a header for bytes, in an
    aws-chunked trailer for a stream. Both are checked and both store the bytes."""
    sent: list[dict[str, str]] = []
    s3.meta.events.register("before-send.s3.PutObject",
                            lambda request, **_: sent.append(dict(request.headers)))
    data = blob(3 * CHUNK + 5, seed=5)
    s3.put_object(Bucket=bucket, Key="bytes", Body=data)
    path = tmp_path / "f.bin"
    path.write_bytes(data[::-1])
    with open(path, "rb") as fh:
        s3.upload_fileobj(fh, bucket, "stream")
    s3.meta.events.unregister("before-send.s3.PutObject")
    assert s3.get_object(Bucket=bucket, Key="bytes")["Body"].read() == data
    assert s3.get_object(Bucket=bucket, Key="stream")["Body"].read() == data[::-1]
    modes = {h.get("x-amz-content-sha256", h.get("X-Amz-Content-SHA256", "")) for h in sent}
    crc = [h for h in sent if "x-amz-checksum-crc32" in {k.lower() for k in h}
           or h.get("x-amz-trailer") == "x-amz-checksum-crc32"]
    assert len(crc) == 2, sent
    # Over plain HTTP boto3 signs the payload's SHA-256 too (checked as well).
    assert all(len(m) == 64 for m in modes), modes


def test_on_postgresql_keys_list_in_byte_order(make_cluster: Any, pg_url: str) -> None:
    """PostgreSQL's default collation is not S3's order; the listing must be."""
    c = make_cluster(database_url=pg_url, nodes=2, replicas=2, brain_args=STEADY)
    s3 = s3_client(c, make_key(c))
    s3.create_bucket(Bucket="order")
    keys = ["a", "a/b", "a0", "B", "b", "é", "f", "z", "日本", "a b", "a-b", "A", "a/c/d"]
    for k in keys:
        s3.put_object(Bucket="order", Key=k, Body=k.encode())
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket="order")["Contents"]]
    assert listed == sorted(keys, key=lambda k: k.encode())
    pages = list(s3.get_paginator("list_objects").paginate(
        Bucket="order", Delimiter="/", PaginationConfig={"PageSize": 3}))
    assert [c["Prefix"] for p in pages for c in p.get("CommonPrefixes", [])] == ["a/"]
    assert [o["Key"] for p in pages for o in p.get("Contents", [])] == sorted(
        [k for k in keys if "/" not in k], key=lambda k: k.encode())


def test_a_follower_serves_reads_and_sends_changes_to_the_leader(
        make_cluster: Any, pg_url: str) -> None:
    c = make_cluster(database_url=pg_url, nodes=2, replicas=2, brains=2, brain_args=STEADY)
    key = make_key(c)
    leader, follower = s3_client(c, key), s3_client(c, key, brain=1)
    # A follower learns the nodes' states from the metadata, a moment after the leader.
    wait_until(lambda: sum(n["state"] == "online" for n in c.client(1).get("/api/nodes").json())
               == 2, 30, what="the follower sees both nodes online")
    leader.create_bucket(Bucket="shared")
    leader.put_object(Bucket="shared", Key="k", Body=b"from the leader")
    assert follower.get_object(Bucket="shared", Key="k")["Body"].read() == b"from the leader"
    with pytest.raises(ClientError) as exc:
        follower.put_object(Bucket="shared", Key="k2", Body=b"x")
    assert error_of(exc) == ("ServiceUnavailable", 503)
    assert c.url in exc.value.response["Error"]["Message"]


# -- what the Ceph s3-tests conformance suite found ------------------------------


def test_non_ascii_metadata_is_signed_and_kept_as_sent(s3: Any, bucket: str) -> None:
    # botocore sends (and signs) the value as UTF-8: the signature covers those
    # bytes, and they come back as they were sent.
    value = "Hello World\xe9 \xe0 \u65e5"

    def add_header(params: dict[str, Any], **_: Any) -> None:
        params["headers"]["x-amz-meta-meta1"] = value

    s3.meta.events.register("before-call.s3.PutObject", add_header)
    try:
        s3.put_object(Bucket=bucket, Key="k", Body=b"bar")
    finally:
        s3.meta.events.unregister("before-call.s3.PutObject", add_header)
    got = s3.head_object(Bucket=bucket, Key="k")["Metadata"]["meta1"]
    assert got.encode("latin-1") == value.encode()  # http.client reads headers as latin-1


def test_content_encoding_kept_less_aws_chunked(s3: Any, bucket: str) -> None:
    for sent, kept in [("gzip", "gzip"), ("deflate, gzip", "deflate, gzip"),
                       ("gzip, aws-chunked", "gzip"), ("aws-chunked, gzip", "gzip"),
                       ("aws-chunked", None), ("aws-chunked, aws-chunked", None)]:
        # A plain (not aws-chunked) body, whatever Content-Encoding names.
        s3.put_object(Bucket=bucket, Key="e", Body=b"hello", ContentEncoding=sent)
        head = s3.head_object(Bucket=bucket, Key="e")
        assert head.get("ContentEncoding") == kept, sent
        assert s3.get_object(Bucket=bucket, Key="e")["Body"].read() == b"hello"


def test_server_side_encryption_is_never_ignored(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="plain", Body=b"x")

    def add(headers: dict[str, str]) -> Any:
        def hook(params: dict[str, Any], **_: Any) -> None:
            params["headers"].update(headers)
        return hook

    # SSE-C's key without its algorithm would otherwise be stored in the clear.
    hook = add({"x-amz-server-side-encryption-customer-key": "a" * 44,
                "x-amz-server-side-encryption-customer-key-md5": "b" * 24})
    s3.meta.events.register("before-call.s3.PutObject", hook)
    try:
        with pytest.raises(ClientError) as exc:
            s3.put_object(Bucket=bucket, Key="sse-c", Body=b"secret")
    finally:
        s3.meta.events.unregister("before-call.s3.PutObject", hook)
    assert error_of(exc) == ("NotImplemented", 501)
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="sse-c")
    assert error_of(exc)[1] == 404
    hook = add({"x-amz-server-side-encryption": "aws:kms"})
    s3.meta.events.register("before-call.s3.GetObject", hook)
    try:
        with pytest.raises(ClientError) as exc:
            s3.get_object(Bucket=bucket, Key="plain")
    finally:
        s3.meta.events.unregister("before-call.s3.GetObject", hook)
    assert error_of(exc) == ("InvalidArgument", 400)


def test_a_browser_form_upload_answers_501(cluster: Cluster, s3: Any, bucket: str) -> None:
    resp = httpx.post(f"{cluster.s3_url}/{bucket}",
                      files={"file": ("a.txt", b"data")}, data={"key": "a.txt"})
    assert resp.status_code == 501, resp.text
    assert b"<Code>NotImplemented</Code>" in resp.content
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_listing_v1_gives_its_prefix_back_as_sent(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="\nx", Body=b"")
    s3.put_object(Bucket=bucket, Key="quux", Body=b"")
    got = s3.list_objects(Bucket=bucket, Prefix="\n")  # boto3 asks for encoding-type=url
    assert got["Prefix"] == "\n"
    assert [o["Key"] for o in got["Contents"]] == ["\nx"]
    v2 = s3.list_objects_v2(Bucket=bucket, Prefix="\n")
    assert v2["Prefix"] == "\n" and [o["Key"] for o in v2["Contents"]] == ["\nx"]


def test_checked_checksums_are_sent_back(s3: Any, bucket: str) -> None:
    data = b"A" * 1024
    sha = base64.b64encode(hashlib.sha256(data).digest()).decode()
    put = s3.put_object(Bucket=bucket, Key="k", Body=data, ChecksumSHA256=sha)
    assert put["ChecksumSHA256"] == sha
    # Kept with the object: given back when asked, for the whole object only, and
    # checked by boto3 on the way in.
    assert "ChecksumSHA256" not in s3.head_object(Bucket=bucket, Key="k")
    assert s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")["ChecksumSHA256"] == sha
    got = s3.get_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert got["ChecksumSHA256"] == sha and got["Body"].read() == data
    part = s3.get_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED", Range="bytes=0-9")
    assert "ChecksumSHA256" not in part and part["Body"].read() == data[:10]
    s3.copy_object(Bucket=bucket, Key="k2", CopySource={"Bucket": bucket, "Key": "k"},
                   MetadataDirective="REPLACE", ContentType="text/plain")
    assert s3.head_object(Bucket=bucket, Key="k2", ChecksumMode="ENABLED")["ChecksumSHA256"] == sha
    made = s3.create_multipart_upload(Bucket=bucket, Key="m", ChecksumAlgorithm="SHA256")
    assert made["ChecksumAlgorithm"] == "SHA256"
    s3.abort_multipart_upload(Bucket=bucket, Key="m", UploadId=made["UploadId"])


def test_versions_of_an_unversioned_bucket_are_the_null_ones(s3: Any, bucket: str) -> None:
    keys = ["a", "b/1", "b/2", "c", "d"]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    # Paged as the tools page it (key and version-id markers), each key once.
    seen: list[str] = []
    kwargs: dict[str, Any] = {"Bucket": bucket, "MaxKeys": 2}
    while True:
        page = s3.list_object_versions(**kwargs)
        assert "DeleteMarkers" not in page
        for v in page.get("Versions", []):
            assert (v["VersionId"], v["IsLatest"]) == ("null", True)
            assert v["Size"] == len(v["Key"])
        seen += [v["Key"] for v in page.get("Versions", [])]
        if not page["IsTruncated"]:
            break
        kwargs.update(KeyMarker=page["NextKeyMarker"],
                      VersionIdMarker=page["NextVersionIdMarker"])
    assert seen == keys
    folded = s3.list_object_versions(Bucket=bucket, Delimiter="/")
    assert [v["Key"] for v in folded["Versions"]] == ["a", "c", "d"]
    assert [p["Prefix"] for p in folded["CommonPrefixes"]] == ["b/"]
    # versionId=null is the object itself; any other version does not exist here.
    assert s3.get_object(Bucket=bucket, Key="a", VersionId="null")["Body"].read() == b"a"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="a", VersionId="3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY")
    assert error_of(exc) == ("NotImplemented", 501)
    s3.copy_object(Bucket=bucket, Key="a2", CopySource={"Bucket": bucket, "Key": "a",
                                                         "VersionId": "null"})
    assert s3.get_object(Bucket=bucket, Key="a2")["Body"].read() == b"a"
    s3.delete_object(Bucket=bucket, Key="a2", VersionId="null")
    # How s3-tests and other tools empty a bucket: list versions, delete them.
    versions = s3.list_object_versions(Bucket=bucket)["Versions"]
    done = s3.delete_objects(Bucket=bucket, Delete={"Objects": [
        {"Key": v["Key"], "VersionId": v["VersionId"]} for v in versions], "Quiet": True})
    assert not done.get("Errors")
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    s3.delete_bucket(Bucket=bucket)


def test_another_expected_bucket_owner_is_refused(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", ExpectedBucketOwner="tossit")
    for call in (lambda: s3.list_objects_v2(Bucket=bucket, ExpectedBucketOwner="123456789012"),
                 lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"other",
                                       ExpectedBucketOwner="123456789012")):
        with pytest.raises(ClientError) as exc:
            call()
        assert error_of(exc) == ("AccessDenied", 403)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"


def test_a_buckets_files_are_listed_by_the_rest_api_and_the_cli(
        cluster: Cluster, s3: Any, bucket: str) -> None:
    """Files put over S3 into another bucket than 'default' are counted by the
    status; the REST listing and tossit ls show them with ?bucket= / --bucket,
    and they are read by id like any file."""
    s3.put_object(Bucket=bucket, Key="album/cat.jpg", Body=b"meow" * 100)
    listed = cluster.http.get("/api/files", params={"bucket": bucket}).json()
    assert [f["name"] for f in listed] == ["album/cat.jpg"]
    assert cluster.download(listed[0]["id"]) == b"meow" * 100
    folder = cluster.http.get("/api/files", params={"bucket": bucket, "prefix": "album/",
                                                    "delimiter": "/"}).json()
    assert [f["name"] for f in folder] == ["album/cat.jpg"]
    assert "album/cat.jpg" not in {f["name"] for f in cluster.http.get("/api/files").json()}
    s3.create_bucket(Bucket="deleted-one")
    s3.delete_bucket(Bucket="deleted-one")
    for missing in ("no-such-bucket", ".tossit", "deleted-one"):
        resp = cluster.http.get("/api/files", params={"bucket": missing})
        assert resp.status_code == 404 and resp.json()["error"] == "bucket_not_found"
    out = subprocess.run([sys.executable, "-m", "tossit", "ls", "--bucket", bucket,
                          "--brain", cluster.url], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, TOSSIT_KEY=cluster.admin_key, COLUMNS="200"))
    assert out.returncode == 0 and "album/cat.jpg" in out.stdout, out.stdout + out.stderr
    out = subprocess.run([sys.executable, "-m", "tossit", "buckets", "--json",
                          "--brain", cluster.url], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, TOSSIT_KEY=cluster.admin_key))
    assert out.returncode == 0, out.stdout + out.stderr
    listed_buckets = {b["name"]: (b["files"], b["bytes"]) for b in json.loads(out.stdout)}
    assert listed_buckets[bucket] == (1, 400) and "deleted-one" not in listed_buckets
