"""The node's blocking chunk store on a real temporary folder."""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from pathlib import Path

import pytest

from tossit.chunking import DATA, META, content_id
from tossit.config import MiB
from tossit.node import storage
from tossit.node.storage import BadChunkId, ChunkStore, HashMismatch, StorageFull


def blob(i: int, size: int = 1000) -> tuple[str, bytes]:
    data = hashlib.sha256(str(i).encode()).digest() * (size // 32 + 1)
    data = data[:size]
    return hashlib.sha256(data).hexdigest(), data


@pytest.fixture(scope="module")
def real_store(tmp_path_factory: pytest.TempPathFactory) -> ChunkStore:
    """One store with the real 3-hex-digit fan-out, shared by the layout tests:
    opening creates 4096 directories, which takes seconds on a busy disk."""
    s = ChunkStore(tmp_path_factory.mktemp("real") / "node", capacity="1MiB")
    s.open()
    return s


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ChunkStore:
    """A fresh store per test with a 1-digit fan-out (16 dirs) so it opens fast;
    accounting, hashing and paging do not depend on the fan-out width."""
    monkeypatch.setattr(storage, "FANOUT_CHARS", 1)
    s = ChunkStore(tmp_path / "node", capacity="1MiB")
    s.open()
    return s


def tmp_files(s: ChunkStore) -> list[str]:
    return os.listdir(s.tmp_dir)


def test_open_creates_layout(real_store: ChunkStore) -> None:
    store = real_store
    assert store.chunks_dir.is_dir() and store.tmp_dir.is_dir()
    subdirs = os.listdir(store.chunks_dir)
    assert len(subdirs) == 4096
    assert "000" in subdirs and "fff" in subdirs
    u = store.usage()
    assert (u.used, u.chunk_count, u.limit) == (0, 0, MiB)


def test_a_capacity_larger_than_the_disk_counts_as_the_disk(tmp_path: Path) -> None:
    """Placement weighs nodes by their limit: a node set to 1,000 TiB on a small disk
    would be sent far more copies than it can hold."""
    store = ChunkStore(tmp_path, capacity="1000TiB")
    store.open()
    u = store.usage()
    assert u.limit == u.disk_total == os.statvfs(tmp_path).f_blocks * os.statvfs(
        tmp_path).f_frsize


@pytest.mark.parametrize("real", [True, False])
def test_write_read_delete_round_trip(real: bool, request: pytest.FixtureRequest) -> None:
    store: ChunkStore = request.getfixturevalue("real_store" if real else "store")
    width = 3 if real else 1
    cid, data = blob(1)
    assert not store.exists(cid)
    assert store.write(cid, data) is True
    path = store.chunks_dir / cid[:width] / cid
    assert store.path_for(cid) == path
    assert path.read_bytes() == data
    assert store.exists(cid)
    assert store.read(cid) == data
    assert tmp_files(store) == []
    assert store.delete(cid) is True
    assert not path.exists() and not store.exists(cid)
    assert store.delete(cid) is False
    with pytest.raises(FileNotFoundError):
        store.read(cid)


def test_write_accepts_bytearray_and_empty_chunk(store: ChunkStore) -> None:
    cid, data = blob(2)
    assert store.write(cid, bytearray(data))
    empty = hashlib.sha256(b"").hexdigest()
    assert store.write(empty, b"")
    assert store.read(empty) == b""
    assert store.usage().chunk_count == 2


def test_hash_mismatch_leaves_nothing(store: ChunkStore) -> None:
    cid, data = blob(3)
    with pytest.raises(HashMismatch):
        store.write(cid, data + b"x")
    assert not store.exists(cid)
    assert tmp_files(store) == []
    u = store.usage()
    assert (u.used, u.chunk_count) == (0, 0)
    # Without verification the caller vouches for the bytes.
    assert store.write(cid, data, verify=False)


def test_storage_full(store: ChunkStore) -> None:
    written = []
    for i in range(4):  # 4 x 200 KiB = 800 KiB of the 1 MiB limit
        cid, data = blob(100 + i, 200 * 1024)
        assert store.write(cid, data)
        written.append(cid)
    cid, data = blob(200, 300 * 1024)  # 1100 KiB > 1 MiB
    with pytest.raises(StorageFull, match="storage limit"):
        store.write(cid, data)
    assert not store.exists(cid)
    assert tmp_files(store) == []
    u = store.usage()
    assert (u.used, u.chunk_count) == (800 * 1024, 4)
    assert u.free == min(MiB - 800 * 1024, u.disk_free)
    # Exactly up to the limit still fits; one more byte does not.
    cid, data = blob(201, 224 * 1024)
    assert store.write(cid, data)
    assert store.usage().used == MiB and store.usage().free == 0
    cid, data = blob(202, 1)
    with pytest.raises(StorageFull):
        store.write(cid, data)
    # A manifest pack still fits: a node keeps room for them over its limit, or a
    # full cluster could not record the deletes that would free it.
    pack = b"a pack of a delete's manifest entries"
    assert store.write(content_id(pack, META), pack, kind=META)
    assert store.usage().used == MiB + len(pack)
    # Deleting makes room again.
    store.delete(written[0])
    assert store.write(cid, data)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EIO])
def test_a_disk_that_fills_up_under_the_store(store: ChunkStore, code: int,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # Another program (or a quota) fills the disk between the limit check and the
    # write: a full node (507 to the brain), not a crash; nothing half-written.
    cid, data = blob(300, 10_000)

    def fail(fd: int, data: object) -> int:
        raise OSError(code, os.strerror(code))

    expected = StorageFull if code != errno.EIO else OSError  # EIO: a failing disk
    with monkeypatch.context() as m, pytest.raises(expected) as caught:
        m.setattr(storage.os, "write", fail)
        store.write(cid, data)
    assert (code == errno.EIO) != isinstance(caught.value, StorageFull)
    assert not store.exists(cid) and tmp_files(store) == []
    assert store.usage().used == 0 and store._reserved == 0
    assert store.write(cid, data)  # room again: the same write goes through


def test_duplicate_write_returns_false_and_counts_once(store: ChunkStore) -> None:
    cid, data = blob(5, 5000)
    assert store.write(cid, data) is True
    assert store.write(cid, data) is False
    assert store.write(cid, data, verify=False) is False
    u = store.usage()
    assert (u.used, u.chunk_count) == (5000, 1)
    assert tmp_files(store) == []


def test_duplicate_write_of_a_bad_copy_still_raises(store: ChunkStore) -> None:
    cid, data = blob(6)
    store.write(cid, data)
    with pytest.raises(HashMismatch):
        store.write(cid, b"corrupt")
    assert store.read(cid) == data


def test_concurrent_duplicate_writes_count_once(store: ChunkStore) -> None:
    cid, data = blob(7, 50_000)
    results: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        r = store.write(cid, data)
        with lock:
            results.append(r)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1
    u = store.usage()
    assert (u.used, u.chunk_count) == (50_000, 1)
    assert tmp_files(store) == []


def test_usage_accounting_and_reopen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage, "FANOUT_CHARS", 1)
    root = tmp_path / "n"
    s = ChunkStore(root, capacity="1MiB")
    s.open()
    ids = []
    total = 0
    for i in range(10):
        cid, data = blob(i, 1000 + i)
        s.write(cid, data)
        ids.append(cid)
        total += len(data)
    assert (s.usage().used, s.usage().chunk_count) == (total, 10)
    s.delete(ids[0])
    s.delete(ids[1])
    total -= 1000 + 1001
    assert (s.usage().used, s.usage().chunk_count) == (total, 8)
    # A stale partial write left by a crash is cleared at the next start.
    (root / "tmp" / "leftover.partial").write_bytes(b"half")
    s2 = ChunkStore(root, capacity="1MiB")
    s2.open()
    assert (s2.usage().used, s2.usage().chunk_count) == (total, 8)
    assert tmp_files(s2) == []
    assert s2.read(ids[5]) == blob(5, 1005)[1]


def test_usage_percentage_limit(real_store: ChunkStore) -> None:
    u = ChunkStore(real_store.root, capacity="50%").usage()
    assert u.limit == u.disk_total // 2
    assert 0 < u.disk_free <= u.disk_total


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "abc",
        "A" * 64,
        "0" * 63,
        "0" * 65,
        "../" + "0" * 61,
        "0" * 30 + "/../" + "0" * 30,
        "..",
        "/etc/passwd",
        "0" * 63 + "\u0661",
        "0" * 63 + "\n",
    ],
)
def test_bad_chunk_ids(real_store: ChunkStore, bad: str) -> None:
    store = real_store
    with pytest.raises(BadChunkId):
        store.path_for(bad)
    with pytest.raises(BadChunkId):
        store.write(bad, b"x", verify=False)
    with pytest.raises(BadChunkId):
        store.read(bad)
    with pytest.raises(BadChunkId):
        store.delete(bad)
    with pytest.raises(BadChunkId):
        store.exists(bad)


@pytest.mark.parametrize("real", [True, False])
def test_stray_files_are_ignored(real: bool, request: pytest.FixtureRequest) -> None:
    store: ChunkStore = request.getfixturevalue("real_store" if real else "store")
    cid, data = blob(8)
    store.write(cid, data)
    (store.chunks_dir / cid[: storage.FANOUT_CHARS] / "not-a-chunk").write_bytes(b"junk")
    (store.chunks_dir / "README").write_bytes(b"junk")
    assert [c for c, *_ in store.iter_chunks()] == [cid]
    assert [c for c, *_ in store.inventory()] == [cid]
    assert [c for c, *_ in store.inventory(after="0" * 64)] == [cid]
    store.delete(cid)
    os.unlink(store.chunks_dir / "README")


@pytest.mark.parametrize("width", [1, 3])
def test_inventory_paging_complete_and_sorted(
    width: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest,
) -> None:
    if width == 3:
        s: ChunkStore = request.getfixturevalue("real_store")
        for cid, *_ in list(s.iter_chunks()):
            s.delete(cid)
    else:
        monkeypatch.setattr(storage, "FANOUT_CHARS", 1)
        s = ChunkStore(tmp_path / "inv", capacity="1MiB")
        s.open()
    expected = {}
    kinds = {}
    for i in range(80):
        cid, data = blob(i, 10 + i % 7)
        if i % 5 == 0:  # some manifest packs among the chunks: one sorted list
            cid = content_id(data, META)
            s.write(cid, data, kind=META)
            kinds[cid] = META
        else:
            s.write(cid, data)
        expected[cid] = len(data)
    # Several chunks in one fan-out directory, so that pages also split a directory
    # (the caller vouches for these synthetic ids: verify=False).
    for j in range(5):
        fake = "abc" + f"{j:061x}"
        s.write(fake, b"z" * j, verify=False)
        expected[fake] = j
    full = s.inventory(limit=100000)
    assert [c for c, *_ in full] == sorted(expected)
    assert {c: k for c, _, _, k in full if k == META} == kinds
    assert [c for c, *_ in s.inventory(limit=1000, kinds=(META,))] == sorted(kinds)
    assert {c: size for c, size, *_ in full} == expected
    # (Each call lists the fan-out dirs: keep the real-width pass short.)
    for page_size in (1, 4, 50, 84, 85, 1000) if width == 1 else (9, 85):
        seen: list[str] = []
        after = ""
        while True:
            page = s.inventory(after=after, limit=page_size)
            assert len(page) <= page_size
            if not page:
                break
            assert all(c > after for c, *_ in page)
            seen += [c for c, *_ in page]
            after = page[-1][0]
        assert seen == sorted(expected), page_size
    # A cursor that is not itself a stored id (e.g. deleted since) still works.
    ids = sorted(expected)
    s.delete(ids[40])
    page = s.inventory(after=ids[40], limit=5)
    assert [c for c, *_ in page] == ids[41:46]
    assert [c for c, *_ in s.inventory(after="f" * 64)] == []
    assert sorted(c for c, *_ in s.iter_chunks()) == sorted(set(ids) - {ids[40]})
    for cid in set(ids) - {ids[40]}:
        s.delete(cid)


def test_rewrite_repairs_a_corrupt_copy(store: ChunkStore) -> None:
    """A write of a chunk whose stored copy is corrupt replaces it (not 'exists')."""
    cid, data = blob(11, 4096)
    assert store.write(cid, data) is True
    path = store.path_for(cid)
    path.write_bytes(b"\0" * len(data))  # bit rot of the same length
    assert store.write(cid, data) is True
    assert store.read(cid) == data
    assert store.write(cid, data) is False  # intact now: a plain duplicate
    u = store.usage()
    assert (u.used, u.chunk_count) == (4096, 1)


def test_manifest_packs_are_kept_apart_and_checked_with_their_own_hash(
        store: ChunkStore) -> None:
    """A pack (kind meta) is named by its domain-separated hash: the same bytes as a
    chunk get another id, live in manifests/, and count in the node's usage."""
    data = b"TOSSIT-MANIFESTS v1 pack bytes"
    mid, cid = content_id(data, META), content_id(data, DATA)
    assert mid != cid
    with pytest.raises(HashMismatch):
        store.write(cid, data, kind=META)  # a chunk's id is not a pack's
    assert store.write(mid, data, kind=META) is True
    assert store.write(cid, data) is True  # the same bytes as a chunk: a separate blob
    assert store.locate(mid) == (store.path_for(mid, META), META)
    assert store.path_for(mid, META).parent.parent == store.meta_dir
    assert store.read(mid) == data and store.verify(mid) is True
    assert store.write(mid, data, kind=META) is False  # intact: a duplicate
    u = store.usage()
    assert (u.used, u.chunk_count, u.manifest_count) == (2 * len(data), 1, 1)
    store.path_for(mid, META).write_bytes(b"X" * len(data))
    assert store.verify(mid) is False
    assert store.quarantine(mid) is True and not store.exists(mid)
    assert store.usage().manifest_count == 0
    assert store.delete(cid) is True and store.usage().chunk_count == 0


def test_a_store_reopened_counts_its_packs(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage, "FANOUT_CHARS", 1)
    s = ChunkStore(tmp_path / "n", capacity="1MiB")
    s.open()
    data = b"pack" * 100
    s.write(content_id(data, META), data, kind=META)
    again = ChunkStore(tmp_path / "n", capacity="1MiB")
    again.open()
    assert (again.usage().used, again.usage().chunk_count, again.usage().manifest_count) == (
        400, 0, 1)
    assert [k for *_, k in again.iter_chunks()] == [META]


def test_delete_many_removes_what_is_there_and_counts_right(store: ChunkStore) -> None:
    ids = []
    for i in range(5):
        cid, data = blob(100 + i)
        store.write(cid, data)
        ids.append(cid)
    data = b"a pack"
    mid = content_id(data, META)
    store.write(mid, data, kind=META)
    gone = store.delete_many([ids[0], ids[1], mid, "f" * 64])
    assert gone == [ids[0], ids[1], mid]
    assert not store.exists(ids[0]) and store.exists(ids[2])
    u = store.usage()
    assert (u.chunk_count, u.manifest_count, u.used) == (3, 0, 3000)


def test_a_blob_the_disk_cannot_give_back_is_unreadable_not_an_error_of_the_node(
        store: ChunkStore) -> None:
    cid, data = blob(7)
    store.write(cid, data)
    path = store.path_for(cid, DATA)
    path.unlink()
    path.mkdir()  # reads as EISDIR, as a bad sector reads as EIO
    with pytest.raises(storage.Unreadable) as err:
        store.read(cid)
    assert err.value.errno == errno.EISDIR and cid in str(err.value)
    assert store.verify(cid) is False  # damaged, as if its bytes failed their hash
    assert store.quarantine(cid) and not path.exists()
    assert store.write(cid, data) is True and store.read(cid) == data  # re-made


def test_a_node_on_a_disk_that_refuses_writes_still_opens_to_serve_reads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Restarted on a disk gone read-only, a node still serves what it holds:
    ``open`` counts it and sets ``write_error`` instead of failing."""
    monkeypatch.setattr(storage, "FANOUT_CHARS", 1)
    first = ChunkStore(tmp_path / "node", capacity="1MiB")
    first.open()
    cid, data = blob(300, 1000)
    assert first.write(cid, data)

    def read_only(*_args: object, **_kw: object) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(storage.shutil, "rmtree", read_only)
    again = ChunkStore(tmp_path / "node", capacity="1MiB")
    again.open()
    assert again.write_error == "Read-only file system"
    assert again.read(cid) == data and again.usage().chunk_count == 1
    # A new node on such a disk has nothing to serve: that is an error.
    with pytest.raises(OSError):
        monkeypatch.setattr(storage.Path, "mkdir", read_only)
        ChunkStore(tmp_path / "new", capacity="1MiB").open()
