"""The node's three busiest requests, served without FastAPI's routing.

Every upload and download is one of: store a chunk (``PUT /chunks/{id}``),
store a batch of small ones (``POST /chunk-batch``), fetch a chunk (``GET
/chunks/{id}``). For those, FastAPI's part of a request (exception and exit-stack
middlewares, matching the path against every route, solving dependencies,
wrapping the endpoint) cost the node more CPU than the endpoint itself: about a
quarter of its samples at 4 KiB uploads, on cores the brain and the other nodes
share.

So this middleware, placed after the signature check, calls the very endpoint
functions of ``chunk_routes`` itself for a request that is plainly one of the
three: exact path, a 64-hex id, no query or only ``kind=data|meta``. Whatever
else arrives (a bad id, another parameter, another route) goes on to FastAPI,
which answers as it always did; and an endpoint's ``ApiError`` is answered in the
same JSON shape as FastAPI's handler gives it (``tossit.hotpath``).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tossit.chunking import DATA, KINDS, is_chunk_id
from tossit.hotpath import Handler, HotPath
from tossit.node import chunk_routes
from tossit.node.parts import NodeParts

_CHUNKS = "/chunks/"
_KINDS = {f"kind={k}".encode(): k for k in KINDS}


class HotRoutes(HotPath):
    def __init__(self, app: Any, parts: NodeParts) -> None:
        super().__init__(app)
        self.parts = parts

    def match(self, scope: dict[str, Any]) -> Handler | None:
        """The endpoint call for a plain hot request, or None (FastAPI's turn)."""
        method, path, query = scope["method"], scope["path"], scope["query_string"]
        parts = self.parts
        if path.startswith(_CHUNKS):
            cid = path[len(_CHUNKS):]
            if not is_chunk_id(cid):
                return None
            if method == "GET" and not query:
                return lambda request: chunk_routes.get_chunk(cid, parts)
            if method == "PUT":
                kind = _KINDS.get(query) if query else DATA
                if kind is None:
                    return None
                return lambda request: chunk_routes.put_chunk(cid, request, parts, kind)
            return None
        if path == "/chunk-batch" and method == "POST" and not query:
            async def batch(request: Request) -> Response:
                return JSONResponse(await chunk_routes.put_batch(request, parts))
            return batch
        return None
