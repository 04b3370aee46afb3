"""S3 multipart uploads (brain/multipart_uploads.py) on in-memory nodes and a
real SQLite store: parts stored as chunks, completion without a byte written,
the S3 errors, and the chunks of replaced, aborted and expired uploads freed by
the collector, never those of an upload in progress."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import update

from memnodes import Core, KiB, blob, memcore, pieces
from tossit.brain.metrics import UPLOAD_BYTES, UPLOADS
from tossit.brain.models import MultipartUpload
from tossit.brain.multipart_rules import MIN_PART_SIZE, MiB
from tossit.brain.multipart_uploads import MultipartUploads, Part
from tossit.brain.store import NewObject
from tossit.brain.upload_expiry import UploadExpiry, look_every
from tossit.chunking import META, chunk_id
from tossit.errors import (
    BadDigest,
    EntityTooLarge,
    EntityTooSmall,
    InvalidArgument,
    InvalidPart,
    InvalidPartOrder,
    NoSuchUpload,
)
from tossit.ranges import ByteRange

CHUNK = 1 * MiB
B = "photos"  # the bucket


@dataclass
class MP:
    core: Core
    mp: MultipartUploads
    expiry: UploadExpiry


@asynccontextmanager
async def multipart(tmp: Path, nodes: int = 4) -> AsyncIterator[MP]:
    async with memcore(tmp, nodes=nodes, chunk_size=CHUNK) as core:
        mp = MultipartUploads(core.settings, core.store, core.ingest, core.reader,
                              core.commits, core.collector, core.pins)
        yield MP(core, mp, UploadExpiry(core.settings, core.store, core.collector.release))


async def put_part(m: MP, uid: str, number: int, data: bytes, key: str = "big.bin",
                   expected_md5: str | None = None) -> Part:
    return await m.mp.upload_part(B, key, uid, number, pieces(data, 256 * KiB),
                                  expected_md5=expected_md5, size_hint=len(data))


def data_puts(core: Core) -> int:
    """Chunk writes sent to the nodes so far (manifest packs not counted)."""
    return sum(1 for n in core.nodes for op, c in n.calls
               if op == "put" and n.kinds.get(c) != META)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


async def visible(core: Core, key: str, bucket: str = B) -> bool:
    return await core.store.name_taken(bucket, key)


async def gc(core: Core) -> dict[str, int]:
    stats: dict[str, int] = await core.collector.run_once(sweep_orphans=False)
    return stats


def ids(data: bytes) -> set[str]:
    return {chunk_id(data[i : i + CHUNK]) for i in range(0, len(data), CHUNK)}


async def test_a_completed_upload_is_its_parts_end_to_end_without_a_byte_written(
        tmp_path: Path) -> None:
    async with multipart(tmp_path) as m:
        core = m.core
        one, two, three = blob(1, MIN_PART_SIZE), blob(2, MIN_PART_SIZE + 3), blob(3, 300 * KiB)
        up = await m.mp.create(B, "big.bin", "video/mp4", {"camera": "x100"})
        # Parts may arrive in any order.
        p3 = await put_part(m, up.id, 3, three)
        p1 = await put_part(m, up.id, 1, one)
        p2 = await put_part(m, up.id, 2, two)
        assert (p1.etag, p2.etag, p3.etag) == (f'"{md5(one)}"', f'"{md5(two)}"', f'"{md5(three)}"')
        assert (p1.size, p2.size, p3.size) == (len(one), len(two), len(three))
        assert not await visible(core, "big.bin")  # nothing until complete
        before = data_puts(core)
        done = await m.mp.complete(B, "big.bin", up.id,
                                   [(1, p1.etag), (2, p2.etag), (3, p3.etag)])
        assert data_puts(core) == before  # completion wrote no chunk
        whole = one + two + three
        assert await core.download(done.obj.id) == whole  # read back through the Reader
        expected = hashlib.md5(bytes.fromhex(md5(one)) + bytes.fromhex(md5(two))
                               + bytes.fromhex(md5(three))).hexdigest()
        assert done.etag == f'"{expected}-3"'
        assert re.fullmatch(r'"[0-9a-f]{32}-3"', done.etag)
        obj = await core.store.get_object(done.obj.id)
        assert obj is not None
        assert (obj.etag, obj.size, obj.content_type, obj.user_meta) == (
            f"{expected}-3", len(whole), "video/mp4", {"camera": "x100"})
        assert obj.sha256 == hashlib.sha256(whole).hexdigest()  # the real one
        assert await visible(core, "big.bin")
        # Chunk boundaries follow the parts (5 MiB + 3 bytes is 6 chunks).
        placements = await core.store.object_chunks(obj.id)
        assert [p.size for p in placements] == [CHUNK] * 5 + [CHUNK] * 5 + [3, 300 * KiB]
        # The parts' references went to the object: one each, nothing garbage.
        for cid in ids(one) | ids(two):
            assert await core.refcount(cid) == 1
        stats = await gc(core)
        assert stats["replicas_deleted"] == 0 and stats["chunks_dropped"] == 0
        with pytest.raises(NoSuchUpload):  # the upload is over
            await m.mp.list_parts(B, "big.bin", up.id)
        # A range read crosses the part boundary correctly.
        download = await core.reader.open(placements, ByteRange(MIN_PART_SIZE - 5,
                                                                 MIN_PART_SIZE + 4))
        got = b"".join([p async for p in download.body])
        assert got == whole[MIN_PART_SIZE - 5 : MIN_PART_SIZE + 5]


async def test_a_refused_completion_shows_nothing_and_keeps_the_upload(tmp_path: Path) -> None:
    async with multipart(tmp_path) as m:
        one, two, small = blob(4, MIN_PART_SIZE), blob(5, 1000), blob(6, 2000)
        up = await m.mp.create(B, "k")
        p1 = await put_part(m, up.id, 1, one, key="k")
        p2 = await put_part(m, up.id, 2, two, key="k")
        p3 = await put_part(m, up.id, 3, small, key="k")
        cases: list[tuple[list[tuple[int, str]], type[Exception]]] = [
            ([(2, p2.etag), (1, p1.etag)], InvalidPartOrder),
            ([(1, p1.etag), (4, p2.etag)], InvalidPart),  # never uploaded
            ([(1, p1.etag), (2, p3.etag)], InvalidPart),  # another part's ETag
            ([(1, p1.etag), (2, p2.etag), (3, p3.etag)], EntityTooSmall),  # 2 is not last
            ([], InvalidArgument),
        ]
        for parts, error in cases:
            with pytest.raises(error):
                await m.mp.complete(B, "k", up.id, parts)
            assert not await visible(m.core, "k")
        with pytest.raises(NoSuchUpload):  # right id, wrong key
            await m.mp.complete(B, "other", up.id, [(1, p1.etag)])
        # Still in progress, whole: a right completion works.
        listed = await m.mp.list_parts(B, "k", up.id)
        assert [p.number for p in listed.parts] == [1, 2, 3]
        done = await m.mp.complete(B, "k", up.id, [(1, p1.etag), (3, p3.etag)])
        assert await m.core.download(done.obj.id) == one + small
        # Part 2, left out, is garbage now: freed everywhere.
        stats = await gc(m.core)
        assert stats["chunks_dropped"] == len(ids(two))
        assert all(m.core.holders(c) == set() for c in ids(two))
        assert all(len(m.core.holders(c)) == 3 for c in ids(one))


async def test_a_part_uploaded_again_replaces_the_first(tmp_path: Path) -> None:
    async with multipart(tmp_path) as m:
        first, second, shared = blob(7, MIN_PART_SIZE), blob(8, 3 * CHUNK), blob(9, CHUNK)
        kept = await m.core.upload("kept.bin", shared)  # a file sharing a chunk
        up = await m.mp.create(B, "k")
        await put_part(m, up.id, 1, first + shared, key="k")
        again = await put_part(m, up.id, 1, second, key="k")
        listed = await m.mp.list_parts(B, "k", up.id)
        assert [(p.number, p.etag, p.size) for p in listed.parts] == [
            (1, f'"{md5(second)}"', len(second))]
        await gc(m.core)
        assert all(m.core.holders(c) == set() for c in ids(first))  # freed
        assert len(m.core.holders(chunk_id(shared))) == 3  # still used by kept.bin
        assert await m.core.refcount(chunk_id(shared)) == 1
        done = await m.mp.complete(B, "k", up.id, [(1, again.etag)])
        assert await m.core.download(done.obj.id) == second
        assert await m.core.download(kept.obj.id) == shared


async def test_abort_frees_the_chunks_and_ends_the_upload(tmp_path: Path) -> None:
    async with multipart(tmp_path) as m:
        one, two = blob(10, MIN_PART_SIZE), blob(11, 2 * CHUNK)
        up = await m.mp.create(B, "k")
        p1 = await put_part(m, up.id, 1, one, key="k")
        await put_part(m, up.id, 2, two, key="k")
        await m.mp.abort(B, "k", up.id)
        stats = await gc(m.core)
        assert stats["chunks_dropped"] == len(ids(one) | ids(two))
        assert stats["replicas_deleted"] == 3 * len(ids(one) | ids(two))
        assert all(m.core.holders(c) == set() for c in ids(one) | ids(two))
        assert not await visible(m.core, "k")
        for call in (m.mp.abort(B, "k", up.id), m.mp.complete(B, "k", up.id, [(1, p1.etag)]),
                     put_part(m, up.id, 3, b"late", key="k")):
            with pytest.raises(NoSuchUpload):
                await call


async def test_the_collector_never_frees_an_upload_in_progress(tmp_path: Path) -> None:
    async with multipart(tmp_path, nodes=3) as m:
        core = m.core
        core.settings.gc_grace = 0.0  # the orphan sweep would take anything it may
        shared = blob(12, CHUNK)
        other = await core.upload("other.bin", shared)
        up = await m.mp.create(B, "k")
        part = blob(13, MIN_PART_SIZE) + shared
        p1 = await put_part(m, up.id, 1, part, key="k")
        await core.collector.intents.flush(everything=True)
        assert await core.commits.delete(other.obj.id)  # its chunk is the part's too
        stats = await core.collector.run_once(sweep_orphans=True)
        assert stats["replicas_deleted"] == 0 and stats["orphans_deleted"] == 0
        for cid in ids(part):
            assert len(core.holders(cid)) == 3 and await core.refcount(cid) == 1
        done = await m.mp.complete(B, "k", up.id, [(1, p1.etag)])
        assert await core.download(done.obj.id) == part


async def test_an_abandoned_upload_expires_and_its_chunks_are_freed(tmp_path: Path) -> None:
    async with multipart(tmp_path) as m:
        core = m.core
        old, fresh = blob(14, 2 * CHUNK), blob(15, CHUNK)
        stale = await m.mp.create(B, "old.bin")
        await put_part(m, stale.id, 1, old, key="old.bin")
        live = await m.mp.create(B, "new.bin")
        await put_part(m, live.id, 1, fresh, key="new.bin")
        assert await m.expiry.run_once() == []  # nothing is old enough yet
        async with core.store.write() as s:  # eight days ago
            await s.execute(update(MultipartUpload).where(MultipartUpload.id == stale.id)
                            .values(created_at=MultipartUpload.created_at - 8 * 86400))
        assert await m.expiry.run_once() == [stale.id]
        await gc(core)
        assert all(core.holders(c) == set() for c in ids(old))
        assert all(len(core.holders(c)) == 3 for c in ids(fresh))
        with pytest.raises(NoSuchUpload):
            await m.mp.list_parts(B, "old.bin", stale.id)
        assert [u.id for u in (await m.mp.list_uploads(B)).uploads] == [live.id]
        (event,) = await core.store.list_events(kind="uploads_expired")
        assert "aborted 1 multipart upload left incomplete for more than 7 d" in event.message
        assert "'old.bin'" in event.message and event.data is not None
        assert event.data["bytes"] == len(old) and event.data["parts"] == 1


@pytest.mark.parametrize(("keep", "every"), [(7 * 86400.0, 3600.0), (60.0, 6.0), (1.0, 0.5)])
def test_expiry_looks_every_tenth_of_the_time_kept(keep: float, every: float) -> None:
    assert look_every(keep) == every


async def test_a_part_copy_reuses_whole_chunks_and_stores_the_cut_ends(tmp_path: Path) -> None:
    async with multipart(tmp_path) as m:
        core = m.core
        src = blob(16, 7 * CHUNK + 100)
        source = await core.upload("src.bin", src, bucket=B)
        up = await m.mp.create(B, "copy.bin")
        before = data_puts(core)
        # Chunks 1-5 exactly: reused, not a byte written.
        aligned = ByteRange(CHUNK, 6 * CHUNK - 1)
        p1 = await m.mp.upload_part_copy(B, "copy.bin", up.id, 1, source.obj, aligned)
        assert data_puts(core) == before
        assert p1.etag == f'"{md5(src[CHUNK : 6 * CHUNK])}"' and p1.size == 5 * CHUNK
        # A range cutting chunks at both ends: the two ends are new chunks.
        cut = ByteRange(10, 2 * CHUNK + 20)
        p2 = await m.mp.upload_part_copy(B, "copy.bin", up.id, 2, source.obj, cut)
        assert data_puts(core) == before + 2 * 3  # two new chunks, three copies each
        wanted = src[CHUNK : 6 * CHUNK] + src[10 : 2 * CHUNK + 21]
        done = await m.mp.complete(B, "copy.bin", up.id, [(1, p1.etag), (2, p2.etag)])
        assert await core.download(done.obj.id) == wanted
        assert (await core.store.get_object(done.obj.id)).sha256 == (  # type: ignore[union-attr]
            hashlib.sha256(wanted).hexdigest())
        # The source may go: the copy holds its own references.
        assert await core.commits.delete(source.obj.id)
        await gc(core)
        assert await core.download(done.obj.id) == wanted
        with pytest.raises(InvalidArgument, match="not within"):
            await m.mp.upload_part_copy(B, "x", (await m.mp.create(B, "x")).id, 1,
                                        done.obj, ByteRange(0, len(wanted)))


async def test_a_body_that_does_not_match_its_md5_is_refused_and_freed(tmp_path: Path) -> None:
    async with multipart(tmp_path) as m:
        data = blob(17, 2 * CHUNK)
        up = await m.mp.create(B, "k")
        with pytest.raises(BadDigest):
            await put_part(m, up.id, 1, data, key="k", expected_md5=md5(b"other"))
        assert (await m.mp.list_parts(B, "k", up.id)).parts == []
        await gc(m.core)
        assert all(m.core.holders(c) == set() for c in ids(data))
        ok = await put_part(m, up.id, 1, data, key="k", expected_md5=md5(data))
        assert ok.etag == f'"{md5(data)}"'


async def test_list_parts_pages_by_part_number(tmp_path: Path) -> None:
    async with multipart(tmp_path) as m:
        up = await m.mp.create(B, "k")
        for n in (1, 2, 5, 9, 10):
            await put_part(m, up.id, n, bytes([n]) * 10, key="k")
        first = await m.mp.list_parts(B, "k", up.id, max_parts=2)
        assert [p.number for p in first.parts] == [1, 2]
        assert first.truncated and first.next_marker == 2
        assert first.upload.id == up.id and first.upload.key == "k"
        rest = await m.mp.list_parts(B, "k", up.id, part_number_marker=first.next_marker,
                                     max_parts=3)
        assert [p.number for p in rest.parts] == [5, 9, 10] and not rest.truncated
        assert rest.parts[0].etag == f'"{md5(bytes([5]) * 10)}"'
        empty = await m.mp.list_parts(B, "k", up.id, part_number_marker=10)
        assert (empty.parts, empty.truncated, empty.next_marker) == ([], False, 10)


async def test_list_uploads_by_key_then_age_with_prefix_and_markers(tmp_path: Path) -> None:
    async with multipart(tmp_path) as m:
        a1 = await m.mp.create(B, "logs/a")
        b1 = await m.mp.create(B, "logs/b")
        a2 = await m.mp.create(B, "logs/a")
        other = await m.mp.create(B, "photos/x")
        await m.mp.create("elsewhere", "logs/a")
        everything = await m.mp.list_uploads(B)
        assert [(u.key, u.id) for u in everything.uploads] == [
            ("logs/a", a1.id), ("logs/a", a2.id), ("logs/b", b1.id), ("photos/x", other.id)]
        logs = await m.mp.list_uploads(B, prefix="logs/", max_uploads=2)
        assert [u.id for u in logs.uploads] == [a1.id, a2.id] and logs.truncated
        assert (logs.next_key_marker, logs.next_upload_id_marker) == ("logs/a", a2.id)
        more = await m.mp.list_uploads(B, prefix="logs/", key_marker=logs.next_key_marker,
                                       upload_id_marker=logs.next_upload_id_marker)
        assert [u.id for u in more.uploads] == [b1.id] and not more.truncated
        after_key = await m.mp.list_uploads(B, key_marker="logs/a")
        assert [u.id for u in after_key.uploads] == [b1.id, other.id]
        mid = await m.mp.list_uploads(B, key_marker="logs/a", upload_id_marker=a1.id)
        assert [u.id for u in mid.uploads] == [a2.id, b1.id, other.id]
        assert (await m.mp.list_uploads("no-such-bucket")).uploads == []


async def test_a_completion_racing_an_abort_or_a_new_part_is_refused(tmp_path: Path) -> None:
    """The commit checks, in its transaction, that the upload is still there
    with the chunks the object was assembled from (else it would point at
    chunks no longer referenced)."""
    async with multipart(tmp_path) as m:
        core = m.core
        one, other = blob(18, CHUNK), blob(19, CHUNK)
        up = await m.mp.create(B, "k")
        await put_part(m, up.id, 1, one, key="k")
        stale = NewObject(bucket=B, key="k", size=len(one),
                          sha256=hashlib.sha256(one).hexdigest(), content_type="x",
                          chunk_size=CHUNK, chunks=[(chunk_id(one), len(one))], replicas={},
                          etag="e-1", completes_upload=up.id)
        await put_part(m, up.id, 1, other, key="k")  # replaced meanwhile
        with pytest.raises(InvalidPart, match="replaced while it was being completed"):
            await core.commits.commit(stale)
        await m.mp.abort(B, "k", up.id)
        with pytest.raises(NoSuchUpload):
            await core.commits.commit(stale)
        assert not await visible(core, "k")


async def test_a_part_whose_upload_ends_while_it_streams_is_refused_and_freed(
        tmp_path: Path) -> None:
    async with multipart(tmp_path) as m:
        data = blob(20, 3 * CHUNK)
        up = await m.mp.create(B, "k")

        async def body() -> AsyncIterator[bytes]:
            yield data[: 2 * CHUNK]
            await m.mp.abort(B, "k", up.id)  # the client aborts, another request
            yield data[2 * CHUNK :]

        with pytest.raises(NoSuchUpload):
            await m.mp.upload_part(B, "k", up.id, 1, body())
        stats = await gc(m.core)
        assert stats["orphans_deleted"] == 3 * len(ids(data))  # every copy written for it
        assert all(m.core.holders(c) == set() for c in ids(data))


async def test_a_part_over_5_gib_is_refused_before_its_body_is_read(tmp_path: Path) -> None:
    async with multipart(tmp_path) as m:
        up = await m.mp.create(B, "k")

        async def never() -> AsyncIterator[bytes]:
            raise AssertionError("the body was read")
            yield b""

        with pytest.raises(EntityTooLarge):
            await m.mp.upload_part(B, "k", up.id, 1, never(), size_hint=5 * 1024 * MiB + 1)
        with pytest.raises(InvalidArgument, match="between 1 and 10000"):
            await m.mp.upload_part(B, "k", up.id, 10001, never())


async def test_two_completions_at_once_both_get_the_object_counted_once(
        tmp_path: Path) -> None:
    """A client that retries while its first completion is still running: the
    one that commits second finds the upload gone, and is answered with the
    object the first made (not NoSuchUpload); the upload counts once."""
    def counted() -> tuple[float, float]:
        return UPLOADS.labels("ok")._value.get(), UPLOAD_BYTES._value.get()

    async with multipart(tmp_path) as m:
        data = blob(4, 300 * KiB)
        up = await m.mp.create(B, "twice.bin")
        part = await put_part(m, up.id, 1, data, key="twice.bin")
        before = counted()
        first, second = await asyncio.gather(
            m.mp.complete(B, "twice.bin", up.id, [(1, part.etag)]),
            m.mp.complete(B, "twice.bin", up.id, [(1, part.etag)]))
        assert first.obj.id == second.obj.id and first.etag == second.etag
        assert sorted([first.again, second.again]) == [False, True]  # logged once
        assert counted() == (before[0] + 1, before[1] + len(data))
        assert await m.core.download(first.obj.id) == data
