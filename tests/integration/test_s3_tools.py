"""rclone, s3cmd and restic (Debian's packages, installed by
scripts/install-test-deps.sh) against the S3 API: each copies a tree of small
and multi-chunk files in and out byte for byte, lists it and deletes it; a
200 MiB file goes up in parts through rclone and a 12 MiB one through s3cmd
(their multipart ETags checked); restic backs a folder up to TossIt, restores
it byte for byte and checks every pack it wrote (restic 0.14 writes its packs
with single PUTs: it does not exercise multipart uploads)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from s3_clients import STEADY, make_key, s3_client

from cluster import Cluster

MiB = 1024 * 1024


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (scripts/install-test-deps.sh installs it "
                    "from Debian's packages)")
    return path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("s3tools"), nodes=3, replicas=2, chunk_size="1MiB",
                brain_args=STEADY)
    c.start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def key(cluster: Cluster) -> tuple[str, str]:
    return make_key(cluster)


def tree(root: Path, seed: int) -> dict[str, str]:
    """Small, empty, nested and multi-chunk files; returns name -> SHA-256."""
    sizes = {"a.txt": 11, "empty.bin": 0, "docs/readme.md": 4000,
             "docs/deep/er/notes.txt": 70_000, "photos/big.jpg": 3 * MiB + 17,
             "photos/2026/dec/x y (1).png": 300_000, "mid.bin": 1 * MiB}
    out = {}
    for name, size in sizes.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = os.urandom(size) if size else b""
        path.write_bytes(data)
        out[name] = hashlib.sha256(data).hexdigest()
    return out


def digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file()}


def run(argv: list[str], env: dict[str, str], timeout: float = 300
        ) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (argv, done.stdout[-2000:], done.stderr[-4000:])
    return done


def clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "RCLONE_", "RESTIC_"))}
    env["HOME"] = str(home)
    return env


# -- rclone ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def rclone_env(cluster: Cluster, key: tuple[str, str],
               tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    need("rclone")
    env = clean_env(tmp_path_factory.mktemp("rclonehome"))
    env.update(RCLONE_CONFIG_T_TYPE="s3", RCLONE_CONFIG_T_PROVIDER="Other",
               RCLONE_CONFIG_T_ACCESS_KEY_ID=key[0], RCLONE_CONFIG_T_SECRET_ACCESS_KEY=key[1],
               RCLONE_CONFIG_T_ENDPOINT=cluster.s3_url, RCLONE_CONFIG_T_REGION="us-east-1",
               RCLONE_CONFIG_T_FORCE_PATH_STYLE="true")
    return env


def rclone(env: dict[str, str], *args: str) -> str:
    return run(["rclone", "--retries", "1", "--low-level-retries", "1", *args], env).stdout


def test_rclone_copies_a_tree_in_and_out(rclone_env: dict[str, str], tmp_path: Path) -> None:
    src, back = tmp_path / "src", tmp_path / "back"
    want = tree(src, 1)
    rclone(rclone_env, "mkdir", "t:rclone-tree")
    rclone(rclone_env, "copy", str(src), "t:rclone-tree/set")
    listed = rclone(rclone_env, "lsf", "-R", "--files-only", "t:rclone-tree/set").splitlines()
    assert sorted(listed) == sorted(want)
    # rclone check compares sizes and MD5s (the ETags of single-part objects).
    rclone(rclone_env, "check", str(src), "t:rclone-tree/set")
    rclone(rclone_env, "copy", "t:rclone-tree/set", str(back))
    assert digests(back) == want
    rclone(rclone_env, "purge", "t:rclone-tree")
    assert "rclone-tree" not in rclone(rclone_env, "lsd", "t:")


def multipart_etag_of(cluster: Cluster, key: tuple[str, str], bucket: str, name: str) -> str:
    """The object's ETag as S3 clients see it: ``"…-N"`` for N parts."""
    etag: str = s3_client(cluster, key).head_object(Bucket=bucket, Key=name)["ETag"]
    return etag


def test_rclone_sends_a_200_mib_file_in_parts(cluster: Cluster, key: tuple[str, str],
                                              rclone_env: dict[str, str],
                                              tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with big.open("wb") as fh:
        for _ in range(200):
            fh.write(os.urandom(MiB))
    rclone(rclone_env, "mkdir", "t:rclone-big")
    # Parts of 16 MiB from 32 MiB up: 13 parts, 4 at a time.
    rclone(rclone_env, "copy", "--s3-upload-cutoff", "32M", "--s3-chunk-size", "16M",
           "--s3-upload-concurrency", "4", str(big), "t:rclone-big")
    assert multipart_etag_of(cluster, key, "rclone-big", "big.bin").endswith('-13"')
    back = tmp_path / "back"
    rclone(rclone_env, "copy", "t:rclone-big/big.bin", str(back))
    assert hashlib.sha256((back / "big.bin").read_bytes()).digest() == \
        hashlib.sha256(big.read_bytes()).digest()
    rclone(rclone_env, "purge", "t:rclone-big")


# -- s3cmd ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3cmd_conf(cluster: Cluster, key: tuple[str, str],
               tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], dict[str, str]]:
    need("s3cmd")
    home = tmp_path_factory.mktemp("s3cmdhome")
    host = cluster.s3_url.split("://", 1)[1]
    conf = home / "s3cfg"
    conf.write_text(f"[default]\naccess_key = {key[0]}\nsecret_key = {key[1]}\n"
                    f"host_base = {host}\nhost_bucket = {host}\nuse_https = False\n"
                    "signature_v2 = False\nbucket_location = us-east-1\n"
                    "multipart_chunk_size_mb = 5\n")
    return ["s3cmd", "-c", str(conf)], clean_env(home)


def test_s3cmd_copies_a_tree_in_and_out(s3cmd_conf: tuple[list[str], dict[str, str]],
                                        tmp_path: Path) -> None:
    cmd, env = s3cmd_conf
    src, back = tmp_path / "src", tmp_path / "back"
    want = tree(src, 2)
    run([*cmd, "mb", "s3://s3cmd-tree"], env)
    run([*cmd, "put", "--recursive", f"{src}/", "s3://s3cmd-tree/set/"], env)
    listed = run([*cmd, "ls", "--recursive", "s3://s3cmd-tree/set/"], env).stdout
    for name in want:
        assert f"s3://s3cmd-tree/set/{name}" in listed
    back.mkdir()
    run([*cmd, "get", "--recursive", "s3://s3cmd-tree/set/", f"{back}/"], env)
    assert digests(back) == want
    run([*cmd, "del", "--recursive", "--force", "s3://s3cmd-tree/"], env)
    run([*cmd, "rb", "s3://s3cmd-tree"], env)
    assert "s3cmd-tree" not in run([*cmd, "ls"], env).stdout


def test_s3cmd_sends_a_file_in_parts(cluster: Cluster, key: tuple[str, str],
                                     s3cmd_conf: tuple[list[str], dict[str, str]],
                                     tmp_path: Path) -> None:
    cmd, env = s3cmd_conf
    big = tmp_path / "twelve.bin"
    big.write_bytes(os.urandom(12 * MiB + 5))  # three parts of 5 MiB at most
    run([*cmd, "mb", "s3://s3cmd-parts"], env)
    run([*cmd, "put", str(big), "s3://s3cmd-parts/twelve.bin"], env)
    # The ETag of three parts (s3cmd info shows the whole file's MD5 instead,
    # from the metadata it stores with the object: checked too).
    assert multipart_etag_of(cluster, key, "s3cmd-parts", "twelve.bin").endswith('-3"')
    info = run([*cmd, "info", "s3://s3cmd-parts/twelve.bin"], env).stdout
    assert hashlib.md5(big.read_bytes()).hexdigest() in info
    out = tmp_path / "out.bin"
    run([*cmd, "get", "s3://s3cmd-parts/twelve.bin", str(out)], env)
    assert out.read_bytes() == big.read_bytes()
    run([*cmd, "del", "s3://s3cmd-parts/twelve.bin"], env)
    run([*cmd, "rb", "s3://s3cmd-parts"], env)


# -- restic ---------------------------------------------------------------------


def test_restic_backs_up_and_restores_byte_for_byte(cluster: Cluster, key: tuple[str, str],
                                                    tmp_path: Path) -> None:
    need("restic")
    env = clean_env(tmp_path / "home")
    env.update(RESTIC_REPOSITORY=f"s3:{cluster.s3_url}/restic-repo",
               RESTIC_PASSWORD="correct horse battery staple",
               AWS_ACCESS_KEY_ID=key[0], AWS_SECRET_ACCESS_KEY=key[1],
               AWS_DEFAULT_REGION="us-east-1", RESTIC_CACHE_DIR=str(tmp_path / "cache"))
    src = tmp_path / "photos"
    want = tree(src, 3)
    run(["restic", "init"], env)
    run(["restic", "backup", str(src)], env)
    (src / "a.txt").write_bytes(b"changed after the first snapshot")
    run(["restic", "backup", str(src)], env)
    snapshots = sorted(json.loads(run(["restic", "snapshots", "--json"], env).stdout),
                       key=lambda snap: snap["time"])
    assert len(snapshots) == 2
    restored = tmp_path / "restored"
    first = snapshots[0]["id"]  # the original a.txt
    run(["restic", "restore", first, "--target", str(restored)], env)
    assert digests(restored / src.relative_to("/")) == want
    run(["restic", "check", "--read-data"], env)
