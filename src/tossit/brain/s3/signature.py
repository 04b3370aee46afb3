"""AWS Signature Version 4, as S3 checks it: the Authorization header, presigned
URLs, and the per-chunk signatures of ``aws-chunked`` bodies (``chunked``).

Pure functions over a request's parts (method, raw path and query, headers,
the time): the router looks the key up and hands its secret in, so every rule
here is table-tested without a server. The signing key is derived once per
(secret, day, region) and cached: a request then costs one HMAC of its
canonical request, not five.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from calendar import timegm
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from urllib.parse import quote, unquote, unquote_to_bytes

from tossit.brain.s3.errors import S3Error, not_implemented

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "s3"
MAX_SKEW = 15 * 60  # seconds between the request's time and ours, as AWS allows
MAX_PRESIGN_EXPIRES = 7 * 24 * 3600
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

# x-amz-content-sha256 values that are not the body's hash.
UNSIGNED = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING = frozenset({STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER})

_CREDENTIAL_RE = re.compile(r"^([A-Za-z0-9]{1,128})/(\d{8})/([A-Za-z0-9-]{1,64})/s3/aws4_request$")
_AMZ_DATE_RE = re.compile(r"^\d{8}T\d{6}Z$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Credential:
    key_id: str
    day: str  # YYYYMMDD
    region: str

    @property
    def scope(self) -> str:
        return f"{self.day}/{self.region}/{SERVICE}/aws4_request"


@dataclass(frozen=True)
class SignedRequest:
    """What a request claims: who signs, what, when, and the signature."""

    credential: Credential
    signed_headers: tuple[str, ...]
    signature: str
    amz_date: str  # YYYYMMDDTHHMMSSZ
    payload: str  # x-amz-content-sha256: a hex hash, UNSIGNED-PAYLOAD or STREAMING-...
    presigned: bool = False
    expires: int | None = None  # presigned URLs: seconds after amz_date


@dataclass(frozen=True)
class Verified:
    """A request whose signature holds: the key, and what the body still needs
    checking against (``payload``); ``signing_key`` and ``seed`` sign its chunks."""

    request: SignedRequest
    signing_key: bytes

    @property
    def key_id(self) -> str:
        return self.request.credential.key_id


def _error(code: str, message: str) -> S3Error:
    return S3Error(code, message)


def parse_authorization(header: str, headers: Mapping[str, str]) -> SignedRequest:
    """The parts of ``Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=...,
    Signature=...``, with x-amz-date and x-amz-content-sha256 from ``headers``
    (lower-case names)."""
    algorithm, _, rest = header.strip().partition(" ")
    if algorithm == "AWS":
        raise not_implemented("Signature Version 2 (sign with AWS4-HMAC-SHA256)")
    if algorithm != ALGORITHM:
        raise _error("AuthorizationHeaderMalformed", f"unsupported algorithm {algorithm!r}")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, eq, value = part.strip().partition("=")
        if eq:
            fields[name] = value.strip()
    missing = [f for f in ("Credential", "SignedHeaders", "Signature") if f not in fields]
    if missing:
        raise _error("AuthorizationHeaderMalformed", f"the header lacks {', '.join(missing)}")
    amz_date = headers.get("x-amz-date", "")
    if not amz_date:
        # A Date header may stand in, but every SDK sends x-amz-date.
        raise S3Error("AccessDenied", "AWS authentication requires a valid X-Amz-Date header")
    payload = headers.get("x-amz-content-sha256")
    if payload is None:
        raise S3Error("InvalidRequest", "Missing required header for this request: "
                                        "x-amz-content-sha256")
    return SignedRequest(
        credential=_credential(fields["Credential"], "AuthorizationHeaderMalformed"),
        signed_headers=_signed_headers(fields["SignedHeaders"], "AuthorizationHeaderMalformed"),
        signature=fields["Signature"].lower(), amz_date=amz_date, payload=payload,
    )


def parse_presigned(query: Mapping[str, str]) -> SignedRequest:
    """The parts of a presigned URL's ``X-Amz-*`` query parameters."""
    code = "AuthorizationQueryParametersError"
    if query.get("X-Amz-Algorithm") != ALGORITHM:
        raise _error(code, "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"")
    needed = ("X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders",
              "X-Amz-Signature")
    missing = [n for n in needed if n not in query]
    if missing:
        raise _error(code, f"the query lacks {', '.join(missing)}")
    expires = query["X-Amz-Expires"]
    if not (expires.isascii() and expires.isdigit()) or int(expires) > MAX_PRESIGN_EXPIRES:
        raise _error(code, "X-Amz-Expires must be a number of seconds up to 604800")
    return SignedRequest(
        credential=_credential(query["X-Amz-Credential"], code),
        signed_headers=_signed_headers(query["X-Amz-SignedHeaders"], code),
        signature=query["X-Amz-Signature"].lower(), amz_date=query["X-Amz-Date"],
        payload=query.get("X-Amz-Content-Sha256", UNSIGNED), presigned=True,
        expires=int(expires),
    )


def _credential(value: str, code: str) -> Credential:
    m = _CREDENTIAL_RE.match(value)
    if m is None:
        raise _error(code, f"malformed credential {value!r}: expected "
                           "KEYID/YYYYMMDD/REGION/s3/aws4_request")
    return Credential(m.group(1), m.group(2), m.group(3))


def _signed_headers(value: str, code: str) -> tuple[str, ...]:
    names = tuple(value.split(";"))
    if not value or "host" not in names:
        raise _error(code, "SignedHeaders must include host")
    return names


def request_time(amz_date: str) -> float:
    if not _AMZ_DATE_RE.match(amz_date):
        raise S3Error("AccessDenied", f"X-Amz-Date {amz_date!r} is not YYYYMMDDTHHMMSSZ")
    d = amz_date  # digits where the pattern says (time.strptime costs 20 µs a request)
    try:
        stamp = datetime(int(d[0:4]), int(d[4:6]), int(d[6:8]), int(d[9:11]),
                         int(d[11:13]), int(d[13:15]))
        return float(timegm(stamp.timetuple()))
    except ValueError:
        raise S3Error("AccessDenied", f"X-Amz-Date {amz_date!r} is not a date") from None


def check_time(req: SignedRequest, now: float) -> None:
    """Too old, too new, or (presigned) expired: refused before any HMAC."""
    at = request_time(req.amz_date)
    if req.credential.day != req.amz_date[:8]:
        raise _error("SignatureDoesNotMatch",
                     "the credential's date is not the day of X-Amz-Date")
    if req.presigned:
        if now < at - MAX_SKEW:
            raise S3Error("AccessDenied", "Request is not valid yet")
        if now > at + (req.expires or 0):
            raise S3Error("AccessDenied", "Request has expired")
        return
    if abs(now - at) > MAX_SKEW:
        raise S3Error("RequestTimeTooSkewed",
                      "The difference between the request time and the server's time is "
                      "too large (more than 15 minutes)")


# -- canonical request --------------------------------------------------------


def uri_encode(text: str, slash: bool = True) -> str:
    """AWS's URI encoding: every byte but A-Z a-z 0-9 - _ . ~ (and '/' in a path)."""
    return quote(text, safe="-_.~/" if slash else "-_.~")


def canonical_uri(raw_path: bytes) -> str:
    """The path as AWS re-encodes it (S3 does not normalise ``.`` or ``//``)."""
    return uri_encode(unquote_to_bytes(raw_path).decode("utf-8", "surrogateescape"))


def canonical_query(raw_query: str, drop: str | None = None) -> str:
    """Parameters decoded, re-encoded, sorted by name then value (``drop``: the
    presigned URL's own X-Amz-Signature)."""
    pairs = []
    for part in raw_query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        name, value = unquote(name), unquote(value)
        if name == drop:
            continue
        pairs.append((uri_encode(name, False), uri_encode(value, False)))
    return "&".join(f"{n}={v}" for n, v in sorted(pairs))


def signed_value(raw: bytes) -> str:
    """A header's value as the signature covers it: its bytes as sent. The SDKs
    send non-ASCII metadata as UTF-8 and sign its characters; the canonical
    request is encoded as UTF-8 with surrogateescape, so decoded this way any
    bytes sign as they came (latin-1 would turn é into two characters)."""
    return raw.decode("utf-8", "surrogateescape")


def canonical_headers(names: Sequence[str], headers: Sequence[tuple[str, str]]) -> str:
    """``name:value`` lines of the signed headers (values trimmed, inner runs of
    spaces made one, repeated headers joined with commas)."""
    values: dict[str, list[str]] = {}
    wanted = set(names)
    for name, value in headers:
        if name in wanted:
            values.setdefault(name, []).append(" ".join(value.split()))
    return "".join(f"{n}:{','.join(values.get(n, []))}\n" for n in names)


def canonical_request(method: str, uri: str, query: str, names: Sequence[str],
                      headers: Sequence[tuple[str, str]], payload: str) -> str:
    return "\n".join([method, uri, query, canonical_headers(names, headers),
                      ";".join(names), payload])


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    return "\n".join([ALGORITHM, amz_date, scope,
                      hashlib.sha256(canonical.encode("utf-8", "surrogateescape")).hexdigest()])


@lru_cache(maxsize=1024)
def signing_key(secret: str, day: str, region: str) -> bytes:
    """HMAC chain of AWS4+secret over the day, region, service: cached, since
    every request of the day with that key uses the same one."""
    k = hmac.digest(("AWS4" + secret).encode(), day.encode(), "sha256")
    k = hmac.digest(k, region.encode(), "sha256")
    k = hmac.digest(k, SERVICE.encode(), "sha256")
    return hmac.digest(k, b"aws4_request", "sha256")


def sign(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()


def verify(req: SignedRequest, secret: str, method: str, raw_path: bytes, raw_query: str,
           headers: Sequence[tuple[str, str]], now: float) -> Verified:
    """Check the signature (after the time rules); SignatureDoesNotMatch if it
    does not hold. ``headers``: lower-case names, as received."""
    check_time(req, now)
    if not req.presigned and req.payload not in STREAMING and req.payload != UNSIGNED \
            and not _HEX64.match(req.payload):
        raise S3Error("InvalidArgument", f"x-amz-content-sha256 {req.payload!r} is neither "
                                         "a SHA-256 nor a known payload mode")
    key = signing_key(secret, req.credential.day, req.credential.region)
    drop = "X-Amz-Signature" if req.presigned else None
    uri = canonical_uri(raw_path)
    # AWS re-encodes the path and the query; a client that signs them as sent
    # (botocore does, for S3) agrees with that for every name it encodes itself,
    # but other clients encode differently: the text as sent is tried second.
    raw_uri = raw_path.decode("latin-1")
    variants = [(uri, canonical_query(raw_query, drop))]
    if raw_uri != uri:
        variants.append((raw_uri, canonical_query(raw_query, drop)))
    for path, query in variants:
        canonical = canonical_request(method, path, query, req.signed_headers, headers,
                                      req.payload)
        expected = sign(key, string_to_sign(req.amz_date, req.credential.scope, canonical))
        if hmac.compare_digest(expected, req.signature):
            return Verified(req, key)
    raise S3Error("SignatureDoesNotMatch")


def chunk_string_to_sign(amz_date: str, scope: str, previous: str, chunk_sha256: str) -> str:
    """What one chunk of a STREAMING-AWS4-HMAC-SHA256-PAYLOAD body signs."""
    return "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, previous, EMPTY_SHA256,
                      chunk_sha256])


def trailer_string_to_sign(amz_date: str, scope: str, previous: str, trailer: bytes) -> str:
    """What the trailer of a STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER body signs."""
    return "\n".join(["AWS4-HMAC-SHA256-TRAILER", amz_date, scope, previous,
                      hashlib.sha256(trailer).hexdigest()])
