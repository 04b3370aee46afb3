"""Database engine set-up and schema migration.

SQLite runs in WAL mode with ``synchronous=FULL``: an upload is acknowledged
only after its metadata commit is on disk, and WAL lets downloads and listings
read while an upload commits. SQLite allows one writer at a time, so the store
serialises its write transactions in-process (see ``Store.write``) rather than
letting connections collide on the database lock.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS = Path(__file__).parent / "migrations"
# Every revision of migrations/versions, oldest first: written out so that a brain
# whose database is up to date never imports Alembic (11 MB of resident memory for
# the life of the process). A unit test checks it against Alembic's own walk of the
# scripts, so a new migration cannot be forgotten here.
REVISIONS = ("0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008", "0009",
             "0010", "0011", "0012", "0013", "0014", "0015", "0016")


def make_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        # Enough pooled connections for a busy brain: overflow connections are
        # closed on release, and each new aiosqlite connection is a new thread.
        engine = create_async_engine(url, pool_size=32, max_overflow=0, pool_timeout=60)

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=10000")
            cur.close()

        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def head_revision() -> str:
    """The newest migration's revision id."""
    return REVISIONS[-1]


def alembic_config(url: str | None = None) -> Any:
    """Alembic's configuration for our migrations (Alembic is imported here only:
    a brain whose schema is current never loads it)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def alembic_revisions() -> list[str]:
    """Every revision as Alembic walks the scripts, oldest first (the check of
    ``REVISIONS``)."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(alembic_config())
    return [s.revision for s in reversed(list(scripts.walk_revisions()))]


def _upgrade(url: str) -> None:
    from alembic import command

    command.upgrade(alembic_config(url), "head")


async def check_database(url: str) -> None:
    """Connect once, so a wrong URL or a missing database is one clear line at
    start-up rather than a traceback from inside the server."""
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    finally:
        await engine.dispose()


async def migrate(url: str) -> None:
    """Bring the schema to the newest revision.

    Alembic's env runs its own event loop, so it gets a thread of its own.
    A database a newer TossIt migrated raises ``SchemaTooNew``: never run on
    (or try to migrate) a schema this code does not know.
    """
    from tossit.brain.schema import check_not_too_new

    if (await check_not_too_new(url)).up_to_date:
        return  # (without loading Alembic)
    err: list[BaseException] = []

    def run() -> None:
        try:
            _upgrade(url)
        except BaseException as exc:  # re-raised in the caller's task
            err.append(exc)

    t = threading.Thread(target=run, name="migrate")
    t.start()
    await asyncio.to_thread(t.join)
    if err:
        raise err[0]
