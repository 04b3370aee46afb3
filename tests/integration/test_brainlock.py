"""One brain per metadata store: a second one refuses to start."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from cluster import Cluster, wait_until
from tossit.serve import pick_free_port


def test_a_second_brain_on_the_same_sqlite_metadata_or_data_dir_refuses_to_start(
        make_cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    c = make_cluster(nodes=1, replicas=1)
    argv = c.brain_argv()
    argv[argv.index("--port") + 1] = str(pick_free_port())
    argv[argv.index("--s3-port") + 1] = str(pick_free_port())

    def refused(args: list[str]) -> str:
        second = subprocess.run([sys.executable, "-m", "tossit", *args], capture_output=True,
                                text=True, timeout=60, stdin=subprocess.DEVNULL)
        out = second.stdout + second.stderr
        assert second.returncode == 2, out
        # One line on stderr, said before any server starts: no traceback.
        assert "Traceback" not in out and second.stdout == "", out
        assert second.stderr.startswith("error: ") and second.stderr.count("\n") == 1, out
        return out

    # The same data dir (and so the same SQLite file).
    out = refused(argv)
    assert "another brain" in out and "is already running with data dir" in out, out
    # Its own data dir, but the first one's SQLite database.
    other = list(argv)
    other[other.index("--data-dir") + 1] = str(tmp_path / "other")
    db = c.root / "brain" / "tossit.db"
    out = refused([*other, "--database-url", f"sqlite+aiosqlite:///{db}"])
    assert "another brain" in out and f"is already running on {db}" in out, out
    # The first one is untouched and still serves.
    data = os.urandom(10_000)
    up = c.upload("after.bin", data)
    assert c.download(up["id"]) == data
    # Once it has stopped, even killed, a brain starts again on the same metadata.
    c.stop_brain(signal.SIGKILL)
    c.start_brain()
    assert c.download(up["id"]) == data


def test_a_brain_that_loses_its_postgres_lock(make_cluster: Callable[..., Cluster],
                                              pg_url: str) -> None:
    """The connection holding the leadership is cut (as by a PostgreSQL restart): the
    brain takes it again. Cut it again and let someone else take the lock first:
    the brain steps down to a follower (it keeps serving reads), and leads again
    once the lock is free."""
    import asyncpg

    from tossit.brain.brainlock import _BRAIN_LOCK_KEY

    c = make_cluster(nodes=1, replicas=1, database_url=pg_url)
    dsn = pg_url.replace("postgresql+asyncpg://", "postgresql://", 1)

    def role() -> str:
        return str(c.http.get("/health").json()["role"])

    async def holder(conn: asyncpg.Connection) -> int | None:
        pid: int | None = await conn.fetchval(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 "
            "AND granted AND database = (SELECT oid FROM pg_database "
            "WHERE datname = current_database())", _BRAIN_LOCK_KEY)
        return pid

    async def cut(take: bool) -> int | None:
        conn = await asyncpg.connect(dsn)
        first = await holder(conn)
        assert first is not None
        await conn.execute("SELECT pg_terminate_backend($1)", first)
        if not take:
            await conn.close()
            return first
        # Take the freed lock and keep it while the brain finds out.
        await asyncio.wait_for(conn.execute("SELECT pg_advisory_lock($1)", _BRAIN_LOCK_KEY), 5)
        try:
            await asyncio.to_thread(wait_until, lambda: role() == "follower", 20, 0.2,
                                    "the brain stepping down")
            # A follower still serves reads, and refuses to commit itself: with no
            # leader to pass changes to, an upload is a clear 503.
            assert c.http.get("/api/files").status_code == 200
            up = await asyncio.to_thread(c.http.put, "/api/files/nope.txt", content=b"x")
            assert up.status_code == 503 and up.json()["error"] == "no_leader", up.text
        finally:
            await conn.close()
        return first

    def upload_once_offered(name: str, data: bytes) -> int:
        """A brain that leads again offers a node to writers once it has heard from it
        (a node silent past suspect_after while the lock was lost is suspect until its
        next heartbeat, which a loaded machine delays): until then an upload is a 503
        a client retries, never a wrong success."""
        def upload() -> int | None:
            resp = c.http.post("/api/files/upload", files={"file": (name, data)})
            if resp.status_code == 503 and resp.json()["error"] == "not_enough_nodes":
                return None
            assert resp.status_code == 201, resp.text
            return int(resp.json()["id"])
        found: int = wait_until(upload, 30, interval=0.3, what=f"{name} accepted")
        return found

    first = asyncio.run(cut(take=False))

    async def current() -> int | None:
        conn = await asyncpg.connect(dsn)
        try:
            return await holder(conn)
        finally:
            await conn.close()

    wait_until(lambda: asyncio.run(current()) not in (None, first), 30,
               interval=0.5, what="the brain's lock taken again")
    assert role() == "leader"
    assert c.download(upload_once_offered("still.bin", b"x" * 1000)) == b"x" * 1000

    asyncio.run(cut(take=True))
    assert "this brain steps down" in c.log("brain")
    wait_until(lambda: role() == "leader", 30, what="the brain leading again")

    again = upload_once_offered("again.bin", b"y" * 1000)
    assert c.download(again) == b"y" * 1000
