"""The client's part plan and resume state (client/parts.py, client/upload_state.py),
as tables, without a server."""

from __future__ import annotations

from pathlib import Path

import pytest

from tossit.client import upload_state
from tossit.client.parts import (
    MAX_PARTS,
    HeldPart,
    PartSpan,
    may_be_held,
    part_size_for,
    plan_parts,
)
from tossit.client.upload_state import UploadState

MiB = 1 << 20
GiB = 1 << 30


@pytest.mark.parametrize(("file_size", "wanted", "expected"), [
    (100 * MiB, 16 * MiB, 16 * MiB),  # as asked
    (100 * MiB, 1 * MiB, 5 * MiB),  # never under the brain's 5 MiB
    (10_000 * 16 * MiB, 16 * MiB, 16 * MiB),  # exactly 10,000 parts
    (10_000 * 16 * MiB + 1, 16 * MiB, 17 * MiB),  # one byte more: the next MiB
    (1024 * GiB, 16 * MiB, 105 * MiB),  # 1 TiB
    (0, 16 * MiB, 16 * MiB),
])
def test_part_size_grows_so_10000_parts_cover_the_file(file_size: int, wanted: int,
                                                         expected: int) -> None:
    size = part_size_for(file_size, wanted)
    assert size == expected
    assert len(plan_parts(file_size, size)) <= MAX_PARTS


@pytest.mark.parametrize(("file_size", "part_size", "expected"), [
    (0, 5, [PartSpan(1, 0, 0)]),
    (5, 5, [PartSpan(1, 0, 5)]),
    (6, 5, [PartSpan(1, 0, 5), PartSpan(2, 5, 1)]),
    (15, 5, [PartSpan(1, 0, 5), PartSpan(2, 5, 5), PartSpan(3, 10, 5)]),
])
def test_plan_covers_the_file_once_in_order(file_size: int, part_size: int,
                                            expected: list[PartSpan]) -> None:
    plan = plan_parts(file_size, part_size)
    assert plan == expected
    assert sum(p.size for p in plan) == file_size


def test_plan_refuses_a_part_size_of_zero() -> None:
    with pytest.raises(ValueError):
        plan_parts(10, 0)


@pytest.mark.parametrize(("held", "checked"), [
    ({}, []),  # nothing there: every part is sent
    ({1: HeldPart(5, "a"), 3: HeldPart(2, "c")}, [1, 3]),  # right sizes: MD5 decides
    ({2: HeldPart(4, "b")}, []),  # a part of another size (another file): sent again
    ({9: HeldPart(5, "z")}, []),  # outside the plan: left out of the completion
])
def test_only_held_parts_of_the_planned_size_may_be_kept(held: dict[int, HeldPart],
                                                          checked: list[int]) -> None:
    plan = plan_parts(12, 5)  # 5, 5, 2
    assert [span.number for span in may_be_held(plan, held)] == checked


STATE = UploadState("0123abcd", "http://b:8000", "default", "big.iso", "/data/big.iso",
                    size=100, mtime_ns=7, part_size=5 * MiB)


@pytest.mark.parametrize(("path", "size", "mtime_ns", "same"), [
    ("/data/big.iso", 100, 7, True),
    ("/data/big.iso", 101, 7, False),  # grew
    ("/data/big.iso", 100, 8, False),  # rewritten, same size
    ("/other/big.iso", 100, 7, False),  # another file of that name
])
def test_state_matches_only_the_unchanged_file(path: str, size: int, mtime_ns: int,
                                               same: bool) -> None:
    assert STATE.same_file(Path(path), size, mtime_ns) is same


def test_state_file_is_one_per_brain_bucket_and_name(tmp_path: Path) -> None:
    where = {upload_state.state_path(tmp_path, *key) for key in [
        ("http://b:8000", "default", "big.iso"), ("http://b:8000/", "default", "big.iso"),
        ("http://c:8000", "default", "big.iso"), ("http://b:8000", "other", "big.iso"),
        ("http://b:8000", "default", "big2.iso")]}
    assert len(where) == 4  # a trailing slash is the same brain


def test_state_round_trips_and_a_damaged_one_is_ignored(tmp_path: Path) -> None:
    path = upload_state.state_path(tmp_path / "uploads", STATE.brain_url, "default", "big.iso")
    assert upload_state.load(path) is None
    upload_state.save(path, STATE)
    assert upload_state.load(path) == STATE
    path.write_text('{"upload_id": "x"}')  # fields missing
    assert upload_state.load(path) is None
    path.write_text("{not json")
    assert upload_state.load(path) is None
    upload_state.forget(path)
    assert not path.exists()


@pytest.mark.parametrize(("env", "expected"), [
    ({"XDG_STATE_HOME": "/s", "HOME": "/h"}, "/s/tossit/uploads"),
    ({"XDG_STATE_HOME": "", "HOME": "/h"}, "/h/.local/state/tossit/uploads"),
    ({"HOME": "/h"}, "/h/.local/state/tossit/uploads"),
])
def test_state_dir_follows_xdg(env: dict[str, str], expected: str) -> None:
    assert upload_state.state_dir(env) == Path(expected)
