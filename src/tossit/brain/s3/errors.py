"""S3 errors: every failure answers the S3 XML error document, with the code and
status AWS gives it, so that clients (which branch on ``Code``) behave."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from xml.sax.saxutils import escape

from starlette.types import Scope

from tossit.errors import (
    ChunkUnavailable,
    DigestMismatch,
    InsufficientStorage,
    ManifestNotStored,
    MetadataBehind,
    MetadataFull,
    MultipartError,
    NotEnoughNodes,
    NotLeader,
    TossitError,
)
from tossit.limits import BodyLimitError


@dataclass(frozen=True)
class ErrorKind:
    code: str
    status: int
    message: str  # the default message


def _kinds(*kinds: ErrorKind) -> dict[str, ErrorKind]:
    return {k.code: k for k in kinds}


# The codes this server answers with, as AWS documents them.
KINDS = _kinds(
    ErrorKind("AccessDenied", 403, "Access Denied"),
    ErrorKind("AuthorizationHeaderMalformed", 400, "The authorization header is malformed"),
    ErrorKind("AuthorizationQueryParametersError", 400,
              "The presigned URL's query parameters are malformed"),
    ErrorKind("BadDigest", 400, "The Content-MD5 or checksum you specified did not match "
                                "what we received"),
    ErrorKind("BucketAlreadyOwnedByYou", 409, "Your previous request to create the named "
                                              "bucket succeeded and you already own it"),
    ErrorKind("BucketNotEmpty", 409, "The bucket you tried to delete is not empty"),
    ErrorKind("EntityTooLarge", 400, "Your proposed upload exceeds the maximum allowed size"),
    ErrorKind("EntityTooSmall", 400, "Your proposed upload is smaller than the minimum "
                                     "allowed object size"),
    ErrorKind("IncompleteBody", 400, "You did not provide the number of bytes specified by "
                                     "the Content-Length HTTP header"),
    ErrorKind("InternalError", 500, "We encountered an internal error. Please try again."),
    ErrorKind("InvalidAccessKeyId", 403, "The AWS access key Id you provided does not exist "
                                         "in our records"),
    ErrorKind("InvalidArgument", 400, "Invalid Argument"),
    ErrorKind("InvalidBucketName", 400, "The specified bucket is not valid"),
    ErrorKind("InvalidPart", 400, "One or more of the specified parts could not be found. "
                                  "The part might not have been uploaded, or the specified "
                                  "entity tag might not have matched the part's entity tag."),
    ErrorKind("InvalidPartOrder", 400, "The list of parts was not in ascending order. The "
                                       "parts list must be specified in order by part number."),
    ErrorKind("InvalidDigest", 400, "The Content-MD5 or checksum you specified is not valid"),
    ErrorKind("InvalidRange", 416, "The requested range is not satisfiable"),
    ErrorKind("InvalidRequest", 400, "Invalid Request"),
    ErrorKind("KeyTooLongError", 400, "Your key is too long"),
    ErrorKind("MalformedXML", 400, "The XML you provided was not well-formed or did not "
                                   "validate against our published schema"),
    ErrorKind("MethodNotAllowed", 405, "The specified method is not allowed against this "
                                       "resource"),
    ErrorKind("MissingContentLength", 411, "You must provide the Content-Length HTTP header"),
    ErrorKind("NoSuchBucket", 404, "The specified bucket does not exist"),
    ErrorKind("NoSuchKey", 404, "The specified key does not exist."),
    ErrorKind("NoSuchUpload", 404, "The specified multipart upload does not exist"),
    ErrorKind("NotImplemented", 501, "A header or query you provided implies functionality "
                                     "that is not implemented"),
    ErrorKind("NotModified", 304, "Not Modified"),
    ErrorKind("PreconditionFailed", 412, "At least one of the pre-conditions you specified "
                                         "did not hold"),
    ErrorKind("RequestTimeout", 400, "Your socket connection to the server was not read "
                                     "from or written to within the timeout period"),
    ErrorKind("RequestTimeTooSkewed", 403, "The difference between the request time and the "
                                           "current time is too large"),
    ErrorKind("ServiceUnavailable", 503, "Please reduce your request rate"),
    ErrorKind("SignatureDoesNotMatch", 403, "The request signature we calculated does not "
                                            "match the signature you provided. Check your key "
                                            "and signing method."),
    ErrorKind("SlowDown", 503, "Please reduce your request rate"),
    ErrorKind("XAmzContentSHA256Mismatch", 400, "The provided 'x-amz-content-sha256' header "
                                                "does not match what was computed"),
)


class S3Error(Exception):
    """An S3 error answer. ``code`` must be one of ``KINDS``."""

    def __init__(self, code: str, message: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        kind = KINDS[code]
        super().__init__(message or kind.message)
        self.code = code
        self.status = kind.status
        self.message = message or kind.message
        self.headers = headers or {}


def new_request_id() -> str:
    """A request's id, in its errors and its x-amz-request-id header."""
    return uuid.uuid4().hex[:16].upper()


def not_implemented(what: str) -> S3Error:
    return S3Error("NotImplemented", f"{what} is not implemented by TossIt")


def from_domain(exc: TossitError) -> S3Error:
    """The S3 answer to a domain error of the shared write and read paths."""
    if isinstance(exc, DigestMismatch):
        return S3Error("BadDigest", exc.message)
    if isinstance(exc, MultipartError):
        return S3Error(exc.s3_code if exc.s3_code in KINDS else "InvalidRequest", exc.message)
    if isinstance(exc, NotEnoughNodes | ChunkUnavailable | ManifestNotStored
                  | InsufficientStorage | NotLeader | MetadataFull | MetadataBehind):
        return S3Error("ServiceUnavailable", exc.message)
    return S3Error("InternalError", exc.message)


def error_document(err: S3Error, resource: str, request_id: str) -> bytes:
    """The XML body of an error answer."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{err.code}</Code><Message>{escape(err.message)}</Message>"
        f"<Resource>{escape(resource)}</Resource><RequestId>{request_id}</RequestId>"
        "</Error>"
    ).encode()


def limit_error(exc: BodyLimitError, scope: Scope) -> tuple[int, bytes, bytes]:
    """The S3 answer to a body the server's guard cut off (``tossit.limits``):
    a stalled one (RequestTimeout) or a too large one (EntityTooLarge)."""
    err = S3Error("RequestTimeout" if exc.status_code == 408 else "EntityTooLarge", exc.detail)
    body = error_document(err, scope.get("path", "/"), new_request_id())
    return err.status, body, b"application/xml"
