"""The XML of S3 answers and request bodies.

Answers are built as text (no DOM: a listing of 1,000 keys is one join); request
bodies (DeleteObjects, CreateBucketConfiguration) are small and parsed with the
standard library, namespace or not, as clients differ.
"""

from __future__ import annotations

import base64
import binascii
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from xml.sax.saxutils import escape

from tossit.brain.s3.conditions import DeleteCondition, delete_condition
from tossit.brain.s3.errors import S3Error

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
HEADER = '<?xml version="1.0" encoding="UTF-8"?>\n'
# A DeleteObjects body names at most 1,000 keys of at most 1 KiB each.
MAX_XML_BODY = 2 * 1024 * 1024


def iso8601(ts: float) -> str:
    """S3's timestamp format in XML: 2026-12-06T09:30:00.000Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


def http_date(ts: float) -> str:
    """The HTTP date format of Last-Modified (RFC 9110)."""
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(ts))


def el(name: str, value: str | int | bool | None) -> str:
    """One element with text content; None: nothing."""
    if value is None:
        return ""
    if isinstance(value, bool):
        value = "true" if value else "false"
    return f"<{name}>{escape(str(value))}</{name}>"


def document(root: str, parts: Iterable[str]) -> bytes:
    return (f'{HEADER}<{root} xmlns="{NS}">' + "".join(parts) + f"</{root}>").encode()


def owner(key_id: str, name: str) -> str:
    return f"<Owner>{el('ID', key_id)}{el('DisplayName', name)}</Owner>"


@dataclass(frozen=True)
class DeleteRequest:
    # Each key with its condition (<ETag>, <Size>, <LastModifiedTime>; None
    # without), in the order sent.
    objects: list[tuple[str, DeleteCondition | None]]
    quiet: bool

    @property
    def keys(self) -> list[str]:
        return [key for key, _ in self.objects]


def local_name(tag: str) -> str:
    """An element's name without its namespace (clients send S3's, or none)."""
    return tag.rsplit("}", 1)[-1]


def parse_body(body: bytes) -> ET.Element:
    if len(body) > MAX_XML_BODY:
        raise S3Error("MalformedXML", "the XML body is too large")
    try:
        # Python's expat refuses entity-expansion bombs; the size is capped above.
        return ET.fromstring(body)
    except ET.ParseError as exc:
        raise S3Error("MalformedXML", f"the XML body is not well-formed: {exc}") from None


def parse_delete(body: bytes, max_keys: int = 1000) -> DeleteRequest:
    """A DeleteObjects body: <Delete><Quiet/>?<Object><Key/><ETag/>?<Size/>?
    <LastModifiedTime/>?</Object>*</Delete>. An Object's ETag, Size and
    LastModifiedTime are its conditional delete (``conditions.delete_refusal``)."""
    root = parse_body(body)
    if local_name(root.tag) != "Delete":
        raise S3Error("MalformedXML", "the body's root element must be Delete")
    objects: list[tuple[str, DeleteCondition | None]] = []
    quiet = False
    for child in root:
        name = local_name(child.tag)
        if name == "Quiet":
            quiet = (child.text or "").strip().lower() == "true"
        elif name == "Object":
            objects.append(_delete_object(child))
    if not objects:
        raise S3Error("MalformedXML", "name at least one Object to delete")
    if len(objects) > max_keys:
        raise S3Error("MalformedXML", f"at most {max_keys} keys per DeleteObjects request")
    return DeleteRequest(objects, quiet)


def _delete_object(element: ET.Element) -> tuple[str, DeleteCondition | None]:
    """One <Object> of a DeleteObjects body: its key (as sent: a key may start or
    end with spaces) and its condition."""
    fields = {local_name(f.tag): f.text for f in element}
    key = fields.get("Key")
    if key is None:
        raise S3Error("MalformedXML", "every Object needs a Key")
    if fields.get("VersionId", "null") != "null":  # null: the object itself
        raise S3Error("NotImplemented", "versioning is not implemented by TossIt")
    sent = {n: fields[n] or "" for n in ("ETag", "Size", "LastModifiedTime") if n in fields}
    return key, delete_condition(sent.get("ETag"), sent.get("Size"),
                                 sent.get("LastModifiedTime"))


def parse_complete(body: bytes) -> list[tuple[int, str]]:
    """A CompleteMultipartUpload body: <CompleteMultipartUpload><Part>
    <PartNumber/><ETag/></Part>*</CompleteMultipartUpload>, as (number, ETag)
    in the order sent (the service judges the order). A part's checksum
    elements are ignored: each part's checksum was checked when it arrived."""
    root = parse_body(body)
    if local_name(root.tag) != "CompleteMultipartUpload":
        raise S3Error("MalformedXML", "the body's root element must be CompleteMultipartUpload")
    parts: list[tuple[int, str]] = []
    for child in root:
        if local_name(child.tag) != "Part":
            continue
        fields = {local_name(f.tag): (f.text or "").strip() for f in child}
        number, etag = fields.get("PartNumber"), fields.get("ETag")
        if not number or etag is None:
            raise S3Error("MalformedXML", "every Part needs a PartNumber and an ETag")
        if not (number.isascii() and number.isdigit()):
            raise S3Error("InvalidArgument", f"a part number must be an integer, not {number!r}")
        parts.append((int(number), etag))
    if not parts:
        raise S3Error("MalformedXML", "name at least one Part to complete the upload")
    return parts


def parse_location(body: bytes) -> str | None:
    """The LocationConstraint of a CreateBucketConfiguration (None without one)."""
    if not body.strip():
        return None
    root = parse_body(body)
    if local_name(root.tag) != "CreateBucketConfiguration":
        raise S3Error("MalformedXML", "the body's root element must be "
                                      "CreateBucketConfiguration")
    for child in root:
        if local_name(child.tag) == "LocationConstraint":
            return (child.text or "").strip() or None
    return None


def encode_token(last: str) -> str:
    """A continuation token after ``last`` (a key or a bucket name): opaque to
    clients (base64url), read back by ``decode_token``."""
    return base64.urlsafe_b64encode(last.encode()).decode()


def decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise S3Error("InvalidArgument", "The continuation token provided is incorrect") \
            from None
