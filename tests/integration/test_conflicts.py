"""Uploading under a name that is taken: replace (the default), keep both
("name (2).ext"), or fail with 409, decided in the commit's transaction."""

from __future__ import annotations

import concurrent.futures
import os
import uuid
from typing import Any

from cluster import Cluster


def names(c: Cluster, prefix: str) -> dict[str, dict[str, Any]]:
    files = c.http.get("/api/files", params={"search": prefix, "limit": 100}).json()
    return {f["name"]: f for f in files if f["name"].startswith(prefix)}


def test_rename_keeps_both_and_fail_refuses(shared_cluster: Cluster) -> None:
    c = shared_cluster
    folder = f"conflicts-{uuid.uuid4().hex[:8]}/"
    first = c.http.put(f"/api/files/{folder}report.pdf", content=b"v1")
    assert first.status_code == 201
    for expect in ("report (2).pdf", "report (3).pdf"):
        resp = c.http.put(f"/api/files/{folder}report.pdf", content=b"v-" + expect.encode(),
                          params={"on_conflict": "rename"})
        assert resp.status_code == 201 and resp.json()["name"] == folder + expect, resp.text
    resp = c.http.post("/api/files/upload", params={"on_conflict": "rename"},
                       files={"file": ("report.pdf", b"multipart")})
    assert resp.status_code == 201 and resp.json()["name"] == "report.pdf"  # (no folder)
    resp = c.http.put(f"/api/files/{folder}report.pdf", content=b"nope",
                      params={"on_conflict": "fail"})
    assert resp.status_code == 409 and resp.json()["error"] == "name_taken", resp.text
    got = names(c, folder)
    assert set(got) == {folder + n for n in ("report.pdf", "report (2).pdf", "report (3).pdf")}
    assert c.download(got[folder + "report.pdf"]["id"]) == b"v1"  # neither replaced it
    # The default still replaces.
    resp = c.http.put(f"/api/files/{folder}report.pdf", content=b"v2")
    assert resp.status_code == 201 and c.download(resp.json()["id"]) == b"v2"
    assert len(names(c, folder)) == 3
    bad = c.http.put(f"/api/files/{folder}x", content=b"x", params={"on_conflict": "merge"})
    assert bad.status_code in (400, 422)


def test_fail_answers_before_the_body_is_sent(shared_cluster: Cluster) -> None:
    c = shared_cluster
    name = f"taken-{uuid.uuid4().hex[:8]}.bin"
    assert c.http.put(f"/api/files/{name}", content=b"here").status_code == 201
    sock = c.open_upload(f"/api/files/{name}?on_conflict=fail", length=10**9, first=b"")
    try:
        sock.settimeout(20)
        head = sock.recv(4096).decode("latin-1")
    finally:
        sock.close()
    assert head.startswith("HTTP/1.1 409"), head


def test_two_racing_uploads_with_fail_one_wins(shared_cluster: Cluster) -> None:
    """Both pass the early check; the commit's own check lets exactly one in."""
    c = shared_cluster
    name = f"race-{uuid.uuid4().hex[:8]}.bin"
    body = os.urandom(300_000)

    def put(_: int) -> int:
        return c.http.put(f"/api/files/{name}", content=body,
                          params={"on_conflict": "fail"}).status_code

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        codes = sorted(pool.map(put, range(4)))
    assert codes == [201, 409, 409, 409], codes
    assert len([f for f in c.http.get("/api/files", params={"search": name}).json()]) == 1
