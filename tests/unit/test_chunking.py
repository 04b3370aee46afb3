"""Re-cutting byte streams into fixed-size content-addressed chunks."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tossit.chunking import (
    EMPTY_SHA256,
    SameAsWhole,
    StreamHasher,
    chunk_id,
    is_chunk_id,
    rechunk,
)


async def agen(pieces: Iterable[bytes]) -> AsyncIterator[bytes]:
    for p in pieces:
        yield p


def run_rechunk(pieces: list[bytes], size: int) -> list[bytes]:
    async def collect() -> list[bytes]:
        return [bytes(c) async for c in rechunk(agen(pieces), size)]

    return asyncio.run(collect())


def check_chunks(pieces: list[bytes], size: int) -> list[bytes]:
    out = run_rechunk(pieces, size)
    data = b"".join(pieces)
    assert b"".join(out) == data
    assert all(len(c) == size for c in out[:-1])
    if out:
        assert 0 < len(out[-1]) <= size
    assert len(out) == -(-len(data) // size)  # ceil
    assert all(isinstance(c, bytes | bytearray) for c in out)  # caller-owned buffers
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pieces=st.lists(st.binary(min_size=0, max_size=300), max_size=30),
    size=st.integers(min_value=1, max_value=97),
)
def test_rechunk_reassembles_any_piece_pattern(pieces: list[bytes], size: int) -> None:
    check_chunks(pieces, size)


@pytest.mark.parametrize("size", [1, 7, 64, 4096])
@pytest.mark.parametrize(
    "pattern",
    [
        "one-big", "bytes", "exact", "exact-plus-one", "exact-minus-one", "empties-mixed",
        "two-and-a-half",
    ],
)
def test_rechunk_patterns(size: int, pattern: str) -> None:
    data = bytes(range(256)) * 40  # 10240 bytes
    pieces: list[bytes]
    if pattern == "one-big":
        pieces = [data]
    elif pattern == "bytes":
        pieces = [data[i : i + 1] for i in range(len(data))]
    elif pattern == "exact":
        pieces = [data[i : i + size] for i in range(0, len(data), size)]
    elif pattern == "exact-plus-one":
        pieces = [data[i : i + size + 1] for i in range(0, len(data), size + 1)]
    elif pattern == "exact-minus-one":
        step = max(1, size - 1)
        pieces = [data[i : i + step] for i in range(0, len(data), step)]
    elif pattern == "empties-mixed":
        pieces = [b"", data[:5], b"", b"", data[5:3000], b"", data[3000:], b""]
    else:
        step = size * 2 + size // 2 + 1
        pieces = [data[i : i + step] for i in range(0, len(data), step)]
    check_chunks(pieces, size)


def test_rechunk_accepts_bytearray_and_memoryview_pieces() -> None:
    data = b"abcdefghij" * 10
    out = check_chunks([bytearray(data[:33]), memoryview(data[33:])], 16)  # type: ignore[list-item]
    assert len(out) == 7


def test_rechunk_empty_stream_yields_nothing() -> None:
    assert run_rechunk([], 8) == []
    assert run_rechunk([b"", b"", b""], 8) == []


def test_rechunk_rejects_bad_chunk_size() -> None:
    with pytest.raises(ValueError):
        run_rechunk([b"x"], 0)
    with pytest.raises(ValueError):
        run_rechunk([b"x"], -1)


def test_chunk_ids_are_sha256_hex() -> None:
    assert chunk_id(b"") == EMPTY_SHA256 == hashlib.sha256(b"").hexdigest()
    assert chunk_id(b"hello") == hashlib.sha256(b"hello").hexdigest()
    assert chunk_id(bytearray(b"hello")) == chunk_id(memoryview(b"hello")) == chunk_id(b"hello")
    assert is_chunk_id(chunk_id(b"anything"))


def test_stream_hasher_whole_object_and_per_chunk() -> None:
    data = bytes(range(256)) * 100
    h = StreamHasher()
    ids = [h.update_and_chunk_id(c) for c in run_rechunk([data], 1000)]
    assert h.size == len(data)
    assert h.hexdigest() == hashlib.sha256(data).hexdigest()
    assert ids == [hashlib.sha256(data[i : i + 1000]).hexdigest()
                   for i in range(0, len(data), 1000)]
    empty = StreamHasher()
    assert empty.size == 0 and empty.hexdigest() == EMPTY_SHA256


@pytest.mark.parametrize("pieces", [[b"x" * 5000], [b"", b"abc", b"def"], [b"", b""],
                                    [b"a", b"", b"bc"]])
def test_stream_hasher_whole_object_whatever_the_first_piece(pieces: list[bytes]) -> None:
    # The first chunk's SHA-256 doubles as the start of the whole object's.
    h = StreamHasher()
    ids = [h.update_and_chunk_id(p) for p in pieces]
    whole = b"".join(pieces)
    assert (h.hexdigest(), h.md5_hex(), h.size) == (
        hashlib.sha256(whole).hexdigest(), hashlib.md5(whole).hexdigest(), len(whole))
    assert ids == [hashlib.sha256(p).hexdigest() for p in pieces]


@pytest.mark.parametrize("pieces", [[b"x" * 5000, b"y" * 3], [b"abc"], []])
def test_a_clients_whole_digest_is_the_hashers_own(pieces: list[bytes]) -> None:
    """S3's signed payload hash and Content-MD5 are the object's SHA-256 and MD5,
    which the write path computes anyway: bound to the hasher they cost no pass,
    and give its digests; fed by anyone else they hash what they are fed."""
    sha, md5, crc = SameAsWhole("sha256"), SameAsWhole("md5"), hashlib.sha1()
    h = StreamHasher([sha, md5, crc])
    assert h.extra == [crc]  # only the one it does not compute is fed
    for p in pieces:
        h.update_and_chunk_id(p)
    whole = b"".join(pieces)
    assert sha.digest() == hashlib.sha256(whole).digest()
    assert md5.digest() == hashlib.md5(whole).digest()
    assert crc.digest() == hashlib.sha1(whole).digest()
    alone = SameAsWhole("sha256")
    alone.update(b"abc")
    assert alone.digest() == hashlib.sha256(b"abc").digest()
    assert StreamHasher([alone]).extra == [alone]  # fed already: it goes on by itself
    with pytest.raises(ValueError):
        SameAsWhole("crc32")


GOOD = "0123456789abcdef" * 4


@pytest.mark.parametrize(
    "value",
    [
        GOOD.upper(),
        GOOD[:-1] + "A",
        GOOD[:-1],
        GOOD + "0",
        "",
        "../" + GOOD[3:],
        GOOD[:30] + "/../" + GOOD[34:],
        GOOD[:-1] + "g",
        GOOD[:-1] + "\n",
        GOOD + "\n",
        "\n" + GOOD,
        " " + GOOD[1:],
        GOOD[:-1] + "\u0661",  # ARABIC-INDIC DIGIT ONE: a unicode digit
        GOOD[:-1] + "\uff11",  # FULLWIDTH DIGIT ONE
        GOOD[:-1] + "\u00e9",
        GOOD[:-1] + "\x00",
        "0x" + GOOD[2:],
    ],
)
def test_is_chunk_id_rejects(value: str) -> None:
    assert not is_chunk_id(value)


def test_is_chunk_id_accepts_64_lowercase_hex() -> None:
    assert is_chunk_id(GOOD)
    assert is_chunk_id("0" * 64)
    assert is_chunk_id("f" * 64)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=70))
def test_is_chunk_id_matches_reference(value: str) -> None:
    expected = len(value) == 64 and all(ch in "0123456789abcdef" for ch in value)
    assert is_chunk_id(value) == expected


def test_a_chunk_batch_carries_each_frames_kind() -> None:
    from tossit import chunkbatch
    from tossit.chunking import DATA, META, content_id

    frames = [(content_id(b"a" * 10), b"a" * 10, DATA),
              (content_id(b"pack", META), b"pack", META), (content_id(b""), b"", DATA)]
    body = chunkbatch.encode(frames)
    assert [(c, bytes(d), k) for c, d, k in chunkbatch.decode(body)] == frames
    with pytest.raises(chunkbatch.BatchFormatError):
        chunkbatch.decode(body[:-2])
