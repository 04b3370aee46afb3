"""Conditional requests (If-Match, If-None-Match, If-Modified-Since,
If-Unmodified-Since) as S3 evaluates them, after RFC 9110 section 13.2.2:
If-Match first (a false one is 412), else If-Unmodified-Since; then
If-None-Match (a match is 304 for GET and HEAD, 412 otherwise), else
If-Modified-Since (not modified: 304). Dates count whole seconds, as
Last-Modified does. Also the conditions of writes (PutObject's If-Match and
If-None-Match) and of deletes (If-Match, x-amz-if-match-size,
x-amz-if-match-last-modified-time, and their DeleteObjects elements), judged
against the key's object before the body is read or the delete is queued.
Pure, for table tests."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from tossit.brain.s3.errors import S3Error


def _etags(header: str) -> list[str]:
    return [t.strip().removeprefix("W/").strip('"') for t in header.split(",") if t.strip()]


def _matches(header: str, etag: str) -> bool:
    tags = _etags(header)
    return "*" in tags or etag in tags


def _date(header: str) -> float | None:
    """Seconds since the epoch, or None for a date that does not parse (ignored,
    as RFC 9110 says)."""
    try:
        return parsedate_to_datetime(header).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def evaluate(headers: Mapping[str, str], etag: str, modified: float,
             read: bool = True) -> int | None:
    """The status that ends the request (304 or 412), or None to go on.
    ``headers``: lower-case names; ``read``: GET or HEAD."""
    mtime = float(int(modified))  # Last-Modified has whole seconds
    if_match = headers.get("if-match")
    if if_match is not None:
        if not _matches(if_match, etag):
            return 412
    else:
        since = headers.get("if-unmodified-since")
        at = _date(since) if since else None
        if at is not None and mtime > at:
            return 412
    if_none = headers.get("if-none-match")
    if if_none is not None:
        if _matches(if_none, etag):
            return 304 if read else 412
    elif read:
        since = headers.get("if-modified-since")
        at = _date(since) if since else None
        if at is not None and mtime <= at:
            return 304
    return None


# -- writes and deletes -----------------------------------------------------


@dataclass(frozen=True)
class Current:
    """What a write's or a delete's condition is judged against: the key's object."""

    etag: str
    size: int
    modified: float  # seconds since the epoch (its Last-Modified, whole seconds)


def any_etag(header: str) -> bool:
    """``If-Match: *``: any object will do, whichever it is."""
    return "*" in _etags(header)


def write_refusal(headers: Mapping[str, str], current: Current | None) -> str | None:
    """The S3 error code that refuses a PutObject's conditions, given the key's
    object now (None: no object), or None to write. If-Match first: no object is
    NoSuchKey (as S3 answers), another ETag PreconditionFailed; then
    If-None-Match: an object that matches it ('*': any) is PreconditionFailed."""
    if_match = headers.get("if-match")
    if if_match is not None:
        if current is None:
            return "NoSuchKey"
        if not _matches(if_match, current.etag):
            return "PreconditionFailed"
    if_none = headers.get("if-none-match")
    if if_none is not None and current is not None and _matches(if_none, current.etag):
        return "PreconditionFailed"
    return None


@dataclass(frozen=True)
class DeleteCondition:
    """What a conditional delete asks of the key's object; None: anything."""

    etag: str | None = None  # as If-Match: one ETag or a list, quoted or not, or '*'
    size: int | None = None
    modified: int | None = None  # whole seconds, as Last-Modified has them


def _size(value: str) -> int:
    if not (value.strip().isascii() and value.strip().isdigit()):
        raise S3Error("InvalidArgument", f"a size condition must be a whole number of "
                                         f"bytes, not {value!r}")
    return int(value)


def _when(value: str) -> int:
    """An HTTP date (what SDKs send in the header and the XML) or an ISO 8601
    time (what listings show), in whole seconds; a time without a zone is UTC."""
    text = value.strip()
    try:
        at = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        try:
            at = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise S3Error("InvalidArgument", f"a last-modified condition must be an HTTP "
                                             f"date or an ISO 8601 time, not {value!r}"
                          ) from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=datetime.UTC)
    return int(at.timestamp())


def delete_condition(etag: str | None, size: str | None,
                     modified: str | None) -> DeleteCondition | None:
    """A delete's condition from its parts as sent (None: not sent), or None
    without any. A size or a time that does not parse is InvalidArgument: a
    condition that cannot be judged is refused, never taken as true."""
    if etag is None and size is None and modified is None:
        return None
    return DeleteCondition(etag, None if size is None else _size(size),
                           None if modified is None else _when(modified))


def delete_condition_of(headers: Mapping[str, str]) -> DeleteCondition | None:
    """DeleteObject's condition, from its headers (lower-case names)."""
    return delete_condition(headers.get("if-match"), headers.get("x-amz-if-match-size"),
                            headers.get("x-amz-if-match-last-modified-time"))


def delete_refusal(condition: DeleteCondition | None, current: Current | None) -> str | None:
    """The S3 error code that refuses a conditional delete, given the key's object
    (None: no object), or None to go on. A condition its object fails is
    PreconditionFailed. A key with no object is no error, condition or not:
    there is nothing to delete, and a delete is idempotent (204, as the Ceph
    s3-tests expect, and AWS for the size and time conditions)."""
    if condition is None or current is None:
        return None
    if condition.etag is not None and not _matches(condition.etag, current.etag):
        return "PreconditionFailed"
    if condition.size is not None and condition.size != current.size:
        return "PreconditionFailed"
    if condition.modified is not None and condition.modified != int(current.modified):
        return "PreconditionFailed"
    return None
