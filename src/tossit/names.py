"""What TossIt accepts as text people will see: file names, key names, media types.

A name is shown in terminals, the dashboard and other people's download dialogs,
so it must show what it is. Control characters (C0, DEL and the C1 range
U+0080-U+009F, which terminals act on) and the bidirectional controls (which make
``\\u202egpj.exe`` display as "exe.jpg") are refused. Joiners (U+200C/U+200D) stay:
Persian, Indic scripts and emoji sequences need them.

A media type is sent back as a ``Content-Type`` header on every download: one that
is not a valid header value (non-ASCII, a control character, a line feed) would
make every download of that file fail. So it is checked at upload (RFC 9110
``type/subtype *(; name=value)``), and a stored one that fails is served as
``application/octet-stream``.
"""

from __future__ import annotations

import re

# C0, DEL, C1; Arabic letter mark, LRM/RLM, the embeddings and overrides, the isolates.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_TYPE = re.compile(
    rf"{_TOKEN}/{_TOKEN}(?:[ \t]*;[ \t]*{_TOKEN}=(?:{_TOKEN}|\"(?:[^\"\\\x00-\x1f\x7f]|\\.)*\"))*")
MAX_MEDIA_TYPE = 255
FALLBACK_MEDIA_TYPE = "application/octet-stream"


def unsafe_char(text: str) -> str | None:
    """The first character a name may not hold, as ``U+XXXX`` (None: all fine)."""
    m = _UNSAFE.search(text)
    return None if m is None else f"U+{ord(m.group()):04X}"


def valid_media_type(value: str) -> bool:
    """Is this a media type that can go back out as a Content-Type header?"""
    return (len(value) <= MAX_MEDIA_TYPE and value.isascii()
            and _MEDIA_TYPE.fullmatch(value.strip()) is not None)


def servable_media_type(stored: str) -> str:
    """What to send for a stored media type (one from before the check, or from
    a rebuilt manifest, may be invalid: never fail the download for it)."""
    return stored if valid_media_type(stored) else FALLBACK_MEDIA_TYPE


def numbered_name(key: str, n: int) -> str:
    """The name "keep both" gives the n-th file uploaded under ``key``:
    ``photos/cat.jpg`` -> ``photos/cat (2).jpg``. The number goes before the last
    extension of the last path segment; a name that starts with a dot and has no
    other (``.bashrc``) or has none gets it at the end."""
    folder, sep, base = key.rpartition("/")
    stem, dot, ext = base.rpartition(".")
    if not dot or not stem:
        stem, ext = base, ""
    numbered = f"{stem} ({n})" + (f".{ext}" if ext else "")
    return f"{folder}{sep}{numbered}"
