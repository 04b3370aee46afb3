"""The schema revisions written out in ``db.REVISIONS`` are Alembic's, and a
brain whose database is up to date never loads Alembic."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tossit.brain.db import REVISIONS, alembic_revisions


def test_the_revisions_written_out_are_the_migrations_alembic_finds() -> None:
    assert list(REVISIONS) == alembic_revisions()


def test_an_up_to_date_database_is_checked_without_alembic(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'meta.db'}"
    script = textwrap.dedent(f"""
        import asyncio, sys
        from tossit.brain.db import migrate
        asyncio.run(migrate({url!r}))  # a fresh database: migrated (Alembic loads)
        print("first", "alembic" in sys.modules)
    """)
    again = textwrap.dedent(f"""
        import asyncio, sys
        from tossit.brain.db import migrate
        from tossit.brain.schema import schema_state
        asyncio.run(migrate({url!r}))
        print("again", "alembic" in sys.modules, asyncio.run(schema_state({url!r})).up_to_date)
    """)
    first = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           timeout=60)
    assert first.returncode == 0, first.stderr
    assert first.stdout.split() == ["first", "True"]
    second = subprocess.run([sys.executable, "-c", again], capture_output=True, text=True,
                            timeout=60)
    assert second.returncode == 0, second.stderr
    assert second.stdout.split() == ["again", "False", "True"]


def test_tossit_brain_migrates_in_a_child_and_never_loads_alembic(tmp_path: Path) -> None:
    """What ``tossit brain`` does before it serves a fresh database: the schema
    ends up current, and Alembic was only ever loaded in the child."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'meta.db'}"
    script = textwrap.dedent(f"""
        import asyncio, sys
        from tossit.brain.db import check_database
        from tossit.brain.schema import schema_state
        from tossit.cli import _migrate_apart
        asyncio.run(check_database({url!r}))  # as the CLI does first
        assert not asyncio.run(schema_state({url!r})).up_to_date
        _migrate_apart({url!r})
        print("alembic" in sys.modules, asyncio.run(schema_state({url!r})).up_to_date)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]
