"""Chunks and their replicas: where copies are, which are missing or extra, garbage."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import bindparam, case, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tossit.brain.models import (
    Chunk,
    ManifestEntry,
    Node,
    ObjectChunk,
    PackOutbox,
    Replica,
)
from tossit.brain.sqlbatch import batches
from tossit.brain.store.base import StoreBase
from tossit.chunking import DATA, META

log = logging.getLogger("tossit.brain.store")


class ReplicaStore(StoreBase):
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
        """Remove chunk rows (and replica rows) still at refcount 0.

        A pack's row takes its entries with it, so a pack is never dropped while
        the outbox holds it or a needed entry points at it (packed again under the
        same id: the same entries make the same bytes), whatever its refcount
        says; a refcount found short is set right."""
        n = 0
        async with self.write() as s:
            await self.lock_refcounts(s)
            for batch in batches(list(chunk_ids)):
                dead = list((await s.execute(
                    select(Chunk.id).where(Chunk.id.in_(batch), Chunk.refcount <= 0)
                )).scalars().all())
                if dead:
                    dead = await self._keep_live_packs(s, dead)
                if dead:
                    await s.execute(delete(Replica).where(Replica.chunk_id.in_(dead)))
                    await s.execute(delete(ManifestEntry).where(ManifestEntry.pack.in_(dead)))
                    await s.execute(delete(Chunk).where(Chunk.id.in_(dead)))
                    n += len(dead)
        return n

    async def _keep_live_packs(self, s: AsyncSession, dead: list[str]) -> list[str]:
        """``dead`` less the packs still in use (see ``drop_unreferenced``)."""
        waiting = set((await s.execute(select(PackOutbox.pack_id).where(
            PackOutbox.pack_id.in_(dead)))).scalars().all())
        needed = {str(pid): int(count) for pid, count in (await s.execute(
            select(ManifestEntry.pack, func.count()).where(
                ManifestEntry.pack.in_(dead), ManifestEntry.needed)
            .group_by(ManifestEntry.pack))).all()}
        for pid, count in needed.items():
            log.warning("manifest pack %s had refcount 0 but %d needed entries: kept",
                        pid[:12], count)
            await s.execute(update(Chunk).where(Chunk.id == pid).values(refcount=count))
        return [c for c in dead if c not in waiting and c not in needed]

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
