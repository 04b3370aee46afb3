"""The store's foundation: the engine and its transactions, buckets, and the value
types the other parts take and return."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tossit.brain import manifest_rows
from tossit.brain.manifest_rows import (
    LogStore,
    Pack,
)
from tossit.brain.models import (
    Bucket,
    Chunk,
    ClusterState,
    Object,
    ObjectChunk,
    Replica,
    TrashedObject,
)
from tossit.brain.states import EventKind
from tossit.brain.store.sqlite_reads import SqliteReads
from tossit.errors import MetadataFull
from tossit.manifests import AnyEntry

log = logging.getLogger("tossit.brain.store")
DEFAULT_BUCKET = "default"
FULL_LOG_EVERY = 60.0  # seconds between log lines while the metadata disk is full
_SQLITE_FULL = 13
_PG_DISK_FULL = "53100"


def is_disk_full(exc: DBAPIError) -> bool:
    """Did the database refuse a write for want of room? SQLite's SQLITE_FULL
    ("database or disk is full"), PostgreSQL's disk_full (53100), or ENOSPC."""
    orig = exc.orig
    if getattr(orig, "sqlite_errorcode", None) == _SQLITE_FULL:
        return True
    if _PG_DISK_FULL in (getattr(orig, "sqlstate", None), getattr(orig, "pgcode", None)):
        return True
    if isinstance(orig, OSError) and orig.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return "database or disk is full" in str(orig)


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


@dataclass(frozen=True)
class ReplaceOnly:
    """An upload's ``on_conflict`` for S3's ``If-Match``: commit only if the
    name's object is still ``object_id`` (None: any object), else fail
    (``ObjectChanged``). Decided in the commit's transaction, so of two writers
    that saw the same object only the first replaces it; by id, not ETag, as the
    first writer's object is a new one even when its bytes (its ETag) are the same."""

    object_id: int | None


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
    # S3's ETag, bare (unquoted): the MD5 of the bytes (hex), or for a multipart
    # upload the MD5 of its parts' MD5s and "-N".
    etag: str | None = None
    # When the name is taken: replace that file, rename this one ("name (2).ext",
    # keep both), or fail (NameTaken); or (ReplaceOnly) replace only the object
    # named, else fail (ObjectChanged). Decided in the commit's transaction.
    on_conflict: str | ReplaceOnly = "replace"
    # The multipart upload this object completes: the commit ends it, in the same
    # transaction, and takes over its parts' chunk references (store/uploads.py).
    completes_upload: str | None = None


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


@dataclass
class Restored:
    """What a restore did: the file back under its name, the file it replaced
    (moved to the trash, or freed with the trash off), and the commit's log."""

    obj: Object
    replaced: int | None
    done: Applied


_OBJECT_COLUMNS = ("id", "bucket_id", "key", "size", "content_type", "sha256", "etag",
                   "chunk_size", "chunk_count", "user_meta", "created_at")


async def _nothing(pack: Pack | None, garbage: list[str]) -> None:
    return None


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


class StoreBase:
    """The engine, the transactions and the buckets: what every part of the store uses."""

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
        # The download path's reads, straight from the file (SQLite only).
        self.fast_reads = (SqliteReads(engine.url.database)
                           if self.dialect == "sqlite" and engine.url.database
                           and engine.url.database != ":memory:" else None)
        self._write_lock = asyncio.Lock()
        self.full_since: float | None = None  # monotonic: the first write a full disk refused
        self._full_logged = float("-inf")
        self._bucket_ids: dict[str, int] = {}
        # Buckets found to exist, and when (store/buckets.py: every S3 request asks).
        self._live_buckets: dict[str, tuple[Bucket, float]] = {}
        self.log = LogStore(self)
        self.versions = manifest_rows.Versions()
        # A key or bucket change logged in a pack of its own (``manifest_rows.
        # log_key``, ``log_bucket``): the brain sets this to write the pack to the
        # nodes and release what the change superseded.
        self.after_log: Callable[[Pack | None, list[str]], Awaitable[None]] = _nothing
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
        self.insert_replica_if_absent = ins.on_conflict_do_nothing(
            index_elements=["chunk_id", "node_id"])
        objects = _table(Object)
        self._insert_object = insert(objects).returning(
            objects.c.id, objects.c.bucket_id, objects.c.key
        )
        self._insert_object_chunk = insert(_table(ObjectChunk))

    # -- transactions -------------------------------------------------------

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A write transaction. SQLite has one writer at a time: queueing here
        instead of on its file lock avoids 'database is locked' under load.

        A full disk under the database fails the transaction as ``MetadataFull``
        (507, said once a minute in the log, not a traceback per request), and
        ``full_since`` says since when, for ``/ready``, until a write works again."""
        try:
            if self.dialect == "sqlite":
                async with self._write_lock, self.sessions.begin() as session:
                    yield session
            else:
                async with self.sessions.begin() as session:
                    yield session
        except DBAPIError as exc:
            if not is_disk_full(exc):
                raise
            self._note_full()
            raise MetadataFull(self._room_left()) from exc
        if self.full_since is not None:
            log.warning("the metadata database takes writes again (its disk was full "
                        "for %.0f s)", time.monotonic() - self.full_since)
            self.full_since = None

    def _note_full(self) -> None:
        now = time.monotonic()
        if self.full_since is None:
            self.full_since = now
        if now - self._full_logged >= FULL_LOG_EVERY:
            self._full_logged = now
            log.error("the metadata database has no room left (%s): changes are refused "
                      "until there is space (this is said once a minute while it lasts)",
                      self._room_left())

    def _sqlite_folder(self) -> str | None:
        """The folder of the SQLite file (None: PostgreSQL, or in memory)."""
        path = self.engine.url.database if self.dialect == "sqlite" else None
        if not path or path == ":memory:":
            return None
        return os.path.dirname(os.path.abspath(path))

    def room_left(self) -> int | None:
        """Free bytes on the disk under the SQLite file (None: PostgreSQL, or
        not known)."""
        folder = self._sqlite_folder()
        try:
            return None if folder is None else shutil.disk_usage(folder).free
        except OSError:
            return None

    def _room_left(self) -> str:
        """Where the database lives, and the room left there, in words."""
        folder = self._sqlite_folder()
        if folder is None:
            return "its database server's disk is full"
        free = self.room_left()
        if free is None:
            return f"the disk of {folder} is full"
        return f"the disk of {folder} is full: {free // 1024} KiB free"

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            yield session

    def _insert(self, model: Any) -> Any:
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(model)

    def insert_stmt(self, model: Any) -> Any:
        """An INSERT of this dialect (with ``on_conflict_do_update``)."""
        return self._insert(model)

    async def log_alone(self, s: AsyncSession, log: manifest_rows.LogAlone,
                        name: str) -> tuple[list[str], Pack | None]:
        """A key's or a bucket's change (``log``: ``manifest_rows.log_key`` or
        ``log_bucket``) logged in the caller's transaction, in a pack of its own;
        nothing without a pack key. ``after_log`` then writes the pack."""
        if self.pack_key is None:
            return [], None
        await self.lock_refcounts(s)
        return await log(s, name, self.pack_key, self.versions)

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
        if self.fast_reads is not None:
            self.fast_reads.close()
        await self.engine.dispose()

    # -- buckets ------------------------------------------------------------

    async def bucket_id(self, name: str = DEFAULT_BUCKET, create: bool = True) -> int | None:
        if name in self._bucket_ids:
            return self._bucket_ids[name]
        async with self.read() as s:
            bid = await s.scalar(select(Bucket.id).where(Bucket.name == name))
        if create:
            # A write of the REST API brings a bucket deleted over S3 back (the
            # cache forgets a deleted bucket, so this runs once after a delete).
            async with self.write() as s:
                if bid is None:
                    await s.execute(
                        self._insert(Bucket)
                        .values(name=name, created_at=time.time())
                        .on_conflict_do_nothing(index_elements=["name"])
                    )
                else:
                    await s.execute(update(Bucket).where(
                        Bucket.id == bid, Bucket.deleted_at.is_not(None)).values(deleted_at=None))
            async with self.read() as s:
                bid = await s.scalar(select(Bucket.id).where(Bucket.name == name))
        if bid is not None:
            self._bucket_ids[name] = bid
        return bid

    async def bucket_name(self, bucket_id: int) -> str:
        for name, bid in self._bucket_ids.items():
            if bid == bucket_id:
                return name
        async with self.read() as s:
            found = await s.scalar(select(Bucket.name).where(Bucket.id == bucket_id))
        return found or "?"

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
