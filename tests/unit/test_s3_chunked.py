"""aws-chunked bodies: AWS's published streaming example (its seed and chunk
signatures), the unsigned-trailer variant SDKs send, and broken bodies."""

from __future__ import annotations

import base64
import hashlib
import zlib

import pytest

from tossit.brain.s3.chunked import ChunkedDecoder, ChunkSigner
from tossit.brain.s3.errors import S3Error
from tossit.brain.s3.signature import (
    chunk_string_to_sign,
    parse_authorization,
    sign,
    signing_key,
    trailer_string_to_sign,
    verify,
)

# The example of AWS's "Signature Calculations for the Authorization Header:
# Transferring Payload in Multiple Chunks" (S3 API reference).
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AMZ_DATE = "20130524T000000Z"
SCOPE = "20130524/us-east-1/s3/aws4_request"
SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
CHUNK_SIGNATURES = ["ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
                    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
                    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"]
PAYLOAD = b"a" * 66560


def aws_example_body(signatures: list[str] = CHUNK_SIGNATURES) -> bytes:
    sizes = [65536, 1024, 0]
    out = b""
    for size, sig in zip(sizes, signatures, strict=True):
        out += f"{size:x};chunk-signature={sig}\r\n".encode() + b"a" * size + b"\r\n"
    return out


def signer() -> ChunkSigner:
    return ChunkSigner(signing_key(SECRET, "20130524", "us-east-1"), AMZ_DATE, SCOPE, SEED)


def decode_all(decoder: ChunkedDecoder, body: bytes, step: int) -> bytes:
    out = b""
    for i in range(0, len(body), step):
        out += b"".join(decoder.feed(body[i:i + step]))
    decoder.finish()
    return out


def test_aws_example_seed_signature_verifies() -> None:
    headers = [("host", "s3.amazonaws.com"), ("x-amz-date", AMZ_DATE),
               ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
               ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
               ("content-encoding", "aws-chunked"), ("x-amz-decoded-content-length", "66560"),
               ("content-length", "66824")]
    authorization = (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
        "SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
        f"x-amz-decoded-content-length;x-amz-storage-class,Signature={SEED}")
    claim = parse_authorization(authorization, dict(headers))
    at = 1369353600.0  # 2013-05-24T00:00:00Z
    done = verify(claim, SECRET, "PUT", b"/examplebucket/chunkObject.txt", "", headers, at)
    assert done.signing_key == signing_key(SECRET, "20130524", "us-east-1")


@pytest.mark.parametrize("step", [1, 7, 4096, 65536 + 90, 1 << 20])
def test_aws_example_chunks_decode_at_any_split(step: int) -> None:
    decoder = ChunkedDecoder(signer())
    assert decode_all(decoder, aws_example_body(), step) == PAYLOAD
    assert decoder.size == len(PAYLOAD) and decoder.previous == CHUNK_SIGNATURES[-1]


def test_chunk_signatures_match_the_published_ones() -> None:
    key = signing_key(SECRET, "20130524", "us-east-1")
    previous = SEED
    for data, want in zip([b"a" * 65536, b"a" * 1024, b""], CHUNK_SIGNATURES, strict=True):
        previous = sign(key, chunk_string_to_sign(AMZ_DATE, SCOPE, previous,
                                                  hashlib.sha256(data).hexdigest()))
        assert previous == want


def test_a_changed_byte_or_signature_is_refused() -> None:
    body = bytearray(aws_example_body())
    body[200] = ord("b")
    with pytest.raises(S3Error) as exc:
        decode_all(ChunkedDecoder(signer()), bytes(body), 4096)
    assert exc.value.code == "SignatureDoesNotMatch"
    swapped = [CHUNK_SIGNATURES[1], CHUNK_SIGNATURES[0], CHUNK_SIGNATURES[2]]
    with pytest.raises(S3Error) as exc:
        decode_all(ChunkedDecoder(signer()), aws_example_body(swapped), 4096)
    assert exc.value.code == "SignatureDoesNotMatch"
    unsigned = aws_example_body().replace(b";chunk-signature=" + CHUNK_SIGNATURES[0].encode(), b"")
    with pytest.raises(S3Error) as exc:
        decode_all(ChunkedDecoder(signer()), unsigned, 4096)
    assert exc.value.code == "SignatureDoesNotMatch"


def unsigned_trailer_body(data: bytes, piece: int = 8192, checksum: bytes | None = None) -> bytes:
    """As botocore's AwsChunkedWrapper writes STREAMING-UNSIGNED-PAYLOAD-TRAILER."""
    out = b""
    for i in range(0, len(data), piece):
        chunk = data[i:i + piece]
        out += f"{len(chunk):x}".encode() + b"\r\n" + chunk + b"\r\n"
    crc = checksum if checksum is not None else zlib.crc32(data).to_bytes(4, "big")
    return out + b"0\r\nx-amz-checksum-crc32:" + base64.b64encode(crc) + b"\r\n\r\n"


@pytest.mark.parametrize("size", [0, 1, 8192, 100_000])
def test_unsigned_trailer_variant(size: int) -> None:
    data = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    decoder = ChunkedDecoder()
    assert decode_all(decoder, unsigned_trailer_body(data), 1000) == data
    crc = base64.b64decode(decoder.trailers["x-amz-checksum-crc32"])
    assert crc == zlib.crc32(data).to_bytes(4, "big")


def test_signed_trailer() -> None:
    key = signing_key(SECRET, "20130524", "us-east-1")
    data = b"trailer bytes"
    sig1 = sign(key, chunk_string_to_sign(AMZ_DATE, SCOPE, SEED, hashlib.sha256(data).hexdigest()))
    sig2 = sign(key, chunk_string_to_sign(AMZ_DATE, SCOPE, sig1, hashlib.sha256(b"").hexdigest()))
    trailer = b"x-amz-checksum-crc32:" + base64.b64encode(zlib.crc32(data).to_bytes(4, "big"))
    tsig = sign(key, trailer_string_to_sign(AMZ_DATE, SCOPE, sig2, trailer + b"\n"))
    body = (f"{len(data):x};chunk-signature={sig1}\r\n".encode() + data + b"\r\n"
            + f"0;chunk-signature={sig2}\r\n".encode() + trailer + b"\r\n"
            + f"x-amz-trailer-signature:{tsig}\r\n\r\n".encode())
    decoder = ChunkedDecoder(signer(), signed_trailer=True)
    assert decode_all(decoder, body, 5) == data
    with pytest.raises(S3Error) as exc:
        decode_all(ChunkedDecoder(signer(), signed_trailer=True),
                   body.replace(trailer, trailer[:-2] + b"AA"), 5)
    assert exc.value.code == "SignatureDoesNotMatch"


@pytest.mark.parametrize("body", [
    b"zz\r\nabc\r\n0\r\n\r\n",  # a size that is not hex
    b"3\r\nabcd\r\n0\r\n\r\n",  # data longer than its size
    b"3\r\nabc\r\n",  # no last chunk
    b"3\r\nabc\r\n0\r\n\r\nextra",  # bytes after the end
    b"3\r\nabc\r\n0\r\nno-colon\r\n\r\n",  # a trailer without ':'
    b"f" * 5000,  # a header line without end
])
def test_malformed_bodies(body: bytes) -> None:
    with pytest.raises(S3Error) as exc:
        decode_all(ChunkedDecoder(), body, 3)
    assert exc.value.code == "IncompleteBody"
