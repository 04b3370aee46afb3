"""``/docs``: the API reference page, served from the package under a strict CSP.

FastAPI's default page loads Swagger UI from a public CDN, unpinned and without
integrity checks, on the server's own origin: whoever controls that CDN (or the
network path to it) runs script next to the dashboard's session cookie, and on an
air-gapped LAN the page does not load at all. Here the assets come from the
pinned ``fastapi-offline`` package (Swagger UI 5, which reads OpenAPI 3.1), the
page has no inline script, and a Content-Security-Policy allows scripts from
this origin only. ``api_docs = false`` removes the page.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs/assets"  # open on a node too (tossit.node.app): nothing secret in it
CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; "
       "form-action 'none'; frame-ancestors 'none'")
_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}
_INIT = """window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis], layout: "BaseLayout"
  });
});
"""


def install_docs(app: FastAPI, title: str, enabled: bool) -> None:
    """Add ``/docs`` to an app created with ``docs_url=None, redoc_url=None``."""
    if not enabled:
        return
    static = files("fastapi_offline") / "static"
    app.mount(ASSETS, StaticFiles(directory=str(static)), name="docs-assets")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="{ASSETS}/swagger-ui.css">
<link rel="icon" type="image/png" href="{ASSETS}/favicon.png">
</head><body><div id="swagger-ui"></div>
<script src="{ASSETS}/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body></html>
"""

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(page, headers=_HEADERS)

    @app.get("/docs/init.js", include_in_schema=False)
    async def docs_init() -> Response:
        return Response(_INIT, media_type="text/javascript", headers=_HEADERS)
