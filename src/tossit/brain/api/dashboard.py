"""The web dashboard: static files from ``tossit/brain/dashboard``, packaged in the wheel.

The page and its assets hold no cluster data (everything comes from the REST
API once the user has signed in), so these routes need no key. They are served
with a strict Content-Security-Policy: scripts, styles and connections from
this origin only, no inline code, and the page cannot be framed.

Text assets are gzipped once (when first read, then cached with the plain bytes)
and sent compressed to clients that accept gzip; ``Vary: Accept-Encoding`` keeps
caches from mixing the two, and each variant has its own strong ETag (the gzip one
ends in ``-gz``, RFC 9110 section 8.8.3.3), so a 304 is only ever given for the
bytes the client holds. Every file is ``Cache-Control: no-cache``: the module
URLs (``/ui/app.js`` and the relative imports inside it) carry no version, so a
browser must revalidate to pick up a new dashboard after a brain upgrade; an
unchanged file costs one 304. Brotli would need a new dependency: gzip it is.
"""

from __future__ import annotations

import gzip
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


_COMPRESSIBLE = (".html", ".js", ".css", ".svg")


@dataclass(frozen=True)
class _Asset:
    body: bytes
    media_type: str
    etag: str
    gz: bytes | None = None  # the gzip variant, when compressing pays
    gz_etag: str = ""


@lru_cache(maxsize=64)
def _load(path: Path, mtime_ns: int) -> _Asset:
    body = path.read_bytes()
    tag = hashlib.sha256(body).hexdigest()[:32]
    gz = None
    if path.suffix in _COMPRESSIBLE:
        # mtime=0: the same bytes give the same gzip body on every brain.
        packed = gzip.compress(body, compresslevel=9, mtime=0)
        gz = packed if len(packed) < len(body) else None
    return _Asset(body, _TYPES[path.suffix], f'"{tag}"', gz, f'"{tag}-gz"' if gz else "")


def accepts_gzip(header: str) -> bool:
    """Whether an ``Accept-Encoding`` value allows gzip: listed (or ``*``) with a
    q-value above 0; ``gzip;q=0`` refuses it even when ``*`` is allowed."""
    star = False
    for item in header.split(","):
        coding, _, params = item.strip().partition(";")
        coding = coding.strip().lower()
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if coding in ("gzip", "x-gzip"):
            return q > 0
        if coding == "*":
            star = q > 0
    return star


def _matches(etag: str, if_none_match: str) -> bool:
    """If-None-Match uses the weak comparison (RFC 9110 13.1.2): ``W/`` is ignored."""
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return "*" in tags or etag in tags


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
    zipped = asset.gz is not None and accepts_gzip(request.headers.get("accept-encoding", ""))
    etag = asset.gz_etag if zipped else asset.etag
    headers = {**_SAFE_HEADERS, "ETag": etag}
    if asset.gz is not None:
        headers["Vary"] = "Accept-Encoding"
    inm = request.headers.get("if-none-match")
    if inm is not None and _matches(etag, inm):
        return Response(status_code=304, headers=headers)
    if zipped:
        assert asset.gz is not None
        headers["Content-Encoding"] = "gzip"
        return Response(asset.gz, media_type=asset.media_type, headers=headers)
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
