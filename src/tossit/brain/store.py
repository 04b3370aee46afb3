"""The metadata store: every read and write of the brain's database.

Handlers and loops call these methods and never build SQL themselves, so the
transaction boundaries (an object appears complete or not at all; a delete
and its reference-count updates are one commit) live in one place.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, bindparam, case, delete, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tossit.brain import manifest_rows
from tossit.brain.manifest_rows import (
    DEL,
    PURGE,
    PUT,
    TRASH,
    LogStore,
    NewRow,
    Pack,
    PackRecord,
    by_bucket,
    trash_entry,
)
from tossit.brain.models import (
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
from tossit.brain.sqlbatch import batches
from tossit.brain.states import EventKind
from tossit.chunking import DATA, META
from tossit.config import format_duration, format_size
from tossit.errors import ApiError, NameTaken
from tossit.manifests import SYSTEM_BUCKET, AnyEntry, DelEntry, PurgeEntry, put_entry
from tossit.names import numbered_name

DEFAULT_BUCKET = "default"
# PostgreSQL transaction-scoped advisory lock taken by every transaction that
# changes chunk reference counts, so that they run one at a time as they do on
# SQLite: a delete racing an overwrite of the same object cannot release its
# chunks twice, and upserts of shared chunks in different orders cannot deadlock.
_REFCOUNT_LOCK_KEY = 0x7055_1700


@dataclass(frozen=True)
class ChunkPlacement:
    """One position of an object with the replicas known for its chunk."""

    seq: int
    chunk_id: str
    size: int
    replicas: tuple[tuple[str, str], ...]  # (node_id, state)

    def ok_nodes(self) -> list[str]:
        return [n for n, s in self.replicas if s == "ok"]


@dataclass
class NewObject:
    """An uploaded object ready to be committed."""

    bucket: str
    key: str
    size: int
    sha256: str
    content_type: str
    chunk_size: int
    chunks: Sequence[tuple[str, int]]  # (chunk id, size) in order
    replicas: dict[str, list[str]]  # chunk id -> nodes holding a good copy
    user_meta: dict[str, Any] | None = None
    # When the name is taken: replace that file, rename this one ("name (2).ext",
    # keep both), or fail (NameTaken). Decided in the commit's transaction.
    on_conflict: str = "replace"


@dataclass(frozen=True)
class NewEvent:
    """An event written with others in one transaction (``Store.add_events``)."""

    ts: float
    kind: EventKind
    message: str
    severity: str = "info"
    node_id: str | None = None
    data: dict[str, Any] | None = None


@dataclass
class Applied:
    """What one commit did: the new objects (in the order given), the ids among
    the deletes that existed, the chunks (and packs) left unreferenced, and the
    manifest entries it logged, which the caller writes to the nodes."""

    objects: list[Object]
    deleted: set[int]
    garbage: list[str]
    entries: list[AnyEntry]
    pack: Pack | None = None  # the entries' pack, in the outbox until on the nodes
    trashed: list[TrashedObject] = dataclasses.field(default_factory=list)  # moved to trash


class TrashNotFound(ApiError):
    def __init__(self, trash_id: int) -> None:
        super().__init__(404, "trash_not_found", f"no file with id {trash_id} in the trash")


@dataclass
class Restored:
    """What a restore did: the file back under its name, the file it replaced
    (moved to the trash, or freed with the trash off), and the commit's log."""

    obj: Object
    replaced: int | None
    done: Applied


_OBJECT_COLUMNS = ("id", "bucket_id", "key", "size", "content_type", "sha256", "etag",
                   "chunk_size", "chunk_count", "user_meta", "created_at")


@dataclass(frozen=True)
class Folder:
    """A name part shared by files at one level of a listing (``photos/2024/``)."""

    name: str  # with the prefix and the trailing delimiter
    files: int
    size: int
    newest: float  # the latest upload time under it


def prefix_end(prefix: str) -> str | None:
    """The smallest string after every string that starts with ``prefix`` (in
    code point order, which is UTF-8 byte order: SQLite's BINARY collation), so
    that ``prefix <= key < prefix_end(prefix)`` selects them. None: no bound
    (a prefix of U+10FFFF only)."""
    chars = list(prefix)
    while chars:
        last = ord(chars.pop()) + 1
        if 0xD800 <= last <= 0xDFFF:  # surrogates are not characters in UTF-8
            last = 0xE000
        if last <= 0x10FFFF:
            return "".join(chars) + chr(last)
    return None


def _like_escape(text: str) -> str:
    """``text`` as a literal in a LIKE pattern with ESCAPE '\\'."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def sort_folders(folders: Sequence[Folder], sort: str, descending: bool) -> list[Folder]:
    """Folders in the order the files of a listing take: by name case-insensitively
    (then exactly), by total size, or by newest upload (by name for ``id``)."""
    def key(f: Folder) -> tuple[Any, ...]:
        by_name = (f.name.lower(), f.name)
        return {"size": (f.size, *by_name), "created": (f.newest, *by_name)}.get(sort, by_name)
    return sorted(folders, key=key, reverse=descending)


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table




class Store:
    def __init__(self, engine: AsyncEngine, pack_key: bytes | None = None) -> None:
        """``pack_key`` signs manifest packs (``tossit.manifests.pack_key`` of the
        cluster secret); without it commits log entries but pack none."""
        self.engine = engine
        self.pack_key = pack_key
        # Several brains on PostgreSQL: a commit first checks, under its lock, that
        # this brain still leads (BrainLock.still_leader); unset with one brain.
        self.fence: Callable[[AsyncSession], Awaitable[None]] | None = None
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        # Seconds a deleted or overwritten file stays in the trash (0: no trash);
        # the brain sets it from its settings. The brain's own files never go there.
        self.trash_keep = 0.0
        self.dialect = engine.dialect.name
        self._write_lock = asyncio.Lock()
        self._bucket_ids: dict[str, int] = {}
        self.log = LogStore(self)
        self.versions = manifest_rows.Versions()
        ins = self._insert(_table(Chunk))
        self.upsert_chunk = ins.on_conflict_do_update(
            index_elements=["id"],
            set_={"refcount": Chunk.__table__.c.refcount + ins.excluded.refcount},
        )
        ins = self._insert(_table(Replica))
        self.upsert_replica = ins.on_conflict_do_update(
            index_elements=["chunk_id", "node_id"],
            set_={"state": ins.excluded.state, "updated_at": ins.excluded.updated_at},
        )
        objects = _table(Object)
        self._insert_object = insert(objects).returning(
            objects.c.id, objects.c.bucket_id, objects.c.key
        )
        self._insert_object_chunk = insert(_table(ObjectChunk))

    # -- transactions -------------------------------------------------------

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A write transaction. SQLite has one writer at a time: queueing here
        instead of on its file lock avoids 'database is locked' under load."""
        if self.dialect == "sqlite":
            async with self._write_lock, self.sessions.begin() as session:
                yield session
        else:
            async with self.sessions.begin() as session:
                yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            yield session

    def _insert(self, model: Any) -> Any:
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(model)

    def insert_stmt(self, model: Any) -> Any:
        """An INSERT of this dialect (with ``on_conflict_do_update``)."""
        return self._insert(model)

    async def lock_refcounts(self, s: AsyncSession) -> None:
        """Serialise reference-count changes (SQLite already has ``write``'s lock),
        and make sure this brain may change them (it leads)."""
        if self.dialect == "postgresql":
            await s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _REFCOUNT_LOCK_KEY})
        if self.fence is not None:
            await self.fence(s)

    async def schema_is_current(self) -> bool:
        """Is the schema at this code's newest migration? (A follower waits for it.)"""
        from tossit.brain.db import head_revision

        async with self.read() as s:
            found = await s.scalar(text("SELECT version_num FROM alembic_version"))
        return found == head_revision()

    async def ping(self) -> None:
        async with self.read() as s:
            await s.execute(text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()

    # -- buckets ------------------------------------------------------------

    async def bucket_id(self, name: str = DEFAULT_BUCKET, create: bool = True) -> int | None:
        if name in self._bucket_ids:
            return self._bucket_ids[name]
        async with self.read() as s:
            bid = await s.scalar(select(Bucket.id).where(Bucket.name == name))
        if bid is None and create:
            async with self.write() as s:
                await s.execute(
                    self._insert(Bucket)
                    .values(name=name, created_at=time.time())
                    .on_conflict_do_nothing(index_elements=["name"])
                )
            async with self.read() as s:
                bid = await s.scalar(select(Bucket.id).where(Bucket.name == name))
        if bid is not None:
            self._bucket_ids[name] = bid
        return bid

    # -- objects ------------------------------------------------------------

    async def commit_objects(self, items: Sequence[NewObject]) -> tuple[list[Object], list[str]]:
        """Make uploaded objects visible, all in one transaction.

        Each replaces any object under the same (bucket, key); keys must be
        distinct within one call. Returns the new rows (in ``items`` order) and
        the ids of chunks the replaced objects left unreferenced. Batching many
        small uploads into one commit is what lets the metadata keep up with
        hundreds of uploads per second (one fsync, a handful of statements).
        """
        done = await self.apply(items, ())
        return done.objects, done.garbage

    async def apply(self, items: Sequence[NewObject], deletes: Sequence[int],
                    written: Sequence[PackRecord] = ()) -> Applied:
        """Delete objects by id, then commit new ones, in one transaction, and log
        each change as a manifest entry (tossit.manifests) in the same one.
        ``written``: packs of earlier commits that reached the nodes since, recorded
        first in the same transaction (it saves one of their own).

        A delete and an upload of the same name in one batch end as they would
        one after the other: the new object remains.
        """
        if len({(i.bucket, i.key) for i in items}) != len(items):
            raise ValueError("commit_objects needs distinct keys")
        if not items and not deletes:
            return Applied([], set(), [], [])
        now = time.time()
        bids = [await self.bucket_id(i.bucket) for i in items]
        system = await self.bucket_id(SYSTEM_BUCKET, create=False) if self.trash_keep else None
        async with self.write() as s:
            await self.lock_refcounts(s)
            recorded_empty = await self.log.record_in(s, written)
            gone: list[tuple[int, int, str]] = []  # (id, bucket id, key)
            for batch in batches(list(deletes)):
                gone += [(i, b, k) for i, b, k in (await s.execute(
                    select(Object.id, Object.bucket_id, Object.key).where(Object.id.in_(batch))
                )).all()]
            deleted = {i for i, _, _ in gone}
            trashed = await self._to_trash(
                s, [i for i, b, _ in gone if self._trashes(b, system)], now, "deleted")
            dropped = await self._drop_objects(
                s, sorted(deleted - {t.id for t in trashed}))
            items = await self._settle_names(s, items, bids)
            if not items:
                entries, packs, pack = await self._log(s, gone, [], [], now, trashed=trashed)
                return Applied([], deleted, await self._unreferenced(s, dropped) + packs
                               + recorded_empty, entries, pack, trashed)
            old_ids: list[int] = []
            # Per bucket: a row-value "(bucket_id, key) IN" would scan every object.
            for bucket_id, names in by_bucket([(int(b or 0), i.key) for b, i in zip(
                    bids, items, strict=True)]).items():
                for batch in batches(names):
                    old_ids += (await s.execute(select(Object.id).where(
                        Object.bucket_id == bucket_id, Object.key.in_(batch)))).scalars().all()
            new = {(int(b or 0), i.key): i.sha256 for b, i in zip(bids, items, strict=True)}
            kept = await self._to_trash(s, await self._trashable(s, old_ids, system, new), now,
                                        "overwritten")
            trashed += kept
            garbage_candidates = await self._drop_objects(
                s, sorted(set(old_ids) - {t.id for t in kept}))
            rows: list[dict[str, Any]] = [
                {"bucket_id": b, "key": i.key, "size": i.size, "sha256": i.sha256,
                 "content_type": i.content_type, "chunk_size": i.chunk_size,
                 "chunk_count": len(i.chunks), "user_meta": i.user_meta, "created_at": now}
                for b, i in zip(bids, items, strict=True)
            ]
            # One multi-row INSERT ... RETURNING (the ORM would issue one per row
            # to guarantee order); keys are distinct, so ids are matched by key.
            ids: dict[tuple[int, str], int] = {}
            result = await s.execute(self._insert_object, rows)
            ids.update({(b, k): i for i, b, k in result.all()})
            objs = [Object(id=ids[(int(r["bucket_id"]), str(r["key"]))], **r) for r in rows]
            counts: Counter[str] = Counter()
            sizes: dict[str, int] = {}
            pairs_seen: set[tuple[str, str]] = set()
            replica_rows = []
            oc_rows = []
            for obj, item in zip(objs, items, strict=True):
                for seq, (cid, size) in enumerate(item.chunks):
                    counts[cid] += 1
                    sizes[cid] = size
                    oc_rows.append(
                        {"object_id": obj.id, "seq": seq, "chunk_id": cid, "size": size})
                for cid, nodes in item.replicas.items():
                    for node in nodes:
                        if (cid, node) not in pairs_seen:
                            pairs_seen.add((cid, node))
                            replica_rows.append({"chunk_id": cid, "node_id": node,
                                                 "state": "ok", "updated_at": now})
            chunk_rows = [{"id": cid, "size": sizes[cid], "refcount": n, "created_at": now}
                          for cid, n in counts.items()]
            # Constant statements + parameter lists: SQLAlchemy compiles each
            # once and batches the rows itself ("insertmanyvalues").
            if chunk_rows:
                await s.execute(self.upsert_chunk, chunk_rows)
            if replica_rows:
                await s.execute(self.upsert_replica, replica_rows)
            if oc_rows:
                await s.execute(self._insert_object_chunk, oc_rows)
            garbage = await self._unreferenced(
                s, [c for c in {*garbage_candidates, *dropped} if c not in counts])
            entries, packs, pack = await self._log(s, gone, objs, items, now, old_ids,
                                                   trashed=trashed)
        return Applied(objs, deleted, garbage + packs + recorded_empty, entries, pack, trashed)

    def _trashes(self, bucket_id: int, system: int | None) -> bool:
        """Does a delete or overwrite in this bucket go to the trash?"""
        return bool(self.trash_keep) and bucket_id != system

    async def _trashable(self, s: AsyncSession, ids: Sequence[int], system: int | None,
                         new: dict[tuple[int, str], str]) -> list[int]:
        """Those of these objects that an overwrite moves to the trash: not the
        brain's own files, and not a file replaced by the same bytes (``new``:
        (bucket id, name) -> the upload's SHA-256), which has nothing to restore."""
        if not self.trash_keep or not ids:
            return []
        out: list[int] = []
        for batch in batches(list(ids)):
            for oid, bid, key, sha in (await s.execute(
                    select(Object.id, Object.bucket_id, Object.key, Object.sha256)
                    .where(Object.id.in_(batch)))).all():
                if bid != system and new.get((bid, key)) != sha:
                    out.append(oid)
        return out

    async def _to_trash(self, s: AsyncSession, ids: Sequence[int], now: float,
                        why: str) -> list[TrashedObject]:
        """Move these objects to the trash (caller's transaction): the rows move,
        the chunk references stay (nothing becomes garbage). A few batch
        statements per 500 objects, whatever their number."""
        if not ids:
            return []
        objects, chunks = _table(Object), _table(ObjectChunk)
        out: list[TrashedObject] = []
        for batch in batches(list(ids)):
            rows = (await s.execute(select(objects).where(objects.c.id.in_(batch)))
                    ).mappings().all()
            if not rows:
                continue
            moved = [{**{c: r[c] for c in _OBJECT_COLUMNS}, "deleted_at": now,
                      "purge_at": now + self.trash_keep, "why": why} for r in rows]
            await s.execute(insert(_table(TrashedObject)), moved)
            parts = (await s.execute(
                select(chunks.c.object_id, chunks.c.seq, chunks.c.chunk_id, chunks.c.size)
                .where(chunks.c.object_id.in_(batch)))).all()
            if parts:
                await s.execute(insert(_table(TrashChunk)), [
                    {"trash_id": o, "seq": q, "chunk_id": c, "size": z} for o, q, c, z in parts])
            await s.execute(delete(ObjectChunk).where(ObjectChunk.object_id.in_(batch)))
            await s.execute(delete(Object).where(Object.id.in_(batch)))
            out += [TrashedObject(**m) for m in moved]
        return out

    async def _trash_chunks(self, s: AsyncSession,
                            ids: Sequence[int]) -> dict[int, list[tuple[str, int]]]:
        out: dict[int, list[tuple[str, int]]] = {}
        for batch in batches(list(ids)):
            for tid, cid, size in (await s.execute(
                    select(TrashChunk.trash_id, TrashChunk.chunk_id, TrashChunk.size)
                    .where(TrashChunk.trash_id.in_(batch))
                    .order_by(TrashChunk.trash_id, TrashChunk.seq))).all():
                out.setdefault(tid, []).append((cid, size))
        return out

    async def name_taken(self, bucket: str, key: str) -> bool:
        """Is there a file under this name now? (An early answer for on_conflict=fail;
        the commit checks again.)"""
        bid = await self.bucket_id(bucket)
        async with self.read() as s:
            return bid is not None and await s.scalar(select(Object.id).where(
                Object.bucket_id == bid, Object.key == key)) is not None

    async def _settle_names(self, s: AsyncSession, items: Sequence[NewObject],
                            bids: Sequence[int | None]) -> Sequence[NewObject]:
        """Apply each upload's ``on_conflict`` against the names taken now (in the
        commit's transaction, so no other commit slips in between). Uploads that
        replace, the default, cost nothing here."""
        if all(i.on_conflict == "replace" for i in items):
            return items
        out = list(items)
        for n, (item, bid) in enumerate(zip(items, bids, strict=True)):
            if item.on_conflict == "replace" or not await self._taken(s, bid, item.key):
                continue
            if item.on_conflict == "fail":
                raise NameTaken(item.bucket, item.key)
            number = 2
            while await self._taken(s, bid, numbered_name(item.key, number)):
                number += 1
            out[n] = dataclasses.replace(item, key=numbered_name(item.key, number))
        return out

    async def _taken(self, s: AsyncSession, bid: int | None, key: str) -> bool:
        return await s.scalar(select(Object.id).where(
            Object.bucket_id == bid, Object.key == key)) is not None

    async def _log(
        self, s: AsyncSession, gone: list[tuple[int, int, str]], objs: list[Object],
        items: Sequence[NewObject], now: float, replaced: Sequence[int] = (),
        trashed: Sequence[TrashedObject] = (),
    ) -> tuple[list[AnyEntry], list[str], Pack | None]:
        """Log a commit's deletes (tombstones), the files it moved to the trash,
        and its uploads as manifest entries and pack them into the outbox, in its
        transaction; the entries they supersede are needed no more. Returns the
        entries, the packs left with nothing needed, and the new pack."""
        lost = await manifest_rows.supersede(s, [i for i, _, _ in gone] + list(replaced))
        # Within one commit, a name deleted and uploaded again keeps only its upload.
        uploaded = {(o.bucket_id, o.key) for o in objs}
        rows = [NewRow(DEL, b, k, i, (b, k) not in uploaded) for i, b, k in gone]
        rows += [NewRow(TRASH, t.bucket_id, t.key, t.id, True) for t in trashed]
        rows += [NewRow(PUT, o.bucket_id, o.key, o.id, True) for o in objs]
        versions = await self.versions.allocate(s, len(rows))
        names = {bid: await self.bucket_name(bid) for bid in {r.bucket_id for r in rows}
                 if bid is not None}
        entries: list[AnyEntry] = [
            DelEntry(version=v, bucket=names[b], key=k, id=i, deleted=now)
            for v, (i, b, k) in zip(versions, gone, strict=False)]
        if trashed:
            parts = await self._trash_chunks(s, [t.id for t in trashed])
            entries += [trash_entry(v, names[t.bucket_id], t, parts.get(t.id, []))
                        for v, t in zip(versions[len(gone):], trashed, strict=False)]
            await self._trash_event(s, trashed, now)
        for v, o, item in zip(versions[len(gone) + len(trashed):], objs, items, strict=True):
            entries.append(put_entry(
                version=v, bucket=item.bucket, key=o.key, object_id=o.id, size=o.size,
                sha256=o.sha256, content_type=o.content_type, created=o.created_at,
                chunk_size=o.chunk_size, chunks=item.chunks, etag=o.etag,
                user_meta=o.user_meta))
        pack = await self._pack(s, rows, versions, entries, now)
        return entries, await manifest_rows.release_packs(s, lost), pack

    async def _trash_event(self, s: AsyncSession, trashed: Sequence[TrashedObject],
                           now: float) -> None:
        """One event per commit (not per file: a burst of deletes is one line)."""
        shown = ", ".join(repr(t.key) for t in trashed[:5])
        more = f" and {len(trashed) - 5:,} more" if len(trashed) > 5 else ""
        why = {t.why for t in trashed}
        verb = "deleted" if why == {"deleted"} else (
            "overwritten" if why == {"overwritten"} else "deleted or overwritten")
        n = len(trashed)
        await s.execute(insert(_table(Event)).values(
            ts=now, kind=EventKind.TRASH_MOVED.value, severity="info", count=1,
            message=f"{n:,} {verb} file{'' if n == 1 else 's'} moved to the trash "
                    f"({format_size(sum(t.size for t in trashed))}): {shown}{more}; "
                    f"restorable for {format_duration(self.trash_keep)}",
            data={"ids": [t.id for t in trashed[:100]], "files": n,
                  "bytes": sum(t.size for t in trashed)}))

    async def _drop_objects(self, s: AsyncSession, object_ids: Sequence[int]) -> list[str]:
        """Delete object rows and release their chunk references (caller's txn).
        Returns the chunks whose reference count dropped (maybe to zero)."""
        if not object_ids:
            return []
        counts: Counter[str] = Counter()
        for batch in batches(list(object_ids)):
            counts.update((await s.execute(
                select(ObjectChunk.chunk_id).where(ObjectChunk.object_id.in_(batch))
            )).scalars().all())
        by_n: dict[int, list[str]] = defaultdict(list)
        for cid, n in counts.items():
            by_n[n].append(cid)
        for n, cids in by_n.items():
            for batch in batches(cids):
                await s.execute(
                    update(Chunk).where(Chunk.id.in_(batch)).values(refcount=Chunk.refcount - n)
                )
        for batch in batches(list(object_ids)):
            await s.execute(delete(ObjectChunk).where(ObjectChunk.object_id.in_(batch)))
            await s.execute(delete(Object).where(Object.id.in_(batch)))
        return list(counts)

    async def _unreferenced(self, s: AsyncSession, chunk_ids: Sequence[str]) -> list[str]:
        out: list[str] = []
        for batch in batches(list(chunk_ids)):
            out += (await s.execute(
                select(Chunk.id).where(Chunk.id.in_(batch), Chunk.refcount <= 0)
            )).scalars().all()
        return out

    async def delete_object(self, object_id: int) -> list[str] | None:
        """Delete an object; returns the chunk ids now unreferenced, or None if
        there was no such object."""
        done = await self.apply((), [object_id])
        return done.garbage if object_id in done.deleted else None

    # -- trash --------------------------------------------------------------

    async def list_trash(self, limit: int = 100, offset: int = 0
                         ) -> tuple[list[TrashedObject], int]:
        """Files in the trash, newest first, and how many there are."""
        async with self.read() as s:
            total = await s.scalar(select(func.count()).select_from(TrashedObject)) or 0
            rows = (await s.execute(select(TrashedObject).order_by(
                TrashedObject.deleted_at.desc(), TrashedObject.id.desc())
                .limit(limit).offset(offset))).scalars().all()
        return list(rows), int(total)

    async def trash_totals(self) -> tuple[int, int]:
        """(files, bytes) in the trash: the bytes its chunks keep stored (counted
        once per file, as the files' sizes are)."""
        async with self.read() as s:
            n, size = (await s.execute(select(
                func.count(), func.coalesce(func.sum(TrashedObject.size), 0)))).one()
        return int(n), int(size)

    async def trash_due(self, now: float, limit: int = 500) -> list[int]:
        """Ids of files whose time in the trash is over."""
        async with self.read() as s:
            return list((await s.execute(select(TrashedObject.id).where(
                TrashedObject.purge_at <= now).order_by(TrashedObject.purge_at)
                .limit(limit))).scalars().all())

    async def trash_ids(self, limit: int = 500) -> list[int]:
        async with self.read() as s:
            return list((await s.execute(select(TrashedObject.id).order_by(
                TrashedObject.id).limit(limit))).scalars().all())

    async def restore(self, trash_id: int, key: str | None = None,
                      on_conflict: str = "fail") -> Restored:
        """Bring a file back from the trash under its name (or ``key``), with its
        id, in one transaction. When the name is taken now, ``on_conflict`` says
        what to do, as for an upload: fail (NameTaken), rename ("name (2).ext"),
        or replace (the file there goes to the trash, or is freed if the trash
        is off)."""
        now = time.time()
        system = await self.bucket_id(SYSTEM_BUCKET, create=False)
        async with self.write() as s:
            await self.lock_refcounts(s)
            t = await s.get(TrashedObject, trash_id)
            if t is None:
                raise TrashNotFound(trash_id)
            bucket = await self.bucket_name(t.bucket_id)
            name = key or t.key
            existing = await s.scalar(select(Object.id).where(
                Object.bucket_id == t.bucket_id, Object.key == name))
            replaced: int | None = None
            trashed: list[TrashedObject] = []
            dropped: list[str] = []
            if existing is not None:
                if on_conflict == "fail":
                    raise NameTaken(bucket, name)
                if on_conflict == "rename":
                    number = 2
                    while await self._taken(s, t.bucket_id, numbered_name(name, number)):
                        number += 1
                    name = numbered_name(name, number)
                else:
                    replaced = int(existing)
                    if self._trashes(t.bucket_id, system):
                        trashed = await self._to_trash(s, [replaced], now, "overwritten")
                    else:
                        dropped = await self._drop_objects(s, [replaced])
            parts = (await self._trash_chunks(s, [trash_id])).get(trash_id, [])
            row = {c: getattr(t, c) for c in _OBJECT_COLUMNS}
            row["key"] = name
            await s.execute(insert(_table(Object)), [row])
            if parts:
                await s.execute(self._insert_object_chunk, [
                    {"object_id": trash_id, "seq": q, "chunk_id": c, "size": z}
                    for q, (c, z) in enumerate(parts)])
            await s.execute(delete(TrashChunk).where(TrashChunk.trash_id == trash_id))
            await s.execute(delete(TrashedObject).where(TrashedObject.id == trash_id))
            obj = Object(**row)
            # The log: the replaced file's move to the trash, this file's stay in
            # the trash ended, and this file under its name again.
            lost = await manifest_rows.supersede(
                s, [replaced] if replaced is not None else [], trashed=[trash_id])
            rows = [NewRow(TRASH, x.bucket_id, x.key, x.id, True) for x in trashed]
            rows += [NewRow(PURGE, t.bucket_id, t.key, trash_id, True),
                     NewRow(PUT, t.bucket_id, name, trash_id, True)]
            versions = await self.versions.allocate(s, len(rows))
            entries: list[AnyEntry] = []
            if trashed:
                more = await self._trash_chunks(s, [x.id for x in trashed])
                entries += [trash_entry(v, bucket, x, more.get(x.id, []))
                            for v, x in zip(versions, trashed, strict=False)]
            entries.append(PurgeEntry(version=versions[-2], bucket=bucket, key=t.key,
                                      id=trash_id, purged=now, why="restored"))
            entries.append(put_entry(
                version=versions[-1], bucket=bucket, key=name, object_id=trash_id,
                size=t.size, sha256=t.sha256, content_type=t.content_type,
                created=t.created_at, chunk_size=t.chunk_size, chunks=parts, etag=t.etag,
                user_meta=t.user_meta))
            pack = await self._pack(s, rows, versions, entries, now)
            garbage = await self._unreferenced(s, dropped) + await manifest_rows.release_packs(
                s, lost)
        return Restored(obj, replaced, Applied([obj], set(), garbage, entries, pack, trashed))

    async def purge_trash(self, ids: Sequence[int], why: str = "purged") -> tuple[
            list[TrashedObject], Applied]:
        """Delete these files from the trash for good, in one transaction: their
        chunk references go (unreferenced chunks are garbage for the collector)
        and each gets a ``purge`` entry so that no rebuild brings it back.
        Returns the files purged (those of ``ids`` still in the trash)."""
        now = time.time()
        async with self.write() as s:
            await self.lock_refcounts(s)
            found: list[TrashedObject] = []
            for batch in batches(list(dict.fromkeys(ids))):
                found += (await s.execute(select(TrashedObject).where(
                    TrashedObject.id.in_(batch)))).scalars().all()
            if not found:
                return [], Applied([], set(), [], [])
            gone = [t.id for t in found]
            counts: Counter[str] = Counter()
            for batch in batches(gone):
                counts.update((await s.execute(select(TrashChunk.chunk_id).where(
                    TrashChunk.trash_id.in_(batch)))).scalars().all())
            by_n: dict[int, list[str]] = defaultdict(list)
            for cid, n in counts.items():
                by_n[n].append(cid)
            for n, cids in by_n.items():
                for batch in batches(cids):
                    await s.execute(update(Chunk).where(Chunk.id.in_(batch))
                                    .values(refcount=Chunk.refcount - n))
            for batch in batches(gone):
                await s.execute(delete(TrashChunk).where(TrashChunk.trash_id.in_(batch)))
                await s.execute(delete(TrashedObject).where(TrashedObject.id.in_(batch)))
            lost = await manifest_rows.supersede(s, (), trashed=gone)
            rows = [NewRow(PURGE, t.bucket_id, t.key, t.id, True) for t in found]
            versions = await self.versions.allocate(s, len(rows))
            names = {b: await self.bucket_name(b) for b in {t.bucket_id for t in found}}
            entries: list[AnyEntry] = [
                PurgeEntry(version=v, bucket=names[t.bucket_id], key=t.key, id=t.id,
                           purged=now, why="expired" if why == "expired" else "purged")
                for v, t in zip(versions, found, strict=True)]
            pack = await self._pack(s, rows, versions, entries, now)
            garbage = await self._unreferenced(s, list(counts)) + (
                await manifest_rows.release_packs(s, lost))
        return found, Applied([], set(gone), garbage, entries, pack)

    async def _pack(self, s: AsyncSession, rows: Sequence[NewRow], versions: Sequence[int],
                    entries: Sequence[AnyEntry], now: float) -> Pack | None:
        """Log these rows, in a pack in the outbox (caller's transaction)."""
        pack = None
        if self.pack_key is not None and entries:
            pack = manifest_rows.new_pack(entries, self.pack_key, now)
            await manifest_rows.to_outbox(s, pack)
        await manifest_rows.log_rows(s, rows, versions, now, pack.id if pack else None)
        return pack

    async def get_object(self, object_id: int) -> Object | None:
        async with self.read() as s:
            return await s.get(Object, object_id)

    async def bucket_name(self, bucket_id: int) -> str:
        for name, bid in self._bucket_ids.items():
            if bid == bucket_id:
                return name
        async with self.read() as s:
            found = await s.scalar(select(Bucket.name).where(Bucket.id == bucket_id))
        return found or "?"

    async def object_chunks(self, object_id: int) -> list[ChunkPlacement]:
        """The object's chunks in order, each with all its replica rows."""
        async with self.read() as s:
            rows = (await s.execute(_placements_query(object_id))).all()
        return _group_placements(rows)

    async def object_with_chunks(
        self, object_id: int
    ) -> tuple[Object, list[ChunkPlacement]] | None:
        """An object and its chunk placements from one connection checkout (the
        download path's only metadata read)."""
        objects = _table(Object)
        async with self.read() as s:
            # Core, not Session.get: the ORM identity-map machinery was a tenth of
            # a small download's CPU.
            row = (await s.execute(
                select(objects).where(objects.c.id == object_id))).mappings().first()
            if row is None:
                return None
            rows = (await s.execute(_placements_query(object_id))).all()
        return Object(**row), _group_placements(rows)

    def _under(self, prefix: str) -> list[Any]:
        """WHERE clauses for "key starts with ``prefix``" (case-sensitive, from the
        (bucket_id, key) index). SQLite's LIKE ignores case and skips the index, so
        there it is a key range; PostgreSQL's LIKE is exact and stays correct under
        any collation (a range is not: en_US sorts "a/b" after "a0")."""
        if not prefix:
            return []
        if self.dialect == "sqlite":
            end = prefix_end(prefix)
            return [Object.key >= prefix] + ([Object.key < end] if end is not None else [])
        return [Object.key.startswith(prefix, autoescape=True)]

    def _where(self, bid: int, prefix: str | None, search: str | None) -> list[Any]:
        where = [Object.bucket_id == bid, *self._under(prefix or "")]
        if search:
            # Case-insensitive (for ASCII) on both: SQLite's LIKE already is, and
            # is 2-3x faster without lower(); PostgreSQL's is not.
            like = Object.key.contains if self.dialect == "sqlite" else Object.key.icontains
            where.append(like(search, autoescape=True))
        return where

    async def list_objects(
        self,
        *,
        bucket: str = DEFAULT_BUCKET,
        search: str | None = None,
        prefix: str | None = None,
        delimiter: str | None = None,
        sort: str = "created",
        descending: bool = True,
        limit: int = 1000,
        offset: int = 0,
    ) -> tuple[list[Object], int]:
        """One page of files and the number of files matching. With ``delimiter``,
        only the files at the level of ``prefix``: none whose name has the
        delimiter after the prefix (those are in ``list_folders``).

        Names sort case-insensitively ("apple", "Banana", "cherry"), then exactly,
        so that the order is total and stable across pages."""
        bid = await self.bucket_id(bucket, create=False)
        if bid is None:
            return [], 0
        where = self._where(bid, prefix, search)
        if delimiter:
            deeper = _like_escape(prefix or "") + "%" + _like_escape(delimiter) + "%"
            where.append(~Object.key.like(deeper, escape="\\"))
        by: dict[str, list[Any]] = {"created": [Object.created_at],
                                    "name": [func.lower(Object.key), Object.key],
                                    "size": [Object.size], "id": []}
        columns = by[sort]
        order: list[Any] = [c.desc() if descending else c.asc()
                            for c in (*columns, Object.id)]
        # Page through ids alone (an index-only scan for each sort), then read
        # the page's rows: OFFSET 50,000 skips index entries, not table rows.
        page = (select(Object.id).where(*where).order_by(*order).limit(limit).offset(offset)
                .subquery())
        async with self.read() as s:
            total = await s.scalar(select(func.count()).select_from(Object).where(*where)) or 0
            rows = (
                await s.execute(select(Object).join(page, page.c.id == Object.id)
                                .order_by(*order))
            ).scalars().all()
        return list(rows), total

    async def list_folders(
        self,
        *,
        bucket: str = DEFAULT_BUCKET,
        prefix: str | None = None,
        delimiter: str = "/",
        search: str | None = None,
    ) -> list[Folder]:
        """The folders at the level of ``prefix``: each distinct name part up to
        the next delimiter, with its file count, total size and newest upload.

        The database groups the keys under the prefix (a range of the (bucket_id,
        key) index) and sends one row per folder, so a folder of 100,000 files
        costs one row here. Unsorted: the caller sorts them (see ``sort_folders``)."""
        bid = await self.bucket_id(bucket, create=False)
        if bid is None:
            return []
        prefix = prefix or ""
        start = len(prefix) + 1  # SQL strings count characters from 1
        where = self._where(bid, prefix, search)
        deeper = _like_escape(prefix) + "%" + _like_escape(delimiter) + "%"
        where.append(Object.key.like(deeper, escape="\\"))
        position = func.instr if self.dialect == "sqlite" else func.strpos
        rest = func.substr(Object.key, start)
        # Grouped in an outer query: PostgreSQL will not match a GROUP BY
        # expression holding bind parameters with the same one in the SELECT.
        inner = select(
            func.substr(Object.key, 1, start - 1 + position(rest, delimiter)).label("folder"),
            Object.size.label("size"), Object.created_at.label("created"),
        ).where(*where).subquery()
        stmt = (select(inner.c.folder, func.count(), func.sum(inner.c.size),
                       func.max(inner.c.created)).group_by(inner.c.folder))
        async with self.read() as s:
            rows = (await s.execute(stmt)).all()
        return [Folder(name=r[0], files=int(r[1]), size=int(r[2] or 0), newest=float(r[3]))
                for r in rows]

    async def ok_replica_nodes(self, object_ids: Sequence[int]) -> dict[int, list[set[str]]]:
        """For each object, per chunk position, the nodes holding a good copy."""
        out: dict[int, list[set[str]]] = {}
        if not object_ids:
            return out
        positions: dict[tuple[int, int], set[str]] = {}
        async with self.read() as s:
            for batch in batches(list(object_ids)):
                stmt = (
                    select(ObjectChunk.object_id, ObjectChunk.seq, Replica.node_id)
                    .outerjoin(Replica, (Replica.chunk_id == ObjectChunk.chunk_id)
                               & (Replica.state == "ok"))
                    .where(ObjectChunk.object_id.in_(batch))
                )
                for oid, seq, node in (await s.execute(stmt)).all():
                    nodes = positions.setdefault((oid, seq), set())
                    if node is not None:
                        nodes.add(node)
        for (oid, _seq), nodes in sorted(positions.items()):
            out.setdefault(oid, []).append(nodes)
        return out

    # -- chunks and replicas -----------------------------------------------

    async def ok_replicas(self, chunk_id: str) -> list[str]:
        async with self.read() as s:
            rows = await s.execute(
                select(Replica.node_id).where(Replica.chunk_id == chunk_id, Replica.state == "ok")
            )
            return list(rows.scalars().all())

    async def set_replica_state(self, chunk_id: str, node_id: str, state: str) -> None:
        async with self.write() as s:
            await s.execute(
                update(Replica)
                .where(Replica.chunk_id == chunk_id, Replica.node_id == node_id)
                .values(state=state, updated_at=time.time())
            )

    async def remove_replica(self, chunk_id: str, node_id: str) -> None:
        async with self.write() as s:
            await s.execute(
                delete(Replica).where(Replica.chunk_id == chunk_id, Replica.node_id == node_id)
            )

    async def remove_replicas(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Forget these (chunk, node) copies, in one transaction."""
        if not pairs:
            return
        async with self.write() as s:
            await (await s.connection()).execute(
                delete(Replica).where(Replica.chunk_id == bindparam("c"),
                                      Replica.node_id == bindparam("n")),
                [{"c": c, "n": n} for c, n in pairs])

    async def add_replicas(self, chunk_id: str, node_ids: Iterable[str]) -> None:
        now = time.time()
        rows = [{"chunk_id": chunk_id, "node_id": n, "state": "ok", "updated_at": now}
                for n in node_ids]
        if not rows:
            return
        async with self.write() as s:
            await s.execute(self.upsert_replica, rows)

    async def chunk_replica_page(
        self, after: str, limit: int
    ) -> list[tuple[str, int, dict[str, str]]]:
        """Referenced chunks with id > ``after``, in id order, each with its
        replicas (node id -> state): the repairer's view, a page at a time."""
        async with self.read() as s:
            chunks = (await s.execute(
                select(Chunk.id, Chunk.size).where(Chunk.id > after, Chunk.refcount > 0)
                .order_by(Chunk.id).limit(limit)
            )).all()
        return await self._replicas_of([(cid, size) for cid, size in chunks])

    async def _replicas_of(
        self, chunks: list[tuple[str, int]]
    ) -> list[tuple[str, int, dict[str, str]]]:
        """Each (chunk, size) with its replicas (node id -> state), in the order given."""
        reps: dict[str, dict[str, str]] = {cid: {} for cid, _ in chunks}
        if chunks:
            async with self.read() as s:
                for batch in batches(list(reps)):
                    for cid, node, state in (await s.execute(
                        select(Replica.chunk_id, Replica.node_id, Replica.state)
                        .where(Replica.chunk_id.in_(batch))
                    )).all():
                        reps[cid][node] = state
        return [(cid, size, reps[cid]) for cid, size in chunks]

    async def suspect_chunk_page(
        self, after: str, limit: int, counted: Sequence[str], replicas: int,
        dead: Sequence[str] = (),
    ) -> list[tuple[str, int, dict[str, str]]]:
        """Like ``chunk_replica_page``, but only the chunks that may need work when
        the set of nodes is unchanged: not exactly ``replicas`` ok copies on the
        ``counted`` nodes, or some copy that is not ok or lies elsewhere (a
        draining or unknown node). A copy on a ``dead`` node needs nothing while
        the chunk has its R copies (it can only be dropped if that node returns,
        which changes the nodes), unless its row is ``missing`` (a row to forget).
        The grouping runs in the database, so a quiet cluster costs one index scan
        instead of a Python plan per chunk."""
        nodes = list(counted) or [""]
        good = (Replica.state == "ok") & Replica.node_id.in_(nodes)
        idle = Replica.node_id.in_(list(dead) or [""]) & (Replica.state != "missing")
        async with self.read() as s:
            chunks = (await s.execute(
                select(Chunk.id, Chunk.size)
                .outerjoin(Replica, Replica.chunk_id == Chunk.id)
                .where(Chunk.id > after, Chunk.refcount > 0)
                .group_by(Chunk.id, Chunk.size)
                .having((func.sum(case((good, 1), else_=0)) != replicas)
                        | (func.sum(case((Replica.node_id.is_not(None) & ~good & ~idle, 1),
                                         else_=0)) > 0))
                .order_by(Chunk.id).limit(limit)
            )).all()
        return await self._replicas_of([(cid, size) for cid, size in chunks])

    async def meta_ids(self, chunk_ids: Sequence[str]) -> set[str]:
        """Which of these are manifest packs (kind meta), not file chunks."""
        out: set[str] = set()
        async with self.read() as s:
            for batch in batches(list(dict.fromkeys(chunk_ids))):
                out.update((await s.execute(select(Chunk.id).where(
                    Chunk.id.in_(batch), Chunk.kind == META))).scalars().all())
        return out

    async def ok_replica_count(self, node_id: str) -> int:
        """Copies (state ok) the metadata records on one node, of chunks and packs
        still in use (garbage copies are the collector's, not a drain's)."""
        async with self.read() as s:
            n = await s.scalar(select(func.count()).select_from(Replica)
                               .join(Chunk, Chunk.id == Replica.chunk_id).where(
                Replica.node_id == node_id, Replica.state == "ok", Chunk.refcount > 0))
        return int(n or 0)

    async def sole_copies(self, node_id: str, other_nodes: Sequence[str]) -> int:
        """Chunks whose only ok copy (among ``node_id`` and ``other_nodes``) is on
        ``node_id``: what would be lost if it went away."""
        async with self.read() as s:
            mine = select(Replica.chunk_id).where(
                Replica.node_id == node_id, Replica.state == "ok").subquery()
            elsewhere = select(Replica.chunk_id).where(
                Replica.node_id.in_(list(other_nodes) or [""]), Replica.state == "ok")
            n = await s.scalar(
                select(func.count()).select_from(mine)
                .join(Chunk, Chunk.id == mine.c.chunk_id)
                .where(Chunk.refcount > 0, mine.c.chunk_id.not_in(elsewhere)))
        return int(n or 0)

    async def node_impact(self, node_id: str, other_live: Sequence[str]) -> dict[str, Any]:
        """What ``node_id`` going away would do, from the replica table: for the
        chunks it holds a good copy of, how many good copies would remain on
        ``other_live`` (chunks and bytes per count), and how many files would
        have a chunk with none left."""
        async with self.read() as s:
            mine = (select(Replica.chunk_id)
                    .join(Chunk, Chunk.id == Replica.chunk_id)
                    .where(Replica.node_id == node_id, Replica.state == "ok",
                           Chunk.refcount > 0, Chunk.kind == DATA)
                    .subquery())
            others = (select(Replica.chunk_id, func.count().label("n"))
                      .where(Replica.state == "ok",
                             Replica.node_id.in_(list(other_live) or [""]))
                      .group_by(Replica.chunk_id)
                      .subquery())
            left = func.coalesce(others.c.n, 0)
            rows = (await s.execute(
                select(left, func.count(), func.coalesce(func.sum(Chunk.size), 0))
                .select_from(mine)
                .join(Chunk, Chunk.id == mine.c.chunk_id)
                .outerjoin(others, others.c.chunk_id == mine.c.chunk_id)
                .group_by(left))).all()
            lost = select(mine.c.chunk_id).outerjoin(
                others, others.c.chunk_id == mine.c.chunk_id).where(others.c.n.is_(None))
            files = await s.scalar(select(func.count(func.distinct(ObjectChunk.object_id)))
                                   .where(ObjectChunk.chunk_id.in_(lost)))
        return {
            "by_copies_after": {int(n): {"chunks": int(c), "bytes": int(b)}
                                for n, c, b in sorted(rows)},
            "files_unavailable": int(files or 0),
        }

    async def forget_node(self, node_id: str) -> None:
        """Remove a node: its replica rows go, its row stays as a ``removed``
        tombstone so the same node cannot quietly register again."""
        async with self.write() as s:
            await s.execute(delete(Replica).where(Replica.node_id == node_id))
            await s.execute(update(Node).where(Node.id == node_id)
                            .values(state="removed", admin_state=None))

    async def node_row_state(self, node_id: str) -> str | None:
        async with self.read() as s:
            state: str | None = await s.scalar(select(Node.state).where(Node.id == node_id))
            return state

    async def set_admin_state(self, node_id: str, admin_state: str | None) -> None:
        async with self.write() as s:
            await s.execute(update(Node).where(Node.id == node_id)
                            .values(admin_state=admin_state))

    async def garbage_chunks(self, limit: int = 1000) -> list[tuple[str, list[str]]]:
        """Unreferenced chunks and the nodes that still hold copies."""
        async with self.read() as s:
            ids = (await s.execute(
                select(Chunk.id).where(Chunk.refcount <= 0).limit(limit)
            )).scalars().all()
            reps: dict[str, list[str]] = {cid: [] for cid in ids}
            for batch in batches(list(ids)):
                for cid, node in (await s.execute(
                    select(Replica.chunk_id, Replica.node_id).where(Replica.chunk_id.in_(batch))
                )).all():
                    reps[cid].append(node)
        return list(reps.items())

    async def drop_unreferenced(self, chunk_ids: Sequence[str]) -> int:
        """Remove chunk rows (and replica rows) still at refcount 0."""
        n = 0
        async with self.write() as s:
            await self.lock_refcounts(s)
            for batch in batches(list(chunk_ids)):
                dead = (await s.execute(
                    select(Chunk.id).where(Chunk.id.in_(batch), Chunk.refcount <= 0)
                )).scalars().all()
                if dead:
                    await s.execute(delete(Replica).where(Replica.chunk_id.in_(dead)))
                    await s.execute(delete(ManifestEntry).where(ManifestEntry.pack.in_(dead)))
                    await s.execute(delete(Chunk).where(Chunk.id.in_(dead)))
                    n += len(dead)
        return n

    async def chunk_sizes(self, chunk_ids: Sequence[str]) -> dict[str, int]:
        """The sizes of those of these chunks the metadata knows (for the
        collector's report of the space it frees)."""
        out: dict[str, int] = {}
        async with self.read() as s:
            for batch in batches(list(chunk_ids)):
                rows = await s.execute(select(Chunk.id, Chunk.size).where(Chunk.id.in_(batch)))
                out.update({cid: int(size) for cid, size in rows})
        return out

    async def known_chunks(self, chunk_ids: Sequence[str]) -> dict[str, int]:
        """Which of these chunk ids the metadata knows, with their refcounts."""
        out: dict[str, int] = {}
        async with self.read() as s:
            for batch in batches(list(chunk_ids)):
                for cid, ref in (await s.execute(
                    select(Chunk.id, Chunk.refcount).where(Chunk.id.in_(batch))
                )).all():
                    out[cid] = ref
        return out

    async def ok_replicas_in_range(self, node_id: str, after: str, upto: str | None,
                                   recorded_before: float) -> set[str]:
        """Chunk ids in (after, upto] the metadata says ``node_id`` holds (ok),
        recorded before ``recorded_before`` (copies made since are not judged)."""
        stmt = select(Replica.chunk_id).where(
            Replica.node_id == node_id, Replica.state == "ok", Replica.chunk_id > after,
            Replica.updated_at < recorded_before)
        if upto is not None:
            stmt = stmt.where(Replica.chunk_id <= upto)
        async with self.read() as s:
            return set((await s.execute(stmt)).scalars().all())

    async def replicas_on_node(self, node_id: str, chunk_ids: Sequence[str]) -> set[str]:
        out: set[str] = set()
        async with self.read() as s:
            for batch in batches(list(chunk_ids)):
                out.update((await s.execute(
                    select(Replica.chunk_id).where(
                        Replica.node_id == node_id, Replica.chunk_id.in_(batch))
                )).scalars().all())
        return out

    # -- nodes --------------------------------------------------------------

    async def upsert_node(self, report: dict[str, Any], state: str) -> bool:
        """Insert or refresh a node from its registration; True if it is new."""
        now = time.time()
        values = {
            "name": report["name"], "address": report["address"], "zone": report["zone"],
            "state": state, "capacity": report["capacity"], "used": report["used"],
            "free": report["free"], "disk_total": report["disk_total"],
            "disk_free": report["disk_free"], "chunk_count": report["chunk_count"],
            "load": report.get("load", 0.0), "version": report.get("version", "?"),
            "last_heartbeat": now,
        }
        async with self.write() as s:
            existing = await s.get(Node, report["id"])
            if existing is None:
                s.add(Node(id=report["id"], registered_at=now, **values))
                return True
            await s.execute(update(Node).where(Node.id == report["id"]).values(**values))
            return False

    async def save_heartbeat(self, node_id: str, report: dict[str, Any]) -> bool:
        values: dict[str, Any] = {k: report[k] for k in (
            "capacity", "used", "free", "disk_total", "disk_free", "chunk_count", "load",
        ) if k in report}
        values["last_heartbeat"] = time.time()
        if report.get("rtt_ms") is not None:
            values["latency_ms"] = report["rtt_ms"]  # the column shown as the node's latency
        async with self.write() as s:
            res = await s.execute(update(Node).where(Node.id == node_id).values(**values))
            return bool(res.rowcount)  # type: ignore[attr-defined]

    async def set_node_state(self, node_id: str, state: str, latency_ms: float | None) -> None:
        async with self.write() as s:
            await s.execute(
                update(Node).where(Node.id == node_id).values(state=state, latency_ms=latency_ms)
            )

    async def list_nodes(self) -> list[Node]:
        """Every node but the removed ones."""
        async with self.read() as s:
            return list((await s.execute(
                select(Node).where(Node.state != "removed").order_by(Node.name)
            )).scalars().all())

    # -- cluster state ------------------------------------------------------

    async def get_state(self, name: str) -> dict[str, Any] | None:
        async with self.read() as s:
            row = await s.get(ClusterState, name)
            return dict(row.value) if row is not None else None

    async def set_state(self, name: str, value: dict[str, Any]) -> None:
        async with self.write() as s:
            await s.execute(self._insert(_table(ClusterState)).values(
                name=name, value=value, updated_at=time.time()).on_conflict_do_update(
                index_elements=["name"], set_={"value": value, "updated_at": time.time()}))

    # -- events -------------------------------------------------------------

    async def add_event(
        self, kind: EventKind, message: str, *, severity: str = "info",
        node_id: str | None = None, data: dict[str, Any] | None = None,
        repeat_key: str | None = None,
    ) -> None:
        """Record an event. With ``repeat_key``: when the newest event of this kind
        (and node) carries the same key, this is that event happening again, so it
        replaces it (message and data updated, ``count`` + 1, ``first_at`` kept)
        rather than adding a row: a failure retried every pass stays one line of
        the log. The replacement gets a new id, so that it comes first in the
        newest-first list and live readers paging by id see it."""
        now = time.time()
        async with self.write() as s:
            last = None
            if repeat_key is not None:
                last = (await s.execute(
                    select(Event).where(Event.kind == kind, Event.node_id.is_(None)
                                        if node_id is None else Event.node_id == node_id)
                    .order_by(Event.id.desc()).limit(1))).scalar_one_or_none()
                if last is not None and last.repeat_key != repeat_key:
                    last = None
            s.add(Event(ts=now, kind=kind, severity=severity, message=message,
                        node_id=node_id, data=data, repeat_key=repeat_key,
                        count=last.count + 1 if last else 1,
                        first_at=(last.first_at or last.ts) if last else None))
            if last is not None:
                await s.flush()  # the new row takes its id before the old one goes
                await s.delete(last)

    async def add_events(self, events: Sequence[NewEvent]) -> None:
        """Record several events in one transaction (no repeat folding)."""
        if not events:
            return
        async with self.write() as s:
            s.add_all([Event(ts=e.ts, kind=e.kind, severity=e.severity, message=e.message,
                             node_id=e.node_id, data=e.data, count=1) for e in events])

    async def prune_events(self, older_than: float, keep: int, batch: int = 5000) -> int:
        """Delete events last seen before ``older_than`` (epoch seconds), then all
        but the newest ``keep``; in small transactions, so that a large backlog
        does not hold the (SQLite) write lock for long. Returns how many went."""
        gone = 0
        while True:
            async with self.write() as s:
                cut = await s.scalar(select(Event.id).order_by(Event.id.desc())
                                     .offset(keep).limit(1))
                ids = list((await s.execute(
                    select(Event.id).where((Event.ts < older_than) | (
                        Event.id <= (cut if cut is not None else -1)))
                    .order_by(Event.id).limit(batch))).scalars())
                if ids:
                    await s.execute(delete(Event).where(Event.id.in_(ids)))
            gone += len(ids)
            if len(ids) < batch:
                return gone

    async def list_events(self, limit: int = 100, kind: str | None = None,
                          after_id: int | None = None) -> list[Event]:
        """Newest first. ``after_id``: the ``limit`` events that came right after
        that one (so a reader can page forward without gaps), still newest first."""
        stmt = select(Event)
        if after_id is not None:
            stmt = stmt.where(Event.id > after_id).order_by(Event.id.asc())
        else:
            stmt = stmt.order_by(Event.id.desc())
        if kind:
            stmt = stmt.where(Event.kind == kind)
        async with self.read() as s:
            rows = list((await s.execute(stmt.limit(limit))).scalars().all())
        return rows[::-1] if after_id is not None else rows

    # -- statistics ---------------------------------------------------------

    async def totals(self, live_nodes: Sequence[str]) -> dict[str, Any]:
        """Counts for ``tossit status``: files, chunks, and chunks by number of good
        replicas on live nodes (0 = unreadable right now); the same for the
        manifest packs, apart. The brain's own files (snapshots) are not counted
        as files."""
        system = await self.bucket_id(SYSTEM_BUCKET, create=False)
        async with self.read() as s:
            n_obj, obj_bytes = (await s.execute(
                select(func.count(), func.coalesce(func.sum(Object.size), 0))
                .where(Object.bucket_id != (system or -1))
            )).one()
            n_sys, sys_bytes = (await s.execute(
                select(func.count(), func.coalesce(func.sum(Object.size), 0))
                .where(Object.bucket_id == (system or -1))
            )).one()
            per_kind = {k: (int(n), int(b)) for k, n, b in (await s.execute(
                select(Chunk.kind, func.count(), func.coalesce(func.sum(Chunk.size), 0))
                .where(Chunk.refcount > 0).group_by(Chunk.kind)
            )).all()}
            per_chunk = (
                select(Replica.chunk_id, func.count().label("n"))
                .where(Replica.state == "ok", Replica.node_id.in_(list(live_nodes) or [""]))
                .group_by(Replica.chunk_id)
                .subquery()
            )
            hist_rows = (await s.execute(
                select(Chunk.kind, per_chunk.c.n, func.count(),
                       func.coalesce(func.sum(Chunk.size), 0))
                .join(Chunk, Chunk.id == per_chunk.c.chunk_id)
                .where(Chunk.refcount > 0)
                .group_by(Chunk.kind, per_chunk.c.n)
            )).all()

        def histogram(kind: str) -> dict[int, dict[str, int]]:
            hist = {int(n): {"chunks": int(c), "bytes": int(b)}
                    for k, n, c, b in hist_rows if k == kind}
            total, total_bytes = per_kind.get(kind, (0, 0))
            seen = sum(v["chunks"] for v in hist.values())
            if total - seen:
                hist[0] = {"chunks": total - seen,
                           "bytes": total_bytes - sum(v["bytes"] for v in hist.values())}
            return dict(sorted(hist.items()))

        n_chunks, chunk_bytes = per_kind.get(DATA, (0, 0))
        packs, pack_bytes = per_kind.get(META, (0, 0))
        trash_files, trash_bytes = await self.trash_totals()
        return {
            # In the trash: stored (their chunks counted below) until purged.
            "trash": {"files": trash_files, "bytes": trash_bytes},
            "objects": int(n_obj), "object_bytes": int(obj_bytes),
            # The brain's own files (metadata snapshots): their chunks are counted below.
            "system_objects": int(n_sys), "system_bytes": int(sys_bytes),
            "chunks": n_chunks, "chunk_bytes": chunk_bytes,
            "replica_histogram": histogram(DATA),
            "manifests": {"packs": packs, "bytes": pack_bytes,
                          "replica_histogram": histogram(META)},
        }


def _placements_query(object_id: int) -> Any:
    return (
        select(ObjectChunk.seq, ObjectChunk.chunk_id, ObjectChunk.size,
               Replica.node_id, Replica.state)
        .outerjoin(Replica, Replica.chunk_id == ObjectChunk.chunk_id)
        .where(ObjectChunk.object_id == object_id)
        .order_by(ObjectChunk.seq)
    )


def _group_placements(rows: Sequence[Any]) -> list[ChunkPlacement]:
    out: list[ChunkPlacement] = []
    current: tuple[int, str, int] | None = None
    reps: list[tuple[str, str]] = []
    for seq, cid, size, node, state in rows:
        if current is None or current[0] != seq:
            if current is not None:
                out.append(ChunkPlacement(*current, tuple(reps)))
            current, reps = (seq, cid, size), []
        if node is not None:
            reps.append((node, state))
    if current is not None:
        out.append(ChunkPlacement(*current, tuple(reps)))
    return out
