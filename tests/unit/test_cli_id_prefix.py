"""Which key or upload a command's id argument names: the id, or its start
(tossit key revoke, tossit uploads abort)."""

from __future__ import annotations

import pytest
import typer

from tossit import cli

ROWS = [("TKAAAA2222222222222A", "backup, active"), ("TKAAAB3333333333333B", "ci, active"),
        ("TKZZZZ4444444444444C", "old, revoked")]


def test_a_whole_id_or_a_unique_start() -> None:
    assert cli._by_prefix(ROWS[1][0], ROWS, "key", "tossit key list", 6) == ROWS[1][0]
    assert cli._by_prefix("TKAAAB", ROWS, "key", "tossit key list", 6) == ROWS[1][0]
    assert cli._by_prefix("TKZ", ROWS[2:], "key", "tossit key list", 3) == ROWS[2][0]


def test_a_too_short_start_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """'TK' starts every key: a revoke needs more than a guess."""
    with pytest.raises(typer.Exit) as stop:
        cli._by_prefix("TKAAA", ROWS, "key", "tossit key list", 6)
    assert stop.value.exit_code == 1
    said = " ".join(capsys.readouterr().err.split())
    assert "'TKAAA' is too short: give the key's id, or at least its first 6 characters" in said


def test_a_start_of_several_ids_is_refused_naming_them(capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    with pytest.raises(typer.Exit) as stop:
        cli._by_prefix("TKAAA", ROWS, "key", "tossit key list", 4)
    assert stop.value.exit_code == 1
    said = " ".join(capsys.readouterr().err.split())
    assert "'TKAAA' starts the ids of 2 keys" in said and "give more of it" in said
    assert ROWS[0][0] in said and ROWS[1][0] in said and "backup, active" in said


def test_an_unknown_start_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit):
        cli._by_prefix("TKQQQQ", ROWS, "key", "tossit key list", 6)
    assert "no key 'TKQQQQ' (see 'tossit key list')" in capsys.readouterr().err


def test_labels_are_not_read_as_markup(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [("TKZZZZ1", "[bold]x[/], revoked"), ("TKZZZZ2", "y")]
    with pytest.raises(typer.Exit):
        cli._by_prefix("TKZZZZ", rows, "key", "tossit key list", 6)
    assert "[bold]x[/]" in capsys.readouterr().err


@pytest.mark.parametrize(("name", "bucket", "shown"), [
    ("cat.jpg", "default", "cat.jpg"), ("cat.jpg", None, "cat.jpg"),
    ("cat.jpg", "photos", "photos/cat.jpg")])
def test_an_s3_buckets_file_is_shown_with_its_bucket(name: str, bucket: str | None,
                                                     shown: str) -> None:
    """In the trash, two deleted cat.jpg of two buckets were two identical rows."""
    assert cli.shown_name(name, bucket) == shown
