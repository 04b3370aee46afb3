"""Counts for tossit status: files, chunks by number of live copies, manifests, trash."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select

from tossit.brain.models import (
    Chunk,
    Object,
    Replica,
    TrashedObject,
)
from tossit.brain.store.base import StoreBase
from tossit.chunking import DATA, META
from tossit.manifests import SYSTEM_BUCKET


class StatsStore(StoreBase):
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
            # The reads above are separate statements: chunks committed between
            # them (PostgreSQL reads each at its own snapshot) can make ``seen``
            # pass ``total``. A status is a moment's picture: never negative.
            if total > seen:
                hist[0] = {"chunks": total - seen, "bytes": max(
                    0, total_bytes - sum(v["bytes"] for v in hist.values()))}
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

    async def trash_totals(self) -> tuple[int, int]:
        """(files, bytes) in the trash: the bytes its chunks keep stored (counted
        once per file, as the files' sizes are)."""
        async with self.read() as s:
            n, size = (await s.execute(select(
                func.count(), func.coalesce(func.sum(TrashedObject.size), 0)))).one()
        return int(n), int(size)
