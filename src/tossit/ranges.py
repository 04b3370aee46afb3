"""HTTP Range arithmetic (RFC 9110 section 14) and chunk spans.

Kept apart from the server so the edge cases (suffix ranges, ranges past the
end, empty files) are unit-tested without any I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_RANGE_RE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE | re.ASCII)
MAX_RANGE_HEADER = 200


class RangeNotSatisfiable(Exception):
    """The range is well-formed but lies outside the object (-> 416)."""


class MalformedRange(Exception):
    """The Range header is not ``bytes=a-b`` syntax (-> 400)."""


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, total: int) -> str:
        return f"bytes {self.start}-{self.end}/{total}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """Parse a single-range ``Range`` header against an object of ``size`` bytes.

    Returns None when the whole object should be sent (no header, or several
    ranges, which RFC 9110 lets a server answer with the full representation).
    """
    if header is None:
        return None
    if len(header) > MAX_RANGE_HEADER:
        raise MalformedRange("Range header too long")
    if "," in header and header.strip().lower().startswith("bytes"):
        return None
    m = _RANGE_RE.match(header)
    if not m:
        raise MalformedRange(f"unsupported Range header {header!r}; use bytes=START-END")
    first, last = m.group(1), m.group(2)
    if not first and not last:
        raise MalformedRange("Range needs a start or a suffix length")
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable()
        return ByteRange(max(0, size - suffix), size - 1)
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        raise MalformedRange("Range end is before its start")
    if start >= size:
        raise RangeNotSatisfiable()
    return ByteRange(start, min(end, size - 1))


@dataclass(frozen=True)
class ChunkSlice:
    """The part ``[lo, hi)`` of the chunk at position ``index`` to send."""

    index: int
    lo: int
    hi: int


def chunk_slices(chunk_sizes: list[int], rng: ByteRange | None) -> list[ChunkSlice]:
    """Which chunks (and which bytes of each) cover a range; all of them if None."""
    out: list[ChunkSlice] = []
    offset = 0
    for i, size in enumerate(chunk_sizes):
        c_start, c_end = offset, offset + size  # [c_start, c_end)
        offset = c_end
        if rng is None:
            out.append(ChunkSlice(i, 0, size))
            continue
        lo = max(rng.start, c_start)
        hi = min(rng.end + 1, c_end)
        if lo < hi:
            out.append(ChunkSlice(i, lo - c_start, hi - c_start))
    return out
