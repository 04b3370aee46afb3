"""aws-cli v1 (from PyPI, pinned in the test extra) against the S3 API:
``aws s3 cp/sync/ls/rm`` of a directory tree with small and large files, byte
for byte, a 200 MiB file up and down in parts (its default 8 MiB threshold and
part size), and ``aws s3api`` calls."""

from __future__ import annotations

import filecmp
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from s3_clients import STEADY, make_key

from cluster import Cluster

AWS = Path(sys.executable).parent / "aws"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if not AWS.exists():
        pytest.skip(f"aws-cli is not installed in this environment ({AWS}): "
                    "pip install -e '.[test]'")
    c = Cluster(tmp_path_factory.mktemp("awscli"), nodes=3, replicas=2, chunk_size="1MiB",
                brain_args=STEADY)
    c.start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def aws_env(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    key_id, secret = make_key(cluster)
    home = tmp_path_factory.mktemp("awshome")
    config = home / "config"
    # aws-cli's own multipart settings (8 MiB threshold and parts). Presigned
    # URLs are SigV4 only (aws-cli v1 presigns with SigV2 unless told).
    config.write_text("[default]\nregion = us-east-1\ns3 =\n  addressing_style = path\n"
                      "  signature_version = s3v4\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=key_id, AWS_SECRET_ACCESS_KEY=secret, AWS_CONFIG_FILE=str(config),
               AWS_SHARED_CREDENTIALS_FILE=str(home / "credentials"), HOME=str(home))
    return env


def aws(cluster: Cluster, env: dict[str, str], *args: str, check: bool = True
        ) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(AWS), "--endpoint-url", cluster.s3_url, *args], env=env,
                          capture_output=True, text=True, timeout=180)
    if check:
        assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


def api(cluster: Cluster, env: dict[str, str], *args: str) -> Any:
    out = aws(cluster, env, "s3api", *args, "--output", "json").stdout
    return json.loads(out) if out.strip() else None


def make_tree(root: Path) -> dict[str, bytes]:
    files = {
        "readme.txt": b"hello\n",
        "empty": b"",
        "docs/a b.txt": b"spaces in the name",
        "docs/ünïcödé.md": "ünïcödé".encode() * 100,
        "photos/2026/01.jpg": os.urandom(300_000),
        "photos/2026/02.jpg": os.urandom(1),
        "big/disk.img": os.urandom(6 * 1024 * 1024 + 123),  # many chunks
    }
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
            if p.is_file()}


def test_cp_sync_ls_rm_a_tree(cluster: Cluster, aws_env: dict[str, str], tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = make_tree(src)
    aws(cluster, aws_env, "s3", "mb", "s3://tree")
    aws(cluster, aws_env, "s3", "cp", "--recursive", str(src), "s3://tree/up")
    listed = aws(cluster, aws_env, "s3", "ls", "--recursive", "s3://tree/").stdout
    sizes = {line.split(None, 3)[3]: int(line.split(None, 3)[2])
             for line in listed.splitlines() if line.strip()}
    assert sizes == {f"up/{k}": len(v) for k, v in files.items()}
    top = aws(cluster, aws_env, "s3", "ls", "s3://tree/up/").stdout
    assert "PRE docs/" in top and "PRE photos/" in top and "readme.txt" in top

    back = tmp_path / "back"
    aws(cluster, aws_env, "s3", "sync", "s3://tree/up", str(back))
    assert read_tree(back) == files
    streamed = subprocess.run([str(AWS), "--endpoint-url", cluster.s3_url, "s3", "cp",
                               "s3://tree/up/big/disk.img", "-"], env=aws_env,
                              capture_output=True, timeout=180)
    assert streamed.returncode == 0 and streamed.stdout == files["big/disk.img"]

    # A second sync sends only what changed, and --delete removes what is gone.
    (src / "readme.txt").write_bytes(b"changed\n")
    (src / "new.txt").write_bytes(b"new")
    (src / "photos/2026/02.jpg").unlink()
    again = aws(cluster, aws_env, "s3", "sync", "--delete", str(src), "s3://tree/up").stdout
    moved = sorted(line.split(": ")[0] for line in again.splitlines() if ": " in line)
    assert moved == ["delete", "upload", "upload"], again
    mirror = tmp_path / "mirror"
    aws(cluster, aws_env, "s3", "sync", "s3://tree/up", str(mirror))
    assert read_tree(mirror) == read_tree(src)

    aws(cluster, aws_env, "s3", "rm", "--recursive", "s3://tree/up")
    assert aws(cluster, aws_env, "s3", "ls", "--recursive", "s3://tree/").stdout.strip() == ""
    aws(cluster, aws_env, "s3", "rb", "s3://tree")
    assert "tree" not in aws(cluster, aws_env, "s3", "ls").stdout


def test_200_mib_up_and_down_in_parts(cluster: Cluster, aws_env: dict[str, str],
                                      tmp_path: Path) -> None:
    """25 parts of 8 MiB sent 10 at a time, then read back by ranges in
    parallel: the ETag is the multipart one, the bytes are the file's."""
    big = tmp_path / "big.bin"
    with big.open("wb") as fh:
        for _ in range(200):
            fh.write(os.urandom(1024 * 1024))
    aws(cluster, aws_env, "s3", "mb", "s3://huge")
    aws(cluster, aws_env, "s3", "cp", str(big), "s3://huge/big.bin")
    head = api(cluster, aws_env, "head-object", "--bucket", "huge", "--key", "big.bin")
    assert head["ContentLength"] == 200 * 1024 * 1024 and head["ETag"].endswith('-25"')
    left = api(cluster, aws_env, "list-multipart-uploads", "--bucket", "huge") or {}
    assert left.get("Uploads", []) == []
    back = tmp_path / "back.bin"
    aws(cluster, aws_env, "s3", "cp", "s3://huge/big.bin", str(back))
    assert back.stat().st_size == big.stat().st_size
    assert filecmp.cmp(big, back, shallow=False)
    aws(cluster, aws_env, "s3", "rb", "--force", "s3://huge")


def test_s3api_calls(cluster: Cluster, aws_env: dict[str, str], tmp_path: Path) -> None:
    api(cluster, aws_env, "create-bucket", "--bucket", "api")
    assert api(cluster, aws_env, "get-bucket-location", "--bucket", "api")[
        "LocationConstraint"] is None
    body = tmp_path / "body.bin"
    data = os.urandom(700_000)
    body.write_bytes(data)
    put = api(cluster, aws_env, "put-object", "--bucket", "api", "--key", "x/y.bin", "--body",
              str(body), "--metadata", "owner=ana", "--content-type", "application/x-test")
    assert put["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    head = api(cluster, aws_env, "head-object", "--bucket", "api", "--key", "x/y.bin")
    assert head["ContentLength"] == len(data) and head["Metadata"] == {"owner": "ana"}
    assert head["ContentType"] == "application/x-test"
    out = tmp_path / "out.bin"
    got = api(cluster, aws_env, "get-object", "--bucket", "api", "--key", "x/y.bin",
              "--range", "bytes=10-19", str(out))
    assert got["ContentRange"] == f"bytes 10-19/{len(data)}" and out.read_bytes() == data[10:20]
    api(cluster, aws_env, "copy-object", "--bucket", "api", "--key", "copy.bin", "--copy-source",
        "api/x/y.bin")
    for i in range(5):
        api(cluster, aws_env, "put-object", "--bucket", "api", "--key", f"many/{i}", "--body",
            str(body))
    listed = api(cluster, aws_env, "list-objects-v2", "--bucket", "api", "--prefix", "many/",
                 "--page-size", "2")
    assert [o["Key"] for o in listed["Contents"]] == [f"many/{i}" for i in range(5)]
    gone = api(cluster, aws_env, "delete-objects", "--bucket", "api", "--delete",
               json.dumps({"Objects": [{"Key": f"many/{i}"} for i in range(5)]}))
    assert sorted(d["Key"] for d in gone["Deleted"]) == [f"many/{i}" for i in range(5)]
    left = api(cluster, aws_env, "list-objects-v2", "--bucket", "api")
    assert sorted(o["Key"] for o in left["Contents"]) == ["copy.bin", "x/y.bin"]
    refused = aws(cluster, aws_env, "s3api", "put-bucket-versioning", "--bucket", "api",
                  "--versioning-configuration", "Status=Enabled", check=False)
    assert refused.returncode != 0 and "NotImplemented" in refused.stderr
    missing = aws(cluster, aws_env, "s3api", "head-object", "--bucket", "api", "--key", "nope",
                  check=False)
    assert missing.returncode != 0 and "404" in missing.stderr


def test_presigned_url_from_aws_cli_with_curl(cluster: Cluster, aws_env: dict[str, str],
                                              tmp_path: Path) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    api(cluster, aws_env, "create-bucket", "--bucket", "presign")
    src = tmp_path / "p.txt"
    src.write_bytes(b"presigned bytes " * 1000)
    aws(cluster, aws_env, "s3", "cp", str(src), "s3://presign/p.txt")
    url = aws(cluster, aws_env, "s3", "presign", "s3://presign/p.txt", "--expires-in",
              "120").stdout.strip()
    out = tmp_path / "got.txt"
    done = subprocess.run([curl, "-sS", "-f", "-o", str(out), url], capture_output=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == src.read_bytes()
    bad = subprocess.run([curl, "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                          url.replace("Signature=", "Signature=0")], capture_output=True,
                         text=True, timeout=60)
    assert bad.stdout == "403"
