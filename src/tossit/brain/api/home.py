"""The page at ``/`` until the real dashboard exists.

It needs no key, so it shows nothing about the cluster's contents: only where
to go next. No scripts, no external assets.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from tossit import __version__

router = APIRouter(include_in_schema=False)

_PAGE = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>TossIt</title>
<style>body{{font:15px/1.5 system-ui,sans-serif;margin:2rem;color:#1d2430;max-width:46rem}}
code{{background:#eef0f3;padding:0 .25rem}}</style></head>
<body><h1>TossIt <small>{__version__}</small></h1>
<p>This brain is running. Every API call needs a key (<code>Authorization: Bearer
&lt;secret&gt;</code>); the first admin key is in the brain's data dir
(<code>data/brain/admin.key</code> for <code>tossit up</code>).</p>
<p>Use the <code>tossit</code> CLI (<code>tossit status</code>, <code>tossit ls</code>,
<code>tossit put FILE</code>) or the <a href="/docs">REST API</a>. The interactive
dashboard is not built yet.</p></body></html>"""


@router.get("/", response_class=HTMLResponse)
async def home() -> HTMLResponse:
    return HTMLResponse(_PAGE)
