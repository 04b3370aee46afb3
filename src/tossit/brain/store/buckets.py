"""Buckets as S3 sees them: made, listed and deleted by name.

A deleted bucket keeps its row with ``deleted_at`` set (the manifest log and the
trash refer to its id); making the name again clears it. The brain's own bucket
(``tossit.manifests.SYSTEM_BUCKET``) is never shown nor touched here.

Making and deleting a bucket are manifest entries too (``manifest_rows.
log_bucket``), logged in the change's transaction and written to the nodes
before the answer: a rebuild from the nodes makes the empty buckets again and
keeps deleted ones deleted.
"""

from __future__ import annotations

import time

from sqlalchemy import exists, func, select

from tossit.brain.manifest_rows import log_bucket
from tossit.brain.models import Bucket, Object
from tossit.brain.store.base import StoreBase
from tossit.manifests import SYSTEM_BUCKET

LIVE_BUCKET_TTL = 5.0


class BucketStore(StoreBase):
    async def live_buckets(self) -> list[Bucket]:
        """The buckets that exist (not deleted), by name."""
        async with self.read() as s:
            rows = (await s.execute(select(Bucket).where(
                Bucket.deleted_at.is_(None), Bucket.name != SYSTEM_BUCKET)
                .order_by(Bucket.name))).scalars().all()
        return list(rows)

    async def bucket_usage(self) -> dict[int, tuple[int, int]]:
        """Each bucket id holding files: (files, bytes). One grouped query over the
        objects (read from the ``(bucket_id, size)`` index), not one per bucket: the
        dashboard asks on every visit of the Files page. The trash is not counted
        (its files are in no listing); a bucket without files is absent."""
        async with self.read() as s:
            rows = (await s.execute(
                select(Object.bucket_id, func.count(), func.coalesce(func.sum(Object.size), 0))
                .group_by(Object.bucket_id))).all()
        return {bid: (int(files), int(size)) for bid, files, size in rows}

    async def live_bucket(self, name: str) -> Bucket | None:
        """The bucket of this name if it exists. Every S3 request asks, so a bucket
        found is remembered for ``LIVE_BUCKET_TTL`` seconds: a delete on this brain
        forgets it at once; one made through another brain (on PostgreSQL) is seen
        here that much later. An absent one is asked again each time."""
        if name == SYSTEM_BUCKET:
            return None
        cached = self._live_buckets.get(name)
        if cached is not None and time.monotonic() - cached[1] < LIVE_BUCKET_TTL:
            return cached[0]
        async with self.read() as s:
            found = (await s.execute(select(Bucket).where(
                Bucket.name == name, Bucket.deleted_at.is_(None)))).scalar_one_or_none()
        if found is not None:
            self._live_buckets[name] = (found, time.monotonic())
        else:
            self._live_buckets.pop(name, None)
        return found

    async def make_bucket(self, name: str) -> bool:
        """Create the bucket (or bring a deleted one back); False if it exists."""
        now = time.time()
        async with self.write() as s:
            row = (await s.execute(select(Bucket).where(Bucket.name == name))
                   ).scalar_one_or_none()
            if row is not None and row.deleted_at is None:
                return False
            if row is None:
                s.add(Bucket(name=name, created_at=now))
            else:
                row.deleted_at, row.created_at = None, now
            await s.flush()  # (log_bucket reads the row)
            garbage, pack = await self.log_alone(s, log_bucket, name)
        await self.after_log(pack, garbage)
        return True

    async def drop_bucket(self, name: str) -> bool | None:
        """Delete an empty bucket: True if done, False if it holds objects, None
        if there is no such bucket. (Its trash stays restorable by id.)"""
        async with self.write() as s:
            row = (await s.execute(select(Bucket).where(
                Bucket.name == name, Bucket.deleted_at.is_(None)))).scalar_one_or_none()
            if row is None:
                return None
            if await s.scalar(select(exists().where(Object.bucket_id == row.id))):
                return False
            row.deleted_at = time.time()
            await s.flush()
            garbage, pack = await self.log_alone(s, log_bucket, name)
        self._bucket_ids.pop(name, None)
        self._live_buckets.pop(name, None)
        await self.after_log(pack, garbage)
        return True

