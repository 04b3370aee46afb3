"""S3 multipart uploads in progress: their rows, their parts, and the chunk
references the parts hold.

A part's chunks are counted in ``Chunk.refcount`` like an object's, from the
moment the part is recorded: the collector leaves them alone however long the
upload lasts, and nothing else needs to know about uploads. Replacing a part,
aborting (or expiring) an upload, and completing it release those references in
the same transaction that changes the rows; completion takes them over in the
commit that makes the object (``finish_uploads``, called by ``Store.apply``), so
a completed object never points at a chunk that was free for a moment.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tossit.brain.models import (
    Chunk,
    MultipartPart,
    MultipartPartChunk,
    MultipartUpload,
    Replica,
)
from tossit.brain.multipart_rules import PartInfo
from tossit.brain.sqlbatch import batches
from tossit.brain.store.base import ChunkPlacement, NewObject, StoreBase, _table
from tossit.errors import InvalidPart, NoSuchUpload


class UploadStore(StoreBase):
    # -- uploads --------------------------------------------------------------

    async def create_upload(self, upload_id: str, bucket: str, key: str, content_type: str,
                            user_meta: dict[str, Any] | None) -> MultipartUpload:
        bid = await self.bucket_id(bucket)
        row = MultipartUpload(id=upload_id, bucket_id=bid, key=key, content_type=content_type,
                              user_meta=user_meta, created_at=time.time())
        async with self.write() as s:
            await s.execute(insert(_table(MultipartUpload)).values(
                id=row.id, bucket_id=row.bucket_id, key=row.key,
                content_type=row.content_type, user_meta=row.user_meta,
                created_at=row.created_at))
        return row

    async def get_upload(self, upload_id: str) -> MultipartUpload | None:
        async with self.read() as s:
            return await s.get(MultipartUpload, upload_id)

    async def list_uploads(self, bucket: str, prefix: str, key_marker: str,
                           upload_id_marker: str, limit: int) -> list[MultipartUpload]:
        """Uploads in progress in a bucket, by key then upload id (creation
        order), after the markers (``multipart_rules.after_upload_marker``):
        ``limit`` rows at most (ask one more to learn whether more follow)."""
        bid = await self.bucket_id(bucket, create=False)
        if bid is None:
            return []
        key = self._bytewise(MultipartUpload.key)
        where: list[ColumnElement[bool]] = [MultipartUpload.bucket_id == bid]
        if prefix:
            where.append(MultipartUpload.key.startswith(prefix, autoescape=True))
        if key_marker:
            later = [key > key_marker]
            if upload_id_marker:
                later.append(and_(MultipartUpload.key == key_marker,
                                  MultipartUpload.id > upload_id_marker))
            where.append(or_(*later))
        async with self.read() as s:
            return list((await s.execute(
                select(MultipartUpload).where(*where)
                .order_by(key, MultipartUpload.id).limit(limit))).scalars().all())

    async def uploads_started_before(self, cutoff: float, limit: int = 500) -> list[str]:
        """Ids of uploads created before ``cutoff`` (epoch seconds), oldest first."""
        async with self.read() as s:
            return list((await s.execute(
                select(MultipartUpload.id).where(MultipartUpload.created_at < cutoff)
                .order_by(MultipartUpload.created_at).limit(limit))).scalars().all())

    def _bytewise(self, column: Any) -> Any:
        """A string column compared and sorted by code point, as S3 lists keys
        (SQLite's default; PostgreSQL's depends on the database's collation)."""
        return column.collate("C") if self.dialect == "postgresql" else column

    # -- parts ------------------------------------------------------------------

    async def record_part(self, upload_id: str, part: PartInfo,
                          chunks: Sequence[tuple[str, int]],
                          replicas: dict[str, list[str]]) -> list[str]:
        """Record a stored part (replacing one of the same number), its chunks
        now referenced, in one transaction. Returns the chunks the replaced part
        left unreferenced (garbage). NoSuchUpload if the upload ended meanwhile:
        the caller's chunks are then its own to release."""
        now = time.time()
        async with self.write() as s:
            await self.lock_refcounts(s)
            if await s.get(MultipartUpload, upload_id) is None:
                raise NoSuchUpload(upload_id)
            released = await _drop_parts(s, upload_id, [part.number])
            counts = Counter(cid for cid, _ in chunks)
            sizes = dict(chunks)
            await s.execute(self.upsert_chunk, [
                {"id": cid, "size": sizes[cid], "refcount": n, "created_at": now}
                for cid, n in counts.items()])
            replica_rows = [{"chunk_id": cid, "node_id": node, "state": "ok", "updated_at": now}
                            for cid, nodes in replicas.items() for node in dict.fromkeys(nodes)]
            if replica_rows:
                await s.execute(self.upsert_replica, replica_rows)
            await s.execute(insert(_table(MultipartPart)).values(
                upload_id=upload_id, part_number=part.number, size=part.size, md5=part.md5,
                uploaded_at=part.uploaded_at or now))
            if chunks:
                await s.execute(insert(_table(MultipartPartChunk)), [
                    {"upload_id": upload_id, "part_number": part.number, "seq": seq,
                     "chunk_id": cid, "size": size}
                    for seq, (cid, size) in enumerate(chunks)])
            return await _unreferenced(s, [c for c in released if c not in counts])

    async def upload_parts(self, upload_id: str, after: int = 0,
                           limit: int | None = None) -> list[PartInfo]:
        """An upload's parts by number, after part ``after``, ``limit`` at most."""
        query = (select(MultipartPart).where(MultipartPart.upload_id == upload_id,
                                             MultipartPart.part_number > after)
                 .order_by(MultipartPart.part_number))
        if limit is not None:
            query = query.limit(limit)
        async with self.read() as s:
            return [PartInfo(p.part_number, p.size, p.md5, p.uploaded_at)
                    for p in (await s.execute(query)).scalars().all()]

    async def part_chunks(self, upload_id: str,
                          numbers: Iterable[int]) -> dict[int, list[tuple[str, int]]]:
        """The (chunk id, size) lists of these parts."""
        out: dict[int, list[tuple[str, int]]] = defaultdict(list)
        async with self.read() as s:
            for batch in batches(list(numbers)):
                for number, cid, size in (await s.execute(
                        select(MultipartPartChunk.part_number, MultipartPartChunk.chunk_id,
                               MultipartPartChunk.size)
                        .where(MultipartPartChunk.upload_id == upload_id,
                               MultipartPartChunk.part_number.in_(batch))
                        .order_by(MultipartPartChunk.part_number, MultipartPartChunk.seq))).all():
                    out[number].append((cid, size))
        return dict(out)

    async def chunk_placements(self, chunks: Sequence[tuple[str, int]]) -> list[ChunkPlacement]:
        """Placements for a chunk list that is no object's yet (a completion's,
        read once to hash it), each with its replica rows."""
        found: dict[str, list[tuple[str, str]]] = {cid: [] for cid, _ in chunks}
        async with self.read() as s:
            for batch in batches(list(found)):
                for cid, node, state in (await s.execute(
                        select(Replica.chunk_id, Replica.node_id, Replica.state)
                        .where(Replica.chunk_id.in_(batch)))).all():
                    found[cid].append((node, state))
        return [ChunkPlacement(seq, cid, size, tuple(found[cid]))
                for seq, (cid, size) in enumerate(chunks)]

    async def drop_uploads(self, upload_ids: Sequence[str]) -> tuple[list[str], list[str]]:
        """Abort uploads: their rows and parts go, and their chunks' references,
        in one transaction. Returns the ids that existed and the chunks left
        unreferenced (garbage for the collector)."""
        async with self.write() as s:
            await self.lock_refcounts(s)
            found: list[str] = []
            for batch in batches(list(upload_ids)):
                found += (await s.execute(select(MultipartUpload.id).where(
                    MultipartUpload.id.in_(batch)))).scalars().all()
            released: list[str] = []
            for uid in found:
                released += await _drop_parts(s, uid, None)
            for batch in batches(found):
                await s.execute(delete(MultipartUpload).where(MultipartUpload.id.in_(batch)))
            return found, await _unreferenced(s, released)


async def finish_uploads(s: AsyncSession, items: Sequence[NewObject],
                         bucket_ids: Sequence[int | None]) -> list[str]:
    """In a commit's transaction: end the uploads these objects complete. Each
    must still be in progress, for that bucket and key, with the chunks the
    object was assembled from (a part replaced or an abort since is refused:
    the object would hold chunks no longer referenced). Their parts' references
    go; the object's, added by the same commit, take over. Returns the chunks
    whose reference count dropped (garbage if nothing else uses them)."""
    released: list[str] = []
    for item, bid in zip(items, bucket_ids, strict=True):
        uid = item.completes_upload
        if uid is None:
            continue
        upload = await s.get(MultipartUpload, uid)
        if upload is None or upload.bucket_id != bid or upload.key != item.key:
            raise NoSuchUpload(uid)
        used = [tuple(r) for r in (await s.execute(
            select(MultipartPartChunk.chunk_id, MultipartPartChunk.size)
            .where(MultipartPartChunk.upload_id == uid)
            .order_by(MultipartPartChunk.part_number, MultipartPartChunk.seq))).all()]
        if not _is_subsequence(list(item.chunks), used):
            raise InvalidPart(None, "a part of this upload was replaced while it was being "
                              "completed; complete it again")
        released += await _drop_parts(s, uid, None)
        await s.execute(delete(MultipartUpload).where(MultipartUpload.id == uid))
    return released


def _is_subsequence(wanted: list[tuple[str, int]], parts: list[tuple[Any, ...]]) -> bool:
    """Are ``wanted``'s chunks the parts' chunks with whole parts left out? (The
    check is on the chunk lists in order: enough to know every chunk the object
    names is one the upload still references.)"""
    have = iter(parts)
    return all(any(tuple(w) == p for p in have) for w in wanted)


async def _drop_parts(s: AsyncSession, upload_id: str, numbers: Sequence[int] | None
                      ) -> list[str]:
    """Delete parts (all of the upload's when ``numbers`` is None) and release
    their chunk references; returns the chunks whose count dropped."""
    where: list[ColumnElement[bool]] = [MultipartPartChunk.upload_id == upload_id]
    part_where: list[ColumnElement[bool]] = [MultipartPart.upload_id == upload_id]
    if numbers is not None:
        where.append(MultipartPartChunk.part_number.in_(numbers))
        part_where.append(MultipartPart.part_number.in_(numbers))
    counts = Counter((await s.execute(select(MultipartPartChunk.chunk_id).where(*where)))
                     .scalars().all())
    by_n: dict[int, list[str]] = defaultdict(list)
    for cid, n in counts.items():
        by_n[n].append(cid)
    for n, cids in by_n.items():
        for batch in batches(cids):
            await s.execute(update(Chunk).where(Chunk.id.in_(batch))
                            .values(refcount=Chunk.refcount - n))
    await s.execute(delete(MultipartPartChunk).where(*where))
    await s.execute(delete(MultipartPart).where(*part_where))
    return list(counts)


async def _unreferenced(s: AsyncSession, chunk_ids: Sequence[str]) -> list[str]:
    out: list[str] = []
    for batch in batches(list(chunk_ids)):
        out += (await s.execute(select(Chunk.id).where(
            Chunk.id.in_(batch), Chunk.refcount <= 0))).scalars().all()
    return out
