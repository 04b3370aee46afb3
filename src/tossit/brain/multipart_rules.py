"""The rules of S3 multipart uploads, without I/O.

What a completion may name (parts in ascending order, each uploaded and named
with its ETag, all but the last at least ``MIN_PART_SIZE``), the ETag S3
clients expect of the object it makes, the pages of ListParts and
ListMultipartUploads, and which chunks of a source an UploadPartCopy can reuse
as they are. ``tossit.brain.multipart_uploads`` applies them to the store and
the nodes; the table tests in tests/unit/test_multipart_rules.py pin them down.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from tossit.errors import EntityTooSmall, InvalidArgument, InvalidPart, InvalidPartOrder
from tossit.ranges import ByteRange

MiB = 1024 * 1024
MIN_PART_SIZE = 5 * MiB  # S3's: every part but the last
MAX_PART_NUMBER = 10_000
MAX_PART_SIZE = 5 * 1024 * MiB  # S3's: 5 GiB
LIST_MAX = 1000  # max-parts and max-uploads are capped here, as S3 does

T = TypeVar("T")


@dataclass(frozen=True)
class PartInfo:
    """A part as stored: its number, size, and the MD5 of its bytes (hex)."""

    number: int
    size: int
    md5: str
    uploaded_at: float = 0.0

    @property
    def etag(self) -> str:
        """The part's ETag as S3 sends it (quoted)."""
        return f'"{self.md5}"'


def new_upload_id(now: float | None = None) -> str:
    """A fresh upload id: milliseconds since the epoch then 80 random bits, in
    hex. Unguessable, safe in a URL, and sorted by creation time, the order
    ListMultipartUploads gives uploads of one key."""
    ms = int((time.time() if now is None else now) * 1000)
    return f"{ms:012x}{secrets.token_hex(10)}"


def check_part_number(number: int) -> None:
    if not 1 <= number <= MAX_PART_NUMBER:
        raise InvalidArgument(f"part number must be an integer between 1 and "
                              f"{MAX_PART_NUMBER}, not {number}")


def list_limit(value: int | None, what: str) -> int:
    """max-parts / max-uploads: absent means the cap, more than the cap is the
    cap, a negative number is refused."""
    if value is None:
        return LIST_MAX
    if value < 0:
        raise InvalidArgument(f"{what} must not be negative, not {value}")
    return min(value, LIST_MAX)


def bare_etag(etag: str) -> str:
    """An ETag as clients send it back (quoted or not, any case), bare hex."""
    return etag.strip().strip('"').lower()


def choose_parts(requested: Sequence[tuple[int, str]], stored: Mapping[int, PartInfo],
                 min_part_size: int = MIN_PART_SIZE) -> list[PartInfo]:
    """The parts a CompleteMultipartUpload assembles, in order, or the error S3
    gives: InvalidPartOrder, then InvalidPart (absent, or another ETag), then
    EntityTooSmall. Parts uploaded but not named are simply left out."""
    if not requested:
        raise InvalidArgument("a completion must name at least one part")
    previous = 0
    for number, _ in requested:
        check_part_number(number)
        if number <= previous:
            raise InvalidPartOrder(f"part {number} comes after part {previous}")
        previous = number
    chosen: list[PartInfo] = []
    for number, etag in requested:
        part = stored.get(number)
        if part is None:
            raise InvalidPart(number, "no such part was uploaded (or it was replaced "
                              "by an upload that failed)")
        if bare_etag(etag) != part.md5:
            raise InvalidPart(number, f"its ETag is {part.etag}, not {etag}")
        chosen.append(part)
    for part in chosen[:-1]:
        if part.size < min_part_size:
            raise EntityTooSmall(part.number, part.size, min_part_size)
    return chosen


def multipart_etag(md5s: Sequence[str]) -> str:
    """The ETag of a completed multipart object, bare (as stored): the MD5 of the
    parts' binary MD5s concatenated, then ``-`` and the number of parts. What S3
    computes; clients such as rclone and aws-cli recognise it by its form."""
    joined = b"".join(bytes.fromhex(m) for m in md5s)
    return f"{hashlib.md5(joined).hexdigest()}-{len(md5s)}"


@dataclass(frozen=True)
class Page(Generic[T]):
    """A page of a listing: its items, and whether more follow."""

    items: list[T]
    truncated: bool


def page(rows: Sequence[T], limit: int) -> Page[T]:
    """Cut a listing read with one row more than ``limit`` (that row tells
    whether the listing is truncated)."""
    return Page(list(rows[:limit]), len(rows) > limit)


def after_upload_marker(key: str, upload_id: str, key_marker: str,
                        upload_id_marker: str) -> bool:
    """Does an upload come after ListMultipartUploads' markers? With a key
    marker alone, only later keys do; with an upload-id marker too, later
    uploads of the marker's key also do. (S3 ignores an upload-id marker
    without a key marker.)"""
    if not key_marker:
        return True
    if key > key_marker:
        return True
    return bool(upload_id_marker) and key == key_marker and upload_id > upload_id_marker


@dataclass(frozen=True)
class Reuse:
    """A whole chunk of the source, referenced again as it is (no byte moves)."""

    chunk_id: str
    size: int


@dataclass(frozen=True)
class Cut:
    """Bytes ``lo..hi`` (end exclusive) of the source's chunk at ``index``: a new
    chunk is stored for them."""

    index: int
    lo: int
    hi: int


def plan_copy(chunks: Sequence[tuple[str, int]], rng: ByteRange | None) -> list[Reuse | Cut]:
    """How an UploadPartCopy of ``rng`` (None: all) of an object made of these
    (chunk id, size) builds its part: the chunks the range covers whole are
    reused, the pieces of chunks it cuts at either end are stored anew."""
    out: list[Reuse | Cut] = []
    start = 0
    for index, (cid, size) in enumerate(chunks):
        end = start + size  # [start, end)
        lo = start if rng is None else max(rng.start, start)
        hi = end if rng is None else min(rng.end + 1, end)
        if lo < hi:
            if (lo, hi) == (start, end):
                out.append(Reuse(cid, size))
            else:
                out.append(Cut(index, lo - start, hi - start))
        start = end
    return out


@dataclass(frozen=True)
class Finished:
    """An upload that completed: where its object went, and the object's ETag."""

    bucket: str
    key: str
    etag: str  # bare, as stored


class RecentCompletions:
    """Upload ids completed lately, so that a completion sent again (aws-cli and
    the SDKs retry CompleteMultipartUpload after a lost answer) can be answered
    with the same success instead of NoSuchUpload. Only when the retry names the
    same parts (the ETag they give is the object's) and the object is still the
    one the upload made; the caller checks that last point. Kept in memory, for
    ``keep`` seconds and ``limit`` ids at most: a retry comes within seconds,
    and a brain that restarted answers NoSuchUpload as before (documented)."""

    def __init__(self, keep: float = 3600.0, limit: int = 10_000) -> None:
        self.keep = keep
        self.limit = limit
        self._done: dict[str, tuple[float, Finished]] = {}  # insertion order = age

    def add(self, upload_id: str, finished: Finished, now: float) -> None:
        self._done[upload_id] = (now, finished)
        self._expire(now)

    def _expire(self, now: float) -> None:
        while self._done:
            oldest, (at, _) = next(iter(self._done.items()))
            if len(self._done) <= self.limit and now - at <= self.keep:
                return
            del self._done[oldest]

    def retried(self, upload_id: str, bucket: str, key: str,
                parts: Sequence[tuple[int, str]], now: float) -> Finished | None:
        """What a completion of ``upload_id`` naming ``parts`` made earlier, if
        it is the same request again; else None (the caller says NoSuchUpload)."""
        self._expire(now)
        found = self._done.get(upload_id)
        if found is None:
            return None
        finished = found[1]
        if (finished.bucket, finished.key) != (bucket, key) or not parts:
            return None
        try:
            etag = multipart_etag([bare_etag(e) for _, e in parts])
        except ValueError:  # an ETag that is not hex names no part of ours
            return None
        return finished if etag == finished.etag else None
