"""The pure pieces of the S3 multipart operations: the completion's XML, the
copy range, the domain errors' S3 codes, and the kept-alive answer of a long
completion (whitespace inside a 200, then the result or the error document)."""

from __future__ import annotations

import asyncio

import botocore.session
import pytest
from botocore.handlers import _looks_like_special_case_error
from botocore.parsers import create_parser
from starlette.responses import StreamingResponse

from tossit.brain.s3.app import MULTIPART_HANDLERS
from tossit.brain.s3.copy import parse_copy_range
from tossit.brain.s3.errors import S3Error, from_domain
from tossit.brain.s3.keepalive import answer_when_done
from tossit.brain.s3.router import MULTIPART
from tossit.brain.s3.xml import HEADER, parse_complete
from tossit.errors import (
    EntityTooSmall,
    InvalidArgument,
    InvalidPart,
    InvalidPartOrder,
    NoSuchUpload,
    TossitError,
)
from tossit.ranges import ByteRange

NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'


@pytest.mark.parametrize(("body", "want"), [
    (f'<CompleteMultipartUpload {NS}><Part><PartNumber>1</PartNumber><ETag>"a"</ETag></Part>'
     "<Part><ETag>b</ETag><PartNumber>3</PartNumber><ChecksumCRC32>AAAAAA==</ChecksumCRC32>"
     "</Part></CompleteMultipartUpload>", [(1, '"a"'), (3, "b")]),
    # The order is kept as sent: the service judges it (InvalidPartOrder).
    ("<CompleteMultipartUpload><Part><PartNumber>2</PartNumber><ETag>x</ETag></Part>"
     "<Part><PartNumber>1</PartNumber><ETag>y</ETag></Part></CompleteMultipartUpload>",
     [(2, "x"), (1, "y")]),
])
def test_parse_complete(body: str, want: list[tuple[int, str]]) -> None:
    assert parse_complete(body.encode()) == want


@pytest.mark.parametrize(("body", "code"), [
    ("<CompleteMultipartUpload>", "MalformedXML"),
    ("<Delete/>", "MalformedXML"),
    ("<CompleteMultipartUpload></CompleteMultipartUpload>", "MalformedXML"),
    ("<CompleteMultipartUpload><Part><ETag>x</ETag></Part></CompleteMultipartUpload>",
     "MalformedXML"),
    ("<CompleteMultipartUpload><Part><PartNumber>1</PartNumber></Part>"
     "</CompleteMultipartUpload>", "MalformedXML"),
    ("<CompleteMultipartUpload><Part><PartNumber>one</PartNumber><ETag>x</ETag></Part>"
     "</CompleteMultipartUpload>", "InvalidArgument"),
])
def test_bad_completion_bodies(body: str, code: str) -> None:
    with pytest.raises(S3Error) as exc:
        parse_complete(body.encode())
    assert exc.value.code == code


@pytest.mark.parametrize(("value", "size", "want"), [
    ("bytes=0-0", 1, ByteRange(0, 0)),
    ("bytes=10-19", 100, ByteRange(10, 19)),
    ("bytes=0-99", 100, ByteRange(0, 99)),
    ("bytes=0-100", 100, "InvalidRange"),  # past the end (s3-tests, as AWS)
    ("bytes=0-21", 5, "InvalidRange"),
    ("bytes=20-10", 100, "InvalidArgument"),
    ("bytes=10-", 100, "InvalidArgument"),  # S3 wants both ends
    ("bytes=-10", 100, "InvalidArgument"),
    ("10-19", 100, "InvalidArgument"),
    ("bytes=0-2,3-5", 100, "InvalidArgument"),
])
def test_parse_copy_range(value: str, size: int, want: ByteRange | str) -> None:
    if isinstance(want, ByteRange):
        assert parse_copy_range(value, size) == want
        return
    with pytest.raises(S3Error) as exc:
        parse_copy_range(value, size)
    assert exc.value.code == want


@pytest.mark.parametrize(("exc", "code", "status"), [
    (NoSuchUpload("u"), "NoSuchUpload", 404),
    (InvalidPart(2, "absent"), "InvalidPart", 400),
    (InvalidPartOrder("2 after 3"), "InvalidPartOrder", 400),
    (EntityTooSmall(1, 10, 100), "EntityTooSmall", 400),
    (InvalidArgument("max-parts"), "InvalidArgument", 400),
    (TossitError("other"), "InternalError", 500),
])
def test_multipart_errors_keep_their_s3_code(exc: TossitError, code: str, status: int) -> None:
    err = from_domain(exc)
    assert (err.code, err.status) == (code, status)


async def body_of(response: StreamingResponse) -> bytes:
    out = b""
    async for piece in response.body_iterator:
        assert isinstance(piece, bytes)
        out += piece
    return out


async def test_a_quick_completion_is_an_ordinary_answer() -> None:
    async def work() -> bytes:
        return f"{HEADER}<Done/>".encode()

    response = await answer_when_done(work(), "/b/k", "R1", first_wait=1.0)
    assert not isinstance(response, StreamingResponse)
    assert response.status_code == 200 and response.body == f"{HEADER}<Done/>".encode()


async def test_a_quick_failure_keeps_its_status() -> None:
    async def work() -> bytes:
        raise InvalidPart(1, "absent")

    with pytest.raises(InvalidPart):
        await answer_when_done(work(), "/b/k", "R1", first_wait=1.0)


async def test_a_long_completion_is_kept_alive_then_answered() -> None:
    async def work() -> bytes:
        await asyncio.sleep(0.35)
        return f"{HEADER}<Done/>".encode()

    response = await answer_when_done(work(), "/b/k", "R1", first_wait=0.05, interval=0.1)
    assert isinstance(response, StreamingResponse) and response.status_code == 200
    body = await body_of(response)
    head, rest = body[:len(HEADER)], body[len(HEADER):]
    assert head == HEADER.encode()
    spaces = len(rest) - len(rest.lstrip(b" "))
    assert 2 <= spaces <= 4 and rest.lstrip(b" ") == b"<Done/>"


async def test_a_long_completion_that_fails_sends_the_error_inside_the_200() -> None:
    async def work() -> bytes:
        await asyncio.sleep(0.2)
        raise NoSuchUpload("u")

    response = await answer_when_done(work(), "/b/k", "R7", first_wait=0.05, interval=0.1)
    assert isinstance(response, StreamingResponse) and response.status_code == 200
    body = await body_of(response)
    assert body.startswith(HEADER.encode()) and body.count(b"<?xml") == 1
    assert b"<Error><Code>NoSuchUpload</Code>" in body and b"<RequestId>R7</RequestId>" in body


def test_every_multipart_operation_has_its_handler() -> None:
    assert set(MULTIPART_HANDLERS) == MULTIPART


async def test_botocore_reads_a_kept_alive_answer_and_an_error_inside_it() -> None:
    """What boto3 and aws-cli do with the two long answers: the result parsed
    through the whitespace; the error inside the 200 recognised (botocore
    turns it into a 500 and raises or retries)."""
    async def result() -> bytes:
        await asyncio.sleep(0.15)
        return (f'{HEADER}<CompleteMultipartUploadResult {NS}><Bucket>b</Bucket><Key>k</Key>'
                "<ETag>&quot;abc-2&quot;</ETag></CompleteMultipartUploadResult>").encode()

    async def failure() -> bytes:
        await asyncio.sleep(0.15)
        raise InvalidPart(1, "absent")

    ok = await answer_when_done(result(), "/b/k", "R1", first_wait=0.01, interval=0.05)
    bad = await answer_when_done(failure(), "/b/k", "R2", first_wait=0.01, interval=0.05)
    assert isinstance(ok, StreamingResponse) and isinstance(bad, StreamingResponse)
    ok_body, bad_body = await body_of(ok), await body_of(bad)
    operation = botocore.session.get_session().get_service_model("s3").operation_model(
        "CompleteMultipartUpload")
    parsed = create_parser("rest-xml").parse(
        {"body": ok_body, "headers": {}, "status_code": 200}, operation.output_shape)
    assert (parsed["Bucket"], parsed["Key"], parsed["ETag"]) == ("b", "k", '"abc-2"')
    assert not _looks_like_special_case_error(200, ok_body)
    assert _looks_like_special_case_error(200, bad_body)
