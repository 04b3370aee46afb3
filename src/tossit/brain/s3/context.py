"""One S3 request as the operation handlers see it: its target, its verified
key, and its body decoded whatever way the client sent it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field

from starlette.requests import Request

from tossit.brain.api.access import who
from tossit.brain.ingest import Expected
from tossit.brain.keys import KeyInfo
from tossit.brain.models import Bucket, Object
from tossit.brain.s3.chunked import ChunkedDecoder, ChunkSigner, decode
from tossit.brain.s3.errors import S3Error, new_request_id
from tossit.brain.s3.signature import (
    STREAMING_SIGNED,
    STREAMING_SIGNED_TRAILER,
    STREAMING_UNSIGNED_TRAILER,
    UNSIGNED,
    Verified,
)
from tossit.brain.service import Brain
from tossit.brain.states import EventKind
from tossit.chunking import SameAsWhole

# What the payload-hash check calls its digest (an ``Expected``'s algorithm): a
# mismatch is XAmzContentSHA256Mismatch, not BadDigest.
PAYLOAD_SHA256 = "x-amz-content-sha256"


@dataclass
class S3Context:
    brain: Brain
    request: Request
    operation: str
    bucket: str | None
    key: str | None
    query: Mapping[str, str]
    headers: Mapping[str, str]  # lower-case names; repeated headers joined with ','
    verified: Verified | None  # None: authentication is off
    request_id: str = field(default_factory=new_request_id)

    @property
    def key_info(self) -> KeyInfo | None:
        info: KeyInfo | None = getattr(self.request.state, "key", None)
        return info

    async def existing_bucket(self, name: str | None = None) -> Bucket:
        """The request's bucket (or ``name``); NoSuchBucket if it does not exist."""
        name = name or self.bucket or ""
        found = await self.brain.store.live_bucket(name)
        if found is None:
            raise S3Error("NoSuchBucket", f"The specified bucket does not exist: {name}")
        return found

    def note(self, action: EventKind, bucket: str, obj: Object) -> None:
        """Count the change for the activity log, as the REST routes do."""
        info = self.key_info
        self.brain.activity.note(action, who(self.request), info.id if info else None, bucket,
                                 obj.key, obj.size, obj.id)

    # -- the body -------------------------------------------------------------

    @property
    def payload_mode(self) -> str:
        if self.verified is None:
            return self.headers.get("x-amz-content-sha256", UNSIGNED)
        return self.verified.request.payload

    def body(self) -> tuple[AsyncIterator[bytes], Callable[[], Mapping[str, str]] | None]:
        """The payload as it arrives, and (aws-chunked) its trailers once it has
        ended. Chunk signatures are checked on the way."""
        mode = self.payload_mode
        stream = self.request.stream()
        # The payload mode says whether the body is aws-chunked, not
        # Content-Encoding: a client may name aws-chunked there over a plain body.
        if mode not in (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER):
            return stream, None
        signer = None
        if mode in (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER) and self.verified is not None:
            req = self.verified.request
            signer = ChunkSigner(self.verified.signing_key, req.amz_date,
                                 req.credential.scope, req.signature)
        decoder = ChunkedDecoder(signer, signed_trailer=mode == STREAMING_SIGNED_TRAILER)
        declared = self.headers.get("x-amz-decoded-content-length")
        length = int(declared) if declared and declared.isascii() and declared.isdigit() else None
        return decode(stream, decoder, length), lambda: decoder.trailers

    def payload_checks(self) -> list[Expected]:
        """The body's SHA-256 as signed in x-amz-content-sha256, when it is one."""
        mode = self.payload_mode
        if len(mode) == 64 and self.verified is not None:
            return [Expected(PAYLOAD_SHA256, SameAsWhole("sha256"), bytes.fromhex(mode))]
        return []

    @property
    def size_hint(self) -> int | None:
        for name in ("x-amz-decoded-content-length", "content-length"):
            value = self.headers.get(name)
            if value is not None and value.isascii() and value.isdigit():
                return int(value)
        return None

    async def small_body(self, limit: int) -> bytes:
        """A bounded body read whole (XML requests), checked against its signed hash."""
        stream, _ = self.body()
        data = bytearray()
        async for piece in stream:
            data += piece
            if len(data) > limit:
                raise S3Error("InvalidRequest", f"the body is larger than {limit} bytes")
        for check in self.payload_checks():
            check.digest.update(data)
            check.check()  # DigestMismatch: XAmzContentSHA256Mismatch (s3.app)
        return bytes(data)
