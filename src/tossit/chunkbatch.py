"""Wire format for sending many small chunks to a node in one request.

A 4 KiB chunk costs far more in HTTP handling than in bytes, so the brain packs
the small chunks bound for one node into one request when several are waiting.
The body is a sequence of frames::

    32 bytes  SHA-256 of the chunk (its id, raw)
     4 bytes  length, big-endian
     N bytes  the chunk

Pure functions, so the framing is tested without servers.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

_HEAD = struct.Struct(">32sI")
MAX_BATCH_CHUNKS = 64
MAX_BATCH_BYTES = 8 * 1024 * 1024


class BatchFormatError(ValueError):
    pass


def encode(chunks: Iterable[tuple[str, bytes | bytearray]]) -> bytes:
    parts: list[bytes | bytearray] = []
    for cid, data in chunks:
        parts.append(_HEAD.pack(bytes.fromhex(cid), len(data)))
        parts.append(data)
    return b"".join(parts)


def decode(body: bytes | bytearray) -> list[tuple[str, memoryview]]:
    """Split a batch body into (chunk id, bytes); raises BatchFormatError."""
    out: list[tuple[str, memoryview]] = []
    view = memoryview(body)
    pos = 0
    while pos < len(view):
        if len(view) - pos < _HEAD.size:
            raise BatchFormatError("truncated frame header")
        digest, length = _HEAD.unpack_from(view, pos)
        pos += _HEAD.size
        if length > len(view) - pos:
            raise BatchFormatError("frame longer than the body")
        out.append((digest.hex(), view[pos : pos + length]))
        pos += length
        if len(out) > MAX_BATCH_CHUNKS:
            raise BatchFormatError(f"more than {MAX_BATCH_CHUNKS} chunks in one batch")
    return out
