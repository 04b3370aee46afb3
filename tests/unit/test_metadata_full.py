"""A full disk under the metadata database: a change is refused as
``MetadataFull`` (507, with where and how much room is left; not a traceback
per request), the store remembers since when for ``/ready``, nothing
half-done is left, and writes resume by themselves once there is room.

SQLite's ``max_page_count`` makes the database file full at its current size,
as a full disk would (the same SQLITE_FULL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from memnodes import Core, KiB, blob, memcore
from tossit.errors import MetadataFull, http_status


async def _limit_pages(core: Core, pages: int | None) -> None:
    """Every connection from now on may grow the file to ``pages`` pages at most."""
    engine = core.store.engine.sync_engine
    for fn in list(getattr(core, "_page_limits", [])):
        event.remove(engine, "connect", fn)
    limits = []
    if pages is not None:
        def limit(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.execute(f"PRAGMA max_page_count={pages}")
        event.listen(engine, "connect", limit)
        limits.append(limit)
    core._page_limits = limits  # type: ignore[attr-defined]
    await core.store.engine.dispose()


async def test_a_full_metadata_disk_refuses_changes_clearly_and_recovers(
        tmp_path: Path) -> None:
    async with memcore(tmp_path, nodes=3) as core:
        first = await core.upload("before", blob(71, 64 * KiB))
        async with core.store.read() as s:
            pages = (await s.execute(_sql("PRAGMA page_count"))).scalar_one()
        await _limit_pages(core, pages)
        for i in range(50):  # (the first pages may still have room)
            try:
                await core.upload(f"full-{i}", blob(80 + i, 64 * KiB))
            except MetadataFull as exc:
                refused = exc
                break
        else:
            pytest.fail("the database never filled up")
        assert http_status(refused) == 507 and refused.code == "metadata_disk_full"
        assert "has no room left" in refused.message and "KiB free" in refused.message
        assert core.store.full_since is not None
        assert await core.store.object_by_key(first.obj.bucket_id, f"full-{i}") is None

        await _limit_pages(core, None)  # room again
        again = await core.upload("after", blob(99, 64 * KiB))
        assert core.store.full_since is None
        assert await core.download(again.obj.id) == blob(99, 64 * KiB)
        assert await core.download(first.obj.id) == blob(71, 64 * KiB)


def _sql(text: str) -> Any:
    from sqlalchemy import text as sql_text
    return sql_text(text)
