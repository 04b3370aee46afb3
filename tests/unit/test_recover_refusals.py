"""What ``tossit recover`` refuses before it reads a node (nothing written)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tossit.recover import RecoverError, recover


@pytest.mark.parametrize("left", ["tossit.db-wal", "tossit.db-shm"])
def test_a_wal_left_behind_by_a_moved_database_is_not_thrown_away(
        tmp_path: Path, left: str) -> None:
    """The runbook moves tossit.db away: SQLite would delete the WAL it finds
    beside the new database, and with it the old one's newest commits."""
    brain = tmp_path / "brain"
    brain.mkdir()
    (brain / left).write_bytes(b"the old database's last commits")
    with pytest.raises(RecoverError) as err:
        asyncio.run(recover(secret="s" * 32, dirs=[tmp_path / "node"], data_dir=brain))
    assert "without its tossit.db" in str(err.value)
    assert (brain / left).read_bytes() == b"the old database's last commits"
    assert not (brain / "tossit.db").exists()


def test_a_keys_master_that_differs_from_the_one_there_is_refused(tmp_path: Path) -> None:
    brain = tmp_path / "brain"
    brain.mkdir()
    (brain / "keys.master").write_text("one\n")
    backup = tmp_path / "keys.master.backup"
    backup.write_text("another\n")
    with pytest.raises(RecoverError) as err:
        asyncio.run(recover(secret="s" * 32, dirs=[tmp_path / "node"], data_dir=brain,
                            keys_master=backup))
    assert "differs" in str(err.value)
