"""The web dashboard: static files from ``tossit/brain/dashboard``, packaged in the wheel.

The page and its assets hold no cluster data (everything comes from the REST
API once the user has signed in), so these routes need no key. They are served
with a strict Content-Security-Policy: scripts, styles and connections from
this origin only, no inline code, and the page cannot be framed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, Request, Response

from tossit.errors import ApiError

router = APIRouter(include_in_schema=False)

ROOT = Path(__file__).resolve().parent.parent / "dashboard"
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
_SAFE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True)
class _Asset:
    body: bytes
    media_type: str
    etag: str


@lru_cache(maxsize=64)
def _load(path: Path, mtime_ns: int) -> _Asset:
    body = path.read_bytes()
    return _Asset(body, _TYPES[path.suffix], '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


def _asset(name: str) -> _Asset:
    """The packaged file ``name`` (a plain relative path), or a 404."""
    missing = ApiError(404, "not_found", "no such file in the dashboard")
    parts = name.split("/")
    if (not name or "\\" in name or "\x00" in name
            or any(p in ("", ".", "..") or p.startswith(".") for p in parts)):
        raise missing
    path = (ROOT / name).resolve()
    if ROOT not in path.parents or path.suffix not in _TYPES or not path.is_file():
        raise missing
    return _load(path, path.stat().st_mtime_ns)


def _send(request: Request, asset: _Asset) -> Response:
    headers = {**_SAFE_HEADERS, "ETag": asset.etag}
    inm = request.headers.get("if-none-match", "")
    if asset.etag in {t.strip() for t in inm.split(",")}:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


# Plain ``def``: the asset lookup stats (and may read) a file, so Starlette runs
# these in its thread pool instead of on the event loop. HEAD is answered too
# (monitoring probes and ``curl -I`` use it); the server sends no body.


@router.api_route("/", methods=["GET", "HEAD"])
def index(request: Request) -> Response:
    return _send(request, _asset("index.html"))


@router.api_route("/ui/{name:path}", methods=["GET", "HEAD"])
def ui_file(name: str, request: Request) -> Response:
    return _send(request, _asset(name))
