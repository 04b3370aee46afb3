"""HTTP Range parsing and the chunk slices that serve a range."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tossit.ranges import (
    ByteRange,
    ChunkSlice,
    MalformedRange,
    RangeNotSatisfiable,
    chunk_slices,
    parse_range,
)

# -- parse_range ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-0", 10, (0, 0)),
        ("bytes=0-9", 10, (0, 9)),
        ("bytes=2-5", 10, (2, 5)),
        ("bytes=9-9", 10, (9, 9)),
        ("bytes=3-", 10, (3, 9)),
        ("bytes=0-", 10, (0, 9)),
        ("bytes=-1", 10, (9, 9)),
        ("bytes=-4", 10, (6, 9)),
        ("bytes=-10", 10, (0, 9)),
        ("bytes=-1000", 10, (0, 9)),  # suffix longer than the object: whole object
        ("bytes=5-1000", 10, (5, 9)),  # end past the end clamps
        ("bytes=0-18446744073709551616", 10, (0, 9)),
        ("BYTES = 2 - 5", 10, (2, 5)),
        ("  bytes=2-5  ", 10, (2, 5)),
    ],
)
def test_parse_range_valid(header: str, size: int, expected: tuple[int, int]) -> None:
    r = parse_range(header, size)
    assert r == ByteRange(*expected)
    assert r.length == expected[1] - expected[0] + 1
    assert r.content_range(size) == f"bytes {expected[0]}-{expected[1]}/{size}"


def test_parse_range_none_means_whole_object() -> None:
    assert parse_range(None, 10) is None
    assert parse_range(None, 0) is None


@pytest.mark.parametrize(
    ("header", "size"),
    [
        ("bytes=10-", 10),
        ("bytes=10-20", 10),
        ("bytes=100-200", 10),
        ("bytes=0-", 0),  # empty object: no byte is satisfiable
        ("bytes=0-0", 0),
        ("bytes=-5", 0),
        ("bytes=-0", 10),  # suffix of zero bytes
        ("bytes=-0", 0),
    ],
)
def test_parse_range_not_satisfiable(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, size)


@pytest.mark.parametrize(
    "header",
    [
        "bytes=5-2",  # end before start
        "bytes=-",
        "bytes=",
        "bytes",
        "",
        "items=0-5",
        "bytes=a-b",
        "bytes=1-2-3",
        "bytes=0x10-20",
        "bytes=-5-",
        "bytes=1.5-2",
        "bytes=+1-2",
        "bytes=\u0661-\u0662",  # unicode digits are not digits here
        "0-5",
        "bytes=" + "1" * 300,  # absurdly long
    ],
)
def test_parse_range_malformed(header: str) -> None:
    with pytest.raises(MalformedRange):
        parse_range(header, 10)


def test_end_before_start_is_malformed_even_past_the_end() -> None:
    with pytest.raises(MalformedRange):
        parse_range("bytes=50-40", 10)


@pytest.mark.parametrize("header", ["bytes=0-1,3-4", "bytes=0-1, -2", "Bytes=1-2,5-"])
def test_multiple_ranges_mean_whole_object(header: str) -> None:
    assert parse_range(header, 10) is None


# -- chunk_slices --------------------------------------------------------------

SIZES = [10, 10, 10, 5]  # 35 bytes


def test_whole_object() -> None:
    assert chunk_slices(SIZES, None) == [
        ChunkSlice(0, 0, 10), ChunkSlice(1, 0, 10), ChunkSlice(2, 0, 10), ChunkSlice(3, 0, 5),
    ]
    assert chunk_slices(SIZES, ByteRange(0, 34)) == chunk_slices(SIZES, None)
    assert chunk_slices([], None) == []


def test_range_inside_one_chunk() -> None:
    assert chunk_slices(SIZES, ByteRange(12, 15)) == [ChunkSlice(1, 2, 6)]
    assert chunk_slices(SIZES, ByteRange(0, 0)) == [ChunkSlice(0, 0, 1)]
    assert chunk_slices(SIZES, ByteRange(34, 34)) == [ChunkSlice(3, 4, 5)]


def test_range_across_chunk_boundaries() -> None:
    assert chunk_slices(SIZES, ByteRange(5, 24)) == [
        ChunkSlice(0, 5, 10), ChunkSlice(1, 0, 10), ChunkSlice(2, 0, 5),
    ]
    assert chunk_slices(SIZES, ByteRange(9, 10)) == [ChunkSlice(0, 9, 10), ChunkSlice(1, 0, 1)]


def test_range_exactly_on_boundaries() -> None:
    assert chunk_slices(SIZES, ByteRange(10, 19)) == [ChunkSlice(1, 0, 10)]
    assert chunk_slices(SIZES, ByteRange(10, 29)) == [ChunkSlice(1, 0, 10), ChunkSlice(2, 0, 10)]
    assert chunk_slices(SIZES, ByteRange(30, 34)) == [ChunkSlice(3, 0, 5)]
    assert chunk_slices(SIZES, ByteRange(0, 9)) == [ChunkSlice(0, 0, 10)]


def test_suffix_range_to_slices() -> None:
    rng = parse_range("bytes=-7", 35)
    assert chunk_slices(SIZES, rng) == [ChunkSlice(2, 8, 10), ChunkSlice(3, 0, 5)]


def _bytes_of(sizes: list[int]) -> bytes:
    return b"".join(bytes([i % 251]) * s for i, s in enumerate(sizes)) if sizes else b""


@settings(max_examples=300, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=20), min_size=1, max_size=8),
    data=st.data(),
)
def test_slices_match_brute_force(sizes: list[int], data: st.DataObject) -> None:
    total = sum(sizes)
    # Distinct content per byte, so slicing mistakes cannot cancel out.
    blob = bytes((i * 7 + 3) % 256 for i in range(total))
    chunks, off = [], 0
    for s in sizes:
        chunks.append(blob[off : off + s])
        off += s
    start = data.draw(st.integers(min_value=0, max_value=total - 1))
    end = data.draw(st.integers(min_value=start, max_value=total - 1))
    rng = ByteRange(start, end)
    slices = chunk_slices(sizes, rng)
    assert b"".join(chunks[s.index][s.lo : s.hi] for s in slices) == blob[start : end + 1]
    # Only the chunks the range touches, each non-empty, in order.
    assert all(s.lo < s.hi for s in slices)
    assert [s.index for s in slices] == sorted({s.index for s in slices})
    touched = [i for i in range(len(sizes))
               if sum(sizes[:i]) <= end and sum(sizes[: i + 1]) > start]
    assert [s.index for s in slices] == touched


@settings(max_examples=300, deadline=None)
@given(
    size=st.integers(min_value=0, max_value=50),
    first=st.one_of(st.none(), st.integers(min_value=0, max_value=80)),
    last=st.one_of(st.none(), st.integers(min_value=0, max_value=80)),
)
def test_parse_range_matches_reference(size: int, first: int | None, last: int | None) -> None:
    header = f"bytes={'' if first is None else first}-{'' if last is None else last}"
    if first is None and last is None:
        expected: object = MalformedRange
    elif first is None:
        assert last is not None
        expected = RangeNotSatisfiable if last == 0 or size == 0 else (max(0, size - last),
                                                                       size - 1)
    elif last is not None and last < first:
        expected = MalformedRange
    elif first >= size:
        expected = RangeNotSatisfiable
    else:
        expected = (first, size - 1 if last is None else min(last, size - 1))
    if isinstance(expected, type):
        with pytest.raises(expected):
            parse_range(header, size)
    else:
        assert parse_range(header, size) == ByteRange(*expected)  # type: ignore[misc]
