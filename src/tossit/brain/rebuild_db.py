"""Writing a rebuilt metadata database (``rebuild.Plan``) for ``tossit recover``
and the fire drill's scratch copy.

The target must be empty: a new SQLite file, or a PostgreSQL database with no
files in it (the schema is created by the usual migrations). Everything goes in
one transaction, so a recovery that fails half-way leaves nothing half-built.
File ids and entry versions are kept as they were: the REST API's ids stay
valid. The counters continue well above them (``manifests.VERSION_GAP``, ``ID_GAP``): a
recovery may not have seen the newest changes (a pack whose every copy was on
a node it could not read), and the rebuilt brain must not hand out their
versions and file ids again, or a later recovery that does read them could not
tell the two histories apart (docs/architecture.md, "Rebuilding").
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from tossit.brain.db import make_engine, migrate
from tossit.brain.manifest_rows import BUCKET, DEL, KEY, PURGE, PUT, TRASH
from tossit.brain.models import (
    ApiKey,
    Bucket,
    Chunk,
    ClusterState,
    Event,
    ManifestEntry,
    Node,
    Object,
    ObjectChunk,
    Replica,
    TrashChunk,
    TrashedObject,
)
from tossit.brain.rebuild import Plan
from tossit.brain.snapshots import SnapshotContents
from tossit.brain.sqlbatch import batches
from tossit.brain.states import EventKind
from tossit.config import plural
from tossit.manifests import (
    ID_GAP,
    VERSION_GAP,
    AnyEntry,
    BucketEntry,
    KeyEntry,
    PurgeEntry,
    PutEntry,
    TrashEntry,
)

_BATCH = 2000  # rows per insert: the whole rebuild is one transaction


class NotEmpty(Exception):
    """The target database already holds files or a manifest log."""


async def _insert(s: AsyncConnection, model: Any, rows: Sequence[dict[str, Any]]) -> None:
    for batch in batches(rows, _BATCH):
        await s.execute(insert(model), list(batch))


async def write_plan(url: str, plan: Plan, *, note: dict[str, Any] | None = None,
                     history: SnapshotContents | None = None) -> None:
    """Create the schema at ``url`` and fill it from ``plan`` (raises NotEmpty).
    ``history``: a snapshot's event log and nodes (drained, removed), kept too."""
    await migrate(url)
    engine = make_engine(url)
    now = time.time()
    try:
        async with engine.begin() as s:
            for model in (Object, ManifestEntry, ApiKey):
                if await s.scalar(select(func.count()).select_from(model)):
                    raise NotEmpty(f"the target database already has rows in "
                                   f"{model.__tablename__}: give an empty one")
            await _fill(s, plan, now, note or {}, history)
            await _counters_above(s, engine.dialect.name)
    finally:
        await engine.dispose()


async def _fill(s: AsyncConnection, plan: Plan, now: float, note: dict[str, Any],
                history: SnapshotContents | None) -> None:
    existing = dict((await s.execute(select(Bucket.name, Bucket.id))).all())
    await _insert(s, Bucket, [{"name": n, "created_at": created, "deleted_at": deleted}
                              for n, (created, deleted) in plan.bucket_rows(now).items()
                              if n not in existing])
    bucket_ids = dict((await s.execute(select(Bucket.name, Bucket.id))).all())

    before = {n["id"]: n for n in (history.nodes if history else [])}
    await _insert(s, Node, [{
        # A node whose address is unknown (an old data dir) is offline until it
        # registers again, which it does by itself.
        "id": n.id, "name": n.name, "address": n.address or f"http://unknown-{n.id}.invalid",
        "zone": n.zone, "state": "online" if n.address else "offline",
        "admin_state": before.get(n.id, {}).get("admin_state"),
        "capacity": n.capacity, "used": n.used, "free": n.free,
        "disk_total": n.disk_total, "disk_free": n.disk_free, "chunk_count": n.chunk_count,
        "load": 0.0, "latency_ms": None, "version": n.version,
        "registered_at": before.get(n.id, {}).get("registered_at", now),
        "last_heartbeat": now} for n in plan.nodes])
    known_nodes = {n.id for n in plan.nodes}
    # Nodes the snapshot knew that were not read now (away, dead or removed): kept
    # as they were, so a removed one cannot rejoin and an away one is recognised.
    await _insert(s, Node, [{**row, "state": row["state"] if row["state"] in (
        "removed", "dead") else "offline"} for nid, row in before.items()
        if nid not in known_nodes])
    await _insert(s, Event, [{k: v for k, v in e.items() if k != "id"}
                             for e in (history.events if history else [])])

    await _insert(s, Chunk, [{"id": cid, "size": c.size, "refcount": c.refcount,
                              "created_at": now, "kind": c.kind}
                             for cid, c in plan.chunks.items()])
    await _insert(s, Replica, [{"chunk_id": cid, "node_id": node, "state": st,
                                "updated_at": now}
                               for cid, c in plan.chunks.items()
                               for node, st in c.replicas.items() if node in known_nodes])
    await _insert(s, Object, [{
        "id": f.entry.id, "bucket_id": bucket_ids[f.entry.bucket], "key": f.entry.key,
        "size": f.entry.size, "content_type": f.entry.content_type, "sha256": f.entry.sha256,
        "etag": f.entry.etag, "chunk_size": f.entry.chunk_size,
        "chunk_count": len(f.entry.chunks), "user_meta": f.entry.user_meta,
        "created_at": f.entry.created} for f in plan.files])
    await _insert(s, ObjectChunk, [
        {"object_id": f.entry.id, "seq": i, "chunk_id": cid, "size": size}
        for f in plan.files for i, (cid, size) in enumerate(
            zip(f.entry.chunks, f.entry.sizes(), strict=True))])
    await _insert(s, TrashedObject, [{
        "id": t.id, "bucket_id": bucket_ids[t.bucket], "key": t.key, "size": t.size,
        "content_type": t.content_type, "sha256": t.sha256, "etag": t.etag,
        "chunk_size": t.chunk_size, "chunk_count": len(t.chunks), "user_meta": t.user_meta,
        "created_at": t.created, "deleted_at": t.deleted, "purge_at": t.purge_at,
        "why": t.why} for t in _trashed(plan)])
    await _insert(s, TrashChunk, [
        {"trash_id": t.id, "seq": i, "chunk_id": cid, "size": size}
        for t in _trashed(plan) for i, (cid, size) in enumerate(
            zip(t.chunks, t.sizes(), strict=True))])
    await _insert(s, ManifestEntry, [_log_row(e, pack, needed, bucket_ids)
                                     for e, pack, needed in plan.entries])
    await _insert(s, ApiKey, [{
        "id": k.key_id, "name": k.name, "role": k.role, "secret_sha256": k.secret_sha256,
        "salt": k.salt, "created_at": k.created, "expires_at": k.expires,
        "revoked_at": k.revoked} for k in plan.keys])
    summary = plan.summary()
    await _insert(s, ClusterState, [{"name": "recovered", "updated_at": now,
                                     "value": {"at": now, **note, **summary}}])
    if plan.cluster:  # the nodes' own id: they refuse a brain with another one
        await _insert(s, ClusterState, [{"name": "cluster", "updated_at": now,
                                         "value": {"id": plan.cluster, "created": now}}])
    await _insert(s, Event, [{
        "ts": now, "kind": EventKind.METADATA_REBUILT, "severity": "warning",
        "message": _sentence(summary), "node_id": None, "data": {**note, **summary}}])


def _trashed(plan: Plan) -> list[TrashEntry]:
    return [f.entry for f in plan.trash if isinstance(f.entry, TrashEntry)]


async def _counters_above(s: AsyncConnection, dialect: str) -> None:
    """Where the counters continue: file ids above every file and file in the
    trash (a restore brings a trashed file's id back) plus ``ID_GAP``, versions
    above the newest entry plus ``VERSION_GAP``; event ids just above."""
    top_id = max(int(await s.scalar(select(func.max(Object.id))) or 0),
                 int(await s.scalar(select(func.max(TrashedObject.id))) or 0))
    top_version = int(await s.scalar(select(func.max(ManifestEntry.version))) or 0)
    top_event = int(await s.scalar(select(func.max(Event.id))) or 0)
    counters = (("objects", "id", top_id + ID_GAP),
                ("manifest_log", "version", top_version + VERSION_GAP),
                ("events", "id", max(top_event, 1)))
    for table, column, value in counters:
        if dialect == "postgresql":
            await s.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', "
                                 f"'{column}'), :v)"), {"v": value})
            continue
        if table == "events":
            continue  # (plain rowids on SQLite: they continue above the rows by themselves)
        # SQLite AUTOINCREMENT: sqlite_sequence holds the highest id handed out.
        await s.execute(text("DELETE FROM sqlite_sequence WHERE name = :t"), {"t": table})
        await s.execute(text("INSERT INTO sqlite_sequence (name, seq) VALUES (:t, :v)"),
                        {"t": table, "v": value})


def _log_row(e: AnyEntry, pack: str | None, needed: bool,
             bucket_ids: dict[str, int]) -> dict[str, Any]:
    if isinstance(e, KeyEntry):
        return {"version": e.version, "op": KEY, "bucket_id": None, "key": e.key_id,
                "object_id": None, "needed": needed, "pack": pack, "created_at": e.created}
    if isinstance(e, BucketEntry):
        return {"version": e.version, "op": BUCKET, "bucket_id": None, "key": e.name,
                "object_id": None, "needed": needed, "pack": pack,
                "created_at": e.deleted or e.created}
    if isinstance(e, PutEntry):
        op, when = PUT, e.created
    elif isinstance(e, TrashEntry):
        op, when = TRASH, e.deleted
    elif isinstance(e, PurgeEntry):
        op, when = PURGE, e.purged
    else:
        op, when = DEL, e.deleted
    return {"version": e.version, "op": op, "bucket_id": bucket_ids[e.bucket], "key": e.key,
            "object_id": e.id, "needed": needed, "pack": pack, "created_at": when}


def _sentence(summary: dict[str, Any]) -> str:
    text_ = (f"metadata rebuilt from {plural(summary['nodes'], 'node')}: "
             f"{plural(summary['files'], 'file')}, "
             f"{summary['deleted']:,} deletions honoured, "
             f"{plural(summary.get('trash', 0), 'file')} in the trash, "
             f"{summary['keys']} API keys")
    if summary["incomplete"]:
        text_ += f"; {plural(summary['incomplete'], 'file', verb=('is', 'are'))} missing chunks"
    return text_
