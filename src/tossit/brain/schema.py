"""Which schema revision a metadata database is at, and whether this TossIt can run on it.

A brain migrates its database forward by itself at start. The one thing it
cannot do is go back: a database an upgraded TossIt has migrated carries a
revision this (older) code has never heard of, and running on it would read
and write columns it does not know. So the brain, ``tossit db current`` and
``tossit db upgrade`` all ask here first, and say in one line what to do.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import inspect, text

from tossit.brain.db import REVISIONS, make_engine

VERSION_TABLE = "alembic_version"


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer TossIt than this one."""


def known_revisions() -> list[str]:
    """Every revision this TossIt's migrations know, oldest first."""
    return list(REVISIONS)


@dataclass(frozen=True)
class SchemaState:
    current: str | None  # None: no TossIt schema yet (an empty database)
    head: str  # the newest revision this TossIt knows
    known: tuple[str, ...]

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head

    @property
    def too_new(self) -> bool:
        return self.current is not None and self.current not in self.known

    @property
    def behind(self) -> int:
        """Migrations an upgrade would run (0 when up to date or too new)."""
        if self.too_new:
            return 0
        if self.current is None:
            return len(self.known)
        return len(self.known) - 1 - self.known.index(self.current)

    def too_new_message(self) -> str:
        return (f"the metadata database was written by a newer TossIt (schema revision "
                f"{self.current}; this TossIt knows up to {self.head}): upgrade TossIt "
                "to run on it (a database is never migrated back)")


async def schema_state(url: str) -> SchemaState:
    """Read the database's revision (one short connection; raises what the driver
    raises when the database cannot be opened)."""
    known = tuple(known_revisions())
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            has_table = await conn.run_sync(
                lambda sync: inspect(sync).has_table(VERSION_TABLE))
            current = None
            if has_table:
                current = await conn.scalar(text(f"SELECT version_num FROM {VERSION_TABLE}"))
    finally:
        await engine.dispose()
    return SchemaState(str(current) if current is not None else None, known[-1], known)


async def check_not_too_new(url: str) -> SchemaState:
    """Raise ``SchemaTooNew`` (with the words to show) if this TossIt is too old
    for the database."""
    state = await schema_state(url)
    if state.too_new:
        raise SchemaTooNew(state.too_new_message())
    return state
