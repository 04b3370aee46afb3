"""A Store on a real database for the tests that use one directly (with the
``db_url`` fixture: SQLite, then PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tossit.brain.db import make_engine, migrate
from tossit.brain.store import Store

N1 = f"{1:032x}"  # the one node, online, with room


@asynccontextmanager
async def one_node_store(db_url: str, key: bytes) -> AsyncIterator[Store]:
    """A migrated Store whose cluster has one online node, ``N1``."""
    await migrate(db_url)
    s = Store(make_engine(db_url), key)
    await s.upsert_node({"id": N1, "name": "n1", "address": "http://127.0.0.1:1",
                         "zone": "z", "capacity": 1000, "used": 0, "free": 1000,
                         "disk_total": 1000, "disk_free": 1000, "chunk_count": 0}, "online")
    try:
        yield s
    finally:
        await s.close()
