"""The process harness's pure parts: environments, log tails, waits (nothing started;
tests/integration/test_child_processes.py runs real child processes)."""

from __future__ import annotations

import itertools
from pathlib import Path

import httpx
import pytest

from tossit.processes import (
    Child,
    WaitTimedOut,
    child_env,
    last_lines,
    log_tail,
    online,
    wait_for,
    wait_online,
)


def test_child_env_adds_and_removes_without_touching_the_base() -> None:
    base = {"PATH": "/bin", "TOSSIT_AUTH": "0", "HOME": "/root"}
    env = child_env(base, {"PYTHONUNBUFFERED": "1", "HOME": "/tmp"}, unset=["TOSSIT_AUTH"])
    assert env == {"PATH": "/bin", "HOME": "/tmp", "PYTHONUNBUFFERED": "1"}
    assert base["TOSSIT_AUTH"] == "0"


@pytest.mark.parametrize(("text", "n", "want"), [
    ("a\nb\nc\n", 2, ["b", "c"]),
    ("a\n\n  \nb\n\n", 5, ["a", "b"]),  # blank lines say nothing
    ("", 3, []),
    ("a\nb", 0, []),
])
def test_last_lines(text: str, n: int, want: list[str]) -> None:
    assert last_lines(text, n) == want


def test_a_log_tail_quotes_the_end_of_the_log(tmp_path: Path) -> None:
    log = tmp_path / "brain.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)) + "error: port 8000 is in use\n")
    tail = log_tail(log, n=3)
    assert tail.splitlines()[1:] == [f"  the end of {log}:", "  | line 98", "  | line 99",
                                     "  | error: port 8000 is in use"]
    log.write_bytes(b"")
    assert "is empty" in log_tail(log)
    assert log_tail(tmp_path / "missing.log") == ""


def test_a_log_tail_reads_only_the_end_of_a_big_log(tmp_path: Path) -> None:
    log = tmp_path / "node.log"
    log.write_bytes(b"\xff" * 100_000 + b"\nthe last line\n")  # not UTF-8, and long
    assert log_tail(log, n=1, max_bytes=64).endswith("  | the last line")


def test_wait_for_returns_the_first_true_answer_and_retries_transient_errors() -> None:
    answers = iter([httpx.ConnectError("refused"), ConnectionResetError(), ValueError("half"),
                    None, [], ["n1"]])

    def check() -> list[str] | None:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert wait_for(check, 5, "nodes", interval=0) == ["n1"]


def test_wait_for_times_out_naming_what_it_waited_for_and_the_last_answer() -> None:
    nodes = [{"state": "online"}, {"state": "online"}]
    with pytest.raises(WaitTimedOut, match=r"timed out after 0.05 s waiting for 3 nodes "
                       r"online \(last: False\)$") as err:
        wait_for(lambda: online(nodes) >= 3, 0.05, "3 nodes online", interval=0.01)
    assert isinstance(err.value, TimeoutError) and err.value.what == "3 nodes online"


def test_a_real_bug_in_the_check_is_not_taken_for_not_yet() -> None:
    def broken() -> bool:
        raise TypeError("a bug")

    with pytest.raises(TypeError, match="a bug"):
        wait_for(broken, 5, "x", interval=0)


def test_a_child_not_started_yet_does_not_end_a_wait(tmp_path: Path) -> None:
    later = Child("node-1", ["true"], tmp_path / "node-1.log")
    calls = itertools.count()
    assert wait_for(lambda: next(calls) == 2, 5, "x", watch=[later], interval=0)


def test_online_counts_only_online_nodes() -> None:
    nodes = [{"state": "online"}, {"state": "suspect"}, {"state": "online"}, {}]
    assert online(nodes) == 2
    seen = iter([[], nodes[:1], nodes])
    assert wait_online(lambda: next(seen), 2, 5) == nodes
