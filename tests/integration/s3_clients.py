"""S3 clients of a test cluster's brain: keys made over REST, boto3 set up for them,
and what the S3 tests check their answers with."""

from __future__ import annotations

import hashlib
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from cluster import Cluster

# The S3 tests watch no failure detection: slow timers keep a node that misses a
# few heartbeats on a loaded machine from being taken offline under a test's reads.
STEADY = ["--suspect-after", "10", "--offline-after", "20"]


def make_key(cluster: Cluster, role: str = "readwrite") -> tuple[str, str]:
    """A new API key of ``role``: (access key id, secret)."""
    made = cluster.http.post("/api/keys", json={"name": f"s3 {role}", "role": role})
    assert made.status_code == 201, made.text
    body = made.json()
    return body["id"], body["secret"]


def s3_client(cluster: Cluster, key: tuple[str, str], brain: int = 0, **config: Any) -> Any:
    """A boto3 S3 client of the S3 API of the cluster's brain ``brain`` (path
    style, as a LAN store is)."""
    return boto3.client(
        "s3", endpoint_url=cluster.s3_url_of(brain), aws_access_key_id=key[0],
        aws_secret_access_key=key[1], region_name="us-east-1",
        config=Config(**{"s3": {"addressing_style": "path"},
                         "retries": {"total_max_attempts": 1},  # a test sees every answer
                         "signature_version": "s3v4", **config}))


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    """The S3 error code and HTTP status of a refused boto3 call."""
    err = exc.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


def blob(n: int, seed: int = 0) -> bytes:
    """``n`` bytes that differ with ``seed`` (the same every run)."""
    out = bytearray()
    block = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{block}".encode()).digest()
        block += 1
    return bytes(out[:n])
