"""Committing objects: group commit's transaction (uploads, deletes, names, the
manifest log, moves to the trash) and reference counting."""

from __future__ import annotations

import dataclasses
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tossit.brain import manifest_rows
from tossit.brain.manifest_rows import (
    DEL,
    PUT,
    TRASH,
    NewRow,
    Pack,
    PackRecord,
    by_bucket,
    trash_entry,
)
from tossit.brain.models import (
    Chunk,
    Event,
    Object,
    ObjectChunk,
    TrashChunk,
    TrashedObject,
)
from tossit.brain.sqlbatch import batches
from tossit.brain.states import EventKind
from tossit.brain.store.base import (
    _OBJECT_COLUMNS,
    Applied,
    NewObject,
    ReplaceOnly,
    StoreBase,
    _table,
)
from tossit.brain.store.uploads import finish_uploads
from tossit.config import format_duration, format_size
from tossit.errors import NameTaken, ObjectChanged
from tossit.manifests import SYSTEM_BUCKET, AnyEntry, DelEntry, put_entry
from tossit.names import numbered_name


class ObjectWrites(StoreBase):
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
                    written: Sequence[PackRecord] = (), defer_pack: bool = False) -> Applied:
        """Delete objects by id, then commit new ones, in one transaction, and log
        each change as a manifest entry (tossit.manifests) in the same one.
        ``written``: packs of earlier commits that reached the nodes since, recorded
        first in the same transaction (it saves one of their own).
        ``defer_pack``: log the entries in no pack (``Applied.pack`` is None); the
        caller puts them on the nodes (``ManifestWriter.publish``) before it
        answers, else the brain's next start packs them.

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
            # Uploads are ended under the name they were started with, before a
            # name taken since may rename the object ("name (2).ext").
            completed = await finish_uploads(s, items, bids)
            items = await self._settle_names(s, items, bids)
            if not items:
                entries, packs, pack = await self._log(s, gone, [], [], now, trashed=trashed,
                                                       defer_pack=defer_pack)
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
                 "etag": i.etag, "content_type": i.content_type, "chunk_size": i.chunk_size,
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
                s, [c for c in {*garbage_candidates, *dropped, *completed} if c not in counts])
            entries, packs, pack = await self._log(s, gone, objs, items, now, old_ids,
                                                   trashed=trashed, defer_pack=defer_pack)
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
            if isinstance(item.on_conflict, ReplaceOnly):
                await self._replaces_only(s, bid, item, item.on_conflict)
                continue
            if item.on_conflict == "replace" or not await self._taken(s, bid, item.key):
                continue
            if item.on_conflict == "fail":
                raise NameTaken(item.bucket, item.key)
            number = 2
            while await self._taken(s, bid, numbered_name(item.key, number)):
                number += 1
            out[n] = dataclasses.replace(item, key=numbered_name(item.key, number))
        return out

    async def _replaces_only(self, s: AsyncSession, bid: int | None, item: NewObject,
                             only: ReplaceOnly) -> None:
        """ObjectChanged unless the name holds the object ``only`` names (any one
        for None): S3's If-Match, checked where no other commit slips in."""
        current = await s.scalar(select(Object.id).where(
            Object.bucket_id == bid, Object.key == item.key))
        if current is None or only.object_id not in (None, current):
            raise ObjectChanged(item.bucket, item.key, found=current is not None)

    async def _taken(self, s: AsyncSession, bid: int | None, key: str) -> bool:
        return await s.scalar(select(Object.id).where(
            Object.bucket_id == bid, Object.key == key)) is not None

    async def _log(
        self, s: AsyncSession, gone: list[tuple[int, int, str]], objs: list[Object],
        items: Sequence[NewObject], now: float, replaced: Sequence[int] = (),
        trashed: Sequence[TrashedObject] = (), defer_pack: bool = False,
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
        pack = await self._pack(s, rows, versions, entries, now, defer=defer_pack)
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

    async def _pack(self, s: AsyncSession, rows: Sequence[NewRow], versions: Sequence[int],
                    entries: Sequence[AnyEntry], now: float, defer: bool = False
                    ) -> Pack | None:
        """Log these rows, in a pack in the outbox (caller's transaction); with
        ``defer`` (or no pack key), in no pack."""
        pack = None
        if self.pack_key is not None and entries and not defer:
            pack = manifest_rows.new_pack(entries, self.pack_key, now)
            await manifest_rows.to_outbox(s, pack)
        await manifest_rows.log_rows(s, rows, versions, now, pack.id if pack else None)
        return pack
