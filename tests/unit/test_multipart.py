"""The streaming multipart reader, fed in every possible split of a real body."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator, Iterable
from typing import Any

import httpx
import pytest

from tossit.brain.multipart import MultipartError, StreamingMultipart


def encode(files: dict[str, tuple[Any, ...]] | None = None,
           data: dict[str, str] | None = None) -> tuple[str, bytes]:
    """A multipart body as httpx (and so a real client) would send it."""
    req = httpx.Request("POST", "http://x/upload", files=files, data=data)
    return req.headers["content-type"], req.read()


async def pieces(body: bytes, cuts: Iterable[int]) -> AsyncIterator[bytes]:
    last = 0
    for c in sorted(set(cuts)):
        if 0 < c < len(body):
            yield body[last:c]
            last = c
    yield body[last:]


def split_all(body: bytes, size: int) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


async def as_stream(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for c in chunks:
        yield c


async def read_file(ctype: str, stream: AsyncIterator[bytes]) -> tuple[str, str | None, bytes]:
    form = StreamingMultipart(ctype, stream)
    part = await form.file_part("file")
    got = bytearray()
    async for piece in part.body:
        assert piece  # never an empty piece
        got += piece
    await form.drain()
    return part.filename, part.content_type, bytes(got)


PAYLOAD = os.urandom(700) + b"\r\n--not-the-boundary\r\n" + b"\r\n" * 5 + os.urandom(300)


def test_every_two_way_split() -> None:
    ctype, body = encode(files={"file": ("a.bin", PAYLOAD, "application/x-thing")})

    async def all_splits() -> None:
        for cut in range(len(body) + 1):
            name, ct, got = await read_file(ctype, pieces(body, [cut]))
            assert got == PAYLOAD, cut
            assert name == "a.bin" and ct == "application/x-thing"

    asyncio.run(all_splits())


def test_byte_by_byte() -> None:
    ctype, body = encode(files={"file": ("a.bin", PAYLOAD)})
    _, _, got = asyncio.run(read_file(ctype, as_stream(split_all(body, 1))))
    assert got == PAYLOAD


def test_random_splits() -> None:
    rnd = random.Random(1234)
    data = os.urandom(50_000)
    ctype, body = encode(files={"file": ("big.bin", data)}, data={"note": "hello"})

    async def go() -> None:
        for _ in range(100):
            cuts = [rnd.randrange(len(body)) for _ in range(rnd.randrange(1, 60))]
            _, _, got = await read_file(ctype, pieces(body, cuts))
            assert got == data

    asyncio.run(go())


@pytest.mark.parametrize("payload", [b"", b"x", b"\r\n", b"--", b"\r\n--"])
def test_tiny_and_tricky_payloads(payload: bytes) -> None:
    ctype, body = encode(files={"file": ("t", payload)})

    async def go() -> None:
        for size in (1, 2, 3, 7, len(body)):
            _, _, got = await read_file(ctype, as_stream(split_all(body, size)))
            assert got == payload

    asyncio.run(go())


def test_other_fields_before_the_file_are_skipped() -> None:
    ctype, body = encode(
        files={"other": ("o.txt", b"not me"), "file": ("me.txt", b"the file")},
        data={"a": "1", "b": "2" * 1000},
    )
    assert body.index(b'name="other"') < body.index(b'name="file"')
    _, _, got = asyncio.run(read_file(ctype, as_stream(split_all(body, 5))))
    assert got == b"the file"


def test_fields_after_the_file_are_drained() -> None:
    boundary = "XyZ"
    body = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="f.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
        "DATA\r\n"
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="after"\r\n\r\n'
        "trailing field\r\n"
        f"--{boundary}--\r\n"
    ).encode()
    ctype = f"multipart/form-data; boundary={boundary}"
    name, ct, got = asyncio.run(read_file(ctype, as_stream(split_all(body, 3))))
    assert (name, ct, got) == ("f.bin", "application/octet-stream", b"DATA")


def test_unicode_filename() -> None:
    ctype, body = encode(files={"file": ("résumé 日本.pdf", b"%PDF")})
    name, _, got = asyncio.run(read_file(ctype, as_stream([body])))
    assert got == b"%PDF"
    assert name == "résumé 日本.pdf"


def _expect_error(ctype: str, chunks: list[bytes], match: str) -> None:
    async def go() -> None:
        with pytest.raises(MultipartError, match=match) as info:
            await read_file(ctype, as_stream(chunks))
        assert info.value.status == 400
        assert info.value.body()["error"] == "invalid_multipart"

    asyncio.run(go())


def test_missing_file_field() -> None:
    ctype, body = encode(files={"upload": ("x", b"abc")}, data={"name": "x"})
    _expect_error(ctype, split_all(body, 4), "no 'file' field")


def test_file_field_that_is_not_a_file() -> None:
    boundary = "b-o-u-n-d"
    body = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"\r\n\r\n'
        "just text\r\n"
        f"--{boundary}--\r\n"
    ).encode()
    _expect_error(f"multipart/form-data; boundary={boundary}", split_all(body, 9),
                  "must be a file")


def test_empty_body() -> None:
    ctype, _ = encode(files={"file": ("x", b"abc")})
    _expect_error(ctype, [], "ended before its final boundary")


@pytest.mark.parametrize("keep", [0.2, 0.5, 0.9, 0.99])
def test_truncated_body(keep: float) -> None:
    data = os.urandom(5000)
    ctype, body = encode(files={"file": ("x", data)})
    cut = body[: int(len(body) * keep)]

    async def go() -> None:
        with pytest.raises(MultipartError):
            await read_file(ctype, as_stream(split_all(cut, 100)))

    asyncio.run(go())


def test_truncated_after_file_part_end() -> None:
    ctype, body = encode(files={"file": ("x", b"payload")})
    # Everything but the final "--\r\n" of the closing boundary.
    cut = body[: body.rindex(b"--\r\n")]

    async def go() -> None:
        form = StreamingMultipart(ctype, as_stream([cut]))
        part = await form.file_part()
        got = bytearray()
        # The error surfaces while reading the part (its end is not certain
        # until the boundary's suffix arrives) or at the latest in drain().
        with pytest.raises(MultipartError, match="ended"):
            async for p in part.body:
                got += p
            await form.drain()
        assert bytes(got) in (b"", b"payload")

    asyncio.run(go())


def test_garbage_body() -> None:
    ctype, _ = encode(files={"file": ("x", b"abc")})
    _expect_error(ctype, [b"this is not multipart at all\r\n" * 10], "multipart")


@pytest.mark.parametrize(
    "ctype",
    [
        "application/json",
        "",
        "multipart/form-data",  # no boundary
        "multipart/form-data; boundary=" + "b" * 201,
        "multipart/mixed; boundary=abc",
    ],
)
def test_bad_content_type(ctype: str) -> None:
    with pytest.raises(MultipartError):
        StreamingMultipart(ctype, as_stream([]))


def test_part_without_form_data_disposition() -> None:
    boundary = "B0UND"
    body = (
        f"--{boundary}\r\n"
        'Content-Disposition: attachment; name="file"; filename="f"\r\n\r\n'
        "DATA\r\n"
        f"--{boundary}--\r\n"
    ).encode()
    _expect_error(f"multipart/form-data; boundary={boundary}", [body], "form-data")
