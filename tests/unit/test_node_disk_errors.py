"""A node's disk in trouble is said plainly: a write it refuses is a disk_error with
the reason (not an anonymous 500), and a chunk it cannot read back is damaged:
quarantined, reported, and not served (404), so the brain has it re-made.

One node in-process (its whole ASGI app, signature check included)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
from pydantic import SecretStr

from cluster import SignedAuth
from tossit import chunkbatch
from tossit.chunking import DATA, content_id
from tossit.config import NodeSettings
from tossit.node.app import create_app

SECRET = "disk-errors-test-secret"


def test_a_disk_that_refuses_writes_and_a_chunk_that_cannot_be_read(tmp_path: Path) -> None:
    asyncio.run(_disk_trouble(tmp_path))


async def _disk_trouble(tmp_path: Path) -> None:
    settings = NodeSettings(data_dir=tmp_path / "node", join_secret=SecretStr(SECRET),
                            brain="http://127.0.0.1:9", heartbeat_interval=60)
    app = create_app(settings)
    parts = app.state.parts
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://node",
            auth=SignedAuth(SECRET, parts.node_id)) as node:
        kept = os.urandom(3000)
        kid = content_id(kept)
        assert (await node.put(f"/chunks/{kid}", content=kept)).status_code == 201

        # Writes fail: the scratch folder is gone and a file stands in its place.
        store = parts.store
        store.tmp_dir.rmdir()
        store.tmp_dir.write_bytes(b"")
        data = os.urandom(2000)
        refused = await node.put(f"/chunks/{content_id(data)}", content=data)
        assert refused.status_code == 500
        assert refused.json()["error"] == "disk_error"
        assert "cannot write to its disk" in refused.json()["message"]
        batch = chunkbatch.encode([(content_id(data), data, DATA)])
        results = (await node.post("/chunk-batch", content=batch)).json()["results"]
        assert [r["status"] for r in results] == ["disk_error"]
        assert "cannot write to its disk" in results[0]["message"]
        # The heartbeat says so (after a test write that fails too)...
        assert store.write_error == "Not a directory"
        assert parts.heartbeat.report()["write_error"] == "Not a directory"
        assert list(store.chunks_dir.glob("*/write-check.*")) == []
        # ... until the disk writes again: then the next report clears it by itself.
        store.tmp_dir.unlink()
        store.tmp_dir.mkdir()
        assert parts.heartbeat.report()["write_error"] is None
        assert list(store.chunks_dir.glob("*/write-check.*")) == []
        assert list(store.tmp_dir.iterdir()) == []
        assert (await node.put(f"/chunks/{content_id(data)}", content=data)).status_code == 201
        store.tmp_dir.rmdir()  # broken again, for what follows
        store.tmp_dir.write_bytes(b"")

        # A chunk the disk cannot give back (EISDIR here, EIO on a bad sector).
        path = store.path_for(kid, DATA)
        path.unlink()
        path.mkdir()
        gone = await node.get(f"/chunks/{kid}")
        assert gone.status_code == 404 and "quarantined" in gone.json()["message"]
        assert not path.exists()
        assert parts.scrubber.unreported() == [kid]  # told to the brain with the heartbeat
