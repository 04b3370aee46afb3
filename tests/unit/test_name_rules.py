"""The text rules: names that show what they are, media types that can be sent
back, and the name "keep both" gives."""

from __future__ import annotations

import pytest

from tossit.names import numbered_name, servable_media_type, unsafe_char, valid_media_type


@pytest.mark.parametrize(("text", "bad"), [
    ("holiday.jpg", None),
    ("résumé – final.pdf", None),
    ("می\u200cخواهم.txt", None),  # a joiner: needed
    ("evil\u202egpj.exe", "U+202E"),
    ("a\u200fb", "U+200F"),
    ("\u2066x\u2069", "U+2066"),
    ("c1\u0085", "U+0085"),
    ("del\x7f", "U+007F"),
    ("nul\x00", "U+0000"),
])
def test_unsafe_char(text: str, bad: str | None) -> None:
    assert unsafe_char(text) == bad


@pytest.mark.parametrize(("value", "ok"), [
    ("text/plain", True),
    ('text/plain; charset="utf-8"', True),
    ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", True),
    ("image/svg+xml; charset=utf-8; x=y", True),
    ("text/\u20ac", False),
    ("text/plain\x01", False),
    ("text/plain\nX-Evil: 1", False),
    ("no-slash", False),
    ("text/plain; charset", False),
    ("a/" + "b" * 300, False),
])
def test_valid_media_type(value: str, ok: bool) -> None:
    assert valid_media_type(value) == ok
    assert servable_media_type(value) == (value if ok else "application/octet-stream")


@pytest.mark.parametrize(("key", "n", "numbered"), [
    ("cat.jpg", 2, "cat (2).jpg"),
    ("photos/cat.jpg", 3, "photos/cat (3).jpg"),
    ("archive.tar.gz", 2, "archive.tar (2).gz"),
    (".bashrc", 2, ".bashrc (2)"),
    ("README", 2, "README (2)"),
    ("a.b/c", 2, "a.b/c (2)"),  # a dot in a folder is not an extension
])
def test_numbered_name(key: str, n: int, numbered: str) -> None:
    assert numbered_name(key, n) == numbered
