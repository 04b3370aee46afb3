"""The typed Python client (``tossit.client``) against a real cluster: every
answer arrives as the wire model the brain declares (issue 11), so these tests
read attributes, and mypy checks them as it checks any caller's code."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

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
    assert (gone.id, gone.deleted, gone.trash) == (up.id, True, True)
    trashed = {f.id: f for f in client.trash().files}
    assert trashed[up.id].why == "deleted" and trashed[up.id].size == len(data)
    back = client.restore(up.id)
    assert (back.id, back.name, back.replaced) == (up.id, "typed/client.bin", None)
    assert client.file(up.id).sha256 == up.sha256


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
