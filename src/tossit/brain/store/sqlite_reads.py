"""The download path's metadata read, straight from SQLite's file.

Every download (REST, S3 GetObject and HeadObject) reads one file's row and its
chunk map. Through SQLAlchemy's aiosqlite adapter that is about ten round trips
to aiosqlite's thread (a cursor, the statement, the rows and the close, twice,
and the connection's reset), each a wake-up of that thread and of the event
loop, plus the engine's per-statement work: a fifth of a small download's CPU,
in a process whose one core bounds every download of the cluster. Here the
same statements (compiled once from the SQLAlchemy ones, so the SQL is written
in one place) run on plain ``sqlite3`` connections in one trip to a worker
thread, inside one read transaction, so the row and its chunk map are one
snapshot (a delete committed between the two cannot leave a file without its
chunks).

SQLite only, and only for a database in a file: the connections are read-only
(``mode=ro``) and see every commit the brain's own connections made before the
read starts (WAL). PostgreSQL keeps the SQLAlchemy path.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.dialects import sqlite

# Connections kept for reuse; more may be open while reads overlap (at most the
# default executor's threads), and those above this are closed when done.
KEEP = 8
T = TypeVar("T")


class Prepared:
    """A statement built once, with its SQL for SQLite (``:name`` parameters)."""

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self.sqlite = str(statement.compile(dialect=sqlite.dialect(paramstyle="named")))


class SqliteReads:
    def __init__(self, path: str) -> None:
        self._uri = Path(path).resolve().as_uri() + "?mode=ro"
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._uri, uri=True, isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=10000")
        return conn

    def _snapshot(self, read: Callable[[sqlite3.Connection], T]) -> T:
        """``read(conn)`` inside one read transaction on a pooled connection."""
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._connect()
        try:
            conn.execute("BEGIN")
            try:
                out = read(conn)
            finally:
                conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        with self._lock:
            if self._closed or len(self._idle) >= KEEP:
                conn.close()
            else:
                self._idle.append(conn)
        return out

    async def object_and_chunks(
        self, object_sql: str, params: dict[str, Any], chunks_sql: str | None,
    ) -> tuple[dict[str, Any], list[Any]] | None:
        """The first row of ``object_sql`` as a mapping (``user_meta`` decoded)
        and the rows of ``chunks_sql`` for its ``id`` (bound as ``:oid``), or
        None when there is no such row."""
        def read(conn: sqlite3.Connection) -> tuple[dict[str, Any], list[Any]] | None:
            cur = conn.execute(object_sql, params)
            first = cur.fetchone()
            if first is None:
                return None
            row = dict(zip([d[0] for d in cur.description], first, strict=True))
            parts = (conn.execute(chunks_sql, {"oid": row["id"]}).fetchall()
                     if chunks_sql is not None else [])
            return row, parts

        found = await asyncio.get_running_loop().run_in_executor(None, self._snapshot, read)
        if found is not None and isinstance(found[0].get("user_meta"), str):
            found[0]["user_meta"] = json.loads(found[0]["user_meta"])
        return found

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
