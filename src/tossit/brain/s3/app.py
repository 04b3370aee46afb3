"""The S3 API's ASGI app: authenticate, resolve the operation, run its handler,
and answer every failure with the S3 XML error document.

Served by the brain process on ``s3_port`` next to the REST API (see
``tossit.serve.PortDispatch``), over the same ``Brain``: the same keys and
roles (a read-only key may GET, HEAD and list; writes need read-write), the same
object store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from math import ceil
from urllib.parse import parse_qsl

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from tossit.auth.keys import Role
from tossit.brain.api.access import Access, wrong_key
from tossit.brain.metrics import S3_REQUESTS, S3_SECONDS
from tossit.brain.s3 import acl, bucket, copy, delete, get, listing, multipart, put
from tossit.brain.s3.context import PAYLOAD_SHA256, S3Context
from tossit.brain.s3.errors import (
    S3Error,
    error_document,
    from_domain,
    new_request_id,
    not_implemented,
)
from tossit.brain.s3.router import check_version, operation, refuse_form_upload, split_target
from tossit.brain.s3.signature import (
    Verified,
    parse_authorization,
    parse_presigned,
    signed_value,
    verify,
)
from tossit.brain.service import Brain
from tossit.errors import DigestMismatch, TossitError

log = logging.getLogger("tossit.brain.s3")
Handler = Callable[[S3Context], Awaitable[Response]]

HANDLERS: dict[str, Handler] = {
    "ListBuckets": bucket.list_buckets,
    "CreateBucket": bucket.create_bucket,
    "DeleteBucket": bucket.delete_bucket,
    "HeadBucket": bucket.head_bucket,
    "GetBucketLocation": bucket.bucket_location,
    "GetBucketVersioning": bucket.bucket_versioning,
    "ListObjects": listing.list_objects_v1,
    "ListObjectsV2": listing.list_objects_v2,
    "ListObjectVersions": listing.list_object_versions,
    "PutObject": put.put_object,
    "GetObject": get.get_object,
    "HeadObject": get.head_object,
    "DeleteObject": delete.delete_object,
    "DeleteObjects": delete.delete_objects,
    "CopyObject": copy.copy_object,
    "GetBucketAcl": acl.get_bucket_acl,
    "PutBucketAcl": acl.put_bucket_acl,
    "GetObjectAcl": acl.get_object_acl,
    "PutObjectAcl": acl.put_object_acl,
}
# One handler per name of ``router.MULTIPART`` (docs/multipart.md).
MULTIPART_HANDLERS: dict[str, Handler] = dict(multipart.HANDLERS)
# S3 calls with a read method read; the rest (PUT, POST, DELETE) write.
ACCESS = Access(write=Role.readwrite, read=Role.readonly)


class S3App:
    def __init__(self, brain: Brain, domain: str = "") -> None:
        self.brain = brain
        self.domain = domain.lower().strip(".")
        self.handlers = {**HANDLERS, **MULTIPART_HANDLERS}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # the REST app's lifespan runs the brain
            message = await receive()
            await send({"type": f"{message['type']}.complete"})
            return
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        response = await self.answer(request)
        await response(scope, receive, send)

    async def answer(self, request: Request) -> Response:
        started = time.perf_counter()
        request_id = new_request_id()
        scope = request.scope
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        request.state.s3_operation = "unknown"
        failure: S3Error | None = None
        try:
            response = await self._handle(request, raw_path, request_id)
        except S3Error as err:
            failure = err
        except DigestMismatch as exc:
            code = "XAmzContentSHA256Mismatch" if exc.algorithm == PAYLOAD_SHA256 else "BadDigest"
            failure = S3Error(code, exc.message)
        except TossitError as exc:
            failure = from_domain(exc)
        except ClientDisconnect:
            failure = S3Error("IncompleteBody", "the client closed the connection")
        except Exception:
            log.exception("S3 %s %s failed", request.method, scope["path"])
            failure = S3Error("InternalError")
        if failure is not None:
            response = self.error(failure, request, request_id)
        response.headers["x-amz-request-id"] = request_id
        operation = request.state.s3_operation
        S3_REQUESTS.labels(operation, failure.code if failure else "ok").inc()
        S3_SECONDS.labels(operation).observe(time.perf_counter() - started)
        return response

    async def refused(self, request: Request, what: str) -> None:
        """Count a wrong key or signature as the REST API counts wrong keys: past
        a few per minute from one address, the answer waits and is SlowDown."""
        address = request.client.host if request.client else "unknown"
        _, lock = await wrong_key(self.brain, address, "an S3 request", what)
        if lock:
            raise S3Error("SlowDown", f"too many wrong keys or signatures from {address}: "
                                      f"wait {ceil(lock)} s",
                          headers={"Retry-After": str(ceil(lock))})

    def error(self, err: S3Error, request: Request, request_id: str) -> Response:
        if err.status >= 500 and err.code != "NotImplemented":
            log.warning("S3 %s %s: %s %s", request.method, request.url.path, err.code,
                        err.message)
        body = b"" if request.method == "HEAD" else error_document(
            err, request.scope["path"], request_id)
        headers = dict(err.headers)
        if request.headers.get("expect", "").lower() == "100-continue":
            # Refused before "100 Continue": the client keeps its body and may
            # reuse the connection, where the server would take its next request
            # for that body. Closing it is the only safe end.
            headers["Connection"] = "close"
        return Response(body, status_code=err.status, headers=headers,
                        media_type="application/xml")

    async def _handle(self, request: Request, raw_path: bytes, request_id: str) -> Response:
        scope = request.scope
        headers: dict[str, str] = {}
        pairs: list[tuple[str, str]] = []
        for raw_name, raw_value in scope["headers"]:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            # The handlers keep latin-1 (one character per byte: metadata goes
            # back as the same bytes); the signature has its own decoding.
            pairs.append((name, signed_value(raw_value)))
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        raw_query = scope["query_string"].decode("latin-1")
        query: dict[str, str] = {}
        for name, value in parse_qsl(raw_query, keep_blank_values=True):
            query.setdefault(name, value)
        bucket_name, key = split_target(raw_path, headers.get("host", ""), self.domain)
        refuse_form_upload(request.method, bucket_name, key, headers)
        verified = await self.authenticate(request, headers, pairs, query, raw_path, raw_query)
        op = operation(request.method, bucket_name, key, query.keys(), headers)
        check_version(query)
        bucket.check_expected_owner(headers)
        request.state.s3_operation = op
        if request.method not in ("GET", "HEAD") and not self.brain.leader:
            # Several brains on PostgreSQL: one commits. The REST API passes changes
            # on to it; the S3 API does not yet, so it says where to go.
            leader = await self.brain.directory.leader_url()
            raise S3Error("ServiceUnavailable", "this brain does not lead the cluster: send "
                                                "S3 changes to the leading brain's S3 port"
                          + (f" (its REST API is {leader})" if leader else ""))
        handler = self.handlers.get(op)
        if handler is None:
            raise not_implemented(op)
        ctx = S3Context(self.brain, request, op, bucket_name, key, query, headers, verified,
                        request_id)
        return await handler(ctx)

    async def authenticate(self, request: Request, headers: dict[str, str],
                           pairs: list[tuple[str, str]], query: dict[str, str],
                           raw_path: bytes, raw_query: str) -> Verified | None:
        """The request's verified signature, its key in ``request.state.key``
        (as the REST API keeps it), its role checked. None: auth is off."""
        if not self.brain.auth:
            return None
        authorization = headers.get("authorization")
        if authorization is not None:
            signed = parse_authorization(authorization, headers)
        elif "X-Amz-Credential" in query or "X-Amz-Signature" in query:
            signed = parse_presigned(query)
        elif "AWSAccessKeyId" in query and "Signature" in query:
            raise not_implemented("Signature Version 2 presigned URLs (presign with SigV4: "
                                  "signature_version = s3v4)")
        else:
            raise S3Error("AccessDenied", "Anonymous access is not allowed: sign requests "
                                          "with a TossIt key (its id and secret)")
        found = await self.brain.keys.signing(signed.credential.key_id)
        if found is None:
            await self.refused(request, "unknown key id")
            raise S3Error("InvalidAccessKeyId")
        info, secret = found
        problem = info.problem(time.time())
        if problem:
            raise S3Error("InvalidAccessKeyId", f"The AWS access key Id you provided cannot "
                                                f"be used: {problem}")
        try:
            verified = verify(signed, secret, request.method, raw_path, raw_query, pairs,
                              time.time())
        except S3Error as err:
            if err.code == "SignatureDoesNotMatch":
                await self.refused(request, f"wrong signature for key {info.id}")
            raise
        request.state.key = info
        needed = ACCESS.needed(request.method)
        if not info.role.allows(needed):
            raise S3Error("AccessDenied", f"key {info.id} ({info.role.value}) cannot do this: "
                                          f"it needs a {needed.value} key")
        return verified
