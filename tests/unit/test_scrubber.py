"""The node's scrubber: its pass resumes where it stopped, the operator's choices
outlive a restart, and a changed configuration wins over an old run-time rate."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from tossit.node import storage
from tossit.node.scrubber import Scrubber
from tossit.node.storage import ChunkStore

MiB = 1024 * 1024


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ChunkStore:
    monkeypatch.setattr(storage, "FANOUT_CHARS", 1)  # opens fast
    s = ChunkStore(tmp_path / "node", capacity="10MiB")
    s.open()
    for i in range(20):
        data = str(i).encode() * 500
        s.write(hashlib.sha256(data).hexdigest(), data)
    return s


def test_a_rate_set_at_run_time_is_kept_until_the_configuration_changes(
        store: ChunkStore) -> None:
    s = Scrubber(store, 32 * MiB, 86400, store.root)
    s.set_rate(200 * MiB)
    s.pause()
    asyncio.run(s.persist())
    again = Scrubber(store, 32 * MiB, 86400, store.root)
    assert again.rate == 200 * MiB and again.pacer.rate == 200 * MiB and again.paused
    assert again.status()["rate_set_at_run_time"]
    # The operator edited scrub_rate since: the newer decision wins.
    edited = Scrubber(store, 8 * MiB, 86400, store.root)
    assert edited.rate == 8 * MiB and not edited.status()["rate_set_at_run_time"]
    assert edited.paused  # a pause is not a rate: it stays
    with pytest.raises(ValueError):
        s.set_rate(0)


def test_an_order_that_cannot_be_saved_says_so(store: ChunkStore, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator's rate applies now, but a node that cannot save it must not
    answer as if it would outlive a restart (the route turns this into a 500
    disk_error per node); the scrubber's own saves during a pass only log."""
    s = Scrubber(store, 32 * MiB, 86400, store.root)
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(b"")
    monkeypatch.setattr(store, "tmp_dir", blocker / "tmp")  # writes fail: ENOTDIR
    s.set_rate(200 * MiB)
    with pytest.raises(NotADirectoryError):
        asyncio.run(s.persist(strict=True))
    asyncio.run(s.persist())  # a background save: logged, not raised
    assert s.rate == 200 * MiB
    assert Scrubber(store, 32 * MiB, 86400, store.root).rate == 32 * MiB  # not kept


def test_a_paused_pass_resumes_where_it_stopped_after_a_restart(store: ChunkStore) -> None:
    ids = sorted(c for c, *_ in store.inventory("", 100))
    rotten = ids[3]
    path = store.path_for(rotten, "data")
    path.write_bytes(b"x" + path.read_bytes()[1:])

    async def first_life() -> dict[str, object]:
        s = Scrubber(store, 8000, 86400, store.root)  # ~10 chunks at once, then ~10/s
        s.start()
        for _ in range(500):
            await asyncio.sleep(0.01)
            if s.pass_chunks >= 8:
                break
        s.pause()
        await asyncio.sleep(0.1)
        await s.stop()
        return s.status()

    paused = asyncio.run(first_life())
    assert paused["state"] == "paused" and 8 <= int(str(paused["chunks_checked"])) < 20
    assert paused["corrupt_found"] == 1 and paused["last_full_pass"] is None

    async def second_life() -> dict[str, object]:
        s = Scrubber(store, 64 * 1024, 86400, store.root)
        assert s.status()["chunks_checked"] == paused["chunks_checked"]
        s.start()
        assert s.start_pass() is False  # resumes the pass in progress, no new one
        for _ in range(500):
            await asyncio.sleep(0.01)
            if s.last_pass is not None:
                break
        await s.stop()
        return s.status()

    done = asyncio.run(second_life())
    last = done["last_full_pass"]
    assert isinstance(last, dict)
    # Every chunk checked once over the two lives: none twice, none skipped.
    assert last["chunks"] == 20 and last["corrupt"] == 1, last
    assert done["state"] == "waiting" and done["corrupt_found"] == 1
    assert done["next_pass_at"] == pytest.approx(last["started"] + 86400)


def test_a_chunk_the_disk_cannot_read_is_corrupt_and_other_errors_do_not_stop_the_pass(
        store: ChunkStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A directory where a chunk file should be reads as EISDIR, as a bad sector
    reads as EIO: damaged, quarantined, reported. A permission error says nothing
    about the bytes: that chunk is skipped, and the pass still ends."""
    ids = sorted(c for c, *_ in store.inventory("", 100))
    unreadable, forbidden = ids[2], ids[5]
    path = store.path_for(unreadable, "data")
    path.unlink()
    path.mkdir()
    real_verify = store.verify

    def verify(cid: str) -> bool | None:
        if cid == forbidden:
            raise PermissionError(13, "Permission denied")
        return real_verify(cid)

    monkeypatch.setattr(store, "verify", verify)
    s = Scrubber(store, 64 * MiB, 86400, store.root)
    found = asyncio.run(s.run_once(paced=False))
    assert found["corrupt"] == [unreadable] and found["chunks"] == len(ids) - 1
    assert s.unreported() == [unreadable]
    assert not path.exists()
    assert [p.name.split(".")[0] for p in (store.root / "quarantine").iterdir()] == [unreadable]
    with pytest.raises(FileNotFoundError):
        store.read(unreadable)
