"""Which node a command's NODE argument names (tossit node drain/remove/what-if)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import typer

from tossit import cli


class _Nodes:
    def __init__(self, *rows: tuple[str, str, str]) -> None:
        self.rows = [SimpleNamespace(id=i, name=n, state=s) for i, n, s in rows]

    def nodes(self) -> list[Any]:
        return self.rows


OLD = ("50d779e0aaaaaaaa", "node-1", "dead")
NEW = ("011b497dbbbbbbbb", "node-1", "online")
OTHER = ("9f00c0deccccccccc", "node-2", "online")


def test_a_name_an_id_or_the_start_of_an_id() -> None:
    client: Any = _Nodes(NEW, OTHER)
    assert cli._node_ref(client, "node-1") == NEW[0]
    assert cli._node_ref(client, OTHER[0]) == OTHER[0]
    assert cli._node_ref(client, "9f00c0de") == OTHER[0]


def test_a_name_two_nodes_share_is_refused_not_guessed(capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    """A node re-installed under its old name, before the old one is removed: a
    drain or a removal must not act on whichever comes first."""
    client: Any = _Nodes(OLD, NEW, OTHER)
    with pytest.raises(typer.Exit) as stop:
        cli._node_ref(client, "node-1")
    assert stop.value.exit_code == 1
    said = " ".join(capsys.readouterr().err.split())
    assert "2 nodes are named 'node-1'" in said and "give the id" in said
    assert cli._node_ref(client, NEW[0][:8]) == NEW[0]
