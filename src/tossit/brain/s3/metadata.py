"""What an object keeps of its upload's headers, and gives back on reads.

User metadata (``x-amz-meta-*``) and the representation headers S3 preserves
(Cache-Control, Content-Disposition, Content-Encoding, Content-Language,
Expires) live in the object's ``user_meta`` JSON, by lower-case header name;
Content-Type has its own column. Kept in the manifests like the rest of the
object, so a rebuilt brain still has them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tossit.brain.s3.errors import S3Error

META_PREFIX = "x-amz-meta-"
KEPT_HEADERS = ("cache-control", "content-disposition", "content-encoding",
                "content-language", "expires")
MAX_USER_META = 2048  # bytes of names and values, as S3 allows
# GetObject's response-* query parameters: the header each overrides.
RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}


def from_headers(headers: Mapping[str, str],
                 kept: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The ``user_meta`` of an upload with these (lower-case) headers; ``kept``:
    more to keep that is not given back as is (the checksums of
    ``checksums.to_keep``)."""
    meta: dict[str, Any] = dict(kept or {})
    user_bytes = 0
    for name, value in headers.items():
        if name.startswith(META_PREFIX):
            meta[name] = value
            user_bytes += len(name) - len(META_PREFIX) + len(value.encode())
        elif name in KEPT_HEADERS:
            if name == "content-encoding":
                value = _without_aws_chunked(value)
                if not value:
                    continue
            meta[name] = value
    if user_bytes > MAX_USER_META:
        raise S3Error("InvalidArgument", f"user metadata is limited to {MAX_USER_META} bytes "
                                         "(MetadataTooLarge)")
    return meta or None


def _without_aws_chunked(value: str) -> str:
    """Content-Encoding as sent, but for aws-chunked: how this upload travelled,
    not what the object is (S3 keeps ``deflate, gzip`` as written)."""
    tokens = [t.strip() for t in value.split(",")]
    if "aws-chunked" not in tokens:
        return value.strip()
    return ", ".join(t for t in tokens if t and t != "aws-chunked")


def to_headers(user_meta: Mapping[str, Any] | None) -> dict[str, str]:
    """The response headers of an object's kept metadata."""
    if not user_meta:
        return {}
    return {name: str(value) for name, value in user_meta.items()
            if name.startswith(META_PREFIX) or name in KEPT_HEADERS}
