"""The digests a client may send with an upload, as checks for the write path.

``Content-MD5`` (base64 MD5) and ``x-amz-checksum-{crc32,crc32c,sha1,sha256}``
(base64), in headers or, for aws-chunked bodies, in the trailer named by
``x-amz-trailer``. Each becomes an ``Expected`` of ``tossit.brain.ingest``: fed
the bytes with the object's own hashes, and compared before the commit.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import crc32c

from tossit.brain.ingest import Expected
from tossit.brain.s3.errors import S3Error
from tossit.chunking import Digest, SameAsWhole


class Crc32:
    """zlib's CRC-32 with hashlib's interface (big-endian 4-byte digest, as S3)."""

    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes | bytearray, /) -> None:
        self.value = zlib.crc32(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


ALGORITHMS: dict[str, Callable[[], Digest]] = {
    "crc32": Crc32,
    "crc32c": crc32c.CRC32CHash,
    "sha1": lambda: hashlib.sha1(usedforsecurity=False),
    "sha256": lambda: SameAsWhole("sha256"),  # the write path's own: no pass of its own
}
_SIZES = {"crc32": 4, "crc32c": 4, "sha1": 20, "sha256": 32}
PREFIX = "x-amz-checksum-"


def _decode(value: str, what: str, size: int) -> bytes:
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != size:
        # S3: a malformed Content-MD5 is InvalidDigest; a malformed checksum is a
        # checksum the bytes do not have, BadDigest (as the Ceph s3-tests expect).
        code = "InvalidDigest" if what == "Content-MD5" else "BadDigest"
        raise S3Error(code, f"{what} is not a base64 digest of {size} bytes")
    return raw


def _algorithm(name: str) -> str:
    algorithm = name.lower()
    if algorithm not in ALGORITHMS:
        raise S3Error("NotImplemented", f"the checksum algorithm {name} is not implemented "
                                        "by TossIt (CRC32, CRC32C, SHA1, SHA256 are)")
    return algorithm


def _trailer_value(trailers: Callable[[], Mapping[str, str]], name: str,
                   size: int) -> Callable[[], bytes]:
    """The digest a trailer will carry, read once the body has ended."""
    def value() -> bytes:
        sent = trailers().get(name)
        if sent is None:
            raise S3Error("InvalidRequest", f"the body has no {name} trailer, though "
                                            "x-amz-trailer announced it")
        return _decode(sent, name, size)

    return value


def expected_digests(headers: Mapping[str, str],
                     trailers: Callable[[], Mapping[str, str]] | None = None
                     ) -> list[Expected]:
    """The checks an upload's headers ask for. ``trailers``: the body's trailer
    lines, readable once the body has ended (aws-chunked with x-amz-trailer)."""
    out: list[Expected] = []
    md5 = headers.get("content-md5")
    if md5 is not None:
        out.append(Expected("MD5", SameAsWhole("md5"), _decode(md5, "Content-MD5", 16)))
    for name, value in headers.items():
        if name.startswith(PREFIX) and name != PREFIX + "type":
            algorithm = _algorithm(name[len(PREFIX):])
            out.append(Expected(algorithm.upper(), ALGORITHMS[algorithm](),
                                _decode(value, name, _SIZES[algorithm])))
    trailer = headers.get("x-amz-trailer")
    if trailer:
        name = trailer.strip().lower()
        if not name.startswith(PREFIX) or trailers is None:
            raise S3Error("InvalidRequest", f"unsupported x-amz-trailer {trailer!r}")
        algorithm = _algorithm(name[len(PREFIX):])
        out.append(Expected(algorithm.upper(), ALGORITHMS[algorithm](),
                            _trailer_value(trailers, name, _SIZES[algorithm])))
    return out


def checksum_headers(checks: Sequence[Expected]) -> dict[str, str]:
    """The x-amz-checksum-* an upload (an object or a part) was verified against,
    sent back as S3 does: the SDKs check them, and name a part's again in the
    completion. Call once the body is stored (the digests have seen every byte)."""
    return {PREFIX + c.algorithm.lower(): base64.b64encode(c.digest.digest()).decode()
            for c in checks if c.algorithm.lower() in ALGORITHMS}


def upload_algorithm(headers: Mapping[str, str]) -> dict[str, str]:
    """CreateMultipartUpload's ``x-amz-checksum-algorithm``, echoed when TossIt
    checks it on every part (501 for one it cannot check)."""
    name = headers.get("x-amz-checksum-algorithm")
    if name is None:
        return {}
    return {"x-amz-checksum-algorithm": _algorithm(name.strip()).upper()}


def to_keep(checks: Sequence[Expected]) -> dict[str, str]:
    """The whole-object checksums of ``expected_digests`` that came in headers,
    to keep with the object (its ``user_meta``): given back to a GET or HEAD that
    asks (``x-amz-checksum-mode``) and copied with the object. They are checked
    before the commit, so what is kept is what the bytes are. Checksums sent in
    a trailer arrive after the commit is prepared: checked, not kept."""
    return {PREFIX + c.algorithm.lower(): base64.b64encode(c.value).decode()
            for c in checks if c.algorithm.lower() in ALGORITHMS and isinstance(c.value, bytes)}


def kept_of(user_meta: Mapping[str, Any] | None) -> dict[str, str]:
    """The checksums an object keeps (``to_keep``), from its ``user_meta``."""
    return {k: str(v) for k, v in (user_meta or {}).items() if k.startswith(PREFIX)}


def kept_headers(user_meta: Mapping[str, Any] | None, headers: Mapping[str, str],
                 whole: bool) -> dict[str, str]:
    """The kept checksums of an object, for a GET or HEAD of it ``whole`` (not a
    range: they are of every byte) that sent ``x-amz-checksum-mode: ENABLED``."""
    if not whole or headers.get("x-amz-checksum-mode", "").upper() != "ENABLED":
        return {}
    kept = kept_of(user_meta)
    return {**kept, "x-amz-checksum-type": "FULL_OBJECT"} if kept else {}

