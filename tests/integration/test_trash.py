"""The trash, with real processes: deleted and overwritten files stay restorable
for ``trash_keep``, their bytes counted, their chunks kept on the nodes until
purged (by hand, by emptying, or on expiry); a brain loss keeps the trash.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
from typing import Any

import httpx
import pytest

from cluster import Cluster, wait_until

MiB = 1024 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def names(c: Cluster) -> dict[str, int]:
    return {f["name"]: f["id"] for f in c.http.get("/api/files", params={"limit": 10000}).json()}


def trash(c: Cluster) -> dict[int, dict[str, Any]]:
    resp = c.http.get("/api/trash", params={"limit": 1000})
    assert resp.status_code == 200, resp.text
    return {f["id"]: f for f in resp.json()["files"]}


def chunks_on_nodes(c: Cluster) -> int:
    return sum(len(c.chunk_files(i)) for i in range(c.n_nodes))


def held(c: Cluster, ids: set[str]) -> int:
    """Copies of these chunks on the nodes' disks."""
    return sum(len(ids & set(c.chunk_files(i))) for i in range(c.n_nodes))


def chunk_ids(c: Cluster, file_id: int) -> set[str]:
    return {ch["id"] for ch in c.http.get(f"/api/files/{file_id}/info").json()["chunk_map"]}


def restore(c: Cluster, file_id: int, **params: str) -> httpx.Response:
    return c.http.post(f"/api/trash/{file_id}/restore", params=params)


def key(c: Cluster, role: str) -> httpx.Client:
    made = c.http.post("/api/keys", json={"name": f"{role}-test", "role": role})
    assert made.status_code == 201, made.text
    return httpx.Client(base_url=c.url, timeout=30,
                        headers={"Authorization": f"Bearer {made.json()['secret']}"})


def lose_and_recover(c: Cluster, *args: str) -> str:
    """Kill the brain, delete its data dir, ``tossit recover`` from the nodes, start
    a brain on the result. Returns what recover printed."""
    c.stop_brain(signal.SIGKILL)
    shutil.rmtree(c.root / "brain")
    secret = c.node_dir(0) / "cluster.secret"
    nodes = [a for port in c.node_ports for a in ("--node", f"http://127.0.0.1:{port}")]
    proc = subprocess.run(
        [sys.executable, "-m", "tossit", "recover", "--cluster-secret-file", str(secret),
         "--data-dir", str(c.root / "brain"), "--replicas", str(c.replicas), *args, *nodes],
        capture_output=True, text=True, timeout=300, cwd=c.root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    c.start_brain()
    c.wait_online(3)
    return proc.stdout


@pytest.fixture
def cl(make_cluster: Any) -> Cluster:
    c: Cluster = make_cluster(nodes=3, replicas=3, brain_env={"TOSSIT_TRASH_KEEP": "3600"})
    return c


def test_delete_goes_to_the_trash_and_restores_byte_identical(cl: Cluster) -> None:
    data = os.urandom(2 * MiB + 123)
    up = cl.upload("a.bin", data)
    ids = chunk_ids(cl, up["id"])
    before = cl.http.get("/api/status").json()
    resp = cl.http.delete(f"/api/files/{up['id']}")
    assert resp.status_code == 200 and resp.json()["trash"] is True
    assert "a.bin" not in names(cl)
    assert cl.http.get(f"/api/files/{up['id']}/download").status_code == 404
    row = trash(cl)[up["id"]]
    assert (row["name"], row["size"], row["why"], row["bucket"]) == (
        "a.bin", len(data), "deleted", "default")
    assert row["purge_at"] > row["deleted"]
    # Still stored, and counted: the collector leaves its chunks.
    cl.gc()
    assert held(cl, ids) == 3 * len(ids)
    st = cl.http.get("/api/status").json()
    assert st["trash"]["files"] == 1 and st["trash"]["bytes"] == len(data)
    assert st["trash"]["keep_s"] == 3600
    assert st["chunks"] == before["chunks"] and st["chunk_bytes"] == before["chunk_bytes"]
    assert st["objects"] == before["objects"] - 1
    # Restore: same id, same bytes, out of the trash.
    back = restore(cl, up["id"])
    assert back.status_code == 200, back.text
    assert back.json()["id"] == up["id"] and back.json()["name"] == "a.bin"
    assert sha(cl.download(up["id"])) == sha(data)
    assert up["id"] not in trash(cl) and names(cl)["a.bin"] == up["id"]
    kinds = [e["kind"] for e in cl.http.get("/api/events", params={"limit": 50}).json()]
    assert "trash_moved" in kinds and "trash_restored" in kinds


def test_a_trashed_file_frees_its_name_and_restores_by_on_conflict(cl: Cluster) -> None:
    old, new = os.urandom(300_000), os.urandom(200_000)
    first = cl.upload("doc.txt", old)
    assert cl.http.delete(f"/api/files/{first['id']}").status_code == 200
    # The name is free: even on_conflict=fail takes it.
    took = cl.http.post("/api/files/upload", params={"on_conflict": "fail"},
                        files={"file": ("doc.txt", new)})
    assert took.status_code == 201, took.text
    second = took.json()
    refused = restore(cl, first["id"])
    assert refused.status_code == 409 and refused.json()["error"] == "name_taken"
    assert first["id"] in trash(cl)
    renamed = restore(cl, first["id"], on_conflict="rename")
    assert renamed.status_code == 200 and renamed.json()["name"] == "doc (2).txt"
    assert sha(cl.download(first["id"])) == sha(old)
    assert sha(cl.download(second["id"])) == sha(new)
    # Replace: the file that had the name goes to the trash in its place.
    assert cl.http.delete(f"/api/files/{first['id']}").status_code == 200
    replaced = restore(cl, first["id"], on_conflict="replace", name="doc.txt")
    assert replaced.status_code == 200 and replaced.json()["replaced"] == second["id"]
    assert names(cl) == {"doc.txt": first["id"]}
    assert sha(cl.download(first["id"])) == sha(old)
    assert trash(cl)[second["id"]]["why"] == "overwritten"
    assert restore(cl, 999_999).status_code == 404


def test_an_overwrite_keeps_the_old_version_in_the_trash(cl: Cluster) -> None:
    v1, v2 = os.urandom(MiB + 7), os.urandom(MiB + 9)
    one = cl.upload("report.pdf", v1)
    two = cl.upload("report.pdf", v2)
    assert two["id"] != one["id"] and names(cl) == {"report.pdf": two["id"]}
    row = trash(cl)[one["id"]]
    assert row["why"] == "overwritten" and row["size"] == len(v1)
    back = restore(cl, one["id"], name="report-v1.pdf")
    assert back.status_code == 200, back.text
    assert names(cl) == {"report.pdf": two["id"], "report-v1.pdf": one["id"]}
    assert sha(cl.download(one["id"])) == sha(v1)
    assert sha(cl.download(two["id"])) == sha(v2)


def test_purging_and_emptying_need_admin_and_free_the_chunks(cl: Cluster) -> None:
    files = {n: os.urandom(MiB + i) for i, n in enumerate(("p1", "p2", "p3"))}
    ups = {n: cl.upload(n, d) for n, d in files.items()}
    ids = {n: chunk_ids(cl, u["id"]) for n, u in ups.items()}
    for u in ups.values():
        assert cl.http.delete(f"/api/files/{u['id']}").status_code == 200
    rw = key(cl, "readwrite")
    with rw:
        assert rw.get("/api/trash").status_code == 200
        assert rw.delete(f"/api/trash/{ups['p1']['id']}").status_code == 403
        assert rw.delete("/api/trash").status_code == 403
    with key(cl, "readonly") as ro:
        assert ro.get("/api/trash").status_code == 403
    cl.gc()
    assert held(cl, ids["p1"]) == 3 * len(ids["p1"])
    gone = cl.http.delete(f"/api/trash/{ups['p1']['id']}")
    assert gone.status_code == 200 and gone.json()["bytes"] == len(files["p1"])
    assert cl.http.delete(f"/api/trash/{ups['p1']['id']}").status_code == 404
    cl.gc()
    assert held(cl, ids["p1"]) == 0
    assert held(cl, ids["p2"] | ids["p3"]) == 3 * len(ids["p2"] | ids["p3"])
    emptied = cl.http.delete("/api/trash").json()
    assert emptied["purged"] == 2
    assert trash(cl) == {}
    cl.gc()
    assert held(cl, ids["p2"] | ids["p3"]) == 0
    st = cl.http.get("/api/status").json()
    assert st["trash"] == {"files": 0, "bytes": 0, "keep_s": 3600}
    events = cl.http.get("/api/events", params={"limit": 50}).json()
    emptied_ev = next(e for e in events if e["kind"] == "trash_emptied")
    assert "2 files" in emptied_ev["message"] and "by " in emptied_ev["message"]
    assert any(e["kind"] == "trash_purged" for e in events)


def test_expired_files_are_purged_and_their_chunks_freed(make_cluster: Any) -> None:
    c: Cluster = make_cluster(nodes=3, replicas=3, brain_env={"TOSSIT_TRASH_KEEP": "3"})
    base = chunks_on_nodes(c)
    up = c.upload("short.bin", os.urandom(2 * MiB + 5))
    ids = chunk_ids(c, up["id"])
    assert chunks_on_nodes(c) == base + 3 * len(ids)
    assert c.http.delete(f"/api/files/{up['id']}").status_code == 200
    assert up["id"] in trash(c)
    wait_until(lambda: not trash(c), 20, what="the trash to expire")
    c.gc()
    assert held(c, ids) == 0
    assert chunks_on_nodes(c) == base
    kinds = [e["kind"] for e in c.http.get("/api/events", params={"limit": 50}).json()]
    assert "trash_expired" in kinds


def test_with_the_trash_off_a_delete_frees_at_once(make_cluster: Any) -> None:
    c: Cluster = make_cluster(nodes=3, replicas=3, brain_env={"TOSSIT_TRASH_KEEP": "0"})
    up = c.upload("now.bin", os.urandom(MiB + 1))
    ids = chunk_ids(c, up["id"])
    resp = c.http.delete(f"/api/files/{up['id']}")
    assert resp.status_code == 200 and resp.json()["trash"] is False
    c.upload("over.bin", b"one")
    c.upload("over.bin", b"two")
    assert trash(c) == {}
    c.gc()
    assert held(c, ids) == 0


def test_a_brain_loss_keeps_the_trash_and_not_what_was_purged(cl: Cluster) -> None:
    c = cl
    kept, purged, live = os.urandom(MiB + 11), os.urandom(MiB + 13), os.urandom(5000)
    k = c.upload("kept.bin", kept)
    p = c.upload("purged.bin", purged)
    v1 = c.upload("live.txt", b"version one")
    c.upload("live.txt", live)  # v1 goes to the trash, overwritten
    for f in (k, p):
        assert c.http.delete(f"/api/files/{f['id']}").status_code == 200
    assert c.http.delete(f"/api/trash/{p['id']}").status_code == 200
    before_trash = trash(c)
    assert set(before_trash) == {k["id"], v1["id"]}
    drill = c.http.post("/api/admin/drill").json()
    assert drill["ok"] and drill["trash"] == 2, drill
    before = names(c)

    out = lose_and_recover(c)
    assert "2 files" in out and "back in the trash" in out, out

    assert names(c) == before
    after = trash(c)
    assert set(after) == {k["id"], v1["id"]}
    for i in after:
        assert after[i]["purge_at"] == before_trash[i]["purge_at"]
        assert after[i]["why"] == before_trash[i]["why"]
    assert restore(c, k["id"]).status_code == 200
    assert sha(c.download(k["id"])) == sha(kept)
    # The old version does not take back the name the newer upload holds.
    assert restore(c, v1["id"]).status_code == 409
    assert c.http.get(f"/api/files/{p['id']}").status_code == 404
    assert p["id"] not in trash(c)
    # New files never take a trashed file's id.
    fresh = c.upload("fresh.bin", b"new")
    assert fresh["id"] > max(k["id"], v1["id"], p["id"])


def test_a_recovery_from_a_snapshot_keeps_the_trash(cl: Cluster) -> None:
    c = cl
    files = {n: os.urandom(200_000 + i) for i, n in enumerate(("s1", "s2", "s3"))}
    ids = {n: c.upload(n, d)["id"] for n, d in files.items()}
    for n in ("s1", "s2"):
        assert c.http.delete(f"/api/files/{ids[n]}").status_code == 200
    snap = c.http.post("/api/admin/snapshot")
    assert snap.status_code == 200, snap.text
    # After the snapshot: s2 purged, s3 deleted (the packs say so).
    assert c.http.delete(f"/api/trash/{ids['s2']}").status_code == 200
    assert c.http.delete(f"/api/files/{ids['s3']}").status_code == 200
    before = trash(c)
    assert set(before) == {ids["s1"], ids["s3"]}
    lose_and_recover(c, "--from-snapshot")
    after = trash(c)
    assert set(after) == {ids["s1"], ids["s3"]}
    assert {i: f["purge_at"] for i, f in after.items()} == {
        i: f["purge_at"] for i, f in before.items()}
    for n in ("s1", "s3"):
        assert restore(c, ids[n]).status_code == 200
        assert sha(c.download(ids[n])) == sha(files[n])
    assert c.http.get(f"/api/files/{ids['s2']}").status_code == 404 and not trash(c)


def tossit(c: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TOSSIT_KEY=c.admin_key, COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "tossit", *args, "--brain", c.url],
                          capture_output=True, text=True, timeout=120, env=env,
                          stdin=subprocess.DEVNULL)


def test_the_cli(cl: Cluster) -> None:
    data = os.urandom(70_000)
    one = cl.upload("cli.bin", data)
    two = cl.upload("other.bin", b"other")
    out = tossit(cl, "rm", "cli.bin", "other.bin")
    assert out.returncode == 0 and "to the trash" in out.stdout, out.stdout + out.stderr
    ls = tossit(cl, "trash", "ls")
    assert ls.returncode == 0 and "cli.bin" in ls.stdout and "2 files in the trash" in ls.stdout
    st = tossit(cl, "status")
    assert "in trash: 68.4 KiB (2 files), freed within 1 h" in st.stdout, st.stdout
    cl.upload("cli.bin", b"took the name")
    taken = tossit(cl, "trash", "restore", str(one["id"]))
    assert taken.returncode == 1 and "name_taken" in taken.stderr + taken.stdout
    back = tossit(cl, "trash", "restore", str(one["id"]), "--as", "cli-old.bin")
    assert back.returncode == 0 and "restored cli-old.bin" in back.stdout, back.stderr
    assert sha(cl.download(one["id"])) == sha(data)
    # Not in a terminal: emptying needs --yes, and nothing is deleted without it.
    refused = tossit(cl, "trash", "empty")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert set(trash(cl)) == {two["id"]}
    emptied = tossit(cl, "trash", "empty", "--yes")
    assert emptied.returncode == 0 and "1 file" in emptied.stdout, emptied.stderr
    assert trash(cl) == {}
    assert tossit(cl, "trash", "rm", str(two["id"])).returncode == 1


def test_the_trash_on_postgresql(make_cluster: Any, pg_url: str) -> None:
    c: Cluster = make_cluster(nodes=3, replicas=3, database_url=pg_url,
                              brain_env={"TOSSIT_TRASH_KEEP": "3600"})
    one, two = os.urandom(MiB + 3), os.urandom(1000)
    a = c.upload("pg.bin", one)
    ids = chunk_ids(c, a["id"])
    c.upload("pg.bin", two)  # overwrite: a goes to the trash
    assert trash(c)[a["id"]]["why"] == "overwritten"
    back = restore(c, a["id"], on_conflict="rename")
    assert back.status_code == 200 and back.json()["name"] == "pg (2).bin"
    assert sha(c.download(a["id"])) == sha(one)
    assert c.http.delete(f"/api/files/{a['id']}").status_code == 200
    assert c.http.delete("/api/trash").json() == {"purged": 1, "bytes": len(one)}
    c.gc()
    assert held(c, ids) == 0
    assert c.http.post("/api/admin/drill").json()["ok"]
