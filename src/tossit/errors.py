"""One error shape for every API: ``{"error": code, "message": text, ...}``.

Two kinds of errors are raised. The cluster's core (ingest, reader, commits,
store) raises **domain errors** (``TossitError``): what went wrong in the
cluster's terms, with no HTTP status, because the same failure is answered
differently by each API (JSON here, an XML error code on an S3 API). Their
HTTP statuses are in one table, ``HTTP_STATUS``. The HTTP layer (routes,
access checks, body parsing) raises ``ApiError`` with its status directly.

The app's exception handlers turn both, validation failures and anything
unexpected into that JSON (never a traceback). Routes declare the errors they
can answer with ``error_responses`` so the OpenAPI description documents them
with the same shape (``ErrorBody``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from starlette.responses import JSONResponse


class ErrorBody(BaseModel):
    """The body of every error answer (some errors add fields, e.g. ``free``)."""

    model_config = ConfigDict(extra="allow")
    error: str = Field(description="a stable code for programs, e.g. file_not_found")
    message: str = Field(description="what went wrong, for people")


# What each status means on these APIs; a route may override the description.
ERROR_MEANINGS: dict[int, str] = {
    400: "Invalid parameters, body or headers",
    401: "Not authenticated",
    403: "Authenticated, but not allowed to do this",
    404: "No such resource",
    405: "The path exists, but not for this method",
    409: "Conflicts with the current state",
    410: "It existed, but is no longer usable",
    413: "The body is too large",
    416: "The range is outside the file",
    422: "The body does not match what the request claims",
    429: "Too many attempts from this address lately; wait Retry-After seconds",
    500: "The server failed to do it (the error says why, e.g. disk_error)",
    502: "Another server this one depends on failed",
    503: "Not enough nodes are reachable right now; retry later",
    507: "Not enough free storage",
}


class MalformedJson:
    """A request body that is not JSON, left for validation to refuse (so that
    access checks run first: ``tossit.brain.api.common.AuthBeforeBody``)."""

    def __init__(self, exc: ValueError | RecursionError) -> None:
        self.problem = f"the body is not valid JSON ({exc})"

    def __repr__(self) -> str:
        return self.problem


def error_responses(*codes: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """A route's ``responses=`` for the error statuses it can answer, each with
    the JSON error body. ``descriptions`` override the meaning by status:
    ``error_responses(404, e404="No such file")``."""
    return {
        code: {"model": ErrorBody,
               "description": descriptions.get(f"e{code}", ERROR_MEANINGS[code])}
        for code in codes
    }


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.extra}


class TossitError(Exception):
    """A domain error: ``code`` is stable (programs match it), ``message`` is for
    people, ``extra`` are facts a client may use (``needed``, ``free``, ...)."""

    code = "error"

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.extra}


class NotEnoughNodes(TossitError):
    """Too few nodes can take a write to store it at the write quorum."""

    code = "not_enough_nodes"

    def __init__(self, needed: int, available: int, detail: str = "") -> None:
        msg = (f"not enough storage nodes to store the data safely: {needed} needed, "
               f"{available} available")
        super().__init__(msg + (f" ({detail})" if detail else ""), needed=needed,
                         available=available)


class InsufficientStorage(TossitError):
    """The nodes that can take writes have too little room for this upload."""

    code = "insufficient_storage"

    def __init__(self, free: int, size: int, copies: int) -> None:
        super().__init__(f"the cluster has {free} bytes free, not enough for {size} bytes "
                         f"stored {copies} times", free=free)


class NotLeader(TossitError):
    """This brain does not hold the leadership (any more): it must not commit.
    Nothing was changed; another brain takes over within seconds."""

    code = "not_leader"


class MetadataBehind(TossitError):
    """The nodes hold committed changes this brain's metadata lacks (a partial
    recovery, an old backup restored): a change made now would take version
    numbers and file ids that those changes already use, and a later recovery
    could not tell the two histories apart. Nothing was changed; reads go on."""

    code = "metadata_behind"

    def __init__(self, why: str) -> None:
        super().__init__(f"changes are refused: {why}")


class MetadataFull(TossitError):
    """The metadata database could not take the change: its disk (or, on
    PostgreSQL, the database server's) is full. Nothing was changed."""

    code = "metadata_disk_full"

    def __init__(self, where: str) -> None:
        super().__init__(f"the brain's metadata database has no room left ({where}): the "
                         "change was not made; free space there, and writes resume by "
                         "themselves")


class ChunkUnavailable(TossitError):
    """No readable copy of a chunk right now (not lost: its nodes may come back)."""

    code = "chunk_unavailable"

    def __init__(self, chunk_id: str, detail: str) -> None:
        super().__init__(f"no readable copy of chunk {chunk_id} right now ({detail}); "
                         "if a node holding a good copy is away, the file is back when it is",
                         chunk=chunk_id)


class NameTaken(TossitError):
    """``on_conflict=fail`` and a file of that name exists."""

    code = "name_taken"

    def __init__(self, bucket: str, key: str) -> None:
        super().__init__(f"a file named {key!r} exists already; on_conflict=replace "
                         "replaces it, on_conflict=rename keeps both", name=key, bucket=bucket)


class ObjectChanged(TossitError):
    """A write meant to replace one object under a name (S3's ``If-Match``)
    found another object there at commit, or none (``found``): refused, so that
    of two writers that saw the same object only the first replaces it."""

    code = "object_changed"

    def __init__(self, bucket: str, key: str, found: bool) -> None:
        now = "another object" if found else "no object"
        super().__init__(f"{key!r} holds {now} now, not the one this write was to replace; "
                         "nothing was written", name=key, bucket=bucket, found=found)
        self.found = found


class ManifestNotStored(TossitError):
    """The change is committed in the metadata, but its manifest is not on enough
    nodes yet: not acknowledged (a lost brain disk now would lose it)."""

    code = "manifest_not_stored"

    def __init__(self, detail: str) -> None:
        super().__init__(
            "the change is committed in the brain's metadata, but its manifest could not "
            f"be written to enough nodes yet ({detail}); the brain keeps trying")


class TrashNotFound(TossitError):
    """No file with this id in the trash (never there, restored or purged)."""

    code = "trash_not_found"

    def __init__(self, trash_id: int) -> None:
        super().__init__(f"no file with id {trash_id} in the trash")


class MultipartError(TossitError):
    """A multipart upload request the rules refuse. ``s3_code`` is the error code
    the S3 API answers with (its XML ``<Code>``), ``code`` the REST one."""

    code = "multipart_error"
    s3_code = "InvalidRequest"


class NoSuchUpload(MultipartError):
    """No multipart upload with this id (never created, completed, aborted or
    expired), or not for this bucket and key."""

    code = "no_such_upload"
    s3_code = "NoSuchUpload"

    def __init__(self, upload_id: str) -> None:
        super().__init__(f"no multipart upload {upload_id!r} in progress (it may have been "
                         "completed, aborted, or expired)", upload=upload_id)


class InvalidPart(MultipartError):
    """A part named in a completion was never uploaded, or its ETag is not the
    one the client was given."""

    code = "invalid_part"
    s3_code = "InvalidPart"

    def __init__(self, part_number: int | None, detail: str) -> None:
        super().__init__(detail if part_number is None else f"part {part_number}: {detail}",
                         part=part_number)


class InvalidPartOrder(MultipartError):
    """A completion's parts are not in strictly ascending part-number order."""

    code = "invalid_part_order"
    s3_code = "InvalidPartOrder"

    def __init__(self, detail: str) -> None:
        super().__init__(f"the parts must be listed in ascending order of part number "
                         f"({detail})")


class EntityTooSmall(MultipartError):
    """A part other than the last is smaller than the minimum part size."""

    code = "entity_too_small"
    s3_code = "EntityTooSmall"

    def __init__(self, part_number: int, size: int, minimum: int) -> None:
        super().__init__(f"part {part_number} is {size} bytes; every part but the last "
                         f"must be at least {minimum} bytes", part=part_number, size=size,
                         minimum=minimum)


class EntityTooLarge(MultipartError):
    """A part larger than S3's maximum part size."""

    code = "entity_too_large"
    s3_code = "EntityTooLarge"

    def __init__(self, maximum: int) -> None:
        super().__init__(f"a part may be {maximum} bytes at most", maximum=maximum)


class BadDigest(MultipartError):
    """The MD5 a client announced (Content-MD5) is not that of the bytes sent."""

    code = "bad_digest"
    s3_code = "BadDigest"

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"the body's MD5 is {actual}, not the {expected} announced",
                         expected=expected, actual=actual)


class InvalidArgument(MultipartError):
    """A multipart parameter out of its range (part number, max-parts, byte range...)."""

    code = "invalid_argument"
    s3_code = "InvalidArgument"


class DigestMismatch(TossitError):
    """The uploaded bytes do not hash to the digest the client sent with them
    (S3's Content-MD5 or x-amz-checksum-*): nothing was committed."""

    code = "digest_mismatch"

    def __init__(self, algorithm: str, expected: str, actual: str) -> None:
        super().__init__(f"the body's {algorithm} is {actual}, not {expected} as sent: "
                         "it was changed on the way; nothing was stored",
                         algorithm=algorithm, expected=expected, actual=actual)
        self.algorithm = algorithm


# The REST API's status for each domain error (the most specific class wins).
HTTP_STATUS: dict[type[TossitError], int] = {
    NotEnoughNodes: 503,
    InsufficientStorage: 507,
    NotLeader: 503,
    MetadataBehind: 503,
    MetadataFull: 507,
    ChunkUnavailable: 503,
    NameTaken: 409,
    ObjectChanged: 412,
    ManifestNotStored: 503,
    TrashNotFound: 404,
    MultipartError: 400,
    NoSuchUpload: 404,
    InvalidPart: 400,
    InvalidPartOrder: 400,
    EntityTooSmall: 400,
    EntityTooLarge: 400,
    BadDigest: 400,
    InvalidArgument: 400,
    DigestMismatch: 400,
}


def http_status(exc: TossitError) -> int:
    """The REST status of a domain error (500 for one the table lacks: a bug)."""
    for cls in type(exc).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500


def json_error(exc: ApiError | TossitError) -> JSONResponse:
    """The JSON answer to an error a route raised: the app's handlers give it, and
    so do the hot routes that skip FastAPI's (``node/hot_routes.py``,
    ``brain/api/hot_routes.py``)."""
    from starlette.responses import JSONResponse

    if isinstance(exc, ApiError):
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)
    retry = {"Retry-After": "2"} if isinstance(exc, NotLeader) else None
    return JSONResponse(exc.body(), status_code=http_status(exc), headers=retry)


def install_error_handlers(app: Any) -> None:
    """Make every failure of a FastAPI app answer in the JSON error shape, and
    its OpenAPI description say so (``document_validation_errors``)."""
    import logging

    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    log = logging.getLogger("tossit.errors")
    document_validation_errors(app)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return json_error(exc)

    @app.exception_handler(TossitError)
    async def _domain_error(request: Request, exc: TossitError) -> JSONResponse:
        return json_error(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors()[:10]:
            if isinstance(err.get("input"), MalformedJson):
                problems.append(err["input"].problem)
                continue
            where = ".".join(str(p) for p in err.get("loc", ()))
            problems.append(f"{where}: {err.get('msg')}")
        return JSONResponse(
            {"error": "invalid_request", "message": "; ".join(problems) or "invalid request"},
            status_code=400,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": _allowed_methods(request)}
        return JSONResponse(
            {"error": codes.get(exc.status_code, "http_error"), "message": str(exc.detail)},
            status_code=exc.status_code,
            headers=headers,
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            {"error": "internal", "message": "internal error; the server log has the details"},
            status_code=500,
        )


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Any) -> str:
    """Every method some route serves this path with. Starlette's 405 lists only
    the first such route's (``PATCH /api/keys`` said ``Allow: POST``, not GET)."""
    from starlette.routing import Match

    routes = request.app.router.routes
    return ", ".join(
        method for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL
               for route in routes)
    )


_FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")


def document_validation_errors(app: Any) -> None:
    """Have the app's OpenAPI description tell the truth about invalid requests.

    FastAPI documents a 422 ``HTTPValidationError`` on every route with
    parameters, but ``install_error_handlers`` answers those with a 400 in the
    ``ErrorBody`` shape. Rewrite each such 422 into that 400 (keeping a 422 a
    route declares itself, e.g. a node's hash mismatch).
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _rewrite_422(generate())
        schema: dict[str, Any] = app.openapi_schema
        return schema

    app.openapi = openapi


def _rewrite_422(schema: dict[str, Any]) -> dict[str, Any]:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault("ErrorBody", ErrorBody.model_json_schema())
    ref = {"$ref": "#/components/schemas/ErrorBody"}
    for item in schema.get("paths", {}).values():
        for operation in item.values():
            responses = operation.get("responses", {}) if isinstance(operation, dict) else {}
            if _is_fastapi_422(responses.get("422")):
                del responses["422"]
                responses.setdefault("400", {
                    "description": ERROR_MEANINGS[400],
                    "content": {"application/json": {"schema": ref}},
                })
    for name in _FASTAPI_VALIDATION_SCHEMAS:
        components.pop(name, None)
    return schema


def _is_fastapi_422(response: dict[str, Any] | None) -> bool:
    if response is None:
        return False
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref", "").endswith("/HTTPValidationError"))
