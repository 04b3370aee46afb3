"""One brain per metadata store: a second one refuses to start."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable

from cluster import Cluster, wait_until
from tossit.serve import pick_free_port


def test_a_second_brain_on_the_same_metadata_refuses_to_start(
        make_cluster: Callable[..., Cluster], database_url: str | None) -> None:
    c = make_cluster(nodes=1, replicas=1, database_url=database_url)
    argv = c.brain_argv()
    argv[argv.index("--port") + 1] = str(pick_free_port())
    second = subprocess.run([sys.executable, "-m", "tossit", *argv], capture_output=True,
                            text=True, timeout=60, stdin=subprocess.DEVNULL)
    out = second.stdout + second.stderr
    assert second.returncode != 0, out
    assert "another brain" in out and "is already running on" in out, out
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
    """The connection holding the lock is cut (as by a PostgreSQL restart): the
    brain takes the lock again. Cut it again and let someone else take the lock
    first: the brain stops, so that two never act on the metadata at once."""
    import asyncpg

    from tossit.brain.brainlock import _BRAIN_LOCK_KEY

    c = make_cluster(nodes=1, replicas=1, database_url=pg_url)
    dsn = pg_url.replace("postgresql+asyncpg://", "postgresql://", 1)

    async def holder(conn: asyncpg.Connection) -> int | None:
        return await conn.fetchval(  # type: ignore[no-any-return]
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 "
            "AND granted AND database = (SELECT oid FROM pg_database "
            "WHERE datname = current_database())", _BRAIN_LOCK_KEY)

    async def cut_and_maybe_take(take: bool) -> int | None:
        conn = await asyncpg.connect(dsn)
        first = await holder(conn)
        assert first is not None
        await conn.execute("SELECT pg_terminate_backend($1)", first)
        if not take:
            await conn.close()
            return first
        # Keep this session (and the lock) until the brain has given up.
        # (It is free as soon as the cut session is gone; the brain checks every 10 s.)
        await asyncio.wait_for(conn.execute("SELECT pg_advisory_lock($1)", _BRAIN_LOCK_KEY), 5)
        assert c.brain is not None
        try:
            await asyncio.to_thread(c.brain.wait, 40)
        finally:
            await conn.close()
        return first

    first = asyncio.run(cut_and_maybe_take(take=False))

    async def retaken() -> int | None:
        conn = await asyncpg.connect(dsn)
        try:
            return await holder(conn)
        finally:
            await conn.close()

    wait_until(lambda: asyncio.run(retaken()) not in (None, first), 30,
               interval=0.5, what="the brain's lock taken again")
    assert "brain lock taken again" in c.log("brain")
    assert c.download(c.upload("still.bin", b"x" * 1000)["id"]) == b"x" * 1000

    asyncio.run(cut_and_maybe_take(take=True))
    assert c.brain is not None and c.brain.poll() is not None  # it stopped itself
    assert "this brain stops so that only one acts on the metadata" in c.log("brain")
    c.brain = None
