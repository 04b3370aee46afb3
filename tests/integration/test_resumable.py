"""Big files in parts: sent in parallel, resumed after an interruption (the CLI
killed with SIGKILL, Ctrl-C in the SDK), started over when the file changed or
the cluster dropped the upload, and aborted with ``tossit uploads abort``.

Parts are 5 MiB (the smallest the brain takes but the last) and files a few
parts long, with the parted path lowered to 8 MiB, to keep the test short.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cluster import Cluster, wait_until
from tossit.client import TossitClient, TossitError, UploadInterrupted

MiB = 1 << 20
PART = 5 * MiB
PART_ROUTE = 'method="PUT",route="/api/uploads/{upload_id}/parts/{number}"'


def client_of(cluster: Cluster, state: Path, parallel: int = 4) -> TossitClient:
    return TossitClient(cluster.url, key=cluster.admin_key, parts_above=8 * MiB,
                        part_size=PART, parallel=parallel, state_dir=state)


def cli_env(cluster: Cluster, state_home: Path) -> dict[str, str]:
    return dict(os.environ, COLUMNS="200", TOSSIT_BRAIN_URL=cluster.url,
                TOSSIT_KEY_FILE=str(cluster.root / "brain" / "admin.key"),
                XDG_STATE_HOME=str(state_home), TOSSIT_UPLOAD_PARTS_ABOVE="8MiB",
                TOSSIT_UPLOAD_PART_SIZE="5MiB")


def tossit(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "tossit", *args], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def uploads_of(cluster: Cluster, name: str) -> list[str]:
    body = cluster.http.get("/api/uploads", params={"prefix": name}).json()
    return [u["id"] for u in body["uploads"] if u["name"] == name]


def held_parts(cluster: Cluster, upload_id: str) -> dict[int, str]:
    body = cluster.http.get(f"/api/uploads/{upload_id}").json()
    return {p["number"]: p["md5"] for p in body["parts"]}


def parts_received(cluster: Cluster) -> int:
    """Part requests the brain has answered (or seen end), from its request metrics."""
    found = re.search(r"tossit_http_request_duration_seconds_count\{" + re.escape(PART_ROUTE)
                      + r"\} ([\d.e+]+)", cluster.http.get("/metrics").text)
    return int(float(found.group(1))) if found else 0


def stored_bytes(cluster: Cluster, name: str) -> bytes:
    (meta,) = [f for f in cluster.http.get("/api/files", params={"search": name}).json()
               if f["name"] == name]
    return cluster.download(meta["id"])


def put_in_background(env: dict[str, str], path: Path, name: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tossit", "put", str(path), "--name", name,
                             "--parallel", "2"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def stop_with_parts(proc: subprocess.Popen[str], cluster: Cluster, name: str,
                    parts: int) -> str:
    """Let ``tossit put`` run in short steps, stopped (SIGSTOP) while the brain is
    asked, until its upload holds ``parts`` parts: well before the last."""
    upload_id: str = wait_until(lambda: next(iter(uploads_of(cluster, name)), None),
                                timeout=60, interval=0.02)
    while True:
        proc.send_signal(signal.SIGCONT)
        time.sleep(0.02)
        proc.send_signal(signal.SIGSTOP)
        if len(held_parts(cluster, upload_id)) >= parts:
            return upload_id


def interrupt_after(parts: int) -> Callable[[int], None]:
    """A progress callback that presses Ctrl-C once ``parts`` parts' bytes went."""
    sent = [0]

    def progress(n: int) -> None:
        sent[0] += n
        if sent[0] >= parts * PART:
            raise KeyboardInterrupt
    return progress


def test_parted_upload_in_parallel_reads_back(shared_cluster: Cluster, tmp_path: Path) -> None:
    data = os.urandom(4 * PART + 123_457)  # five parts, the last short
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    seen: list[int] = []
    with client_of(shared_cluster, tmp_path / "state") as client:
        done = client.upload(path, "resumable/parallel.bin", progress=seen.append)
    assert done.size == len(data) and sum(seen) == len(data)
    assert done.etag.endswith("-5")  # type: ignore[attr-defined]
    assert stored_bytes(shared_cluster, "resumable/parallel.bin") == data
    assert uploads_of(shared_cluster, "resumable/parallel.bin") == []
    assert list((tmp_path / "state").iterdir()) == []  # the state goes with the upload


def test_killed_put_resumes_without_sending_held_parts_again(
        shared_cluster: Cluster, tmp_path: Path) -> None:
    name = "resumable/killed.bin"
    data = os.urandom(12 * PART + 777)  # 13 parts
    path = tmp_path / "killed.bin"
    path.write_bytes(data)
    env = cli_env(shared_cluster, tmp_path / "state")
    proc = put_in_background(env, path, name)
    try:
        upload_id = stop_with_parts(proc, shared_cluster, name, 2)
    finally:
        proc.kill()
        proc.wait()
    time.sleep(1.0)  # the part it was sending ends on the brain (not recorded)
    held = held_parts(shared_cluster, upload_id)
    assert 2 <= len(held) < 13
    before = parts_received(shared_cluster)

    out = tossit(env, "put", str(path), "--name", name, "--parallel", "3").stderr
    assert f"resuming: {len(held)} of 13 parts already on the cluster" in out, out
    assert f"sent {13 - len(held)} of 13 parts; {len(held)} were already" in out, out
    assert parts_received(shared_cluster) - before == 13 - len(held)
    assert stored_bytes(shared_cluster, name) == data
    assert uploads_of(shared_cluster, name) == []


def test_ctrl_c_keeps_the_upload_and_says_how_to_resume(
        shared_cluster: Cluster, tmp_path: Path) -> None:
    name = "resumable/ctrl-c.bin"
    data = os.urandom(12 * PART)
    path = tmp_path / "ctrl-c.bin"
    path.write_bytes(data)
    env = cli_env(shared_cluster, tmp_path / "state")
    proc = put_in_background(env, path, name)
    try:
        upload_id = stop_with_parts(proc, shared_cluster, name, 1)
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGCONT)
        _, said = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, said
    stopped = re.search(r"interrupted: (\d+) of 12 parts of \S+ are on the cluster "
                        rf"\(upload {upload_id}\)", said)
    assert stopped and int(stopped.group(1)) < 12, said  # it stopped, not finished
    assert "Run the same tossit put again to resume" in said
    assert f"tossit uploads abort {upload_id}" in said and "Traceback" not in said
    assert uploads_of(shared_cluster, name) == [upload_id]

    out = tossit(env, "put", str(path), "--name", name).stderr
    assert "resuming: " in out, out
    assert stored_bytes(shared_cluster, name) == data


def test_an_upload_outlives_a_brain_killed_under_it(make_cluster: Callable[..., Cluster],
                                                    tmp_path: Path) -> None:
    """The brain dies (SIGKILL) while parts stream in and comes back a few seconds
    later: the put sends the parts that failed again by itself, and finishes."""
    cluster = make_cluster(nodes=3, replicas=3)
    name = "resumable/brain-killed.bin"
    data = os.urandom(12 * PART)
    path = tmp_path / "brain-killed.bin"
    path.write_bytes(data)
    env = cli_env(cluster, tmp_path / "state")
    proc = put_in_background(env, path, name)
    try:
        upload_id = stop_with_parts(proc, cluster, name, 2)
        held = held_parts(cluster, upload_id)
        cluster.stop_brain(signal.SIGKILL)
        proc.send_signal(signal.SIGCONT)
        time.sleep(2)  # the put finds no brain, and waits
        cluster.start_brain()
        _, said = proc.communicate(timeout=90)
    finally:
        proc.kill()
    assert proc.returncode == 0, said
    assert "sending it again in" in said, said
    assert stored_bytes(cluster, name) == data
    assert len(held) >= 2 and uploads_of(cluster, name) == []  # completed, not left behind


def test_a_file_changed_since_the_interruption_starts_over(
        shared_cluster: Cluster, tmp_path: Path) -> None:
    name = "resumable/changed.bin"
    path = tmp_path / "changed.bin"
    path.write_bytes(os.urandom(4 * PART))
    state = tmp_path / "state"
    stop_early = interrupt_after(2)
    with client_of(shared_cluster, state, parallel=1) as client, \
            pytest.raises(UploadInterrupted) as caught:
        client.upload(path, name, progress=stop_early)
    old = caught.value.upload_id
    assert uploads_of(shared_cluster, name) == [old] and held_parts(shared_cluster, old)

    new = os.urandom(3 * PART + 5)
    path.write_bytes(new)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))  # a new mtime, surely
    said: list[str] = []
    with client_of(shared_cluster, state) as client:
        done = client.upload(path, name, notify=said.append)
    assert any("changed since the interrupted upload" in s for s in said), said
    assert not any(s.startswith("resuming") for s in said), said
    assert done.size == len(new) and stored_bytes(shared_cluster, name) == new
    assert uploads_of(shared_cluster, name) == []  # the stale upload was aborted
    assert shared_cluster.http.get(f"/api/uploads/{old}").status_code == 404


def test_aborted_upload_is_freed_and_the_next_put_starts_over(
        shared_cluster: Cluster, tmp_path: Path) -> None:
    name = "resumable/aborted.bin"
    data = os.urandom(3 * PART + 99)
    path = tmp_path / "aborted.bin"
    path.write_bytes(data)
    state = tmp_path / "state"
    stop_early = interrupt_after(1)
    with client_of(shared_cluster, state, parallel=1) as client, \
            pytest.raises(UploadInterrupted) as caught:
        client.upload(path, name, progress=stop_early)
    upload_id = caught.value.upload_id
    env = cli_env(shared_cluster, tmp_path / "unused")
    assert upload_id in tossit(env, "uploads", "ls").stdout

    assert f"aborted upload {upload_id}" in tossit(env, "uploads", "abort", upload_id).stdout
    assert shared_cluster.http.get(f"/api/uploads/{upload_id}").status_code == 404
    assert upload_id not in tossit(env, "uploads", "ls").stdout

    said: list[str] = []
    with client_of(shared_cluster, state) as client:
        done = client.upload(path, name, notify=said.append)
    assert any("no longer has the interrupted upload" in s for s in said), said
    assert done.size == len(data) and stored_bytes(shared_cluster, name) == data


def test_small_files_keep_the_single_request(shared_cluster: Cluster, tmp_path: Path) -> None:
    path = tmp_path / "small.bin"
    path.write_bytes(os.urandom(MiB))
    before = parts_received(shared_cluster)
    with client_of(shared_cluster, tmp_path / "state") as client:
        done = client.upload(path, "resumable/small.bin")
    assert "etag" not in done.model_dump() and done.size == MiB
    assert parts_received(shared_cluster) == before


def test_on_conflict_applies_to_a_parted_upload(shared_cluster: Cluster, tmp_path: Path) -> None:
    name = "resumable-conflict.bin"
    shared_cluster.upload(name, b"already here")
    path = tmp_path / "conflict.bin"
    data = os.urandom(2 * PART + 1)
    path.write_bytes(data)
    with client_of(shared_cluster, tmp_path / "state") as client:
        with pytest.raises(TossitError) as refused:
            client.upload(path, name, on_conflict="fail")
        assert refused.value.status == 409 and uploads_of(shared_cluster, name) == []
        kept = client.upload(path, name, on_conflict="rename")
    assert kept.name == "resumable-conflict (2).bin"
    assert stored_bytes(shared_cluster, kept.name) == data
    assert stored_bytes(shared_cluster, name) == b"already here"
