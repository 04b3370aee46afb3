"""The shape both processes' hot routes share (``node/hot_routes.py``,
``brain/api/hot_routes.py``): an ASGI middleware that answers the few requests
making up the data path by calling their endpoint functions itself, without
FastAPI's routing, and hands everything else on to FastAPI.

A subclass says which requests it takes (``match``: the endpoint call, or None)
and what it checks first (``check``). An ``ApiError`` or ``TossitError`` gets the
JSON answer FastAPI's handlers give (``tossit.errors.json_error``), an
``HTTPException`` (a body the limits cut off) a JSON answer of its status;
anything else propagates to the server-error middleware, as from a route.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tossit.errors import ApiError, TossitError, json_error

Handler = Callable[[Request], Awaitable[Response]]


class HotPath:
    def __init__(self, app: Any) -> None:
        self.app = app

    def match(self, scope: dict[str, Any]) -> Handler | None:
        """The endpoint call for a request plainly of this path, or None."""
        raise NotImplementedError

    async def check(self, request: Request) -> None:
        """What must pass before the endpoint runs (a route's dependencies)."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        handler = self.match(scope) if scope["type"] == "http" else None
        if handler is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        response: Response
        try:
            await self.check(request)
            response = await handler(request)
        except (ApiError, TossitError) as exc:
            response = json_error(exc)
        except HTTPException as exc:
            # A body cut off by the limits middleware (``tossit.limits``: 408, 413),
            # which sends its own answer: answered as FastAPI would, not logged.
            response = JSONResponse({"error": getattr(exc, "code", "http_error"),
                                     "message": exc.detail}, status_code=exc.status_code)
        await response(scope, receive, send)
