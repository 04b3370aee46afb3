"""The dashboard's files and how the brain serves them (no browser needed).

The page must work under a strict Content-Security-Policy and never turn data
into markup: these checks read the sources and the served headers.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tossit.brain.api.dashboard import CSP, ROOT
from tossit.brain.app import create_app
from tossit.config import BrainSettings

SOURCES = sorted(ROOT.glob("*.js"))


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    # The dashboard routes need no brain running (no lifespan): only the app.
    app = create_app(BrainSettings(data_dir=tmp_path))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://brain") as c:
        yield c


async def test_page_and_assets_are_served_with_strict_headers(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    for directive in ("default-src 'self'", "script-src 'self'", "style-src 'self'",
                      "connect-src 'self'", "frame-ancestors 'none'"):
        assert directive in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    head = await client.head("/")  # probes and curl -I
    assert head.status_code == 200 and head.headers["etag"] == page.headers["etag"]
    types = {"app.js": "text/javascript", "style.css": "text/css", "logo.svg": "image/svg+xml"}
    for name, ctype in types.items():
        resp = await client.get(f"/ui/{name}")
        assert resp.status_code == 200, name
        assert resp.headers["content-type"].startswith(ctype)
        assert resp.headers["content-security-policy"] == CSP
        assert resp.content == (ROOT / name).read_bytes()
        again = await client.get(f"/ui/{name}", headers={"If-None-Match": resp.headers["etag"]})
        assert again.status_code == 304 and not again.content
    # Every module the page imports is served.
    for src in SOURCES:
        for dep in re.findall(r'from "\./([\w.-]+)"', src.read_text()):
            assert (await client.get(f"/ui/{dep}")).status_code == 200, (src.name, dep)


@pytest.mark.parametrize("path", [
    "/ui/../api/dashboard.py", "/ui/%2e%2e/api/dashboard.py", "/ui/..%2fapi%2fdashboard.py",
    "/ui/%2e%2e%2f%2e%2e%2fconfig.py", "/ui/.hidden", "/ui/", "/ui/nope.js",
    "/ui/..%5c..%5cconfig.py", "/ui/index.html%00.js", "/ui/dashboard.py",
])
async def test_no_file_outside_the_dashboard_folder(client: httpx.AsyncClient, path: str) -> None:
    resp = await client.get(path)
    assert resp.status_code == 404, (path, resp.text[:200])
    assert "import" not in resp.text


def test_the_page_has_no_inline_code_and_no_external_urls() -> None:
    html = (ROOT / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline <script>"
    assert not re.search(r"\sstyle=", html), "inline style attribute"
    assert not re.search(r"\son[a-z]+=", html), "inline event handler"
    assert "<style" not in html
    for src in [ROOT / "index.html", ROOT / "style.css", *SOURCES]:
        text = src.read_text().replace("http://www.w3.org/2000/svg", "")  # a namespace name
        assert not re.search(r"(https?:)?//[a-z0-9-]+\.[a-z]", text), f"{src.name} links elsewhere"


def test_scripts_never_parse_strings_as_html() -> None:
    """Data goes into the page with textContent / createElement only."""
    banned = re.compile(r"innerHTML|outerHTML\s*=|insertAdjacentHTML|document\.write|"
                        r"createContextualFragment|DOMParser|\beval\(|new Function|"
                        r"setAttribute\(\s*['\"](style|on\w+)['\"]")
    for src in SOURCES:
        for n, line in enumerate(src.read_text().splitlines(), 1):
            if line.lstrip().startswith(("//", "/*", "*")):
                continue  # comments may name what is banned
            assert not banned.search(line), f"{src.name}:{n}: {line.strip()}"
