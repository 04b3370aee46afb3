"""Decoding ``aws-chunked`` bodies: what SDKs send for streaming uploads.

A body is a run of chunks ``HEX-SIZE[;chunk-signature=SIG]\\r\\nDATA\\r\\n``, a last
chunk of size 0, then optional trailer lines ``name:value\\r\\n`` (a checksum of
the whole payload, and with signed trailers its ``x-amz-trailer-signature``)
and an empty line. Signed variants chain each chunk's signature to the one
before, from the Authorization header's: a changed, dropped or reordered chunk
breaks the chain. ``ChunkedDecoder`` is a pure state machine fed the bytes as
they arrive; it returns the payload pieces and raises ``S3Error`` at the first
wrong byte, so a bad upload fails before it commits.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

from tossit.brain.s3.errors import S3Error
from tossit.brain.s3.signature import chunk_string_to_sign, sign, trailer_string_to_sign

MAX_LINE = 4096  # a chunk header or trailer line
MAX_CHUNK = 64 * 1024 * 1024
MAX_TRAILERS = 16


@dataclass(frozen=True)
class ChunkSigner:
    """The seed of a signed body's chain: its key, date and scope, and the
    request's own signature."""

    key: bytes
    amz_date: str
    scope: str
    seed: str


def _bad(message: str) -> S3Error:
    return S3Error("IncompleteBody", f"malformed aws-chunked body: {message}")


class ChunkedDecoder:
    def __init__(self, signer: ChunkSigner | None = None, signed_trailer: bool = False) -> None:
        self.signer = signer
        self.signed_trailer = signed_trailer
        self.previous = signer.seed if signer else ""
        self.trailers: dict[str, str] = {}
        self.size = 0  # payload bytes so far
        self._buf = bytearray()
        self._state = "size"
        self._left = 0  # data bytes left in the current chunk
        self._sig = ""  # the current chunk's signature
        self._hash = hashlib.sha256()
        self._trailer_text = bytearray()

    @property
    def done(self) -> bool:
        return self._state == "done"

    def feed(self, data: bytes) -> list[bytes]:
        """Payload pieces found in ``data`` (and what was left over before it)."""
        if self._state == "done":
            if data:
                raise _bad("bytes after the end of the body")
            return []
        out: list[bytes] = []
        if self._state == "data" and not self._buf:
            data = self._take_data(data, out)  # the common case: no copy
        self._buf += data
        while self._step(out):
            pass
        return out

    def finish(self) -> None:
        """The body ended: it must have ended where the format says."""
        if self._state != "done":
            raise _bad("the body ended before its last chunk")

    def _take_data(self, data: bytes, out: list[bytes]) -> bytes:
        piece = data[: self._left]
        if piece:
            self._left -= len(piece)
            self.size += len(piece)
            if self.signer:
                self._hash.update(piece)
            out.append(piece)
        if self._left == 0:
            self._state = "crlf"
        return data[len(piece):]

    def _line(self) -> bytes | None:
        end = self._buf.find(b"\r\n")
        if end < 0:
            if len(self._buf) > MAX_LINE:
                raise _bad("a line is too long")
            return None
        line = bytes(self._buf[:end])
        del self._buf[: end + 2]
        return line

    def _step(self, out: list[bytes]) -> bool:
        """One step of the machine; False when it needs more bytes."""
        state = self._state
        if state == "size":
            line = self._line()
            if line is None:
                return False
            self._start_chunk(line)
            return True
        if state == "data":
            if not self._buf:
                return False
            rest = self._take_data(bytes(self._buf), out)
            self._buf = bytearray(rest)
            return True
        if state == "crlf":
            if len(self._buf) < 2:
                return False
            if self._buf[:2] != b"\r\n":
                raise _bad("a chunk's data is longer than its size")
            del self._buf[:2]
            self._end_chunk()
            self._state = "size"
            return True
        if state == "trailer":
            line = self._line()
            if line is None:
                return False
            if not line:
                self._end_trailers()
                self._state = "done"
                if self._buf:
                    raise _bad("bytes after the end of the body")
                return False
            self._trailer_line(line)
            return True
        return False

    def _start_chunk(self, line: bytes) -> None:
        size_text, _, ext = line.partition(b";")
        try:
            size = int(size_text.strip(), 16)
        except ValueError:
            raise _bad(f"bad chunk size {size_text[:20]!r}") from None
        if size < 0 or size > MAX_CHUNK:
            raise _bad("chunk too large")
        self._sig = ""
        if ext:
            name, _, value = ext.decode("latin-1").partition("=")
            if name.strip() == "chunk-signature":
                self._sig = value.strip().lower()
        if self.signer and not self._sig:
            raise S3Error("SignatureDoesNotMatch", "a chunk of a signed body has no signature")
        self._hash = hashlib.sha256()
        self._left = size
        if size == 0:
            self._end_chunk()
            self._state = "trailer"
        else:
            self._state = "data"

    def _end_chunk(self) -> None:
        if self.signer is None:
            return
        s = self.signer
        expected = sign(s.key, chunk_string_to_sign(s.amz_date, s.scope, self.previous,
                                                    self._hash.hexdigest()))
        if not hmac.compare_digest(expected, self._sig):
            raise S3Error("SignatureDoesNotMatch",
                          "a chunk's signature does not match its bytes")
        self.previous = expected

    def _trailer_line(self, line: bytes) -> None:
        name, colon, value = line.decode("latin-1").partition(":")
        if not colon:
            raise _bad("a trailer line lacks its ':'")
        name = name.strip().lower()
        if name == "x-amz-trailer-signature":
            self.trailers[name] = value.strip()
            return
        if len(self.trailers) >= MAX_TRAILERS:
            raise _bad("too many trailers")
        self.trailers[name] = value.strip()
        self._trailer_text += f"{name}:{value.strip()}\n".encode("latin-1")

    def _end_trailers(self) -> None:
        if not (self.signer and self.signed_trailer):
            return
        s = self.signer
        got = self.trailers.pop("x-amz-trailer-signature", "")
        expected = sign(s.key, trailer_string_to_sign(s.amz_date, s.scope, self.previous,
                                                      bytes(self._trailer_text)))
        if not hmac.compare_digest(expected, got.lower()):
            raise S3Error("SignatureDoesNotMatch", "the trailer's signature does not match")


async def decode(body: AsyncIterable[bytes], decoder: ChunkedDecoder,
                 decoded_length: int | None) -> AsyncIterator[bytes]:
    """The payload of an aws-chunked ``body``; checks x-amz-decoded-content-length."""
    async for data in body:
        for piece in decoder.feed(data):
            yield piece
    decoder.finish()
    if decoded_length is not None and decoder.size != decoded_length:
        raise S3Error("IncompleteBody", f"the body decoded to {decoder.size} bytes, not the "
                                        f"{decoded_length} of x-amz-decoded-content-length")
