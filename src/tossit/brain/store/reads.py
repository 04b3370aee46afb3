"""Reading objects: one file and its chunk map, listings by name, prefix and folder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, select

from tossit.brain.models import (
    Object,
    ObjectChunk,
    Replica,
)
from tossit.brain.sqlbatch import batches
from tossit.brain.store.base import DEFAULT_BUCKET, ChunkPlacement, StoreBase, _table
from tossit.brain.store.sqlite_reads import Prepared


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


class ObjectReads(StoreBase):
    async def get_object(self, object_id: int) -> Object | None:
        found = await self._object_and_chunks(_OBJECT_BY_ID, {"oid": object_id}, False)
        return found[0] if found is not None else None

    async def object_chunks(self, object_id: int) -> list[ChunkPlacement]:
        """The object's chunks in order, each with all its replica rows."""
        async with self.read() as s:
            rows = (await s.execute(_placements_query(object_id))).all()
        return _group_placements(rows)

    async def object_with_chunks(
        self, object_id: int
    ) -> tuple[Object, list[ChunkPlacement]] | None:
        """An object and its chunk placements, read together (the download
        path's only metadata read)."""
        return await self._object_and_chunks(_OBJECT_BY_ID, {"oid": object_id}, True)

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

    async def object_by_key(
        self, bucket_id: int, key: str, *, chunks: bool = True,
    ) -> tuple[Object, list[ChunkPlacement]] | None:
        """The object under this name and (with ``chunks``) its chunk placements,
        read together: S3's read path."""
        return await self._object_and_chunks(
            _OBJECT_BY_KEY, {"bid": bucket_id, "key": key}, chunks)

    async def _object_and_chunks(self, find: Prepared, params: dict[str, Any], chunks: bool,
                                 ) -> tuple[Object, list[ChunkPlacement]] | None:
        """The object ``find`` finds and its placements. SQLite: in one trip
        to a thread (``sqlite_reads``). Elsewhere: a connection, not a session,
        and statements built once (the ORM's machinery and building statements
        were a third of a small download's CPU)."""
        if self.fast_reads is not None:
            found = await self.fast_reads.object_and_chunks(
                find.sqlite, params, _PLACEMENTS_BY_ID.sqlite if chunks else None)
            if found is None:
                return None
            row, rows = found
        else:
            async with self.engine.connect() as conn:
                first = (await conn.execute(find.statement, params)).mappings().first()
                if first is None:
                    return None
                row = dict(first)
                rows = []
                if chunks:
                    rows = list((await conn.execute(
                        _PLACEMENTS_BY_ID.statement, {"oid": row["id"]})).all())
        return Object(**row), _group_placements(rows)

    def _byte_order(self) -> Any:
        """The key as S3 orders it: by the bytes of its UTF-8. SQLite's BINARY
        collation is that order; on PostgreSQL the column is "C" since migration
        0013 (said again here: the order must not depend on it)."""
        return Object.key if self.dialect == "sqlite" else Object.key.collate("C")

    async def keys_in_order(
        self, bucket_id: int, *, prefix: str = "", after: str | None = None,
        start: str | None = None, limit: int = 1000,
    ) -> list[Object]:
        """Up to ``limit`` objects whose key starts with ``prefix``, in byte order,
        from the first key after ``after`` (or at/after ``start``): a range of
        the (bucket_id, key) index, whatever the bucket's size."""
        stmt = self.keys_query(bucket_id, prefix=prefix, after=after, start=start, limit=limit)
        async with self.read() as s:
            rows = (await s.execute(stmt)).scalars().all()
        return list(rows)

    def keys_query(self, bucket_id: int, *, prefix: str = "", after: str | None = None,
                   start: str | None = None, limit: int = 1000) -> Any:
        """``keys_in_order``'s statement (its query plan is tested)."""
        key = self._byte_order()
        where: list[Any] = [Object.bucket_id == bucket_id]
        if prefix:
            where.append(key >= prefix)
            end = prefix_end(prefix)
            if end is not None:
                where.append(key < end)
        if after is not None:
            where.append(key > after)
        if start is not None:
            where.append(key >= start)
        return select(Object).where(*where).order_by(key).limit(limit)

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


def _placements_query(object_id: Any) -> Any:
    return (
        select(ObjectChunk.seq, ObjectChunk.chunk_id, ObjectChunk.size,
               Replica.node_id, Replica.state)
        .outerjoin(Replica, Replica.chunk_id == ObjectChunk.chunk_id)
        .where(ObjectChunk.object_id == object_id)
        .order_by(ObjectChunk.seq)
    )


_OBJECT_BY_ID = Prepared(select(_table(Object)).where(_table(Object).c.id == bindparam("oid")))
_OBJECT_BY_KEY = Prepared(select(_table(Object)).where(
    _table(Object).c.bucket_id == bindparam("bid"), _table(Object).c.key == bindparam("key")))
_PLACEMENTS_BY_ID = Prepared(_placements_query(bindparam("oid")))


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
