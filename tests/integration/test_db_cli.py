"""``tossit db current/upgrade``, and ``tossit brain`` refusing a database it cannot
use: each says so in one line on stderr with a non-zero exit code, never a
traceback."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from tossit.brain.db import MIGRATIONS, make_engine
from tossit.brain.schema import known_revisions
from tossit.serve import pick_free_port

HEAD = known_revisions()[-1]


def tossit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tossit", *args], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL,
                          env=dict(os.environ, COLUMNS="80"))


def one_line_error(proc: subprocess.CompletedProcess[str], code: int = 2) -> str:
    out = proc.stdout + proc.stderr
    assert proc.returncode == code, out
    assert "Traceback" not in out and proc.stdout == "", out
    # COLUMNS=80 and a longer message: still one line (no wrapping either).
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, out
    return proc.stderr


def set_revision(url: str, revision: str) -> None:
    async def run() -> None:
        engine = make_engine(url)
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = :r"),
                               {"r": revision})
        await engine.dispose()

    asyncio.run(run())


def where(tmp_path: Path, database_url: str | None) -> tuple[list[str], str]:
    """The flags that name the database, and its URL."""
    args = ["--data-dir", str(tmp_path / "brain")]
    if database_url:
        return [*args, "--database-url", database_url], database_url
    return args, f"sqlite+aiosqlite:///{tmp_path / 'brain' / 'tossit.db'}"


def test_db_upgrade_and_current(tmp_path: Path, database_url: str | None) -> None:
    args, _ = where(tmp_path, database_url)
    if database_url is None:  # no database file yet: said, and nothing created
        assert "no metadata database in" in one_line_error(tossit("db", "current", *args))
        assert not (tmp_path / "brain").exists()
    else:
        empty = tossit("db", "current", *args)
        assert empty.returncode == 1, empty.stdout + empty.stderr
        assert "no TossIt schema in this database yet" in empty.stdout

    up = tossit("db", "upgrade", *args)
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"created the metadata schema at revision {HEAD}" in up.stdout

    cur = tossit("db", "current", *args)
    assert cur.returncode == 0, cur.stdout + cur.stderr
    assert cur.stdout.strip() == f"schema revision {HEAD} (the newest this TossIt knows)"

    again = tossit("db", "upgrade", *args)
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout



def test_db_upgrade_from_an_older_revision(tmp_path: Path, database_url: str | None) -> None:
    """A database an older TossIt left (the schema one revision back) is migrated."""
    args, url = where(tmp_path, database_url)
    (tmp_path / "brain").mkdir()
    older = known_revisions()[-2]
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(cfg, older)

    behind = tossit("db", "current", *args)
    assert behind.returncode == 1, behind.stdout + behind.stderr
    assert f"schema revision {older}; this TossIt's newest is {HEAD} (1 migration to run)" \
        in behind.stdout
    up = tossit("db", "upgrade", *args)
    assert up.returncode == 0, up.stdout + up.stderr
    assert up.stdout.strip() == (f"upgraded the metadata schema from revision {older} "
                                 f"to {HEAD} (1 migration)")
    assert tossit("db", "current", *args).returncode == 0


def test_an_older_tossit_refuses_a_newer_schema(tmp_path: Path,
                                                database_url: str | None) -> None:
    args, url = where(tmp_path, database_url)
    assert tossit("db", "upgrade", *args).returncode == 0
    set_revision(url, "0999")  # what a newer TossIt's migration would leave
    words = "the metadata database was written by a newer TossIt (schema revision 0999; " \
        f"this TossIt knows up to {HEAD}): upgrade TossIt"
    assert words in one_line_error(tossit("db", "current", *args))
    assert words in one_line_error(tossit("db", "upgrade", *args))
    brain = tossit("brain", "--port", str(pick_free_port()), *args)
    assert words in one_line_error(brain)
    set_revision(url, HEAD)  # untouched otherwise: the right TossIt runs on it again
    assert tossit("db", "current", *args).returncode == 0


def test_a_database_that_cannot_be_opened(tmp_path: Path) -> None:
    port = str(pick_free_port())
    closed = pick_free_port()  # nothing listens there
    proc = tossit("brain", "--port", port, "--data-dir", str(tmp_path / "b"),
                  "--database-url", f"postgresql+asyncpg://tossit:pw@127.0.0.1:{closed}/x")
    err = one_line_error(proc)
    assert f"cannot open the metadata database (127.0.0.1:{closed}/x)" in err
    assert "pw" not in err  # the credentials are not shown
    # A SQLite file in a folder that does not exist (and cannot be made there).
    proc = tossit("db", "current", "--database-url",
                  f"sqlite+aiosqlite:///{tmp_path}/no/such/dir/tossit.db")
    assert "cannot open the metadata database" in one_line_error(proc)
