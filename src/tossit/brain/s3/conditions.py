"""Conditional requests (If-Match, If-None-Match, If-Modified-Since,
If-Unmodified-Since) as S3 evaluates them, after RFC 9110 section 13.2.2:
If-Match first (a false one is 412), else If-Unmodified-Since; then
If-None-Match (a match is 304 for GET and HEAD, 412 otherwise), else
If-Modified-Since (not modified: 304). Dates count whole seconds, as
Last-Modified does. Pure, for table tests."""

from __future__ import annotations

from collections.abc import Mapping
from email.utils import parsedate_to_datetime


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
