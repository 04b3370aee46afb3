"""The dashboard's files and how the brain serves them (no browser needed).

The page must work under a strict Content-Security-Policy and never turn data
into markup: these checks read the sources and the served headers.
"""

from __future__ import annotations

import gzip
import os
import re
import time
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


# -- compression and caching -------------------------------------------------------


@pytest.mark.parametrize("path,name", [("/", "index.html"), ("/ui/app.js", "app.js"),
                                       ("/ui/style.css", "style.css")])
async def test_text_files_are_gzipped_for_clients_that_accept_it(
        client: httpx.AsyncClient, path: str, name: str) -> None:
    raw = (ROOT / name).read_bytes()
    # httpx decodes gzip by itself: read the wire bytes to see what was sent.
    async with client.stream("GET", path, headers={"Accept-Encoding": "gzip, deflate"}) as resp:
        wire = b"".join([c async for c in resp.aiter_raw()])
    assert resp.status_code == 200
    assert resp.headers["content-encoding"] == "gzip"
    assert resp.headers["vary"] == "Accept-Encoding"
    assert resp.headers["cache-control"] == "no-cache"
    assert resp.headers["content-security-policy"] == CSP
    assert int(resp.headers["content-length"]) == len(wire) < len(raw) / 2
    assert gzip.decompress(wire) == raw
    gz_tag = resp.headers["etag"]
    assert gz_tag.endswith('-gz"')

    # Not accepted (absent, identity only, or refused with q=0): the plain bytes.
    for accept in ("identity", "gzip;q=0, *", "br"):
        async with client.stream("GET", path, headers={"Accept-Encoding": accept}) as plain:
            body = b"".join([c async for c in plain.aiter_raw()])
        assert "content-encoding" not in plain.headers, accept
        assert plain.headers["vary"] == "Accept-Encoding"
        assert body == raw, accept
        assert plain.headers["etag"] != gz_tag and not plain.headers["etag"].endswith('-gz"')
    plain_tag = plain.headers["etag"]

    # 304 for the variant the client holds, never for the other one.
    again = await client.get(path, headers={"Accept-Encoding": "gzip",
                                            "If-None-Match": gz_tag})
    assert again.status_code == 304 and not again.content
    assert again.headers["etag"] == gz_tag and again.headers["vary"] == "Accept-Encoding"
    weak = await client.get(path, headers={"Accept-Encoding": "gzip",
                                           "If-None-Match": f"W/{gz_tag}"})
    assert weak.status_code == 304
    other = await client.get(path, headers={"Accept-Encoding": "identity",
                                            "If-None-Match": gz_tag})
    assert other.status_code == 200 and other.content == raw
    assert (await client.get(path, headers={"Accept-Encoding": "identity",
                                            "If-None-Match": plain_tag})).status_code == 304
    # HEAD: the same headers, no body.
    head = await client.head(path, headers={"Accept-Encoding": "gzip"})
    assert head.status_code == 200 and not head.content
    assert head.headers["etag"] == gz_tag and head.headers["content-encoding"] == "gzip"


async def test_a_changed_file_gets_a_new_etag(client: httpx.AsyncClient, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """After an upgrade the browser revalidates (no-cache) and gets the new bytes."""
    from tossit.brain.api import dashboard

    folder = tmp_path / "dash"
    folder.mkdir()
    (folder / "app.js").write_text("// version 1\n" * 50)
    monkeypatch.setattr(dashboard, "ROOT", folder)
    first = await client.get("/ui/app.js", headers={"Accept-Encoding": "gzip"})
    assert first.text == "// version 1\n" * 50
    (folder / "app.js").write_text("// version 2\n" * 50)
    os.utime(folder / "app.js", ns=(time.time_ns() + 10**9,) * 2)  # a new mtime for sure
    second = await client.get("/ui/app.js", headers={"Accept-Encoding": "gzip",
                                                     "If-None-Match": first.headers["etag"]})
    assert second.status_code == 200 and second.text == "// version 2\n" * 50
    assert second.headers["etag"] != first.headers["etag"]
