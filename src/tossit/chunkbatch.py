"""Wire format for sending many small chunks to a node in one request.

A 4 KiB chunk costs far more in HTTP handling than in bytes, so the brain packs
the small chunks bound for one node into one request when several are waiting.
The body is a sequence of frames::

    32 bytes  the chunk's id (raw)
     4 bytes  length, big-endian; its top bit set: a manifest pack (kind meta,
              tossit.chunking), not a file chunk
     N bytes  the chunk

Packs travel with chunks, so that under load a commit's manifest rides in a
request that was going to the node anyway.

Pure functions, so the framing is tested without servers.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from tossit.chunking import DATA, META

_HEAD = struct.Struct(">32sI")
_META_BIT = 1 << 31
MAX_BATCH_CHUNKS = 64
MAX_BATCH_BYTES = 8 * 1024 * 1024


class BatchFormatError(ValueError):
    pass


def encode(chunks: Iterable[tuple[str, bytes | bytearray, str]]) -> bytes:
    """(id, bytes, kind) frames into one body."""
    parts: list[bytes | bytearray] = []
    for cid, data, kind in chunks:
        parts.append(_HEAD.pack(bytes.fromhex(cid), len(data) | (_META_BIT if kind == META
                                                                   else 0)))
        parts.append(data)
    return b"".join(parts)


def decode(body: bytes | bytearray) -> list[tuple[str, memoryview, str]]:
    """Split a batch body into (id, bytes, kind); raises BatchFormatError."""
    out: list[tuple[str, memoryview, str]] = []
    view = memoryview(body)
    pos = 0
    while pos < len(view):
        if len(view) - pos < _HEAD.size:
            raise BatchFormatError("truncated frame header")
        digest, word = _HEAD.unpack_from(view, pos)
        kind, length = (META, word & ~_META_BIT) if word & _META_BIT else (DATA, word)
        pos += _HEAD.size
        if length > len(view) - pos:
            raise BatchFormatError("frame longer than the body")
        out.append((digest.hex(), view[pos : pos + length], kind))
        pos += length
        if len(out) > MAX_BATCH_CHUNKS:
            raise BatchFormatError(f"more than {MAX_BATCH_CHUNKS} chunks in one batch")
    return out
