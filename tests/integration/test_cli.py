"""The ``tossit`` command as a user runs it: ``up`` and the client verbs."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from cluster import Cluster, free_port, wait_until


def tossit(*args: str, brain: str | None = None, cwd: Path | None = None,
           check: bool = True, key_file: Path | None = None, columns: int = 200
           ) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS=str(columns))
    if brain:
        env["TOSSIT_BRAIN_URL"] = brain
    if key_file:
        env["TOSSIT_KEY_FILE"] = str(key_file)
    proc = subprocess.run([sys.executable, "-m", "tossit", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_client_verbs_round_trip(shared_cluster: Cluster, tmp_path: Path) -> None:
    url = shared_cluster.url
    folder = tmp_path / "album"
    (folder / "2024").mkdir(parents=True)
    files = {
        folder / "a.jpg": os.urandom(2 * 1024 * 1024 + 5),
        folder / "2024" / "b.txt": b"hello from the cli\n",
    }
    for path, data in files.items():
        path.write_bytes(data)
    key = shared_cluster.root / "brain" / "admin.key"
    out = tossit("put", str(folder), brain=url, key_file=key)
    assert "2 of 2 uploaded" in out.stderr
    listing = {f["name"]: f for f in shared_cluster.http.get("/api/files").json()}
    assert listing["album/a.jpg"]["size"] == len(files[folder / "a.jpg"])
    assert listing["album/2024/b.txt"]["sha256"] == hashlib.sha256(
        files[folder / "2024" / "b.txt"]).hexdigest()

    assert "album/a.jpg" in tossit("ls", "album", brain=url, key_file=key).stdout
    dest = tmp_path / "copy.jpg"
    got = tossit("get", "album/a.jpg", "-o", str(dest), brain=url, key_file=key)
    assert "sha256 verified" in got.stderr
    assert dest.read_bytes() == files[folder / "a.jpg"]
    assert not list(tmp_path.glob(".*partial"))
    nowhere = tossit("get", "album/a.jpg", "-o", str(tmp_path / "no" / "such" / "x.jpg"),
                     brain=url, key_file=key, check=False)
    assert nowhere.returncode == 1 and "Traceback" not in nowhere.stderr
    assert f"cannot save {tmp_path / 'no' / 'such' / 'x.jpg'}" in nowhere.stderr

    info = tossit("info", str(listing["album/a.jpg"]["id"]), brain=url, key_file=key).stdout
    assert "healthy" in info and "node-" in info
    listed_nodes = tossit("nodes", brain=url, key_file=key).stdout
    assert "online" in listed_nodes
    status = tossit("status", brain=url, key_file=key).stdout
    assert "every chunk has its full set of copies" in status
    assert re.search(r"capacity: room for about [\d.]+ \w+ more at \d cop", status), status
    # The test's nodes share this machine's disk: both commands say what that means.
    for said in (listed_nodes, status):
        assert "store on one disk" in said and "do not protect against that disk failing" in said
        assert said.count("store on one disk") == 1, said  # said once, not twice

    # --json: the brain's answer as the REST API gives it, for scripts.
    as_json = json.loads(tossit("ls", "album", "--json", brain=url, key_file=key).stdout)
    assert {f["name"]: (f["id"], f["size"], f["sha256"]) for f in as_json} == {
        n: (listing[n]["id"], listing[n]["size"], listing[n]["sha256"])
        for n in ("album/a.jpg", "album/2024/b.txt")}
    one = json.loads(tossit("info", "album/a.jpg", "--json", brain=url, key_file=key).stdout)
    assert one["id"] == listing["album/a.jpg"]["id"]
    assert sum(c["size"] for c in one["chunk_map"]) == len(files[folder / "a.jpg"])
    assert all(len(c["nodes"]) == 3 for c in one["chunk_map"])
    nodes = json.loads(tossit("nodes", "--json", brain=url, key_file=key).stdout)
    assert sorted(n["state"] for n in nodes) == ["online"] * 3
    assert {n["id"] for n in nodes} == {n["id"] for n in shared_cluster.http.get(
        "/api/nodes").json()}
    status_json = json.loads(tossit("status", "--json", brain=url, key_file=key).stdout)
    assert status_json["nodes"]["online"] == 3
    assert status_json["replication"]["chunks_below_target"] == 0
    events = json.loads(tossit("events", "--json", "--kind", "files_uploaded",
                               brain=url, key_file=key).stdout)
    assert events and all(e["kind"] == "files_uploaded" for e in events)

    tossit("rm", "album/a.jpg", "album/2024/b.txt", brain=url, key_file=key)
    names = {f["name"] for f in shared_cluster.http.get("/api/files").json()}
    assert not names & {"album/a.jpg", "album/2024/b.txt"}


def test_put_as_names_the_file_like_trash_restore(shared_cluster: Cluster,
                                                  tmp_path: Path) -> None:
    """`tossit put --as NAME`, as `tossit trash restore --as`; --name still works."""
    url, key = shared_cluster.url, shared_cluster.root / "brain" / "admin.key"
    src = tmp_path / "local.txt"
    src.write_bytes(b"stored under another name\n")
    tag = os.urandom(4).hex()
    tossit("put", str(src), "--as", f"as-{tag}/renamed.txt", brain=url, key_file=key)
    tossit("put", str(src), "--name", f"as-{tag}/named.txt", brain=url, key_file=key)
    names = {f["name"] for f in shared_cluster.http.get(
        "/api/files", params={"search": f"as-{tag}/"}).json()}
    assert names == {f"as-{tag}/renamed.txt", f"as-{tag}/named.txt"}
    (tmp_path / "other.txt").write_bytes(b"x")
    two = tossit("put", str(src), str(tmp_path / "other.txt"), "--as", "x.txt", brain=url,
                 key_file=key, check=False)
    assert two.returncode == 2 and "works with exactly one file" in two.stderr


def test_ids_whole_at_80_columns_and_their_starts_accepted(shared_cluster: Cluster) -> None:
    """`tossit key list` and `tossit uploads ls` show whole ids on a narrow terminal
    (they are copied into key revoke, uploads abort and S3 clients), and those
    commands take an id's first characters, as node commands do."""
    url, key = shared_cluster.url, shared_cluster.root / "brain" / "admin.key"
    http = shared_cluster.http
    made = [http.post("/api/keys", json={"name": f"a long name for the backup machine {n}",
                                         "role": "readwrite"}).json() for n in range(2)]
    listed = tossit("key", "list", brain=url, key_file=key, columns=80).stdout
    assert max(len(line) for line in listed.splitlines()) <= 80, listed
    for k in made:
        assert re.search(rf"^ *{k['id']} ", listed, re.M), listed  # whole, on its line
    assert "…" not in listed
    # A start of an id revokes that key; an unknown or too short one is refused.
    first = made[0]["id"]
    out = tossit("key", "revoke", first[:8].lower(), brain=url, key_file=key).stdout
    assert f"revoked key {first}" in out
    assert {k["id"]: k["state"] for k in http.get("/api/keys").json()}[first] == "revoked"
    assert {k["id"]: k["state"] for k in http.get("/api/keys").json()}[
        made[1]["id"]] == "active"
    unknown = tossit("key", "revoke", "TK222222", brain=url, key_file=key, check=False)
    assert unknown.returncode == 1 and "no key 'TK222222'" in unknown.stderr, unknown.stderr
    short = tossit("key", "revoke", "TK", brain=url, key_file=key, check=False)
    assert short.returncode == 1 and "too short" in short.stderr, short.stderr
    assert "pattern" not in unknown.stderr + short.stderr

    tag = os.urandom(4).hex()
    ids = [http.post("/api/uploads", params={
        "name": f"ids-{tag}/a-rather-long-folder-name/holiday-video-{n}.mp4"}).json()["id"]
        for n in range(2)]
    listed = tossit("uploads", "ls", brain=url, key_file=key, columns=80).stdout
    assert max(len(line) for line in listed.splitlines()) <= 80, listed
    for upload_id in ids:
        assert re.search(rf"^ *{upload_id} ", listed, re.M), listed
    assert "…" not in listed
    common = ids[0][:next(i for i, (a, b) in enumerate(zip(*ids, strict=True)) if a != b)]
    if len(common) >= 4:  # (started the same millisecond-ish: always, but for a rollover)
        both = tossit("uploads", "abort", common, brain=url, key_file=key, check=False)
        assert both.returncode == 1, both.stdout + both.stderr
        assert "starts the ids of 2 uploads" in both.stderr and "give more of it" in (
            both.stderr), both.stderr
    start = ids[0][:max(len(common) + 1, 4)]  # (its own: the other differs there)
    out = tossit("uploads", "abort", start, brain=url, key_file=key).stdout
    assert f"aborted upload {ids[0]}" in out
    left = {u["id"] for u in http.get("/api/uploads", params={"prefix": f"ids-{tag}/"}
                                      ).json()["uploads"]}
    assert left == {ids[1]}
    unknown = tossit("uploads", "abort", "ffffff", brain=url, key_file=key, check=False)
    assert unknown.returncode == 1 and "no upload 'ffffff'" in unknown.stderr, unknown.stderr
    tossit("uploads", "abort", ids[1], brain=url, key_file=key)  # a whole id, as before


def test_client_errors_are_one_clear_line(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    res = tossit("ls", brain=dead, check=False)
    assert res.returncode != 0
    assert "cannot reach the brain" in res.stderr and "Traceback" not in res.stderr
    res = tossit("put", str(tmp_path / "missing.bin"), brain=dead, check=False)
    assert res.returncode != 0 and "no such file" in res.stderr
    bad = tossit("brain", "--port", "70000", check=False)
    assert bad.returncode == 2 and "port" in bad.stderr and "Traceback" not in bad.stderr
    bad = tossit("node", "--brain", "not-a-url", check=False)
    assert bad.returncode == 2 and "brain" in bad.stderr


def test_up_runs_a_cluster_and_stops_cleanly(tmp_path: Path) -> None:
    port, node_port, s3_port = free_port(), free_port(), free_port()
    while port in (node_port, node_port + 1) or s3_port in (node_port, node_port + 1):
        node_port = free_port()
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tossit", "up", "--nodes", "2", "--port", str(port),
         "--node-port", str(node_port), "--s3-port", str(s3_port), "--data-dir", str(data)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    key_file = data / "brain" / "admin.key"
    try:
        def two_online() -> bool:
            auth = {"Authorization": f"Bearer {key_file.read_text().strip()}"}
            nodes = httpx.get(url + "/api/nodes", timeout=2, headers=auth).json()
            return sum(n["state"] == "online" for n in nodes) == 2

        wait_until(two_online, 90, what="tossit up: 2 nodes online")
        auth = {"Authorization": f"Bearer {key_file.read_text().strip()}"}
        assert httpx.put(url + "/api/files/x.txt", content=b"hi").status_code == 401
        up = httpx.put(url + "/api/files/hello.txt", content=b"hi", headers=auth)
        assert up.status_code == 201 and up.json()["replication"]["target"] == 2
        # The S3 API answers on its port too (an anonymous request: refused, in XML).
        anonymous = httpx.get(f"http://127.0.0.1:{s3_port}/", timeout=5)
        assert anonymous.status_code == 403 and b"<Code>AccessDenied</Code>" in anonymous.content
        assert (data / "brain" / "tossit.db").exists()
        assert (data / "node1" / "node.json").exists() and (data / "node2" / "node.json").exists()
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "stopped." in out
    assert f"S3 API           http://127.0.0.1:{s3_port}" in out
    assert str(key_file.resolve()) in out  # tossit up says where the admin key is
    # ... but not the secret itself: its output is a pipe here, not a terminal.
    assert key_file.read_text().strip() not in out
    assert "not printed because the output is not a terminal" in out
    assert key_file.stat().st_mode & 0o777 == 0o600
    for p in (port, s3_port, node_port, node_port + 1):
        try:
            httpx.get(f"http://127.0.0.1:{p}/health", timeout=1)
        except httpx.HTTPError:
            continue
        raise AssertionError(f"something still answers on port {p} after tossit up stopped")
    # The key in admin.key revoked (another admin key exists): the next start says
    # so and how to fix it; --new-admin-key writes a working one.
    revoked = key_file.read_text().strip()

    def run_up(log: Path, *extra: str) -> subprocess.Popen[str]:
        with open(log, "w") as fh:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tossit", "up", "--nodes", "2", "--port", str(port),
                 "--node-port", str(node_port), "--s3-port", str(s3_port), "--data-dir",
                 str(data), *extra],
                stdout=fh, stderr=subprocess.STDOUT, text=True)
        wait_until(lambda: "Press Ctrl-C" in log.read_text(), 90, what="tossit up running")
        return proc

    def stop(proc: subprocess.Popen[str], log: Path) -> str:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        return log.read_text()

    log = tmp_path / "up2.log"
    proc = run_up(log, "--new-admin-key")
    try:
        auth = {"Authorization": f"Bearer {key_file.read_text().strip()}"}
        assert auth["Authorization"] != f"Bearer {revoked}"
        me = httpx.get(url + "/api/keys/me", headers={"Authorization": f"Bearer {revoked}"},
                       timeout=5).json()
        assert httpx.delete(f"{url}/api/keys/{me['id']}", headers=auth,
                            timeout=5).status_code == 200
        assert httpx.get(url + "/api/keys/me", headers=auth, timeout=5).status_code == 200
    finally:
        out = stop(proc, log)
    assert "[new]" in out, out
    key_file.write_text(revoked + "\n")  # the revoked one back: what the next start says
    log = tmp_path / "up3.log"
    out = stop(run_up(log), log)
    assert "no longer works" in out and "tossit up --new-admin-key" in out, out
    assert "Traceback" not in out


def test_node_what_if_drain_and_undrain(make_cluster: Any) -> None:
    c = make_cluster(nodes=3, replicas=2)
    key_file = c.root / "brain" / "admin.key"
    c.upload("whatif.bin", os.urandom(3 * 1024 * 1024))
    # The node holding the most chunks (placement decides; one may hold none).
    i = max(range(3), key=lambda n: len(c.chunk_files(n)))
    name, held = f"node-{i}", len(c.chunk_files(i))
    others = ", ".join(f"node-{n}" for n in range(3) if n != i)
    assert held > 0
    out = tossit("node", "what-if", name, brain=c.url, key_file=key_file).stdout
    assert f"If {name} stops now, {held} chunk" in out and "drop to 1 copy" in out, out
    assert "none become unavailable" in out and "remove: refused now" in out, out
    missing = tossit("node", "what-if", "node-9", brain=c.url, key_file=key_file, check=False)
    assert missing.returncode == 1 and "no node 'node-9'" in missing.stderr + missing.stdout
    out = tossit("node", "drain", name, brain=c.url, key_file=key_file).stdout
    assert f"will be copied to 2 other nodes ({others})" in out, out
    assert c.http.get(f"/api/nodes/{c.node_id(i)}").json()["admin_state"] in (
        "draining", "drained")
    row = next(line for line in tossit("nodes", brain=c.url, key_file=key_file).stdout
               .splitlines() if line.startswith(f"{name} "))
    assert re.search(r"online, drain(ing|ed)", row) and c.node_id(i)[:8] in row, row
    # The short id `tossit nodes` shows is enough for node commands.
    out = tossit("node", "what-if", c.node_id(i)[:8], brain=c.url, key_file=key_file).stdout
    assert f"If {name} stops now" in out, out
    out = tossit("node", "undrain", name, brain=c.url, key_file=key_file).stdout
    assert f"{name} takes new chunks again" in out
    assert c.http.get(f"/api/nodes/{c.node_id(i)}").json()["admin_state"] is None


def test_a_second_node_on_the_same_data_dir_is_refused(make_cluster: Any) -> None:
    """Two node processes on one chunk folder would each count, delete and
    register as the same node: the second one is refused, naming the first."""
    c: Cluster = make_cluster(nodes=1, replicas=1)
    second = tossit("node", "--data-dir", str(c.node_dir(0)), "--port", str(free_port()),
                    "--brain", c.url, check=False)
    assert second.returncode == 2, second.stdout + second.stderr
    proc = c.children["node0"].proc
    assert proc is not None
    assert f"another node (pid {proc.pid}) is already running with data dir" in (
        second.stderr), second.stderr
    assert c.node_state(0) == "online"
