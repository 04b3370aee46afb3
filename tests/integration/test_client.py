"""The typed Python client (``tossit.client``) against a real cluster: every
answer arrives as the wire model the brain declares (issue 11), so these tests
read attributes, and mypy checks them as it checks any caller's code."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from cluster import Cluster
from tossit.brain.api.wire import FileMeta, FolderEntry
from tossit.brain.states import EventKind, NodeState, ReplicationState
from tossit.client import TossitClient, TossitError


@pytest.fixture()
def client(shared_cluster: Cluster) -> TossitClient:
    return TossitClient(shared_cluster.url, key=shared_cluster.admin_key)


def test_upload_info_download_delete_restore(client: TossitClient, tmp_path: Path) -> None:
    data = os.urandom((1 << 20) + 5)
    source = tmp_path / "typed.bin"
    source.write_bytes(data)
    up = client.upload(source, "typed/client.bin")
    assert (up.name, up.size, up.chunks, up.bucket) == ("typed/client.bin", len(data), 2,
                                                         "default")
    assert up.sha256 == hashlib.sha256(data).hexdigest()
    assert up.replication.state is ReplicationState.HEALTHY
    assert up.replication.min_copies == up.replication.target == 3

    info = client.info(up.id)
    assert [c.size for c in info.chunk_map] == [1 << 20, 5]
    assert [c.offset for c in info.chunk_map] == [0, 1 << 20]
    assert all(n.replica_state == "ok" for c in info.chunk_map for n in c.nodes)

    got = client.download(up.id, tmp_path / "copy.bin")
    assert (got.size, got.sha256) == (len(data), up.sha256)
    assert got.path.read_bytes() == data

    gone = client.delete(up.id)
    assert (gone.id, gone.deleted, gone.trash) == (up.id, True, False)  # the trash is off
    assert client.find("typed/client.bin") is None


def test_trash_restore_purge_empty(make_cluster: Any) -> None:
    c = make_cluster(nodes=1, replicas=1, brain_env={"TOSSIT_TRASH_KEEP": "3600"})
    with TossitClient(c.url, key=c.admin_key) as client:
        kept = client.upload_bytes(b"kept", "trash/kept.txt")
        dropped = client.upload_bytes(b"dropped!", "trash/dropped.txt")
        for f in (kept, dropped):
            assert client.delete(f.id).trash is True
        page = client.trash()
        assert (page.total, page.bytes, page.keep_s) == (2, 12, 3600.0)
        assert {f.id: f.why for f in page.files} == {kept.id: "deleted", dropped.id: "deleted"}
        back = client.restore(kept.id)
        assert (back.id, back.name, back.sha256, back.replaced) == (
            kept.id, "trash/kept.txt", kept.sha256, None)
        assert client.download_bytes(kept.id) == b"kept"
        assert client.empty_trash().model_dump() == {"purged": 1, "bytes": 8}
        assert client.trash().total == 0


def test_folder_listing_is_typed_folders_then_files(client: TossitClient) -> None:
    for name in ("tree/a/1.txt", "tree/a/2.txt", "tree/b.txt"):
        client.upload_bytes(name.encode(), name)
    level = client.list_folder("tree/")
    assert [type(e) for e in level] == [FolderEntry, FileMeta]
    folder, file = level
    assert isinstance(folder, FolderEntry) and isinstance(file, FileMeta)
    assert (folder.name, folder.files, folder.size) == ("tree/a/", 2, 24)
    assert file.name == "tree/b.txt"


def test_cluster_answers_are_typed(client: TossitClient, shared_cluster: Cluster) -> None:
    nodes = client.nodes()
    assert len(nodes) == 3 and {n.state for n in nodes} == {NodeState.ONLINE}
    assert client.node(nodes[0].id).name == nodes[0].name
    status = client.status()
    assert status.nodes.online == 3 and status.replicas == 3
    assert status.readiness.status == "ready"
    assert status.capacity.raw >= status.capacity.free
    assert client.health().nodes_online == 3
    started = client.events(limit=1000, kind=EventKind.BRAIN_STARTED)
    assert started and all(e.kind is EventKind.BRAIN_STARTED for e in started)
    impact = client.node_impact(nodes[0].id)
    assert impact.node.id == nodes[0].id and impact.remove.allowed is False
    assert client.whoami().role == "admin"


def test_errors_carry_the_code(client: TossitClient) -> None:
    with pytest.raises(TossitError) as caught:
        client.info(2**31 - 1)
    assert (caught.value.status, caught.value.code) == (404, "file_not_found")
