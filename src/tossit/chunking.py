"""Cutting a byte stream into content-addressed chunks.

Chunks are fixed-size (the last one shorter): content-defined chunking would find
more duplicates inside edited files, but costs a rolling hash over every byte in
Python, and fixed chunks already dedupe whole identical files and copies. A
chunk's id is the SHA-256 of its bytes, as lowercase hex.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from typing import Protocol

CHUNK_ID_RE = re.compile(r"^[0-9a-f]{64}$")
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def is_chunk_id(value: str) -> bool:
    """A chunk id is exactly 64 lowercase hex digits: nothing else reaches a path."""
    return bool(CHUNK_ID_RE.fullmatch(value))


def chunk_id(data: bytes | bytearray | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


# What a stored blob is. ``data``: a piece of a file, named by the SHA-256 of its
# bytes. ``meta``: a pack of the brain's manifests (tossit.manifests), named by the
# SHA-256 of a fixed prefix and its bytes. The prefix separates the two name
# spaces: a file whose bytes equal a pack (a backup of a node's disk stored in
# TossIt, say) gets another id, so it is never mistaken for a pack nor a pack for it.
DATA = "data"
META = "meta"
KINDS = (DATA, META)
# Room a node keeps over its storage limit for manifest packs (a few KiB each).
# A full cluster must still take the packs of deletes: until they are on the
# nodes, the collector frees nothing (the nodes must hold the newer manifest
# before losing the older one), so without this room deleting could never
# free a full cluster.
META_ROOM = 64 * 1024 * 1024
_META_DOMAIN = b"tossit-meta-v1\0"


def content_id(data: bytes | bytearray | memoryview, kind: str = DATA) -> str:
    """The id a blob of this kind with these bytes is stored under."""
    if kind == DATA:
        return hashlib.sha256(data).hexdigest()
    if kind == META:
        h = hashlib.sha256(_META_DOMAIN)
        h.update(data)
        return h.hexdigest()
    raise ValueError(f"unknown blob kind {kind!r}")


async def rechunk(
    stream: AsyncIterable[bytes], chunk_size: int,
    cut: Callable[[int], bool] | None = None,
) -> AsyncIterator[bytes | bytearray]:
    """Re-cut an arbitrary stream of byte pieces into ``chunk_size`` blocks.

    Memory stays at one chunk plus one piece, whatever the stream's length; a
    chunk handed over is the caller's alone. An empty stream yields nothing (a
    0-byte file has no chunks). ``cut(filled)``, asked after each piece that
    leaves a chunk unfinished: True hands that chunk over short now (a slow
    sender's chunk, whose memory others wait for; chunks may have any size).
    """
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    buf = bytearray()
    async for piece in stream:
        if not piece:
            continue
        view = memoryview(piece)
        while view:
            room = chunk_size - len(buf)
            if not buf and len(view) >= chunk_size:
                # Fast path: a big piece yields whole chunks without copying into buf.
                yield bytes(view[:chunk_size])
                view = view[chunk_size:]
                continue
            buf += view[:room]
            view = view[room:]
            if len(buf) == chunk_size or (buf and not view and cut is not None
                                          and cut(len(buf))):
                # Handed over, not copied: the caller owns it now, and this frame
                # keeps no reference while it waits to be resumed (the caller may
                # free the chunk and wait for memory before asking for the next).
                full, buf = [buf], bytearray()
                yield full.pop()
    if buf:
        last = [buf]
        del buf
        yield last.pop()


class SameAsWhole:
    """A whole-object SHA-256 or MD5 a client sent to be checked (S3's signed
    payload hash, Content-MD5, x-amz-checksum-sha256): ``StreamHasher`` computes
    those digests anyway, so one given to it is bound to its own and costs no
    pass over the bytes. Fed by anything else, it hashes what it is fed."""

    def __init__(self, name: str) -> None:
        if name not in ("sha256", "md5"):
            raise ValueError(f"StreamHasher computes no whole-object {name}")
        self.name = name
        self._own = hashlib.new(name, usedforsecurity=False)
        self._fed = False
        self._whole: StreamHasher | None = None

    def bind(self, whole: StreamHasher) -> bool:
        """Take ``whole``'s digest from now on; False once bytes were fed here."""
        if self._fed:
            return False
        self._whole = whole
        return True

    def update(self, data: bytes | bytearray, /) -> None:
        if self._whole is None:
            self._fed = True
            self._own.update(data)

    def digest(self) -> bytes:
        if self._whole is None:
            return self._own.digest()
        return self._whole.digest_of(self.name)


class StreamHasher:
    """Whole-object SHA-256, MD5 (the S3 ETag) and byte count, fed chunk by chunk
    in order. ``extra``: more whole-object digests an uploader asked to check
    (``tossit.brain.s3.checksums``), fed the same bytes in the same thread."""

    def __init__(self, extra: Sequence[Digest] = ()) -> None:
        self._sha = hashlib.sha256()
        self._md5 = hashlib.md5(usedforsecurity=False)
        self.extra = [d for d in extra if not (isinstance(d, SameAsWhole) and d.bind(self))]
        self.size = 0

    def update_and_chunk_id(self, data: bytes | bytearray) -> str:
        """Feed one chunk; returns the chunk's own id.

        The hashes run in the caller's thread; hashlib releases the GIL on
        large buffers, so calling this via ``asyncio.to_thread`` overlaps them
        with network I/O. Up to the end of the first chunk the whole object's
        SHA-256 is the chunk's, so that chunk is hashed with SHA-256 once: an
        object of one chunk (most files) costs one pass less.
        """
        chunk = hashlib.sha256(data)
        if self.size == 0:
            self._sha = chunk.copy()
        else:
            self._sha.update(data)
        self._md5.update(data)
        for digest in self.extra:
            digest.update(data)
        self.size += len(data)
        return chunk.hexdigest()

    def hexdigest(self) -> str:
        return self._sha.hexdigest()

    def md5_hex(self) -> str:
        return self._md5.hexdigest()

    def digest_of(self, name: str) -> bytes:
        """The whole object's ``sha256`` or ``md5`` so far (``SameAsWhole``)."""
        return (self._sha if name == "sha256" else self._md5).digest()


class Digest(Protocol):
    """What ``StreamHasher`` feeds: hashlib's objects, and CRC wrappers like them."""

    def update(self, data: bytes | bytearray, /) -> None: ...

    def digest(self) -> bytes: ...
