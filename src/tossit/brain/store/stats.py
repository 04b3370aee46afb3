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
            per_chunk = (
                select(Replica.chunk_id, func.count().label("n"))
                .where(Replica.state == "ok", Replica.node_id.in_(list(live_nodes) or [""]))
                .group_by(Replica.chunk_id)
                .subquery()
            )
            # The totals and every bucket of the histogram, 0 copies included,
            # from one statement, so from one snapshot: computed apart (the 0
            # bucket as the total minus the chunks seen with copies), a delete
            # committing between two reads showed as a chunk without a live copy.
            copies = func.coalesce(per_chunk.c.n, 0)
            hist_rows = (await s.execute(
                select(Chunk.kind, copies, func.count(),
                       func.coalesce(func.sum(Chunk.size), 0))
                .select_from(Chunk)
                .outerjoin(per_chunk, Chunk.id == per_chunk.c.chunk_id)
                .where(Chunk.refcount > 0)
                .group_by(Chunk.kind, copies)
            )).all()

        def histogram(kind: str) -> dict[int, dict[str, int]]:
            return {int(n): {"chunks": int(c), "bytes": int(b)}
                    for k, n, c, b in sorted(hist_rows, key=lambda r: int(r[1]))
                    if k == kind}

        per_kind: dict[str, tuple[int, int]] = {}
        for k, _n, c, b in hist_rows:
            n_had, b_had = per_kind.get(k, (0, 0))
            per_kind[k] = (n_had + int(c), b_had + int(b))

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
