"""Which S3 operation a request is: a pure function of its method, bucket, key,
query parameter names and a few headers (S3 routes by sub-resource, not by path).

Multipart uploads are named here (``MULTIPART``) and answered by
``tossit.brain.s3.multipart``, registered in ``tossit.brain.s3.app``.
Sub-resources TossIt does not implement (versioning, ACL grants, policies,
lifecycle, website, object lock, ...) resolve to ``NotImplemented``, never to a
neighbouring operation that would answer with a wrong success.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Mapping
from urllib.parse import unquote_to_bytes

from tossit.brain.s3.errors import S3Error, not_implemented

# Bucket sub-resources answered 501 (their name in the query string).
UNSUPPORTED_BUCKET = frozenset({
    "accelerate", "analytics", "cors", "encryption", "intelligent-tiering",
    "inventory", "lifecycle", "logging", "metrics", "notification", "object-lock",
    "ownershipControls", "policy", "policyStatus", "publicAccessBlock", "replication",
    "requestPayment", "tagging", "website", "select", "restore", "torrent",
    "retention", "legal-hold", "attributes",
})
MULTIPART = frozenset({
    "CreateMultipartUpload", "UploadPart", "UploadPartCopy", "CompleteMultipartUpload",
    "AbortMultipartUpload", "ListParts", "ListMultipartUploads",
})
# Headers asking for what TossIt does not do: answered 501 rather than ignored.
# Every server-side encryption header (SSE-S3, SSE-KMS, SSE-C key or algorithm, of
# the object or of a copy's source), whichever comes without the others.
_SSE_PREFIXES = ("x-amz-server-side-encryption", "x-amz-copy-source-server-side-encryption")
_UNSUPPORTED_HEADERS = {
    "x-amz-object-lock-mode": "object lock",
    "x-amz-object-lock-retain-until-date": "object lock",
    "x-amz-object-lock-legal-hold": "object lock",
    "x-amz-grant-read": "ACL grants", "x-amz-grant-write": "ACL grants",
    "x-amz-grant-read-acp": "ACL grants", "x-amz-grant-write-acp": "ACL grants",
    "x-amz-grant-full-control": "ACL grants",
    "x-amz-website-redirect-location": "website redirects",
    "x-amz-tagging": "object tagging",
}
_PRIVATE_ACLS = frozenset({"private", "bucket-owner-full-control"})


def operation(method: str, bucket: str | None, key: str | None, query: Collection[str],
              headers: Mapping[str, str]) -> str:
    """The S3 operation's name (as in the AWS API reference)."""
    _refuse_unsupported_headers(method, headers)
    if bucket is None:
        if method in ("GET", "HEAD"):
            return "ListBuckets"
        raise S3Error("MethodNotAllowed")
    if key is None:
        return _bucket_operation(method, query)
    return _object_operation(method, query, headers)


NULL_VERSION = "null"  # the version id of every object: versioning is never on


def check_version(query: Mapping[str, str]) -> None:
    """``versionId=null`` names the object itself (its only version, as in an
    unversioned S3 bucket); any other version cannot exist: 501, not the
    current object in its place."""
    version = query.get("versionId")
    if version is not None and version != NULL_VERSION:
        raise not_implemented("object versions (versionId other than 'null')")


def refuse_form_upload(method: str, bucket: str | None, key: str | None,
                       headers: Mapping[str, str]) -> None:
    """A browser-form POST upload carries its signature in the form, not in the
    request: refused as not implemented before authentication, which would
    call it anonymous (403) and send the user looking for a wrong key."""
    if (method == "POST" and bucket is not None and key is None
            and headers.get("content-type", "").lower().startswith("multipart/form-data")):
        raise not_implemented("POST (browser form) uploads")


def _refuse_unsupported_headers(method: str, headers: Mapping[str, str]) -> None:
    encryption = next((n for n in headers if n.startswith(_SSE_PREFIXES)), None)
    if method not in ("PUT", "POST"):
        if encryption is not None:
            # Nothing stored here is encrypted by TossIt: a read that names a key
            # or a method asks for what is not there (AWS answers 400 too).
            raise S3Error("InvalidArgument", f"{encryption}: no object here is stored with "
                                             "server-side encryption")
        return
    if encryption is not None:
        raise not_implemented(f"server-side encryption ({encryption})")
    for name, what in _UNSUPPORTED_HEADERS.items():
        if name in headers:
            raise not_implemented(what)
    acl = headers.get("x-amz-acl")
    if acl is not None and acl not in _PRIVATE_ACLS:
        raise not_implemented(f"the canned ACL {acl!r} (objects are private to the "
                              "cluster's keys)")


def _unsupported(query: Collection[str]) -> str | None:
    return next((q for q in query if q in UNSUPPORTED_BUCKET), None)


def _acl_operation(method: str, target: str) -> str:
    """GET ?acl reads the ACL, PUT ?acl may only set it to what it is
    (``tossit.brain.s3.acl``); no other method has a meaning there."""
    if method == "GET":
        return f"Get{target}Acl"
    if method == "PUT":
        return f"Put{target}Acl"
    raise S3Error("MethodNotAllowed")


def _bucket_operation(method: str, query: Collection[str]) -> str:
    if method == "GET" and "uploads" in query:
        return "ListMultipartUploads"
    if method == "GET" and "versioning" in query:
        return "GetBucketVersioning"  # truthfully "never enabled"
    if "versioning" in query:
        raise not_implemented("bucket versioning")
    if "versions" in query:
        # Versioning is never on: each key's one version is the "null" one, as
        # S3 lists an unversioned bucket (tools list versions to empty a bucket).
        if method == "GET":
            return "ListObjectVersions"
        raise not_implemented("object versions")
    sub = _unsupported(query)
    if sub is not None:
        raise not_implemented(f"the bucket sub-resource '{sub}'")
    if "acl" in query:
        return _acl_operation(method, "Bucket")
    if method == "GET":
        if "location" in query:
            return "GetBucketLocation"
        return "ListObjectsV2" if "list-type" in query else "ListObjects"
    if method == "HEAD":
        return "HeadBucket"
    if method == "PUT":
        return "CreateBucket"
    if method == "DELETE":
        return "DeleteBucket"
    if method == "POST" and "delete" in query:
        return "DeleteObjects"
    raise not_implemented(f"{method} on a bucket with this query")


def _object_operation(method: str, query: Collection[str], headers: Mapping[str, str]) -> str:
    if "uploadId" in query:
        return {"PUT": "UploadPartCopy" if "x-amz-copy-source" in headers else "UploadPart",
                "GET": "ListParts", "POST": "CompleteMultipartUpload",
                "DELETE": "AbortMultipartUpload"}.get(method, "MethodNotAllowed")
    if method == "POST" and "uploads" in query:
        return "CreateMultipartUpload"
    if "partNumber" in query:
        raise not_implemented("reading one part of an object (partNumber)")
    sub = _unsupported(query)
    if sub is not None:
        raise not_implemented(f"the object sub-resource '{sub}'")
    if "acl" in query:
        return _acl_operation(method, "Object")
    if method == "PUT":
        return "CopyObject" if "x-amz-copy-source" in headers else "PutObject"
    if method == "GET":
        return "GetObject"
    if method == "HEAD":
        return "HeadObject"
    if method == "DELETE":
        return "DeleteObject"
    raise not_implemented(f"{method} on an object")


# -- names ------------------------------------------------------------------

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
MAX_KEY_BYTES = 1024


def check_bucket_name(name: str) -> str:
    """S3's rules for new bucket names: 3-63 of a-z 0-9 . -, a letter or digit at
    each end, no '..', not an IP address, no reserved prefix or suffix."""
    problem = None
    if not _BUCKET_RE.match(name):
        problem = "3 to 63 lowercase letters, digits, dots and hyphens, a letter or digit " \
                  "at each end"
    elif ".." in name or ".-" in name or "-." in name:
        problem = "no two adjacent periods, nor a period next to a hyphen"
    elif name.startswith(("xn--", "sthree-")) or name.endswith(("-s3alias", "--ol-s3")):
        problem = "no reserved prefix (xn--, sthree-) or suffix (-s3alias, --ol-s3)"
    else:
        try:
            ipaddress.IPv4Address(name)
            problem = "not an IP address"
        except ValueError:
            pass
    if problem:
        raise S3Error("InvalidBucketName", f"The specified bucket is not valid: {problem}")
    return name


def split_target(raw_path: bytes, host: str, domain: str) -> tuple[str | None, str | None]:
    """(bucket, key) of a request: from the Host header when it is a subdomain
    of ``domain`` (virtual-host style), else from the path's first segment."""
    try:
        path = unquote_to_bytes(raw_path).decode("utf-8")
    except UnicodeDecodeError:
        raise S3Error("InvalidArgument", "the path is not valid UTF-8") from None
    if "\x00" in path:
        raise S3Error("InvalidArgument", "an object key cannot contain NUL")
    path = path[1:] if path.startswith("/") else path
    hostname = host.rsplit(":", 1)[0].lower() if not host.startswith("[") else ""
    if domain and hostname.endswith("." + domain):
        bucket: str | None = hostname[: -len(domain) - 1]
        key: str | None = path or None
    else:
        name, _, rest = path.partition("/")
        bucket, key = (name or None), (rest or None)
    if key is not None and len(key.encode()) > MAX_KEY_BYTES:
        raise S3Error("KeyTooLongError", f"a key is at most {MAX_KEY_BYTES} bytes")
    return bucket, key
