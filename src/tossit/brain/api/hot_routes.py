"""The brain's busiest requests, a download and a raw upload, served without
FastAPI's routing.

A small file's download is one metadata read and one node fetch, its upload one
batched node write and a share of a commit; FastAPI's part of either (exception
and exit-stack middlewares, matching the path against every route, solving the
access dependency, headers and query, validating the answer against its model)
was about a quarter of the brain's CPU per 4 KiB download. So this middleware,
placed inside the leader forwarding and the latency metrics, checks the key with
the files router's own ``Access`` rule and calls the endpoint function itself
(``files.download``, ``files.upload_raw``) for a request that is plainly one of
them: ``GET /api/files/{id}/download`` with an id in range, or ``PUT
/api/files/{name}`` with a printable name, and no query. Anything else goes on
to FastAPI, which answers as it always did. Errors get the JSON answers FastAPI's
handlers give (``tossit.hotpath``), an upload's answer the bytes its
response model gives, and the request is labelled with the route's template in
the latency metrics as if FastAPI had matched it. A test holds both paths'
answers equal (tests/integration/test_hot_routes.py).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tossit.brain.api import files
from tossit.brain.api.access import Access
from tossit.hotpath import Handler, HotPath

_FILES, _DOWNLOAD = "/api/files/", "/download"
_MOST = 2**31 - 1  # files.FileId's bound
DOWNLOAD = "/api/files/{file_id}/download"  # the templates of the routes stood in for
UPLOAD = "/api/files/{name:anypath}"


class HotRoutes(HotPath):
    def __init__(self, app: Any, access: Access, routes: dict[tuple[str, str], Any]) -> None:
        """``access``: the files router's rule; ``routes``: FastAPI's route for
        (method, template), whose template labels the latency metrics."""
        super().__init__(app)
        self.access = access
        self.download_route = routes["GET", DOWNLOAD]
        self.upload_route = routes["PUT", UPLOAD]

    @staticmethod
    def download_id(scope: dict[str, Any]) -> int | None:
        """The file id of a plain download request, or None."""
        if scope["method"] != "GET" or scope["query_string"]:
            return None
        path: str = scope["path"]
        if not (path.startswith(_FILES) and path.endswith(_DOWNLOAD)):
            return None
        digits = path[len(_FILES):-len(_DOWNLOAD)]
        if not (digits.isascii() and digits.isdigit()) or digits[0] == "0" or len(digits) > 10:
            return None
        file_id = int(digits)
        return file_id if file_id <= _MOST else None

    @staticmethod
    def upload_name(scope: dict[str, Any]) -> str | None:
        """The name of a plain raw upload, or None."""
        if scope["method"] != "PUT" or scope["query_string"]:
            return None
        path: str = scope["path"]
        name = path[len(_FILES):]
        if not path.startswith(_FILES) or not name.isprintable() or not name:
            return None
        return name

    def match(self, scope: dict[str, Any]) -> Handler | None:
        """The endpoint call for a plain hot request, or None (FastAPI's turn)."""
        file_id = self.download_id(scope)
        if file_id is not None:
            scope["route"] = self.download_route
            return lambda request: files.download(file_id, request, request.headers.get(
                "range"), request.headers.get("if-range"))
        name = self.upload_name(scope)
        if name is not None:
            scope["route"] = self.upload_route
            return lambda request: _upload(name, request)
        return None

    async def check(self, request: Request) -> None:
        await self.access(request)


async def _upload(name: str, request: Request) -> Response:
    """``files.upload_raw``, answered as FastAPI answers it: its model's JSON with
    status 201 and the headers the endpoint set, or the response it returned."""
    headers = Response()  # the endpoint sets Location here, as on FastAPI's
    del headers.headers["content-length"]
    done = await files.upload_raw(name, request, headers)
    if isinstance(done, Response):
        return done
    response = Response(done.model_dump_json(by_alias=True).encode(), status_code=201,
                        media_type="application/json")
    response.raw_headers.extend(headers.headers.raw)
    return response
