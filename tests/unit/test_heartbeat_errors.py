"""The node's heartbeat says what went wrong, even when the error has no text."""

from __future__ import annotations

from tossit.node.heartbeat import describe_error


def test_a_timeout_is_named_with_its_limit() -> None:
    assert str(TimeoutError()) == ""  # (what the log line showed: nothing)
    assert describe_error(TimeoutError(), 10.0) == "timed out after 10 s"
    assert describe_error(TimeoutError(), None) == "timed out"


def test_other_errors_keep_their_text_or_say_their_type() -> None:
    assert describe_error(ConnectionRefusedError("connection refused")) == "connection refused"
    assert describe_error(OSError()) == "OSError"
