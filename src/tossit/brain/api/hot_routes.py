"""The brain's busiest read, ``GET /api/files/{id}/download``, served without
FastAPI's routing.

A small file's download is one metadata read and one node fetch; FastAPI's part
of it (exception and exit-stack middlewares, matching the path against every
route, solving the access dependency and the headers, wrapping the endpoint) was
about a sixth of the brain's CPU per download. So this middleware, placed inside
the leader forwarding and the latency metrics, checks the key with the files
router's own ``Access`` rule and calls the endpoint function ``files.download``
itself, for a request that is plainly a download: that exact path, an id in
range, no query. Anything else goes on to FastAPI, which answers as it always
did; errors get the same JSON answers as FastAPI's handlers give
(``tossit.errors.json_error``), and the request is labelled with the route's
template in the latency metrics as if FastAPI had matched it.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tossit.brain.api import files
from tossit.brain.api.access import Access
from tossit.errors import ApiError, TossitError, json_error

_PREFIX, _SUFFIX = "/api/files/", "/download"
_MOST = 2**31 - 1  # files.FileId's bound


class HotDownloads:
    TEMPLATE = "/api/files/{file_id}/download"  # the route it stands in for

    def __init__(self, app: Any, access: Access, route: Any) -> None:
        """``access``: the files router's rule; ``route``: FastAPI's route of the
        download (its template labels the latency metrics)."""
        self.app = app
        self.access = access
        self.route = route

    @staticmethod
    def match(scope: dict[str, Any]) -> int | None:
        """The file id of a plain download request, or None (FastAPI's turn)."""
        if scope["type"] != "http" or scope["method"] != "GET" or scope["query_string"]:
            return None
        path: str = scope["path"]
        if not (path.startswith(_PREFIX) and path.endswith(_SUFFIX)):
            return None
        digits = path[len(_PREFIX):-len(_SUFFIX)]
        if not (digits.isascii() and digits.isdigit()) or digits[0] == "0" or len(digits) > 10:
            return None
        file_id = int(digits)
        return file_id if file_id <= _MOST else None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        file_id = self.match(scope)
        if file_id is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route
        request = Request(scope, receive)
        response: Response
        try:
            await self.access(request)
            response = await files.download(file_id, request, request.headers.get("range"),
                                            request.headers.get("if-range"))
        except (ApiError, TossitError) as exc:
            response = json_error(exc)
        await response(scope, receive, send)
