"""The manifest log in the metadata database (``manifest_log`` and ``pack_outbox``).

Each ``manifest_log`` row is one entry of ``tossit.manifests``: its ``version``
(the database assigns them, in commit order, never twice), what it is about,
whether the nodes must keep it (``needed``) and the pack that holds it.

The protocol, for a commit (``Store.apply``) or a key or bucket change:

1. In the change's own transaction the entries are logged, packed, and the pack
   is put in ``pack_outbox`` with its bytes.
2. The pack is written to the nodes (``ManifestWriter``).
3. ``record_packs``: the pack becomes a ``chunks`` row of kind ``meta`` (with its
   replicas) whose refcount is its number of needed entries, and leaves the outbox.

A crash anywhere leaves the pack in the outbox, and it is written again, with the
same bytes, at the next start. The collector deletes nothing while the outbox
holds a pack, so the nodes never lose an old manifest before they hold the newer
one. When a pack's refcount reaches zero it is deleted from the nodes like any
unreferenced chunk, and its entries go with its row.

The rule kept here is ``tossit.manifests.needed_versions``: the newest entry of
each name is needed, unless it is a tombstone with no older ``put`` left. The
same holds for a file in the trash, whose scope is its id: its ``trash`` entry
is needed until a ``purge`` (or a restore) supersedes it, and that ``purge`` is
needed while the older ``trash`` entry may still be on a node.
``supersede`` applies the first half when a newer entry is logged;
``LogStore.expire_tombstones`` the second, once the older packs are gone.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import and_, bindparam, delete, exists, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from tossit.brain.models import (
    ApiKey,
    Bucket,
    Chunk,
    ManifestEntry,
    Object,
    ObjectChunk,
    PackOutbox,
    TrashChunk,
    TrashedObject,
)
from tossit.brain.sqlbatch import batches
from tossit.chunking import META
from tossit.errors import MetadataBehind
from tossit.manifests import (
    AnyEntry,
    BucketEntry,
    DelEntry,
    KeyEntry,
    PurgeEntry,
    TrashEntry,
    encode_pack,
    pack_id,
    put_entry,
)

if TYPE_CHECKING:
    from tossit.brain.store.base import StoreBase

PUT, DEL, KEY, TRASH, PURGE, BUCKET = "put", "del", "key", "trash", "purge", "bucket"
BACKFILL_PAGE = 2000  # entries per pack when packing entries logged without one
# The replica state of a pack's copy that may have landed (``PackRecord.doubtful``).
DOUBTFUL = "doubtful"


@dataclass(frozen=True)
class NewRow:
    """An entry to log: a file's scope (bucket id, name), an API key's id, or a
    bucket's name (``bucket_id`` None: keys and buckets are not files)."""

    op: str
    bucket_id: int | None
    key: str
    object_id: int | None
    needed: bool


@dataclass(frozen=True)
class Pack:
    """A pack in the outbox: its id and bytes."""

    id: str
    data: bytes
    created_at: float = 0.0
    first_version: int = 0


@dataclass(frozen=True)
class PackRecord:
    """A pack written to nodes: what the database must now know about it."""

    pack_id: str
    size: int
    nodes: tuple[str, ...]
    # The entries it holds that the log does not point at it yet (a pack made
    # after its commit, ``ManifestWriter.publish``); () for a pack of the outbox.
    versions: tuple[int, ...] = ()
    # Nodes whose write of it failed in a way that may still land (a timeout, a
    # straggler cut off): recorded ``doubtful``, so that when the pack is dropped
    # the collector waits for those nodes to answer its delete too. A copy left
    # on a node that was away then would, once the tombstones hiding its entries
    # expired, bring deleted files back in a rebuild.
    doubtful: tuple[str, ...] = ()




def by_bucket(names: Sequence[tuple[int, str]]) -> dict[int, list[str]]:
    """(bucket id, name) pairs grouped by bucket, each name once."""
    out: dict[int, list[str]] = {}
    for bucket_id, name in dict.fromkeys(names):
        out.setdefault(bucket_id, []).append(name)
    return out


# Statements built once: they run on every commit, and building and caching a new
# statement object each time cost more than executing it.
_SUPERSEDE_PUTS = (
    update(ManifestEntry)
    .where(ManifestEntry.needed, ManifestEntry.op == PUT,
           ManifestEntry.object_id.in_(bindparam("ids", expanding=True)))
    .values(needed=False).returning(ManifestEntry.pack))
_SUPERSEDE_TRASH = (
    update(ManifestEntry)
    .where(ManifestEntry.needed, ManifestEntry.op == TRASH,
           ManifestEntry.object_id.in_(bindparam("ids", expanding=True)))
    .values(needed=False).returning(ManifestEntry.pack))
_SUPERSEDE_KEYS = (
    update(ManifestEntry)
    .where(ManifestEntry.needed, ManifestEntry.op == KEY,
           ManifestEntry.key.in_(bindparam("names", expanding=True)))
    .values(needed=False).returning(ManifestEntry.pack))
_SUPERSEDE_BUCKETS = (
    update(ManifestEntry)
    .where(ManifestEntry.needed, ManifestEntry.op == BUCKET,
           ManifestEntry.key.in_(bindparam("names", expanding=True)))
    .values(needed=False).returning(ManifestEntry.pack))
_LOG = insert(ManifestEntry)
# Run once for many (version, pack) pairs: a statement built per pack cost more
# in Python than its work in SQLite.
_POINT_AT_PACK = update(ManifestEntry).where(
    ManifestEntry.version == bindparam("v"), ManifestEntry.pack.is_(None)
).values(pack=bindparam("p"))
_OUTBOX = {"sqlite": sqlite.insert(PackOutbox).on_conflict_do_nothing(index_elements=["pack_id"]),
           "postgresql": postgresql.insert(PackOutbox).on_conflict_do_nothing(
               index_elements=["pack_id"])}


async def supersede(s: AsyncSession, objects: Sequence[int],
                    keys: Sequence[str] = (), trashed: Sequence[int] = (),
                    buckets: Sequence[str] = ()) -> Counter[str]:
    """These files were deleted or overwritten (or these keys or buckets changed,
    or these files left the trash): their entries are needed no more. Returns how many
    entries each pack lost (the caller releases them with ``release_packs``).

    A tombstone of a name uploaded again is left needed here (a fresh upload
    then costs no statement at all); the collector's ``expire_tombstones`` finds
    it: it only keeps a pack a little longer."""
    lost: Counter[str] = Counter()
    conn = await s.connection()  # Core: these statements are on every commit's path
    for batch in batches(list(dict.fromkeys(objects))):
        rows = (await conn.execute(_SUPERSEDE_PUTS, {"ids": list(batch)})).scalars().all()
        lost.update(p for p in rows if p is not None)
    for batch in batches(list(dict.fromkeys(keys))):
        rows = (await conn.execute(_SUPERSEDE_KEYS, {"names": list(batch)})).scalars().all()
        lost.update(p for p in rows if p is not None)
    for batch in batches(list(dict.fromkeys(trashed))):
        rows = (await conn.execute(_SUPERSEDE_TRASH, {"ids": list(batch)})).scalars().all()
        lost.update(p for p in rows if p is not None)
    for batch in batches(list(dict.fromkeys(buckets))):
        rows = (await conn.execute(_SUPERSEDE_BUCKETS, {"names": list(batch)})).scalars().all()
        lost.update(p for p in rows if p is not None)
    return lost


class Versions:
    """Hands out the next versions, from the table's own counter (never twice,
    even when the newest rows were dropped). The caller holds the commit lock,
    so versions follow commit order. PostgreSQL: its sequence (several brains may
    take turns). SQLite (one brain per database): AUTOINCREMENT keeps the highest
    version ever stored in sqlite_sequence, read once; inserting explicit
    versions above it moves it on."""

    def __init__(self) -> None:
        self._top: int | None = None
        # Set when the nodes are found to hold newer changes than this metadata
        # (``gc.Collector``): no version is handed out until a recovery.
        self.refusal: str | None = None

    def check(self) -> None:
        """Raise ``MetadataBehind`` while versions are refused."""
        if self.refusal is not None:
            raise MetadataBehind(self.refusal)

    async def allocate(self, s: AsyncSession, n: int) -> list[int]:
        if n == 0:
            return []
        self.check()
        if s.get_bind().dialect.name == "postgresql":
            rows = await s.execute(text(
                "SELECT nextval(pg_get_serial_sequence('manifest_log', 'version')) "
                "FROM generate_series(1, :n)"), {"n": n})
            return sorted(int(v) for (v,) in rows.all())
        if self._top is None:
            top = await s.scalar(text(
                "SELECT seq FROM sqlite_sequence WHERE name = 'manifest_log'"))
            if top is None:
                top = await s.scalar(select(func.max(ManifestEntry.version)))
            self._top = int(top or 0)
        first = self._top + 1
        self._top += n
        return list(range(first, first + n))


async def log_rows(s: AsyncSession, rows: Sequence[NewRow], versions: Sequence[int],
                   now: float, pack: str | None) -> None:
    """Insert entries at these versions, in ``pack`` (None: to be packed later)."""
    if rows:
        await (await s.connection()).execute(_LOG, [
            {"version": v, "op": r.op, "bucket_id": r.bucket_id, "key": r.key,
             "object_id": r.object_id, "needed": r.needed, "pack": pack, "created_at": now}
            for v, r in zip(versions, rows, strict=True)])


def new_pack(entries: Sequence[AnyEntry], key: bytes, now: float) -> Pack:
    data = encode_pack(entries, key)
    return Pack(pack_id(data), data, now, min(e.version for e in entries))


async def to_outbox(s: AsyncSession, pack: Pack) -> None:
    """The pack waits here until it is on the nodes (the caller's transaction);
    the same bytes again (entries re-packed identically) are the same pack."""
    conn = await s.connection()
    await conn.execute(_OUTBOX[conn.dialect.name], {
        "pack_id": pack.id, "data": pack.data, "created_at": pack.created_at,
        "first_version": pack.first_version})


async def release_packs(s: AsyncSession, lost: Counter[str]) -> list[str]:
    """Take ``lost`` needed entries off each pack's refcount; returns the packs
    that need nothing any more (garbage for the collector). Packs still in the
    outbox have no row yet: ``record_packs`` counts their entries afresh."""
    if not lost:
        return []
    by_n: dict[int, list[str]] = {}
    for pack, n in lost.items():
        by_n.setdefault(n, []).append(pack)
    for n, packs in by_n.items():
        for batch in batches(packs):
            await s.execute(update(Chunk).where(Chunk.id.in_(batch))
                            .values(refcount=Chunk.refcount - n))
    done: list[str] = []
    for batch in batches(list(lost)):
        done += (await s.execute(select(Chunk.id).where(
            Chunk.id.in_(batch), Chunk.refcount <= 0))).scalars().all()
    return done


async def pack_logged(s: AsyncSession, entries: Sequence[AnyEntry], key: bytes,
                      now: float) -> Pack | None:
    """Pack entries already logged without a pack, point them at it, and put it
    in the outbox (the caller's transaction)."""
    if not entries:
        return None
    pack = new_pack(entries, key, now)
    for batch in batches([e.version for e in entries]):
        await s.execute(update(ManifestEntry).where(ManifestEntry.version.in_(batch))
                        .values(pack=pack.id))
    await to_outbox(s, pack)
    return pack


async def _log_alone(s: AsyncSession, row: NewRow, entry: Callable[[int], AnyEntry],
                     lost: Counter[str], pack_key: bytes, versions: Versions
                     ) -> tuple[list[str], Pack]:
    """Log one change in a pack of its own (a key's or a bucket's: rare, and not
    part of a commit batch), in the caller's transaction."""
    now = time.time()
    (version,) = await versions.allocate(s, 1)
    pack = new_pack([entry(version)], pack_key, now)
    await log_rows(s, [row], [version], now, pack.id)
    await to_outbox(s, pack)
    return await release_packs(s, lost), pack


# ``log_key`` and ``log_bucket``: what ``StoreBase.log_alone`` takes.
LogAlone = Callable[[AsyncSession, str, bytes, "Versions"],
                    Awaitable[tuple[list[str], "Pack | None"]]]


async def log_key(s: AsyncSession, key_id: str, pack_key: bytes, versions: Versions
                  ) -> tuple[list[str], Pack | None]:
    """Log an API key's new state (created or revoked) in the caller's transaction:
    returns the packs it leaves with nothing needed, and its own pack."""
    lost = await supersede(s, (), [key_id])
    row = await s.get(ApiKey, key_id)
    assert row is not None, "log the key after writing it"
    return await _log_alone(s, NewRow(KEY, None, key_id, None, True),
                            lambda v: key_entry(v, row), lost, pack_key, versions)


async def log_bucket(s: AsyncSession, name: str, pack_key: bytes, versions: Versions
                     ) -> tuple[list[str], Pack | None]:
    """Log a bucket's new state (made or deleted), like ``log_key``."""
    lost = await supersede(s, (), buckets=[name])
    row = (await s.execute(select(Bucket).where(Bucket.name == name))).scalar_one()
    return await _log_alone(s, NewRow(BUCKET, None, name, None, True),
                            lambda v: bucket_entry(v, row), lost, pack_key, versions)


def key_entry(version: int, k: ApiKey) -> KeyEntry:
    return KeyEntry(version=version, key_id=k.id, name=k.name, role=k.role,
                    secret_sha256=k.secret_sha256, salt=k.salt, created=k.created_at,
                    expires=k.expires_at, revoked=k.revoked_at)


def bucket_entry(version: int, b: Bucket) -> BucketEntry:
    return BucketEntry(version=version, name=b.name, created=b.created_at,
                       deleted=b.deleted_at)


class LogStore:
    """The manifest log's reads and writes outside of commits."""

    def __init__(self, store: StoreBase) -> None:
        self.store = store
        ins = (postgresql.insert if store.dialect == "postgresql" else sqlite.insert)(Chunk)
        self._upsert_pack = ins.on_conflict_do_update(
            index_elements=["id"], set_={"refcount": ins.excluded.refcount})

    async def record_packs(self, packs: Sequence[PackRecord]) -> list[str]:
        """Packs are on the nodes: record them (``record_in``) in a transaction of
        their own. Returns the packs that need nothing (superseded meanwhile)."""
        if not packs:
            return []
        async with self.store.write() as s:
            await self.store.lock_refcounts(s)
            return await self.record_in(s, packs)

    async def record_in(self, s: AsyncSession, packs: Sequence[PackRecord]) -> list[str]:
        """In the caller's transaction (a commit's, usually: no transaction of its
        own): each pack becomes a chunk (kind meta) whose refcount is its number
        of needed entries, with the nodes holding it, and leaves the outbox. A
        handful of statements whatever the number of packs. Returns the packs
        that need nothing."""
        if not packs:
            return []
        now = time.time()
        ids = list(dict.fromkeys(p.pack_id for p in packs))
        conn = await s.connection()
        # Only entries no other pack took (after a crash, the restarted brain may
        # have packed them again): a pack then needing nothing is garbage.
        pointed = [{"v": v, "p": p.pack_id} for p in packs for v in p.versions]
        if pointed:
            await conn.execute(_POINT_AT_PACK, pointed)
        needed: Counter[str] = Counter()
        for batch in batches(ids):
            for pid, n in (await conn.execute(
                    select(ManifestEntry.pack, func.count()).where(
                        ManifestEntry.pack.in_(batch), ManifestEntry.needed)
                    .group_by(ManifestEntry.pack))).all():
                needed[str(pid)] += int(n)
        sizes = {p.pack_id: p.size for p in packs}
        # Written again (after a crash): the count is the truth.
        await conn.execute(self._upsert_pack, [
            {"id": pid, "size": sizes[pid], "refcount": needed[pid], "created_at": now,
             "kind": META} for pid in ids])
        replicas = {(p.pack_id, n) for p in packs for n in p.nodes}
        if replicas:
            await conn.execute(self.store.upsert_replica, [
                {"chunk_id": pid, "node_id": n, "state": "ok", "updated_at": now}
                for pid, n in sorted(replicas)])
        doubtful = {(p.pack_id, n) for p in packs for n in p.doubtful} - replicas
        if doubtful:  # (an ok copy recorded before stays ok)
            await conn.execute(self.store.insert_replica_if_absent, [
                {"chunk_id": pid, "node_id": n, "state": DOUBTFUL, "updated_at": now}
                for pid, n in sorted(doubtful)])
        for batch in batches(ids):
            await conn.execute(delete(PackOutbox).where(PackOutbox.pack_id.in_(batch)))
        return [pid for pid in ids if needed[pid] == 0]

    async def outbox(self, limit: int = 100, skip: Collection[str] = ()) -> list[Pack]:
        """Packs waiting to be written, oldest first. ``skip``: packs this brain
        is writing or has written and not recorded yet."""
        stmt = select(PackOutbox.pack_id, PackOutbox.data, PackOutbox.created_at,
                      PackOutbox.first_version)
        if skip:
            stmt = stmt.where(PackOutbox.pack_id.not_in(list(skip)))
        async with self.store.read() as s:
            rows = (await s.execute(stmt.order_by(PackOutbox.created_at).limit(limit))).all()
        return [Pack(pid, bytes(data), at, v) for pid, data, at, v in rows]

    async def outbox_ids(self, up_to: int | None = None) -> set[str]:
        """Packs in the outbox (with ``up_to``: holding a change at or below it)."""
        stmt = select(PackOutbox.pack_id)
        if up_to is not None:
            stmt = stmt.where(PackOutbox.first_version <= up_to)
        async with self.store.read() as s:
            return set((await s.execute(stmt)).scalars().all())

    async def outbox_count(self) -> int:
        """Packs waiting in the outbox (``not_out`` also counts loose changes)."""
        async with self.store.read() as s:
            return int(await s.scalar(select(func.count()).select_from(PackOutbox)) or 0)

    async def pack_unpacked(self, key: bytes, limit: int = BACKFILL_PAGE,
                            skip: Collection[int] = ()) -> Pack | None:
        """Entries logged without a pack (a cluster upgraded to manifests: every
        file it held; commits whose pack the brain did not get onto the nodes
        before it stopped, or gave up on) are packed from the metadata, ``limit``
        at a time, into the outbox. ``skip``: versions this brain is writing right
        now. None when there are none (an empty Pack when a page had only entries
        to drop)."""
        async with self.store.write() as s:
            stmt = select(ManifestEntry).where(ManifestEntry.pack.is_(None))
            if skip:
                stmt = stmt.where(ManifestEntry.version.not_in(list(skip)))
            rows = (await s.execute(stmt.order_by(ManifestEntry.version).limit(limit))
                    ).scalars().all()
            if not rows:
                return None
            # Bucket entries in packs of their own, as when they were first
            # logged: a brain older than them refuses a pack that holds one, and
            # must still read the files of every other.
            rows = [r for r in rows if (r.op == BUCKET) == (rows[0].op == BUCKET)]
            entries = await _rebuild_entries(s, rows)
            # Rows whose file or key is gone were superseded before ever reaching a
            # node: nothing to keep.
            moot = [r.version for r in rows if r.version not in {e.version for e in entries}]
            for batch in batches(moot):
                await s.execute(delete(ManifestEntry).where(ManifestEntry.version.in_(batch)))
            return await pack_logged(s, entries, key, time.time()) or Pack("", b"")

    async def follow_key(self, key: bytes) -> int:
        """Packs must verify with the current cluster secret: when it changed (a
        rotation), every needed entry is packed again from the metadata, signed
        with the new key, and the old packs are released (they are deleted from
        the nodes once the new ones are there: the outbox holds the collector).
        Returns how many entries were queued for re-signing."""
        fingerprint = hashlib.sha256(b"tossit-pack-key-id" + key).hexdigest()[:16]
        known = await self.store.get_state("pack_key")
        if known is not None and known.get("id") == fingerprint:
            return 0
        moved = 0
        if known is not None:
            async with self.store.write() as s:
                await self.store.lock_refcounts(s)
                where = (ManifestEntry.needed, ManifestEntry.pack.is_not(None))
                old = (await s.execute(select(ManifestEntry.pack).where(*where))).scalars().all()
                await s.execute(update(ManifestEntry).where(*where).values(pack=None))
                moved = len(old)
                for batch in batches(list(set(old))):
                    await s.execute(update(Chunk).where(Chunk.id.in_(batch)).values(refcount=0))
        await self.store.set_state("pack_key", {"id": fingerprint, "at": time.time()})
        return moved

    async def repack(self, packs: Collection[str]) -> dict[str, int]:
        """Packs no node can give any more (every copy missing, corrupt or on a
        node that is away) are not lost the way a chunk's data is: their entries
        are in the metadata. Their needed entries go back to no pack, for the
        writer's ``flush`` to pack and write again, and the old packs need
        nothing (garbage, kept by the collector while the outbox holds the new
        ones). A pack already on its way again (in the outbox), or with nothing
        needed, is left alone. Returns the entries queued, by pack."""
        moved: dict[str, int] = {}
        async with self.store.write() as s:
            await self.store.lock_refcounts(s)
            for batch in batches(list(packs)):
                waiting = set((await s.execute(select(PackOutbox.pack_id).where(
                    PackOutbox.pack_id.in_(batch)))).scalars().all())
                lost = [p for p in batch if p not in waiting]
                if not lost:
                    continue
                where = (ManifestEntry.needed, ManifestEntry.pack.in_(lost))
                found = {str(pid): int(n) for pid, n in (await s.execute(
                    select(ManifestEntry.pack, func.count()).where(*where)
                    .group_by(ManifestEntry.pack))).all()}
                if found:
                    await s.execute(update(ManifestEntry).where(*where).values(pack=None))
                    await s.execute(update(Chunk).where(Chunk.id.in_(list(found)))
                                    .values(refcount=0))
                    moved.update(found)
        return moved

    async def expire_tombstones(self) -> list[str]:
        """Tombstones needed no more: with no older ``put`` of their name left
        anywhere (that put's pack was deleted from the nodes), or with a newer
        entry for their name (uploaded again). The same for the ``purge`` of a
        file in the trash, by its id. Returns the packs that this leaves with
        nothing needed (garbage)."""
        other = aliased(ManifestEntry)
        # A name's entries are put and del only: trash and purge rows carry the
        # name the file had, but their scope is its id.
        same = and_(other.bucket_id == ManifestEntry.bucket_id, other.key == ManifestEntry.key,
                    other.op.in_([PUT, DEL]))
        same_id = and_(other.object_id == ManifestEntry.object_id,
                       other.op.in_([TRASH, PURGE]))
        async with self.store.write() as s:
            await self.store.lock_refcounts(s)
            rows = list((await s.execute(
                update(ManifestEntry)
                .where(ManifestEntry.op == DEL, ManifestEntry.needed,
                       ~exists().where(and_(same, other.op == PUT,
                                            other.version < ManifestEntry.version))
                       | exists().where(and_(same, other.version > ManifestEntry.version)))
                .values(needed=False).returning(ManifestEntry.pack))).scalars().all())
            rows += (await s.execute(
                update(ManifestEntry)
                .where(ManifestEntry.op == PURGE, ManifestEntry.needed,
                       ~exists().where(and_(same_id, other.op == TRASH,
                                            other.version < ManifestEntry.version))
                       | exists().where(and_(same_id, other.version > ManifestEntry.version)))
                .values(needed=False).returning(ManifestEntry.pack))).scalars().all()
            return await release_packs(s, Counter(p for p in rows if p is not None))

    async def unpacked(self, up_to: int, limit: int = 10000) -> set[int]:
        """Versions at or below ``up_to`` logged but in no pack yet (at most
        ``limit`` of them: the collector only asks whether any is not written)."""
        async with self.store.read() as s:
            return set((await s.execute(
                select(ManifestEntry.version).where(
                    ManifestEntry.pack.is_(None), ManifestEntry.version <= up_to)
                .limit(limit))).scalars().all())

    async def not_out(self, older_than: float | None = None) -> int:
        """Manifests not yet recorded as on the nodes: packs of the outbox, and
        changes logged in no pack yet (on their way, or left by a write that
        failed or a brain that stopped), one each; with ``older_than``, only
        those made that many seconds ago or more."""
        cutoff = None if older_than is None else time.time() - older_than
        packs = select(func.count()).select_from(PackOutbox)
        loose = select(func.count()).select_from(ManifestEntry).where(
            ManifestEntry.pack.is_(None))
        if cutoff is not None:
            packs = packs.where(PackOutbox.created_at < cutoff)
            loose = loose.where(ManifestEntry.created_at < cutoff)
        async with self.store.read() as s:
            return int(await s.scalar(packs) or 0) + int(await s.scalar(loose) or 0)

    async def max_version(self) -> int:
        async with self.store.read() as s:
            return int(await s.scalar(select(func.max(ManifestEntry.version))) or 0)


async def _rebuild_entries(s: AsyncSession, rows: Sequence[ManifestEntry]) -> list[AnyEntry]:
    """The entries of these rows, from the metadata as it is now; none for a
    ``put`` whose file is gone or a ``key`` whose key is gone."""
    buckets = {bid: name for bid, name in (await s.execute(select(Bucket.id, Bucket.name))).all()}
    objs = {o.id: o for o in (await s.execute(select(Object).where(
        Object.id.in_([r.object_id for r in rows if r.op == PUT] or [-1])))).scalars()}
    chunks: dict[int, list[tuple[str, int]]] = {}
    for oid, cid, size in (await s.execute(
            select(ObjectChunk.object_id, ObjectChunk.chunk_id, ObjectChunk.size)
            .where(ObjectChunk.object_id.in_(list(objs) or [-1]))
            .order_by(ObjectChunk.object_id, ObjectChunk.seq))).all():
        chunks.setdefault(oid, []).append((cid, size))
    keys = {k.id: k for k in (await s.execute(select(ApiKey).where(
        ApiKey.id.in_([r.key for r in rows if r.op == KEY] or [""])))).scalars()}
    named = {b.name: b for b in (await s.execute(select(Bucket).where(
        Bucket.name.in_([r.key for r in rows if r.op == BUCKET] or [""])))).scalars()}
    trashed = {t.id: t for t in (await s.execute(select(TrashedObject).where(
        TrashedObject.id.in_([r.object_id for r in rows if r.op == TRASH] or [-1]))))
        .scalars()}
    trash_chunks: dict[int, list[tuple[str, int]]] = {}
    for tid, cid, size in (await s.execute(
            select(TrashChunk.trash_id, TrashChunk.chunk_id, TrashChunk.size)
            .where(TrashChunk.trash_id.in_(list(trashed) or [-1]))
            .order_by(TrashChunk.trash_id, TrashChunk.seq))).all():
        trash_chunks.setdefault(tid, []).append((cid, size))
    out: list[AnyEntry] = []
    for r in rows:
        o = objs.get(r.object_id or -1)
        if r.op == PUT and o is not None:
            out.append(put_entry(
                version=r.version, bucket=buckets[o.bucket_id], key=o.key, object_id=o.id,
                size=o.size, sha256=o.sha256, content_type=o.content_type,
                created=o.created_at, chunk_size=o.chunk_size, chunks=chunks.get(o.id, []),
                etag=o.etag, user_meta=o.user_meta))
        elif r.op == DEL and r.bucket_id is not None:
            out.append(DelEntry(version=r.version, bucket=buckets[r.bucket_id], key=r.key,
                                id=r.object_id or 1, deleted=r.created_at))
        elif r.op == KEY and r.key in keys:
            out.append(key_entry(r.version, keys[r.key]))
        elif r.op == BUCKET and r.key in named:
            out.append(bucket_entry(r.version, named[r.key]))
        elif r.op == TRASH and (r.object_id or -1) in trashed:
            out.append(trash_entry(r.version, buckets[trashed[r.object_id or -1].bucket_id],
                                   trashed[r.object_id or -1],
                                   trash_chunks.get(r.object_id or -1, [])))
        elif r.op == PURGE and r.bucket_id is not None:
            out.append(PurgeEntry(version=r.version, bucket=buckets[r.bucket_id], key=r.key,
                                  id=r.object_id or 1, purged=r.created_at))
    return out


def trash_entry(version: int, bucket: str, t: TrashedObject,
                chunks: Sequence[tuple[str, int]]) -> TrashEntry:
    """The entry of a file in the trash, from its row and (chunk id, size) list."""
    body = put_entry(version=version, bucket=bucket, key=t.key, object_id=t.id, size=t.size,
                     sha256=t.sha256, content_type=t.content_type, created=t.created_at,
                     chunk_size=t.chunk_size, chunks=chunks, etag=t.etag,
                     user_meta=t.user_meta)
    return TrashEntry(**{k: v for k, v in body.model_dump().items() if k != "op"},
                      deleted=t.deleted_at, purge_at=t.purge_at,
                      why="overwritten" if t.why == "overwritten" else "deleted")
