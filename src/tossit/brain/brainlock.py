"""Which brain acts on the metadata.

Two brains acting on the same metadata would both run the garbage collector and
the repairer, each from its own view of the nodes: one could delete a copy the
other just counted. So exactly one brain *leads*: it commits, and runs the
background loops (failure detection, repair, garbage collection, manifests,
snapshots).

* SQLite: one brain per database. It holds an exclusive ``flock`` on
  ``<database>.lock`` (the kernel releases it however the process dies, and the
  holder's pid is inside); a second brain refuses to start.
* PostgreSQL: any number of brains serve the API; the leader holds a session
  advisory lock on a connection kept open. The others (*followers*) try to take
  it every ``CHECK_EVERY`` seconds: when the leader dies, its session ends,
  PostgreSQL frees the lock, and one of them takes over. No home-made consensus:
  PostgreSQL is the arbiter. A leader whose lock connection breaks steps down
  within ``CHECK_EVERY``, long before the server notices the session is gone
  (its TCP keepalives are set to about ``SERVER_NOTICES`` seconds), and its
  commits check that it still holds the lock (``still_leader``).

Every brain also holds its data dir (``brain.lock``): the secrets there belong
to one brain process at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from tossit import dirlock
from tossit.errors import NotLeader

log = logging.getLogger("tossit.brain")

_BRAIN_LOCK_KEY = 0x7055_1701  # beside the refcount lock's key (store.py)
CHECK_EVERY = 1.0  # seconds between checks of the lock (leader) or tries (follower)
PING_TIMEOUT = 2.0  # a lock connection that does not answer this fast is lost
SERVER_NOTICES = 10  # seconds for PostgreSQL to notice a silent lock holder is gone


class BrainLockError(RuntimeError):
    """Another brain already uses this metadata or data dir."""


async def _nothing() -> None:
    return None


async def _never() -> bool:
    return False


def _lock_files(url: str, data_dir: Path | None) -> list[tuple[Path, str]]:
    """The files whose ``flock`` says which brain holds what: its data dir, and
    (SQLite) the database file beside it."""
    files = []
    if data_dir is not None:
        files.append((data_dir / "brain.lock", f"with data dir {data_dir}"))
    if not url.startswith("sqlite"):
        return files
    path = make_url(url).database
    if path and path != ":memory:":
        db = Path(path)
        files.append((db.with_name(db.name + ".lock"), f"on {db}"))
    return files


def _take(lock: Path, where: str) -> int:
    """Lock ``lock`` for this process (its fd, which holds the lock until closed)
    or raise BrainLockError naming the holder."""
    try:
        return dirlock.take(lock)
    except dirlock.Held as held:
        raise BrainLockError(
            f"another brain (pid {held.pid}) is already running {where}: stop it first, "
            "or give this brain its own --data-dir") from None


def check_free(url: str, data_dir: Path | None) -> None:
    """Raise BrainLockError if a running brain holds this data dir or SQLite
    database. A look before starting the server (so the refusal is one line, not
    a traceback from inside it) or before ``tossit db upgrade``; ``acquire``
    takes the locks for good."""
    for lock, where in _lock_files(url, data_dir):
        if not lock.parent.is_dir():
            continue  # nothing there yet, so nobody holds it
        fd = _take(lock, where)
        os.close(fd)


class BrainLock:
    def __init__(self, url: str, engine: AsyncEngine, data_dir: Path | None = None) -> None:
        self.url = url
        self.engine = engine
        self.data_dir = data_dir
        self.leader = False
        self.on_promote: Callable[[], Awaitable[None]] = _nothing
        self.on_demote: Callable[[], Awaitable[None]] = _nothing
        # Is the leader silent (its row in the brains' directory not renewed for
        # a while)? A leader whose process is paused (SIGSTOP, a frozen VM) keeps
        # its lock, since its kernel still answers the keepalives: a follower
        # then ends its database session (``_unseat``) to take over.
        self.leader_silent: Callable[[], Awaitable[bool]] = _never
        self._fds: list[int] = []
        self._conn: AsyncConnection | None = None
        self._pid: int | None = None  # the lock connection's backend
        self._task: asyncio.Task[None] | None = None

    @property
    def shared(self) -> bool:
        """Can several brains serve this metadata (PostgreSQL)?"""
        return not self.url.startswith("sqlite")

    async def acquire(self) -> None:
        """Hold the data dir, then lead (SQLite: or refuse to start; PostgreSQL: or
        follow, and take over when the leader goes)."""
        for lock, where in _lock_files(self.url, self.data_dir):
            self._fds.append(await asyncio.to_thread(_take, lock, where))
        if not self.shared:
            self.leader = True
            return
        self.leader = await self._try()
        if not self.leader:
            log.info("another brain leads this metadata: serving as a follower (changes "
                     "go to the leader; this brain takes over if it stops)")
        self._task = asyncio.create_task(self._run(), name="brain-lock")

    async def _try(self) -> bool:
        """Take the PostgreSQL lock if it is free (keeping its connection)."""
        conn = await self.engine.connect()
        try:
            for name, value in (("tcp_keepalives_idle", SERVER_NOTICES // 2),
                                ("tcp_keepalives_interval", 1), ("tcp_keepalives_count", 3)):
                await conn.execute(text(f"SET {name} = {int(value)}"))
            got = await conn.scalar(text("SELECT pg_try_advisory_lock(:k)"),
                                    {"k": _BRAIN_LOCK_KEY})
            pid = await conn.scalar(text("SELECT pg_backend_pid()"))
            await conn.commit()
        except BaseException:
            await conn.close()
            raise
        if not got:
            await conn.close()
            return False
        self._conn, self._pid = conn, int(pid or 0)
        return True

    async def someone_leads(self) -> bool:
        """PostgreSQL: does a running brain hold the leadership now? (Takes the
        lock and lets it go at once if it was free.)"""
        if not self.shared or not await self._try():
            return self.shared
        assert self._conn is not None
        with contextlib.suppress(Exception):
            await self._conn.close()
        self._conn, self._pid = None, None
        return False

    async def _unseat(self) -> None:
        """End the database session that holds the leadership (its brain stopped
        renewing its row: paused or hung). PostgreSQL frees the lock, and a
        follower takes it at its next try; the silent brain's commits then fail
        its fence (``still_leader``), and it steps down when it wakes."""
        async with self.engine.connect() as conn:
            pids = (await conn.execute(text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND "
                "classid = 0 AND objid = :k AND objsubid = 1 AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())"),
                {"k": _BRAIN_LOCK_KEY})).scalars().all()
            for pid in pids:
                ended = await conn.scalar(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
                log.warning("the leading brain stopped renewing its row: %s its database "
                            "session (pid %s) so that another brain takes over",
                            "ended" if ended else "could not end", pid)
            await conn.commit()

    async def holds(self) -> bool:
        """Does this brain lead, and does its lock session still hold the lock?"""
        return self.leader and await self._held()

    async def _held(self) -> bool:
        try:
            assert self._conn is not None
            await asyncio.wait_for(self._conn.scalar(text("SELECT 1")), PING_TIMEOUT)
            await self._conn.commit()
            return True
        except Exception as exc:
            log.warning("lost the database connection that holds the leadership (%s)", exc)
        with contextlib.suppress(Exception):
            if self._conn is not None:
                await self._conn.invalidate()
        self._conn, self._pid = None, None
        return False

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(CHECK_EVERY)
            try:
                if self.leader and not await self._held():
                    self.leader = False
                    log.warning("this brain steps down: it no longer holds the leadership")
                    await self.on_demote()
                if not self.leader and await self._try():
                    self.leader = True
                    log.info("this brain now leads the metadata")
                    await self.on_promote()
                elif not self.leader and await self.leader_silent():
                    await self._unseat()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("leadership check failed: %s", exc)

    async def still_leader(self, s: AsyncSession) -> None:
        """Inside a commit's transaction (after its refcount lock): raise NotLeader
        unless this brain's lock session still holds the leadership. A commit that
        passes is ordered before any new leader's first one."""
        if not self.shared:
            return
        held = self.leader and self._pid is not None and await s.scalar(text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND "
            "classid = 0 AND objid = :k AND objsubid = 1 AND pid = :pid AND "
            "database = (SELECT oid FROM pg_database WHERE datname = current_database())"),
            {"k": _BRAIN_LOCK_KEY, "pid": self._pid})
        if not held:
            raise NotLeader("this brain is not the leader any more: the change was not made; "
                            "retry (another brain takes over within seconds)")

    async def release(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()  # ends the session: the lock goes with it
            self._conn = None
        self.leader = False
        for fd in self._fds:
            os.close(fd)  # releases the flock
        self._fds = []
