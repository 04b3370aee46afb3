"""The trash: listing, restoring and purging what deletes and overwrites kept."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Sequence

from sqlalchemy import delete, func, insert, select, update

from tossit.brain import manifest_rows
from tossit.brain.manifest_rows import (
    PURGE,
    PUT,
    TRASH,
    NewRow,
    trash_entry,
)
from tossit.brain.models import (
    Chunk,
    Object,
    TrashChunk,
    TrashedObject,
)
from tossit.brain.sqlbatch import batches
from tossit.brain.store.base import _OBJECT_COLUMNS, Applied, Restored, _table
from tossit.brain.store.objects import ObjectWrites
from tossit.errors import NameTaken, TrashNotFound
from tossit.manifests import SYSTEM_BUCKET, AnyEntry, PurgeEntry, put_entry
from tossit.names import numbered_name


class TrashStore(ObjectWrites):
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

