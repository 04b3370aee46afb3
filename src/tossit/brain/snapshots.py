"""Metadata snapshots: a consistent copy of the brain's database, kept on the nodes.

The manifests on the nodes already rebuild every file; a snapshot adds what they
do not carry (the event history, nodes that were drained or removed, the last
drill) and a second, independent way back. Every ``snapshot_interval`` (when
something changed), the brain copies its database (SQLite's online backup API;
from PostgreSQL, a repeatable-read copy of every table) into an SQLite file,
stores it as an ordinary file of the hidden bucket ``.tossit`` (chunked,
replicated, repaired and scrubbed like any other; its manifest goes to the
nodes like any other) and keeps the newest ``snapshot_keep``.

A snapshot records ``as_of``, the newest manifest version it contains:
``tossit recover --from-snapshot`` starts from it and applies the entries of
the packs written after it. Dashboard sessions and the outbox are left out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert, select
from sqlalchemy.engine import make_url

from tossit.brain.commits import CommitBatcher
from tossit.brain.db import migrate
from tossit.brain.ingest import Ingest
from tossit.brain.models import Base, ManifestEntry, Object, PackOutbox, WebSession
from tossit.brain.store import Store
from tossit.config import BrainSettings, format_size
from tossit.manifests import (
    SYSTEM_BUCKET,
    AnyEntry,
    BucketEntry,
    KeyEntry,
    TrashEntry,
    put_entry,
)
from tossit.periodic import Periodic

log = logging.getLogger("tossit.brain.snapshots")
PREFIX = "snapshots/"
CONTENT_TYPE = "application/vnd.sqlite3"
PIECE = 1 << 20
_SKIPPED = (WebSession.__tablename__, PackOutbox.__tablename__, "alembic_version")


class Snapshotter(Periodic):
    name = "metadata snapshot"
    wait_first = True
    retry_after = 60.0

    def __init__(self, settings: BrainSettings, store: Store, url: str, ingest: Ingest,
                 commits: CommitBatcher) -> None:
        super().__init__()
        self.settings = settings
        self.store = store
        self.url = url
        self.ingest = ingest
        self.commits = commits
        self._lock = asyncio.Lock()
        self.last_error: str | None = None

    async def run_forever(self) -> None:
        if self.settings.snapshot_interval > 0:
            await super().run_forever()

    async def next_delay(self) -> float:
        """Until the last snapshot is ``snapshot_interval`` old (a minute after a
        first start), at least 5 s."""
        last = await self.store.get_state("snapshot")
        due = (float(last["at"]) + self.settings.snapshot_interval - time.time()
               if last else 60.0)
        return max(5.0, due)

    def failed(self, exc: Exception) -> None:
        self.last_error = str(exc)
        log.warning("metadata snapshot failed: %s; retrying in a minute", exc)

    async def run_once(self, force: bool = False) -> dict[str, Any] | None:
        """Take a snapshot if the metadata changed since the last one (or
        ``force``); returns its record, or None when nothing changed."""
        async with self._lock:
            last = await self.store.get_state("snapshot")
            newest = await self.store.log.max_version()
            if not force and last is not None and int(last["as_of"]) >= newest:
                return None
            t0 = time.time()
            with tempfile.TemporaryDirectory(prefix="tossit-snapshot-",
                                             dir=self.settings.data_dir) as tmp:
                path = Path(tmp) / "snapshot.db"
                as_of = await self.copy(path)
                stamp = datetime.fromtimestamp(t0, UTC).strftime("%Y%m%dT%H%M%SZ")
                result = await self.ingest.put(
                    _read(path), key=f"{PREFIX}{stamp}-v{as_of}.sqlite",
                    content_type=CONTENT_TYPE, bucket=SYSTEM_BUCKET,
                    size_hint=path.stat().st_size)
            record: dict[str, Any] = {
                "at": t0, "as_of": as_of, "id": result.obj.id, "key": result.obj.key,
                "size": result.obj.size, "sha256": result.obj.sha256,
                "seconds": round(time.time() - t0, 2)}
            await self.store.set_state("snapshot", record)
            dropped = await self._keep_newest()
            self.last_error = None
            log.info("metadata snapshot %s (%s, as of version %d)%s", record["key"],
                     format_size(record["size"]), as_of,
                     f"; {dropped} older removed" if dropped else "")
            return record

    async def copy(self, dest: Path) -> int:
        """A consistent copy of the metadata into a new SQLite file; returns the
        newest manifest version in it."""
        if self.url.startswith("sqlite"):
            source = make_url(self.url).database
            assert source, "an in-memory database has nothing to snapshot"
            await asyncio.to_thread(_sqlite_backup, Path(source), dest)
        else:
            await self._copy_tables(dest)
        return await asyncio.to_thread(_finish_copy, dest)

    async def _copy_tables(self, dest: Path) -> None:
        """From PostgreSQL: every table in one repeatable-read transaction (one
        consistent view), into a schema made by the same migrations."""
        target = f"sqlite+aiosqlite:///{dest}"
        await migrate(target)
        sink = create_engine(f"sqlite:///{dest}")
        try:
            async with self.store.engine.connect() as conn:
                await conn.execution_options(isolation_level="REPEATABLE READ")
                async with conn.begin():
                    for table in Base.metadata.sorted_tables:
                        if table.name in _SKIPPED:
                            continue
                        result = await conn.stream(select(table))
                        async for rows in result.mappings().partitions(2000):
                            batch = [dict(r) for r in rows]
                            await asyncio.to_thread(_insert_rows, sink, table, batch)
        finally:
            sink.dispose()

    async def _keep_newest(self) -> int:
        """Delete all but the newest ``snapshot_keep`` snapshots."""
        objs, _ = await self.store.list_objects(bucket=SYSTEM_BUCKET, prefix=PREFIX,
                                                sort="created", descending=True, limit=1000)
        dropped = 0
        for obj in objs[self.settings.snapshot_keep:]:
            if await self.commits.delete(obj.id):
                dropped += 1
        return dropped

    async def listing(self) -> list[Object]:
        objs, _ = await self.store.list_objects(bucket=SYSTEM_BUCKET, prefix=PREFIX,
                                                sort="created", descending=True, limit=1000)
        return objs


def _sqlite_backup(source: Path, dest: Path) -> None:
    src = sqlite3.connect(source)
    dst = sqlite3.connect(dest)
    try:
        src.backup(dst)  # consistent, even while the brain commits (WAL)
    finally:
        dst.close()
        src.close()


def _insert_rows(engine: Any, table: Any, rows: list[dict[str, Any]]) -> None:
    if rows:
        with engine.begin() as conn:
            conn.execute(insert(table), rows)


def _finish_copy(dest: Path) -> int:
    """Leave out what must not travel (sessions, the outbox), make it one file."""
    conn = sqlite3.connect(dest)
    try:
        for table in _SKIPPED[:2]:
            conn.execute(f"DELETE FROM {table}")  # fixed table names
        conn.commit()
        conn.execute("PRAGMA journal_mode=DELETE")
        row = conn.execute(f"SELECT max(version) FROM {ManifestEntry.__tablename__}").fetchone()
        return int(row[0] or 0)
    finally:
        conn.close()


async def _read(path: Path) -> AsyncIterator[bytes]:
    with open(path, "rb") as fh:  # noqa: ASYNC230 - each read below runs in a thread
        while piece := await asyncio.to_thread(fh.read, PIECE):
            yield piece


def age_text(record: dict[str, Any] | None, now: float | None = None) -> str:
    from tossit.config import format_duration

    if record is None:
        return "no metadata snapshot yet"
    return f"last metadata snapshot {format_duration((now or time.time()) - record['at'])} ago"


@dataclass
class SnapshotContents:
    """What ``tossit recover --from-snapshot`` takes from a snapshot file."""

    as_of: int
    entries: list[AnyEntry]
    nodes: list[dict[str, Any]]  # rows of the nodes table
    events: list[dict[str, Any]]  # rows of the events table, oldest first
    # The first version the snapshot's metadata is known to hold every change
    # from: 0, unless that metadata was itself rebuilt by ``tossit recover``
    # (then the first version after the newest that recovery found: it may have
    # missed older packs).
    complete_from: int = 0


def read_snapshot(path: Path) -> SnapshotContents:
    """The files, keys and buckets of a snapshot as manifest entries (at the versions they
    had), with its nodes and event history. Blocking: run it in a thread."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        as_of = int(conn.execute("SELECT max(version) FROM manifest_log").fetchone()[0] or 0)
        versions = {row["object_id"]: row["version"] for row in conn.execute(
            "SELECT object_id, max(version) AS version FROM manifest_log "
            "WHERE op = 'put' GROUP BY object_id")}
        chunks: dict[int, list[tuple[str, int]]] = {}
        for row in conn.execute("SELECT object_id, chunk_id, size FROM object_chunks "
                                "ORDER BY object_id, seq"):
            chunks.setdefault(row["object_id"], []).append((row["chunk_id"], row["size"]))
        entries: list[AnyEntry] = []
        for o in conn.execute("SELECT o.*, b.name AS bucket FROM objects o "
                              "JOIN buckets b ON b.id = o.bucket_id"):
            if o["id"] not in versions:
                continue  # (never happens after the 0005 migration logged every file)
            entries.append(put_entry(
                version=versions[o["id"]], bucket=o["bucket"], key=o["key"],
                object_id=o["id"], size=o["size"], sha256=o["sha256"],
                content_type=o["content_type"], created=o["created_at"],
                chunk_size=o["chunk_size"], chunks=chunks.get(o["id"], []), etag=o["etag"],
                user_meta=json.loads(o["user_meta"]) if o["user_meta"] else None))
        key_versions = {row["key"]: row["version"] for row in conn.execute(
            "SELECT key, max(version) AS version FROM manifest_log WHERE op = 'key' "
            "GROUP BY key")}
        for k in conn.execute("SELECT * FROM api_keys"):
            if k["id"] in key_versions:
                entries.append(KeyEntry(
                    version=key_versions[k["id"]], key_id=k["id"], name=k["name"],
                    role=k["role"], secret_sha256=k["secret_sha256"], salt=k["salt"],
                    created=k["created_at"], expires=k["expires_at"],
                    revoked=k["revoked_at"]))
        entries += _trash_entries(conn)
        bucket_versions = {row["key"]: row["version"] for row in conn.execute(
            "SELECT key, max(version) AS version FROM manifest_log WHERE op = 'bucket' "
            "GROUP BY key")}
        for b in conn.execute("SELECT * FROM buckets"):
            if b["name"] in bucket_versions:
                entries.append(BucketEntry(version=bucket_versions[b["name"]], name=b["name"],
                                           created=b["created_at"], deleted=b["deleted_at"]))
        nodes = [dict(r) for r in conn.execute("SELECT * FROM nodes")]
        events = [dict(r) for r in conn.execute("SELECT * FROM events ORDER BY id")]
        for e in events:
            e["data"] = json.loads(e["data"]) if e["data"] else None
        return SnapshotContents(as_of, entries, nodes, events, _complete_from(conn))
    finally:
        conn.close()


def _complete_from(conn: sqlite3.Connection) -> int:
    """``SnapshotContents.complete_from``: after the newest version the last
    recovery of this metadata found (its ``recovered`` state)."""
    row = conn.execute("SELECT value FROM cluster_state WHERE name = 'recovered'").fetchone()
    if row is None:
        return 0
    try:
        return int(json.loads(row["value"]).get("max_version") or 0) + 1
    except (ValueError, TypeError, AttributeError):
        return 0


def _trash_entries(conn: sqlite3.Connection) -> list[AnyEntry]:
    """The files in a snapshot's trash, as ``trash`` entries (a snapshot of a
    brain older than the trash has none)."""
    if conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                    "AND name = 'trash'").fetchone() is None:
        return []
    versions = {row["object_id"]: row["version"] for row in conn.execute(
        "SELECT object_id, max(version) AS version FROM manifest_log "
        "WHERE op = 'trash' GROUP BY object_id")}
    chunks: dict[int, list[tuple[str, int]]] = {}
    for row in conn.execute("SELECT trash_id, chunk_id, size FROM trash_chunks "
                            "ORDER BY trash_id, seq"):
        chunks.setdefault(row["trash_id"], []).append((row["chunk_id"], row["size"]))
    out: list[AnyEntry] = []
    for t in conn.execute("SELECT t.*, b.name AS bucket FROM trash t "
                          "JOIN buckets b ON b.id = t.bucket_id"):
        if t["id"] not in versions:
            continue
        body = put_entry(
            version=versions[t["id"]], bucket=t["bucket"], key=t["key"], object_id=t["id"],
            size=t["size"], sha256=t["sha256"], content_type=t["content_type"],
            created=t["created_at"], chunk_size=t["chunk_size"],
            chunks=chunks.get(t["id"], []), etag=t["etag"],
            user_meta=json.loads(t["user_meta"]) if t["user_meta"] else None)
        out.append(TrashEntry(**{k: v for k, v in body.model_dump().items() if k != "op"},
                              deleted=t["deleted_at"], purge_at=t["purge_at"],
                              why="overwritten" if t["why"] == "overwritten" else "deleted"))
    return out
