"""One brain per metadata store.

Two brains on the same metadata would both run the garbage collector and the
repairer, each deciding from its own view of the nodes: one could delete a copy
the other just counted. So a brain holds a lock for as long as it runs, and a
second one refuses to start with a clear message:

* SQLite: an exclusive ``flock`` on ``<database>.lock`` (released by the kernel
  when the process dies, however it dies), with the holder's pid inside.
* PostgreSQL: a session advisory lock on a connection kept open for the brain's
  life. If that connection is lost (the server restarted), the lock is taken
  again; if another brain got it meanwhile, this one stops itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger("tossit.brain")

_BRAIN_LOCK_KEY = 0x7055_1701  # beside the refcount lock's key (store.py)
CHECK_EVERY = 10.0  # seconds between checks that the PostgreSQL lock is still held


class BrainLockError(RuntimeError):
    """Another brain already uses this metadata."""


class BrainLock:
    def __init__(self, url: str, engine: AsyncEngine) -> None:
        self.url = url
        self.engine = engine
        self._fd: int | None = None
        self._conn: AsyncConnection | None = None
        self._watch: asyncio.Task[None] | None = None

    async def acquire(self) -> None:
        if self.url.startswith("sqlite"):
            path = make_url(self.url).database
            if path and path != ":memory:":
                await asyncio.to_thread(self._lock_file, Path(path))
        else:
            await self._lock_postgres()
            self._watch = asyncio.create_task(self._keep_postgres(), name="brain-lock")

    def _lock_file(self, db: Path) -> None:
        lock = db.with_name(db.name + ".lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise BrainLockError(
                f"another brain (pid {holder}) is already running on {db}: stop it first, "
                "or give this brain its own --data-dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    async def _lock_postgres(self) -> None:
        conn = await self.engine.connect()
        got = await conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": _BRAIN_LOCK_KEY})
        await conn.commit()
        if not got:
            await conn.close()
            where = make_url(self.url).render_as_string(hide_password=True)
            raise BrainLockError(
                f"another brain is already running on {where}: stop it first, or give "
                "this brain its own database")
        self._conn = conn

    async def _keep_postgres(self) -> None:
        while True:
            await asyncio.sleep(CHECK_EVERY)
            try:
                assert self._conn is not None
                await self._conn.scalar(text("SELECT 1"))
                await self._conn.commit()
                continue
            except Exception as exc:
                log.warning("lost the database connection that holds the brain lock (%s); "
                            "taking the lock again", exc)
            with contextlib.suppress(Exception):
                if self._conn is not None:
                    await self._conn.invalidate()
            self._conn = None
            try:
                await self._lock_postgres()
                log.info("brain lock taken again")
            except BrainLockError as exc:
                log.critical("%s; this brain stops so that only one acts on the metadata", exc)
                os.kill(os.getpid(), signal.SIGTERM)
                return
            except Exception as exc:
                log.warning("could not take the brain lock again yet: %s", exc)

    async def release(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()  # ends the session: the lock goes with it
            self._conn = None
        if self._fd is not None:
            os.close(self._fd)  # releases the flock
            self._fd = None
