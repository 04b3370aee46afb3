"""The rules of S3 multipart uploads (brain/multipart_rules.py), as tables."""

from __future__ import annotations

import hashlib
import re

import pytest

from tossit.brain.multipart_rules import (
    LIST_MAX,
    MIN_PART_SIZE,
    Cut,
    Finished,
    PartInfo,
    RecentCompletions,
    Reuse,
    after_upload_marker,
    bare_etag,
    check_part_number,
    choose_parts,
    list_limit,
    multipart_etag,
    new_upload_id,
    page,
    plan_copy,
)
from tossit.errors import (
    EntityTooSmall,
    InvalidArgument,
    InvalidPart,
    InvalidPartOrder,
    MultipartError,
    http_status,
)
from tossit.ranges import ByteRange

BIG = MIN_PART_SIZE
M1, M2, M3 = (hashlib.md5(bytes([i])).hexdigest() for i in (1, 2, 3))
STORED = {1: PartInfo(1, BIG, M1), 2: PartInfo(2, BIG + 7, M2), 3: PartInfo(3, 10, M3),
          5: PartInfo(5, 1, M1)}


@pytest.mark.parametrize(("requested", "chosen"), [
    ([(1, M1), (2, M2), (3, M3)], [1, 2, 3]),
    ([(1, f'"{M1}"'), (3, M3.upper())], [1, 3]),  # quoted or not, any case
    ([(2, M2)], [2]),  # parts uploaded but not named are left out
    ([(3, M3)], [3]),  # a lone part may be small: it is the last
    ([(1, M1), (2, M2), (5, M1)], [1, 2, 5]),  # numbers need not be consecutive
])
def test_a_valid_completion_takes_the_parts_named_in_order(
        requested: list[tuple[int, str]], chosen: list[int]) -> None:
    assert [p.number for p in choose_parts(requested, STORED)] == chosen


@pytest.mark.parametrize(("requested", "error", "says"), [
    ([], InvalidArgument, "at least one part"),
    ([(2, M2), (1, M1)], InvalidPartOrder, "part 1 comes after part 2"),
    ([(1, M1), (1, M1)], InvalidPartOrder, "part 1 comes after part 1"),
    ([(0, M1)], InvalidArgument, "between 1 and 10000"),
    ([(10001, M1)], InvalidArgument, "between 1 and 10000"),
    ([(1, M1), (4, M1)], InvalidPart, "part 4: no such part"),
    ([(1, M1), (2, M1)], InvalidPart, f'part 2: its ETag is "{M2}"'),
    ([(3, M3), (5, M1)], EntityTooSmall, "part 3 is 10 bytes"),
    # Order is checked before existence, existence before sizes (as S3 does).
    ([(4, M1), (3, M3)], InvalidPartOrder, "comes after"),
    ([(3, M3), (4, M1)], InvalidPart, "part 4"),
])
def test_an_invalid_completion_gets_the_s3_error(
        requested: list[tuple[int, str]], error: type[MultipartError], says: str) -> None:
    with pytest.raises(error, match=re.escape(says)) as caught:
        choose_parts(requested, STORED)
    assert caught.value.s3_code == error.__name__
    assert http_status(caught.value) == 400


def test_the_minimum_part_size_is_a_parameter() -> None:
    small = {1: PartInfo(1, 100, M1), 2: PartInfo(2, 5, M2)}
    assert len(choose_parts([(1, M1), (2, M2)], small, min_part_size=100)) == 2
    with pytest.raises(EntityTooSmall):
        choose_parts([(1, M1), (2, M2)], small, min_part_size=101)


def test_the_etag_of_a_multipart_object_is_the_md5_of_the_part_md5s() -> None:
    a, b = hashlib.md5(b"a" * 10).hexdigest(), hashlib.md5(b"b" * 3).hexdigest()
    assert multipart_etag([a, b]) == "568bd1f3a3ef4a720453555306037d4b-2"
    assert multipart_etag([a]) == hashlib.md5(bytes.fromhex(a)).hexdigest() + "-1"
    assert PartInfo(1, 1, a).etag == f'"{a}"'
    assert bare_etag(' "ABC" ') == "abc"


@pytest.mark.parametrize(("number", "ok"), [(1, True), (10000, True), (0, False),
                                            (-1, False), (10001, False)])
def test_part_numbers_run_from_1_to_10000(number: int, ok: bool) -> None:
    if ok:
        check_part_number(number)
    else:
        with pytest.raises(InvalidArgument):
            check_part_number(number)


@pytest.mark.parametrize(("value", "limit"), [(None, LIST_MAX), (0, 0), (3, 3),
                                              (LIST_MAX + 1, LIST_MAX)])
def test_list_limits_are_capped(value: int | None, limit: int) -> None:
    assert list_limit(value, "max-parts") == limit


def test_a_negative_list_limit_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="max-uploads must not be negative"):
        list_limit(-1, "max-uploads")


@pytest.mark.parametrize(("rows", "limit", "items", "truncated"), [
    ([1, 2, 3], 2, [1, 2], True),
    ([1, 2], 2, [1, 2], False),
    ([], 5, [], False),
    ([1], 0, [], True),
])
def test_a_page_is_cut_from_one_row_more_than_asked(
        rows: list[int], limit: int, items: list[int], truncated: bool) -> None:
    got = page(rows, limit)
    assert (got.items, got.truncated) == (items, truncated)


@pytest.mark.parametrize(("key", "uid", "key_marker", "uid_marker", "after"), [
    ("a", "1", "", "", True),  # no marker: everything
    ("a", "1", "", "9", True),  # an upload-id marker alone is ignored
    ("b", "1", "a", "", True),
    ("a", "9", "a", "", False),  # a key marker alone skips all of its key
    ("a", "2", "a", "1", True),  # with an upload-id marker: later uploads of it
    ("a", "1", "a", "1", False),
    ("a", "0", "a", "1", False),
    ("A", "5", "a", "1", False),  # code point order: "A" < "a"
])
def test_upload_markers(key: str, uid: str, key_marker: str, uid_marker: str,
                        after: bool) -> None:
    assert after_upload_marker(key, uid, key_marker, uid_marker) is after


def test_upload_ids_sort_by_creation_time() -> None:
    ids = [new_upload_id(t) for t in (1_000.0, 1_000.001, 2_000_000_000.0)]
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert new_upload_id(5.0) != new_upload_id(5.0)  # random after the time


CHUNKS = [("c0", 10), ("c1", 10), ("c2", 4)]  # bytes 0-9, 10-19, 20-23


@pytest.mark.parametrize(("rng", "plan"), [
    (None, [Reuse("c0", 10), Reuse("c1", 10), Reuse("c2", 4)]),
    (ByteRange(0, 23), [Reuse("c0", 10), Reuse("c1", 10), Reuse("c2", 4)]),
    (ByteRange(10, 19), [Reuse("c1", 10)]),  # aligned: nothing to store
    (ByteRange(5, 21), [Cut(0, 5, 10), Reuse("c1", 10), Cut(2, 0, 2)]),
    (ByteRange(12, 15), [Cut(1, 2, 6)]),  # inside one chunk
    (ByteRange(9, 10), [Cut(0, 9, 10), Cut(1, 0, 1)]),
    (ByteRange(23, 23), [Cut(2, 3, 4)]),
])
def test_a_part_copy_reuses_the_chunks_its_range_covers_whole(
        rng: ByteRange | None, plan: list[Reuse | Cut]) -> None:
    assert plan_copy(CHUNKS, rng) == plan


# -- a completion sent again ---------------------------------------------------------

E1, E2 = '"' + M1 + '"', '"' + M2 + '"'
DONE = Finished("b", "k", multipart_etag([M1, M2]))


@pytest.mark.parametrize(("upload_id", "bucket", "key", "parts", "at", "same"), [
    ("u1", "b", "k", [(1, E1), (2, E2)], 10.0, True),
    ("u1", "b", "k", [(1, M1.upper()), (2, M2)], 10.0, True),  # quoted or not, any case
    ("u1", "b", "k", [(1, E1)], 10.0, False),  # other parts: another object
    ("u1", "b", "k", [(1, E2), (2, E1)], 10.0, False),
    ("u1", "b", "k", [(1, '"not hex"'), (2, E2)], 10.0, False),
    ("u1", "b", "k", [], 10.0, False),
    ("u1", "b", "other", [(1, E1), (2, E2)], 10.0, False),
    ("u1", "c", "k", [(1, E1), (2, E2)], 10.0, False),
    ("u2", "b", "k", [(1, E1), (2, E2)], 10.0, False),  # never completed
    ("u1", "b", "k", [(1, E1), (2, E2)], 100.1, False),  # forgotten after ``keep``
])
def test_a_retried_completion_is_recognised(upload_id: str, bucket: str, key: str,
                                            parts: list[tuple[int, str]], at: float,
                                            same: bool) -> None:
    recent = RecentCompletions(keep=100.0)
    recent.add("u1", DONE, now=0.0)
    assert recent.retried(upload_id, bucket, key, parts, now=at) == (DONE if same else None)


def test_recent_completions_keep_the_newest_up_to_their_limit() -> None:
    recent = RecentCompletions(keep=100.0, limit=2)
    for n in range(3):
        recent.add(f"u{n}", DONE, now=float(n))
    parts = [(1, E1), (2, E2)]
    assert [recent.retried(f"u{n}", "b", "k", parts, now=3.0) for n in range(3)] == [
        None, DONE, DONE]
