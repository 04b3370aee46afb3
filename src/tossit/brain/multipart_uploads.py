"""S3 multipart uploads: the service under the S3 API's multipart operations.

Each method is one S3 operation (CreateMultipartUpload, UploadPart,
UploadPartCopy, CompleteMultipartUpload, AbortMultipartUpload, ListParts,
ListMultipartUploads) with typed inputs and outputs; the S3 router parses the
request, calls it, and writes the XML. Errors are domain errors
(``tossit.errors.MultipartError``) carrying their S3 code.

How it is stored (docs/multipart.md): a part is streamed to the nodes as chunks
by the same stage as any upload (``Ingest.store_chunks``) and recorded with
counted references on its chunks, so nothing collects them while the upload
lasts. Completion writes no data: the object's chunk list is its parts' chunk
lists end to end, committed by the group-commit batcher in the transaction that
also ends the upload. The object's SHA-256 (every TossIt file has the real one:
downloads are checked against it) is computed at completion by one verified read
of its chunks, since a SHA-256 cannot be combined from its parts'.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from tossit.brain.commits import CommitBatcher
from tossit.brain.gc import Collector
from tossit.brain.ingest import Expected, Ingest
from tossit.brain.metrics import UPLOAD_BYTES, UPLOADS
from tossit.brain.models import MultipartUpload, Object
from tossit.brain.multipart_rules import (
    MAX_PART_SIZE,
    MIN_PART_SIZE,
    Finished,
    PartInfo,
    RecentCompletions,
    Reuse,
    check_part_number,
    choose_parts,
    list_limit,
    multipart_etag,
    new_upload_id,
    page,
    plan_copy,
)
from tossit.brain.pins import ChunkPins
from tossit.brain.reader import Reader
from tossit.brain.store import NewObject, Store
from tossit.chunking import chunk_id
from tossit.config import BrainSettings
from tossit.errors import BadDigest, EntityTooLarge, InvalidArgument, NoSuchUpload
from tossit.ranges import ByteRange

log = logging.getLogger("tossit.brain.multipart")
_HASH_INLINE_BELOW = 256 * 1024  # smaller pieces are hashed without a thread hop


@dataclass(frozen=True)
class Upload:
    """A multipart upload in progress (CreateMultipartUpload's answer, and an
    entry of ListMultipartUploads)."""

    id: str
    bucket: str
    key: str
    content_type: str
    user_meta: dict[str, Any] | None
    initiated: float  # epoch seconds


@dataclass(frozen=True)
class Part:
    """A stored part (UploadPart's and UploadPartCopy's answer, an entry of
    ListParts). ``etag`` is quoted, as S3 sends it."""

    number: int
    etag: str
    size: int
    last_modified: float


@dataclass(frozen=True)
class PartsPage:
    """ListParts' answer: ``next_marker`` is the last part number listed (the
    NextPartNumberMarker to continue from when ``truncated``)."""

    upload: Upload
    parts: list[Part]
    truncated: bool
    next_marker: int


@dataclass(frozen=True)
class UploadsPage:
    """ListMultipartUploads' answer, with the markers to continue from."""

    uploads: list[Upload]
    truncated: bool
    next_key_marker: str
    next_upload_id_marker: str


@dataclass(frozen=True)
class Completed:
    """CompleteMultipartUpload's answer: the object, and its ETag (quoted,
    ``"<md5 of the parts' MD5s>-<parts>"``). ``again``: the answer to a
    completion sent again, whose object an earlier one made (not to be
    counted or logged twice)."""

    obj: Object
    bucket: str
    etag: str
    again: bool = False


class MultipartUploads:
    def __init__(self, settings: BrainSettings, store: Store, ingest: Ingest, reader: Reader,
                 commits: CommitBatcher, collector: Collector, pins: ChunkPins,
                 min_part_size: int = MIN_PART_SIZE) -> None:
        """``min_part_size``: S3's 5 MiB, smaller only in tests."""
        self.settings = settings
        self.store = store
        self.ingest = ingest
        self.reader = reader
        self.commits = commits
        self.collector = collector
        self.pins = pins
        self.min_part_size = min_part_size
        self.recent = RecentCompletions()

    # -- CreateMultipartUpload ----------------------------------------------------

    async def create(self, bucket: str, key: str, content_type: str = "application/octet-stream",
                     user_meta: dict[str, Any] | None = None) -> Upload:
        """Start an upload; nothing is visible under the key until it completes."""
        row = await self.store.create_upload(new_upload_id(), bucket, key, content_type,
                                             user_meta)
        return _upload(row, bucket)

    # -- UploadPart -----------------------------------------------------------------

    async def upload_part(self, bucket: str, key: str, upload_id: str, part_number: int,
                          pieces: AsyncIterable[bytes], expected_md5: str | None = None,
                          size_hint: int | None = None, expect: Sequence[Expected] = ()
                          ) -> Part:
        """Store a part (replacing any of the same number: its chunks become
        garbage unless shared). ``expected_md5``: the hex MD5 the client announced
        (Content-MD5, decoded); a body that does not match is refused (BadDigest)
        and none of it kept. ``expect``: other digests the client sent (the S3
        layer's checksums and signed payload hash), checked the same way."""
        check_part_number(part_number)
        await self._get(bucket, key, upload_id)
        if size_hint is not None and size_hint > MAX_PART_SIZE:
            raise EntityTooLarge(MAX_PART_SIZE)
        self.ingest.check_capacity(size_hint)
        async with self.ingest.store_chunks(_capped(pieces), expect,
                                            size_hint=size_hint) as stored:
            digest = stored.md5
            if expected_md5 is not None and expected_md5.lower() != digest:
                raise BadDigest(expected_md5, digest)
            part = PartInfo(part_number, stored.size, digest, time.time())
            garbage = await stored.settle(self.store.record_part(
                upload_id, part, stored.chunks, stored.replicas))
        self._release(garbage)
        if any(len(n) < self.settings.replicas for n in stored.replicas.values()):
            self.ingest.on_degraded()
        return _part(part)

    # -- UploadPartCopy ---------------------------------------------------------------

    async def upload_part_copy(self, bucket: str, key: str, upload_id: str, part_number: int,
                               source: Object, rng: ByteRange | None = None) -> Part:
        """A part made of bytes of a stored object (all of it, or ``rng``).

        The source's chunks that the range covers whole become the part's as
        they are (a reference more, no byte written); the pieces of the chunks
        it cuts at either end are stored as new chunks. Every byte is still read
        once, verified, through the reader: the part's ETag is the MD5 of its
        bytes, which no chunk records."""
        check_part_number(part_number)
        await self._get(bucket, key, upload_id)
        found = await self.store.object_with_chunks(source.id)
        if found is None:
            raise InvalidArgument(f"the source object (id {source.id}) no longer exists")
        obj, placements = found
        if rng is not None and not (0 <= rng.start <= rng.end < obj.size):
            raise InvalidArgument(f"the copy range bytes={rng.start}-{rng.end} is not "
                                  f"within the source's {obj.size} bytes")
        if rng is not None and rng.length > MAX_PART_SIZE:
            raise EntityTooLarge(MAX_PART_SIZE)
        steps = plan_copy([(p.chunk_id, p.size) for p in placements], rng)
        pinned: list[str] = []
        written: dict[str, list[str]] = {}  # new chunk -> nodes
        chunks: list[tuple[str, int]] = []
        settled = False
        try:
            for step in steps:
                if isinstance(step, Reuse):
                    # Pinned before it is read: a delete of the source cannot free
                    # it between the verified read and the part's record.
                    await self.pins.pin(step.chunk_id)
                    pinned.append(step.chunk_id)
            md5 = hashlib.md5()
            download = await self.reader.open(placements, rng)
            n = 0
            async for data in download.body:  # one piece per step, in order
                step, n = steps[n], n + 1
                await _hash(md5, data)
                if isinstance(step, Reuse):
                    chunks.append((step.chunk_id, step.size))
                    continue
                cid = chunk_id(data)
                await self.pins.pin(cid)
                pinned.append(cid)
                written[cid] = await self.ingest.place(cid, data)
                chunks.append((cid, len(data)))
            part = PartInfo(part_number, sum(size for _, size in chunks), md5.hexdigest(),
                            time.time())
            garbage = await self.store.record_part(upload_id, part, chunks, written)
            settled = True
            self.collector.intents.settled(written)
        finally:
            for cid in pinned:
                self.pins.unpin(cid)
            if not settled and written:
                self.collector.release(list(written), {c: s for c, s in chunks if c in written})
        self._release(garbage)
        return _part(part)

    # -- CompleteMultipartUpload --------------------------------------------------------

    async def complete(self, bucket: str, key: str, upload_id: str,
                       parts: Sequence[tuple[int, str]], on_conflict: str = "replace"
                       ) -> Completed:
        """Make the object from the parts named, in order (their ETags must be
        the ones given at upload): visible at once, whole, replacing any object
        of that key (S3's way; the REST API may ask to ``rename`` or ``fail``
        instead, as its single-request uploads can). No chunk is written: the
        object's chunk list is the parts' lists end to end. Parts uploaded but
        not named become garbage.

        A completion sent again after it succeeded (a client that lost the
        answer) is answered with the same object while ``self.recent`` remembers
        the upload and the object is still the one it made (also when both were
        sent at once and the first committed while the second was on its way);
        else NoSuchUpload. Counted once in ``tossit_uploads``, whichever API
        completed it."""
        try:
            return await self._complete(bucket, key, upload_id, parts, on_conflict)
        except NoSuchUpload:
            again = await self._retried(bucket, key, upload_id, parts)
            if again is None:
                raise
            return again

    async def _complete(self, bucket: str, key: str, upload_id: str,
                        parts: Sequence[tuple[int, str]], on_conflict: str) -> Completed:
        upload = await self._get(bucket, key, upload_id)
        stored = {p.number: p for p in await self.store.upload_parts(upload_id)}
        chosen = choose_parts(parts, stored, self.min_part_size)
        lists = await self.store.part_chunks(upload_id, [p.number for p in chosen])
        chunks = [c for p in chosen for c in lists.get(p.number, [])]
        etag = multipart_etag([p.md5 for p in chosen])
        obj = await self.commits.commit(NewObject(
            bucket=bucket, key=key, size=sum(p.size for p in chosen),
            sha256=await self._sha256(chunks), content_type=upload.content_type,
            chunk_size=self.settings.chunk_size, chunks=chunks, replicas={},
            user_meta=upload.user_meta, etag=etag, completes_upload=upload_id,
            on_conflict=on_conflict))
        self.recent.add(upload_id, Finished(bucket, key, etag), time.time())
        UPLOADS.labels("ok").inc()
        UPLOAD_BYTES.inc(obj.size)
        return Completed(obj, bucket, f'"{etag}"')

    async def _retried(self, bucket: str, key: str, upload_id: str,
                       parts: Sequence[tuple[int, str]]) -> Completed | None:
        """The earlier answer to this very completion, if it succeeded lately
        and its object is still under the key (not deleted nor replaced)."""
        finished = self.recent.retried(upload_id, bucket, key, parts, time.time())
        if finished is None:
            return None
        row = await self.store.live_bucket(bucket)
        found = await self.store.object_by_key(row.id, key, chunks=False) if row else None
        if found is None or found[0].etag != finished.etag:
            return None
        return Completed(found[0], bucket, f'"{finished.etag}"', again=True)

    async def _sha256(self, chunks: list[tuple[str, int]]) -> str:
        """The whole object's SHA-256, from one verified read of its chunks (a
        SHA-256 cannot be resumed from its parts': each part was hashed alone)."""
        digest = hashlib.sha256()
        if not chunks:
            return digest.hexdigest()
        download = await self.reader.open(await self.store.chunk_placements(chunks), None)
        async for data in download.body:
            await _hash(digest, data)
        return digest.hexdigest()

    # -- AbortMultipartUpload ----------------------------------------------------------

    async def abort(self, bucket: str, key: str, upload_id: str) -> None:
        """End an upload without an object: its parts go, their chunks are
        garbage unless shared. A part still arriving is refused when it ends."""
        await self._get(bucket, key, upload_id)
        found, garbage = await self.store.drop_uploads([upload_id])
        if not found:
            raise NoSuchUpload(upload_id)
        self._release(garbage)

    # -- ListParts ---------------------------------------------------------------------

    async def list_parts(self, bucket: str, key: str, upload_id: str,
                         part_number_marker: int = 0, max_parts: int | None = None
                         ) -> PartsPage:
        """The parts uploaded so far, by number, after ``part_number_marker``."""
        if part_number_marker < 0:
            raise InvalidArgument(f"part-number-marker must not be negative, "
                                  f"not {part_number_marker}")
        limit = list_limit(max_parts, "max-parts")
        upload = await self._get(bucket, key, upload_id)
        rows = await self.store.upload_parts(upload_id, part_number_marker, limit + 1)
        got = page(rows, limit)
        last = got.items[-1].number if got.items else part_number_marker
        return PartsPage(_upload(upload, bucket), [_part(p) for p in got.items],
                         got.truncated, last)

    # -- ListMultipartUploads -----------------------------------------------------------

    async def list_uploads(self, bucket: str, prefix: str = "", key_marker: str = "",
                           upload_id_marker: str = "", max_uploads: int | None = None
                           ) -> UploadsPage:
        """Uploads in progress in a bucket, by key then age, after the markers.
        (A delimiter, which would group keys into CommonPrefixes, is not
        supported: the S3 layer must refuse it, not ignore it.)"""
        limit = list_limit(max_uploads, "max-uploads")
        rows = await self.store.list_uploads(bucket, prefix, key_marker, upload_id_marker,
                                             limit + 1)
        got = page(rows, limit)
        last = got.items[-1] if got.items else None
        return UploadsPage([_upload(u, bucket) for u in got.items], got.truncated,
                           last.key if last else "", last.id if last else "")

    # -- helpers -----------------------------------------------------------------------

    async def _get(self, bucket: str, key: str, upload_id: str) -> MultipartUpload:
        """The upload, if in progress for this bucket and key (else NoSuchUpload,
        as S3 answers an upload id used under another key)."""
        row = await self.store.get_upload(upload_id)
        if row is None or row.key != key or await self.store.bucket_name(row.bucket_id) != bucket:
            raise NoSuchUpload(upload_id)
        return row

    def _release(self, garbage: list[str]) -> None:
        if garbage:
            self.collector.release(garbage)


def _upload(row: MultipartUpload, bucket: str) -> Upload:
    return Upload(row.id, bucket, row.key, row.content_type, row.user_meta, row.created_at)


def _part(p: PartInfo) -> Part:
    return Part(p.number, p.etag, p.size, p.uploaded_at)


async def _hash(digest: Any, data: bytes) -> None:
    """Feed a hash, in a thread for big pieces (the event loop serves others)."""
    if len(data) < _HASH_INLINE_BELOW:
        digest.update(data)
    else:
        await asyncio.to_thread(digest.update, data)


async def _capped(pieces: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """The pieces, unchanged, stopping a part past S3's largest before more of it
    is stored."""
    size = 0
    async for piece in pieces:
        size += len(piece)
        if size > MAX_PART_SIZE:
            raise EntityTooLarge(MAX_PART_SIZE)
        yield piece
