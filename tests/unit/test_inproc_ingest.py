"""The write path (Ingest, with the commit batcher and the manifest writer) on
in-memory nodes and a real SQLite store: quorum, fallback, full and paused nodes."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from memnodes import KiB, blob, memcore, until
from tossit.brain.ingest import Expected, straggler_wait
from tossit.brain.registry import OFFLINE
from tossit.chunking import META, chunk_id
from tossit.config import BrainSettings
from tossit.errors import DigestMismatch, NotEnoughNodes, http_status

CHUNK = 64 * KiB


async def test_an_upload_lands_on_r_nodes_and_reads_back(tmp_path: Path) -> None:
    async with memcore(tmp_path, nodes=4) as core:
        data = blob(1, 3 * CHUNK + 1000)
        res = await core.upload("a.bin", data)
        assert res.under_replicated == 0
        assert res.obj.size == len(data)
        assert res.obj.sha256 == hashlib.sha256(data).hexdigest()
        assert len(res.replicas) == 4
        for cid, nodes in res.replicas.items():
            assert len(set(nodes)) == 3
            assert core.holders(cid) == set(nodes)
            assert await core.replicas(cid) == dict.fromkeys(nodes, "ok")
            assert await core.refcount(cid) == 1
        # Exactly R copies sent per chunk, none wasted on a fourth node.
        data_puts = [c for n in core.nodes for op, c in n.calls if op == "put"
                     and c in res.replicas]
        assert len(data_puts) == 4 * 3
        # The commit was acknowledged only with its manifest pack on R nodes.
        assert sum(1 for n in core.nodes if META in n.kinds.values()) == 3
        assert await core.download(res.obj.id) == data
        assert core.degraded == []


async def test_a_failing_node_is_replaced_by_the_next_one(tmp_path: Path) -> None:
    async with memcore(tmp_path, nodes=4) as core:
        data = blob(2, 2 * CHUNK)
        first = core.registry.write_order(chunk_id(data[:CHUNK]), CHUNK, set())[0]
        bad = core.node(first.id)
        bad.fail()
        res = await core.upload("b.bin", data)
        assert bad.count("put") >= 1  # it was asked, and failed
        assert bad.blobs == {}
        assert res.under_replicated == 0
        for cid, nodes in res.replicas.items():
            assert first.id not in nodes
            assert core.holders(cid) == set(nodes) and len(nodes) == 3
        # Like NodeClient, the failure made writers skip the node for a while.
        assert first.unreachable_until > time.monotonic()
        assert await core.download(res.obj.id) == data


async def test_one_node_down_commits_at_quorum_and_says_so(tmp_path: Path) -> None:
    async with memcore(tmp_path, nodes=3, replicas=3, quorum=2) as core:
        down = core.nodes[2]
        down.fail()
        data = blob(3, 2 * CHUNK + 5)
        res = await core.upload("c.bin", data)
        assert res.under_replicated == 3  # every chunk, at W=2 copies
        for cid, nodes in res.replicas.items():
            assert len(nodes) == 2 and down.view.id not in nodes
            assert set(await core.replicas(cid)) == set(nodes)
        assert core.degraded == ["ingest"]  # the repairer is woken at once
        assert await core.download(res.obj.id) == data
        # The node comes back: one repair pass makes the missing copies.
        down.heal()
        down.view.unreachable_until = 0.0
        stats = await core.repairer.run_once()
        assert stats["repaired"] == 3 and stats["failed"] == 0
        for cid in res.replicas:
            assert core.holders(cid) == {n.view.id for n in core.nodes}
            assert set((await core.replicas(cid)).values()) == {"ok"}


async def test_too_few_nodes_fail_clearly_and_commit_nothing(tmp_path: Path) -> None:
    async with memcore(tmp_path, nodes=3, replicas=3, quorum=2) as core:
        for n in core.nodes[1:]:
            n.fail()
        data = blob(4, CHUNK + 7)
        with pytest.raises(NotEnoughNodes) as err:
            await core.upload("d.bin", data)
        assert http_status(err.value) == 503 and err.value.code == "not_enough_nodes"
        assert "stored on 1 node(s)" in err.value.message
        assert not await core.store.name_taken("default", "d.bin")
        cids = [chunk_id(data[:CHUNK]), chunk_id(data[CHUNK:])]
        assert [await core.refcount(c) for c in cids] == [None, None]
        # The copies that did land are handed to the collector, which frees them.
        survivor = core.nodes[0]
        assert survivor.data_ids() <= set(cids) and survivor.data_ids()
        stats = await core.collector.run_once(sweep_orphans=False)
        assert survivor.data_ids() == set()
        assert stats["orphans_deleted"] >= 1


async def test_too_few_writable_nodes_refuse_before_the_body_is_read(tmp_path: Path) -> None:
    async with memcore(tmp_path, nodes=3, replicas=3, quorum=2) as core:
        for n in core.nodes[1:]:
            n.view.state = OFFLINE
        read = []

        async def body() -> AsyncIterator[bytes]:
            read.append(True)
            yield b"x"

        with pytest.raises(NotEnoughNodes) as err:
            await core.ingest.put(body(), key="e", content_type="x", size_hint=1)
        assert err.value.extra == {"needed": 2, "available": 1}
        assert read == []
        assert all(n.calls == [] for n in core.nodes)


async def test_a_full_node_is_skipped_and_marked_full(tmp_path: Path) -> None:
    async with memcore(tmp_path, nodes=4) as core:
        data = blob(5, CHUNK)
        first = core.registry.write_order(chunk_id(data), CHUNK, set())[0]
        full = core.node(first.id)
        full.fill_up()
        res = await core.upload("f.bin", data)
        # (Manifest packs may still go there: a node keeps room for them.)
        assert full.count("put", chunk_id(data)) == 1 and full.data_ids() == set()
        assert first.free == 0  # no more writes until its next heartbeat
        assert first not in core.registry.writable(1)
        assert res.under_replicated == 0
        (nodes,) = res.replicas.values()
        assert first.id not in nodes and core.holders(chunk_id(data)) == set(nodes)


@pytest.mark.parametrize("then", ["answers", "fails"])
async def test_a_paused_node_holds_an_upload_no_longer_than_the_straggler_wait(
    tmp_path: Path, then: str,
) -> None:
    """Once W copies are made, a node that stops answering holds the upload only
    until its request ends or the straggler wait is over, not for node_timeout.
    Then the upload commits with R copies, or with W if it failed."""
    def patient(s: BrainSettings) -> None:
        s.straggler_wait = 30.0

    async with memcore(tmp_path, nodes=3, replicas=3, quorum=2, tune=patient) as core:
        slow = core.nodes[0]
        slow.pause()
        data = blob(6, CHUNK)
        cid = chunk_id(data)
        upload = asyncio.create_task(core.upload("g.bin", data))
        await slow.arrived.wait()
        await until(lambda: len(core.holders(cid)) == 2)
        assert not upload.done()
        assert not await core.store.name_taken("default", "g.bin")
        if then == "fails":
            slow.fail()
        slow.resume()
        res = await asyncio.wait_for(upload, 5)
        if then == "answers":
            assert res.under_replicated == 0 and len(res.replicas[cid]) == 3
        else:
            assert res.under_replicated == 1 and slow.view.id not in res.replicas[cid]
        assert core.holders(cid) == set(res.replicas[cid])
        assert await core.download(res.obj.id) == data


async def test_a_node_silent_past_the_straggler_wait_is_left_to_the_repairer(
    tmp_path: Path,
) -> None:
    def quick(s: BrainSettings) -> None:
        s.straggler_wait = 0.2

    async with memcore(tmp_path, nodes=3, replicas=3, quorum=2, tune=quick) as core:
        slow = core.nodes[0]
        slow.pause()
        data = blob(9, CHUNK)
        cid = chunk_id(data)
        t0 = time.monotonic()
        res = await asyncio.wait_for(core.upload("s.bin", data), 5)
        # W copies, committed with the node still silent, well before node_timeout.
        assert time.monotonic() - t0 < 3
        assert res.under_replicated == 1
        assert slow.view.id not in res.replicas[cid] and len(res.replicas[cid]) == 2
        assert core.degraded  # the repairer was woken for the missing copy
        assert await core.replicas(cid) == dict.fromkeys(res.replicas[cid], "ok")
        # The next upload does not ask it (and wait for it) again.
        asked = slow.count("put")
        more = await asyncio.wait_for(core.upload("t.bin", blob(10, CHUNK)), 5)
        assert slow.count("put") == asked and more.under_replicated == 1
        slow.resume()  # its request was cancelled: nothing lands there
        await asyncio.sleep(0.05)
        assert slow.view.id not in core.holders(cid)
        assert await core.download(res.obj.id) == data


@pytest.mark.parametrize(("quorum_took", "minimum", "want"), [
    (0.01, 1.0, 1.0),   # small chunks: the floor
    (0.5, 1.0, 2.0),    # a big chunk on a busy disk: 4x what W took
    (0.0, 0.0, 0.0),    # no wait at all when set so
])
def test_straggler_wait(quorum_took: float, minimum: float, want: float) -> None:
    assert straggler_wait(quorum_took, minimum) == pytest.approx(want)


async def test_repeated_content_is_sent_once(tmp_path: Path) -> None:
    async with memcore(tmp_path, nodes=3) as core:
        part = blob(7, CHUNK)
        res = await core.upload("h.bin", part * 3)
        assert list(res.replicas) == [chunk_id(part)]
        assert [c for n in core.nodes for op, c in n.calls if op == "put"
                and c == chunk_id(part)] == [chunk_id(part)] * 3
        assert await core.refcount(chunk_id(part)) == 3
        assert await core.download(res.obj.id) == part * 3



async def test_the_etag_is_the_md5_and_metadata_is_kept(tmp_path: Path) -> None:
    async with memcore(tmp_path, nodes=3) as core:
        data = blob(9, 2 * CHUNK + 5)
        res = await core.upload("e.bin", data, user_meta={"x-amz-meta-a": "1"})
        assert res.obj.etag == hashlib.md5(data).hexdigest()
        stored = await core.store.get_object(res.obj.id)
        assert stored is not None and stored.etag == res.obj.etag
        assert stored.user_meta == {"x-amz-meta-a": "1"}


async def test_a_wrong_expected_digest_commits_nothing(tmp_path: Path) -> None:
    async with memcore(tmp_path, nodes=3, replicas=3, quorum=2) as core:
        data = blob(10, CHUNK + 7)
        wrong = Expected("MD5", hashlib.md5(), hashlib.md5(b"other").digest())
        with pytest.raises(DigestMismatch) as err:
            await core.upload("f.bin", data, expect=[wrong])
        assert err.value.algorithm == "MD5" and http_status(err.value) == 400
        assert not await core.store.name_taken("default", "f.bin")
        cids = [chunk_id(data[:CHUNK]), chunk_id(data[CHUNK:])]
        assert [await core.refcount(c) for c in cids] == [None, None]
        await core.collector.run_once(sweep_orphans=False)
        assert all(n.data_ids() == set() for n in core.nodes)
        # The right digest, given after the body (as a trailer is), commits.
        right = Expected("MD5", hashlib.md5(), lambda: hashlib.md5(data).digest())
        res = await core.upload("f.bin", data, expect=[right])
        assert await core.download(res.obj.id) == data


def small_buffer(s: BrainSettings) -> None:
    s.upload_buffer = 4 * CHUNK


async def counted(data: bytes, read: list[int], i: int, piece: int = 16 * KiB
                  ) -> AsyncIterator[bytes]:
    """``data`` in pieces, counting in ``read[i]`` the bytes the brain has taken."""
    for at in range(0, len(data), piece):
        read[i] += len(data[at:at + piece])
        yield data[at:at + piece]


async def test_many_uploads_at_once_hold_no_more_than_the_upload_buffer(
        tmp_path: Path) -> None:
    """Ten uploads of three chunks against a buffer of four chunks, the nodes
    not answering: the brain reads no more of the clients' bodies than the
    buffer holds (the rest wait, unread), and once the nodes answer every
    upload completes with its own bytes."""
    async with memcore(tmp_path, nodes=3, tune=small_buffer) as core:
        budget = core.ingest.budget
        datas = [blob(100 + i, 3 * CHUNK) for i in range(10)]
        read = [0] * len(datas)
        for n in core.nodes:
            n.pause()
        uploads = [asyncio.create_task(core.ingest.put(
            counted(d, read, i), key=f"u{i}", content_type="application/octet-stream"))
            for i, d in enumerate(datas)]
        await until(lambda: budget.held == budget.total and budget.waiting > 0)
        for _ in range(50):
            await asyncio.sleep(0)
        # What the brain read is what it holds, plus at most a piece per upload
        # (the one being cut into a chunk when the budget ran out).
        assert sum(read) <= budget.total + len(datas) * 16 * KiB
        assert budget.held == budget.total == budget.peak
        for n in core.nodes:
            n.resume()
        results = await asyncio.wait_for(asyncio.gather(*uploads), 10)
        for d, r in zip(datas, results, strict=True):
            assert await core.download(r.obj.id) == d
        assert budget.held == 0 and budget.peak == budget.total


async def test_slow_senders_do_not_hold_every_other_upload(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Four uploads trickling in hold the whole upload buffer (a chunk each); a
    fifth upload waits for it. Once a trickling chunk has filled for longer than
    SLOW_CHUNK_AFTER while another waits, it is handed over short, so the fifth
    completes while the slow ones are still sending; every byte is right."""
    from tossit.brain import ingest as ingest_mod

    monkeypatch.setattr(ingest_mod, "SLOW_CHUNK_AFTER", 0.2)
    async with memcore(tmp_path, nodes=3, tune=small_buffer) as core:
        budget = core.ingest.budget
        hurry = asyncio.Event()
        slow_data = [blob(300 + i, 2 * CHUNK) for i in range(4)]

        async def trickle(data: bytes) -> AsyncIterator[bytes]:
            for at in range(0, len(data), KiB):
                yield data[at:at + KiB]
                if not hurry.is_set():
                    await asyncio.sleep(0.1)  # 10 KiB/s: 6.4 s a chunk

        slow = [asyncio.create_task(core.ingest.put(
            trickle(d), key=f"slow{i}", content_type="application/octet-stream"))
            for i, d in enumerate(slow_data)]
        await until(lambda: budget.held == budget.total)
        fast_data = blob(400, CHUNK)
        fast = await asyncio.wait_for(core.ingest.put(
            counted(fast_data, [0], 0), key="fast", content_type="application/octet-stream",
            size_hint=CHUNK), 3)
        assert not any(t.done() for t in slow)  # the slow ones were still sending
        hurry.set()
        results = await asyncio.wait_for(asyncio.gather(*slow), 10)
        assert await core.download(fast.obj.id) == fast_data
        for d, r in zip(slow_data, results, strict=True):
            assert await core.download(r.obj.id) == d
        await until(lambda: budget.held == 0)


async def test_small_uploads_with_a_length_reserve_only_their_bytes(tmp_path: Path) -> None:
    """Twenty 4 KiB uploads that say their length fit the buffer together: none
    waits for a whole chunk's worth of room."""
    async with memcore(tmp_path, nodes=3, tune=small_buffer) as core:
        budget = core.ingest.budget
        for n in core.nodes:
            n.pause()
        uploads = [asyncio.create_task(core.ingest.put(
            counted(blob(200 + i, 4 * KiB), [0], 0), key=f"s{i}",
            content_type="text/plain", size_hint=4 * KiB)) for i in range(20)]
        await until(lambda: budget.held == 20 * 4 * KiB)
        assert budget.waiting == 0
        for n in core.nodes:
            n.resume()
        await asyncio.wait_for(asyncio.gather(*uploads), 10)
        assert budget.held == 0


async def test_failed_and_repeated_chunks_give_their_buffer_back(tmp_path: Path) -> None:
    async with memcore(tmp_path, nodes=3) as core:
        same = blob(7, CHUNK)
        await core.upload("twice.bin", same + same + same[:100])  # one chunk sent once
        for n in core.nodes[1:]:
            n.fail()
        with pytest.raises(NotEnoughNodes):
            await core.upload("lost.bin", blob(8, 3 * CHUNK))
        # (given back by the chunks' tasks as they end: a turn of the loop or two)
        await until(lambda: core.ingest.budget.held == 0)
