"""Shared fixtures: real clusters (SQLite or PostgreSQL metadata) on loopback."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster import Cluster
from tossit.serve import share_ports

# Brains started by tests listen on free ports: tests.cluster passes --s3-port;
# any other brain a test starts has no S3 API, rather than all of them fighting
# over port 9000 (tests run in parallel, and other checkouts' tests beside them).
os.environ.setdefault("TOSSIT_S3_PORT", "0")
# Parallel workers (pytest-xdist's gwN) pick free ports in slices of their own:
# two that picked the same port both found it free, and one's server failed.
if os.environ.get("PYTEST_XDIST_WORKER", "").startswith("gw"):
    _worker = int(os.environ["PYTEST_XDIST_WORKER"][2:])
    share_ports(_worker, max(_worker + 1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))
PG_ADMIN_URL = os.environ.get("TOSSIT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _pg_reason() -> str | None:
    """Why PostgreSQL tests cannot run here, or None if they can."""
    try:
        import asyncpg
    except ImportError:
        return "asyncpg is not installed"

    async def probe() -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL, timeout=3)
        await conn.close()

    try:
        asyncio.run(probe())
    except Exception as exc:
        return f"no PostgreSQL reachable at {PG_ADMIN_URL} ({type(exc).__name__}: {exc})"
    return None


_PG_REASON: str | None = None
_PG_CHECKED = False


def pg_unavailable() -> str | None:
    global _PG_REASON, _PG_CHECKED
    if not _PG_CHECKED:
        _PG_REASON, _PG_CHECKED = _pg_reason(), True
    return _PG_REASON


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (dropped afterwards)."""
    reason = pg_unavailable()
    if reason:
        if os.environ.get("TOSSIT_REQUIRE_PG"):
            pytest.fail(f"PostgreSQL is required (TOSSIT_REQUIRE_PG) but: {reason}")
        pytest.skip(reason)
    yield from _fresh_pg_database()


def _fresh_pg_database() -> Iterator[str]:
    import asyncpg

    name = f"tossit_test_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def pg_url_2(pg_url: str) -> Iterator[str]:
    """A second fresh PostgreSQL database for the same test (dropped afterwards)."""
    yield from _fresh_pg_database()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    """Run a test once on SQLite (None = the brain's default) and once on PostgreSQL."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A metadata database URL for a Store used directly: a SQLite file, then the
    test PostgreSQL database (each test runs on both)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'meta.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """Factory for a fresh cluster owned by one test (stopped afterwards)."""
    made: list[Cluster] = []

    def make(**kw: Any) -> Cluster:
        c = Cluster(tmp_path / f"c{len(made)}", **kw)
        made.append(c)
        return c.start()

    yield make
    for c in made:
        c.stop()


@pytest.fixture(scope="session")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One 3-node cluster for tests that do not break anything."""
    c = Cluster(tmp_path_factory.mktemp("shared"), nodes=3, replicas=3)
    c.start()
    yield c
    c.stop()
