"""A small app served through ``tossit.serve.serve`` with short limits, for
``test_limits.py``: a real uvicorn process, so the tests see what a client sees.

    python tests/integration/limits_app.py PORT [CERTFILE KEYFILE]

The handlers record what they saw of each body; ``GET /outcomes`` reports it.
"""

from __future__ import annotations

import hashlib
import sys
from typing import Any

from fastapi import FastAPI, Request, Response
from starlette.requests import ClientDisconnect

from tossit.errors import install_error_handlers
from tossit.serve import serve

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0

app = FastAPI()
install_error_handlers(app)
outcomes: list[dict[str, Any]] = []


@app.get("/ping")
async def ping() -> dict[str, bool]:
    return {"ok": True}


@app.post("/json")
async def post_json(payload: dict[str, Any]) -> dict[str, int]:
    outcomes.append({"route": "json", "keys": len(payload)})
    return {"keys": len(payload)}


@app.put("/upload")
async def upload(request: Request) -> Any:
    """Streams like the brain's upload handlers: a disconnect aborts, 499."""
    size, digest = 0, hashlib.sha256()
    try:
        async for piece in request.stream():
            size += len(piece)
            digest.update(piece)
    except ClientDisconnect as exc:
        outcomes.append({"route": "upload", "complete": False, "bytes": size,
                         "error": type(exc).__name__})
        return Response(status_code=499)
    outcomes.append({"route": "upload", "complete": True, "bytes": size})
    return {"bytes": size, "sha256": digest.hexdigest()}


@app.put("/chunk")
async def chunk(request: Request) -> dict[str, int]:
    """Reads like the node's chunk handler: nothing catches a broken body."""
    size = 0
    try:
        async for piece in request.stream():
            size += len(piece)
    except BaseException as exc:
        outcomes.append({"route": "chunk", "complete": False, "bytes": size,
                         "error": type(exc).__name__})
        raise
    outcomes.append({"route": "chunk", "complete": True, "bytes": size})
    return {"bytes": size}


@app.get("/outcomes")
async def get_outcomes() -> list[dict[str, Any]]:
    return outcomes


if __name__ == "__main__":
    tls: dict[str, Any] = {}
    if len(sys.argv) == 4:
        tls = {"ssl_certfile": sys.argv[2], "ssl_keyfile": sys.argv[3]}
    serve(app, "127.0.0.1", int(sys.argv[1]), "info",
          header_timeout=HEADER_TIMEOUT, body_timeout=BODY_TIMEOUT,
          upload_routes=(("PUT", "/upload"),), **tls)
