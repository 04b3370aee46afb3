"""``GET /api/buckets`` against a real brain and nodes: buckets made and filled
over S3 (boto3) are listed by name with their exact files and bytes; a deleted
bucket and the brain's own (``.tossit``) are not; ``default`` always is."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from s3_clients import STEADY, blob, make_key, s3_client

from cluster import Cluster
from tossit.manifests import SYSTEM_BUCKET


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A cluster of its own: the counts asserted are of every bucket there is."""
    c = Cluster(tmp_path_factory.mktemp("buckets"), nodes=3, replicas=2, chunk_size="64KiB",
                brain_args=STEADY)
    c.start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def s3(cluster: Cluster) -> Any:
    return s3_client(cluster, make_key(cluster))


def buckets(cluster: Cluster, key: str | None = None) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    resp = cluster.http.get("/api/buckets", headers=headers)
    assert resp.status_code == 200, resp.text
    body: list[dict[str, Any]] = resp.json()
    return body


def test_buckets_list_names_counts_and_bytes(cluster: Cluster, s3: Any) -> None:
    # Only "default" at first, empty.
    (only,) = buckets(cluster)
    assert (only["name"], only["files"], only["bytes"]) == ("default", 0, 0)

    s3.create_bucket(Bucket="photos")
    s3.put_object(Bucket="photos", Key="a.jpg", Body=blob(1000))
    s3.put_object(Bucket="photos", Key="2024/b.jpg", Body=blob(200_000, seed=1))  # 4 chunks
    s3.put_object(Bucket="photos", Key="empty.txt", Body=b"")
    s3.put_object(Bucket="photos", Key="a.jpg", Body=blob(1500, seed=2))  # replaced: 1 file
    s3.put_object(Bucket="photos", Key="deleted.jpg", Body=blob(999))
    s3.delete_object(Bucket="photos", Key="deleted.jpg")
    s3.create_bucket(Bucket="backups")
    s3.put_object(Bucket="backups", Key="db.dump", Body=blob(70_000, seed=3))
    s3.create_bucket(Bucket="empty-one")
    s3.create_bucket(Bucket="gone")
    s3.put_object(Bucket="gone", Key="x", Body=b"x")
    s3.delete_object(Bucket="gone", Key="x")
    s3.delete_bucket(Bucket="gone")
    cluster.upload("rest.txt", b"via the REST API")
    s3.put_object(Bucket="default", Key="s3.txt", Body=b"via S3")
    # The brain's own bucket holds a file now (a metadata snapshot): never listed.
    snap = cluster.http.post("/api/admin/snapshot")
    assert snap.status_code == 200, snap.text

    got = buckets(cluster)
    assert [(b["name"], b["files"], b["bytes"]) for b in got] == [
        ("backups", 1, 70_000),
        ("default", 2, len(b"via the REST API") + len(b"via S3")),
        ("empty-one", 0, 0),
        ("photos", 3, 1500 + 200_000 + 0),
    ]
    assert SYSTEM_BUCKET not in {b["name"] for b in got}
    for b in got:
        made = datetime.datetime.fromisoformat(b["created"])
        assert made.tzinfo is not None
        assert abs((datetime.datetime.now(datetime.UTC) - made).total_seconds()) < 600
    # What the list says a bucket holds is what its listing shows.
    listing = cluster.http.get("/api/files", params={"bucket": "photos"})
    assert listing.status_code == 200, listing.text
    assert sorted(f["name"] for f in listing.json()) == ["2024/b.jpg", "a.jpg", "empty.txt"]


def test_buckets_need_a_key_and_any_key_reads_them(cluster: Cluster) -> None:
    assert httpx.get(f"{cluster.url}/api/buckets", timeout=10).status_code == 401
    readonly = cluster.http.post("/api/keys", json={"name": "reader", "role": "readonly"})
    assert readonly.status_code == 201, readonly.text
    names = [b["name"] for b in buckets(cluster, readonly.json()["secret"])]
    assert "default" in names and names == sorted(names)


def test_default_is_listed_even_when_deleted_over_s3(cluster: Cluster, s3: Any) -> None:
    """S3 may delete an empty "default"; the REST API's uploads still go there, so
    the list keeps it (with no creation time) until it is made again."""
    for f in cluster.http.get("/api/files").json():
        assert cluster.http.delete(f"/api/files/{f['id']}").status_code == 200
    s3.delete_bucket(Bucket="default")
    assert "default" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    default = next(b for b in buckets(cluster) if b["name"] == "default")
    assert default == {"name": "default", "created": None, "files": 0, "bytes": 0}
