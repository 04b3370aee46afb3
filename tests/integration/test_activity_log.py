"""People's changes in the activity log: uploads and deletes, with who made them,
gathered into one event per person and kind every few seconds."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx

from cluster import Cluster, wait_until


def _events(cl: Cluster, kind: str) -> list[dict[str, Any]]:
    resp = cl.http.get("/api/events", params={"kind": kind, "limit": 50})
    assert resp.status_code == 200, resp.text
    events: list[dict[str, Any]] = resp.json()
    return events


def test_uploads_and_deletes_are_logged_with_who_did_them(shared_cluster: Cluster) -> None:
    cl = shared_cluster
    tag = uuid.uuid4().hex[:8]
    resp = cl.http.post("/api/keys", json={"name": f"backup-{tag}", "role": "readwrite"})
    assert resp.status_code == 201, resp.text
    key = resp.json()
    with httpx.Client(base_url=cl.url, timeout=30, verify=cl.verify,
                      headers={"Authorization": f"Bearer {key['secret']}"}) as http:
        ids = []
        for i in range(5):
            up = http.put(f"/api/files/{tag}-{i}.txt", content=b"x" * (1000 + i))
            assert up.status_code == 201, up.text
            ids.append(up.json()["id"])
        assert http.delete(f"/api/files/{ids[0]}").status_code == 200
        assert http.delete(f"/api/files/{ids[0]}").status_code == 404  # not logged twice

    def mine(kind: str) -> list[dict[str, Any]]:
        return [e for e in _events(cl, kind) if (e.get("data") or {}).get("key_id") == key["id"]]

    t0 = time.monotonic()
    wait_until(lambda: mine("files_uploaded") and mine("files_deleted"), timeout=30,
               what="the activity log's upload and delete events")
    assert time.monotonic() - t0 < 15  # written within a few seconds, not at shutdown
    uploads = mine("files_uploaded")
    assert sum(e["data"]["count"] for e in uploads) == 5
    assert sum(e["data"]["bytes"] for e in uploads) == sum(1000 + i for i in range(5))
    names = [n for e in uploads for n in e["data"]["names"]]
    assert sorted(names) == [f"{tag}-{i}.txt" for i in range(5)]
    assert all(f"backup-{tag} ({key['id']}, readwrite)" in e["message"] for e in uploads)
    if len(uploads) == 1:  # gathered into one line (unless a flush fell in between)
        assert uploads[0]["message"].startswith("5 files (")
        assert "and 2 more" in uploads[0]["message"]
    deletes = mine("files_deleted")
    assert len(deletes) == 1 and deletes[0]["data"]["count"] == 1
    assert deletes[0]["data"]["names"] == [f"{tag}-0.txt"]
    assert deletes[0]["data"]["ids"] == [ids[0]]
    assert deletes[0]["message"] == (
        f"{tag}-0.txt (1000 B) deleted by backup-{tag} ({key['id']}, readwrite)")
