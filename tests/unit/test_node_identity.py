"""A node's identity file: made once, and never silently made again beside chunks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tossit.config import NodeSettings
from tossit.node.identity import IdentityError, keep_recorded_names, load_or_create, record_address


def test_a_new_data_dir_gets_an_id_that_stays(tmp_path: Path) -> None:
    node_id = load_or_create(tmp_path / "node")
    assert len(node_id) == 16 and load_or_create(tmp_path / "node") == node_id
    # An empty chunk tree (a fresh store made its fan-out dirs) is not data.
    (tmp_path / "fresh" / "chunks" / "abc").mkdir(parents=True)
    assert load_or_create(tmp_path / "fresh") != node_id


@pytest.mark.parametrize("kind", ["chunks", "manifests"])
def test_chunks_without_node_json_are_refused(tmp_path: Path, kind: str) -> None:
    """Started as a new node, it would register again with the same chunks."""
    node = tmp_path / "node3"
    (node / kind / "abc").mkdir(parents=True)
    (node / kind / "abc" / ("abc" + "0" * 61)).write_bytes(b"a chunk")
    with pytest.raises(IdentityError) as err:
        load_or_create(node)
    assert "holds chunks but no node.json" in str(err.value)
    assert not (node / "node.json").exists()
    (node / "node.json").write_text(json.dumps({"id": "0123456789abcdef"}))  # restored
    assert load_or_create(node) == "0123456789abcdef"


@pytest.mark.parametrize("text", ["", "{not json", "[]", '{"name": "node-1"}', '{"id": ""}'])
def test_a_damaged_node_json_is_named_with_the_way_out(tmp_path: Path, text: str) -> None:
    (tmp_path / "node.json").write_text(text)
    with pytest.raises(IdentityError) as err:
        load_or_create(tmp_path)
    assert str(tmp_path / "node.json") in str(err.value)
    assert 'write {"id": "ID"} into it' in str(err.value)


def test_a_restart_without_name_or_zone_keeps_the_ones_it_had(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Restarted on another port without --name and --zone, a node kept neither:
    it renamed itself HOST-PORT and moved to zone "default" (placement moves
    copies by zone). Given ones still win."""
    for var in ("TOSSIT_NODE_NAME", "TOSSIT_NODE_ZONE"):
        monkeypatch.delenv(var, raising=False)
    data = tmp_path / "node"
    first = NodeSettings(data_dir=data, port=8081, name="nas-1", zone="rack-1")
    load_or_create(data)
    record_address(data, first.node_name(), first.public_url(), first.zone)

    again = NodeSettings(data_dir=data, port=8085)
    assert keep_recorded_names(again) == ["name 'nas-1'", "zone 'rack-1'"]
    assert (again.node_name(), again.zone) == ("nas-1", "rack-1")
    moved = NodeSettings(data_dir=data, port=8085, zone="rack-2")
    assert keep_recorded_names(moved) == ["name 'nas-1'"]
    assert (moved.node_name(), moved.zone) == ("nas-1", "rack-2")
    same = NodeSettings(data_dir=data, port=8081, name="nas-1", zone="rack-1")
    assert keep_recorded_names(same) == []
    assert keep_recorded_names(NodeSettings(data_dir=tmp_path / "new", port=1)) == []
