"""The client's part plan, resume state and retries (client/parts.py,
client/upload_state.py, client/resumable.py), as tables, without a server."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from tossit.brain.api.wire import UploadPart
from tossit.client import TossitError, parts, upload_state
from tossit.client.parts import (
    MAX_PARTS,
    HeldPart,
    PartSpan,
    may_be_held,
    part_size_for,
    plan_parts,
    retry_wait,
)
from tossit.client.resumable import PartedOptions, PartedUpload
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


# -- a part that fails in passing is sent again ----------------------------------


@pytest.mark.parametrize(("status", "code", "failures", "expected"), [
    (0, "transfer_failed", 1, 1.0),  # no answer (connection reset, timeout)
    (503, "not_enough_nodes", 2, 2.0),  # nodes restarting
    (502, "error", 3, 4.0),
    (429, "too_many_requests", 5, 8.0),
    (503, "not_enough_nodes", 6, None),  # the tries are used up
    (400, "bad_digest", 1, None),  # the part itself is wrong: never again
    (404, "upload_not_found", 1, None),  # the upload is gone
    (507, "insufficient_storage", 1, None),  # full: waiting will not help
    (0, "file_changed", 1, None),  # a local failure
])
def test_only_failures_in_passing_are_retried_with_growing_pauses(
        status: int, code: str, failures: int, expected: float | None) -> None:
    assert retry_wait(status, code, failures) == expected


class FlakyBrain:
    """Just the client calls a parted upload makes; part ``n`` fails with
    ``fail[n]`` answers (status, code) before it is taken."""

    def __init__(self, fail: dict[int, list[tuple[int, str]]]) -> None:
        self.urls = ["http://brain.invalid"]
        self.fail = fail
        self.attempts: dict[int, int] = {}
        self.parts: dict[int, bytes] = {}
        self.completed: list[tuple[int, str]] | None = None

    def start_upload(self, name: str, **kw: Any) -> Any:
        return SimpleNamespace(id="u1")

    def upload_part(self, upload_id: str, number: int, content: Iterator[bytes], size: int,
                    md5: str | None = None) -> UploadPart:
        self.attempts[number] = self.attempts.get(number, 0) + 1
        body = b"".join(content)
        if self.fail.get(number):
            raise TossitError(*self.fail[number].pop(0), "failed in passing")
        self.parts[number] = body
        return UploadPart(number=number, size=size, md5=hashlib.md5(body).hexdigest(),
                          uploaded="2026-12-06T00:00:00+00:00")

    def complete_upload(self, upload_id: str, parts: list[tuple[int, str]], **kw: Any) -> Any:
        self.completed = parts
        return parts


def parted(brain: FlakyBrain, path: Path, state: Path, said: list[str],
           progress: list[int]) -> PartedUpload:
    return PartedUpload(cast(Any, brain), path, "f.bin",
                        PartedOptions(part_size=5 * MiB, parallel=2, state_dir=state),
                        progress=progress.append, notify=said.append)


def test_a_part_that_fails_in_passing_is_sent_again(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parts, "RETRY_WAITS", (0.0, 0.0, 0.0, 0.0, 0.0))
    data = os.urandom(12 * MiB)
    (tmp_path / "f.bin").write_bytes(data)
    brain = FlakyBrain({2: [(0, "transfer_failed"), (503, "not_enough_nodes")]})
    said: list[str] = []
    progress: list[int] = []
    parted(brain, tmp_path / "f.bin", tmp_path / "state", said, progress).run()
    assert brain.attempts == {1: 1, 2: 3, 3: 1}
    assert b"".join(brain.parts[n] for n in (1, 2, 3)) == data
    assert brain.completed is not None and [n for n, _ in brain.completed] == [1, 2, 3]
    # The failed attempts' bytes were counted and taken back: the bar ends at the size.
    assert sum(progress) == len(data) and min(progress) == -5 * MiB
    assert said == [f"part 2: failed in passing; sending it again in 0 s (try {n} of 6)"
                    for n in (2, 3)]


def test_a_part_refused_for_what_it_is_fails_the_upload_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parts, "RETRY_WAITS", (0.0,))
    (tmp_path / "f.bin").write_bytes(os.urandom(12 * MiB))
    for failures, attempts in (([(400, "bad_digest")], 1),
                               ([(503, "not_enough_nodes")] * 2, 2)):  # tries used up
        brain = FlakyBrain({3: list(failures)})
        with pytest.raises(TossitError) as err:
            parted(brain, tmp_path / "f.bin", tmp_path / f"state{attempts}", [], []).run()
        assert brain.attempts[3] == attempts and brain.completed is None
        assert "run the upload again to resume" in err.value.message
