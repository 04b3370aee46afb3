"""A plain status page at ``/`` until the real dashboard exists.

Server-rendered from the same data as the REST API, every value escaped,
refreshing itself every few seconds; no scripts, no external assets.
"""

from __future__ import annotations

from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tossit.brain.api.common import brain_of
from tossit.config import format_size

router = APIRouter(include_in_schema=False)

_STYLE = """
body{font:15px/1.4 system-ui,sans-serif;margin:2rem;color:#1d2430;background:#f7f8fa}
table{border-collapse:collapse;background:#fff}
td,th{padding:.35rem .8rem;border-bottom:1px solid #e3e6ea;text-align:left}
.online{color:#137333}.suspect{color:#b06000}.offline,.dead{color:#c5221f}
.note{color:#555;max-width:60rem}
"""


@router.get("/", response_class=HTMLResponse)
async def home(request: Request) -> HTMLResponse:
    brain = brain_of(request)
    nodes = sorted(brain.registry.nodes.values(), key=lambda n: n.name)
    live = [n.id for n in nodes if n.state in ("online", "suspect")]
    totals = await brain.store.totals(live)
    rows = "".join(
        f"<tr><td>{escape(n.name)}</td><td class='{escape(n.state)}'>{escape(n.state)}</td>"
        f"<td>{escape(n.zone)}</td><td>{escape(n.address)}</td>"
        f"<td>{format_size(n.used)} / {format_size(n.capacity)}</td>"
        f"<td>{n.chunk_count}</td></tr>"
        for n in nodes
    )
    hist = ", ".join(f"{k} copies: {v['chunks']}" for k, v in
                     totals["replica_histogram"].items()) or "no chunks yet"
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="5"><title>TossIt</title><style>{_STYLE}</style></head>
<body><h1>TossIt</h1>
<p>{totals['objects']} files, {format_size(totals['object_bytes'])};
{totals['chunks']} unique chunks ({escape(hist)}); replicas R={brain.settings.replicas}.</p>
<table><tr><th>node</th><th>state</th><th>zone</th><th>address</th><th>used / limit</th>
<th>chunks</th></tr>{rows}</table>
<p class="note">This page refreshes every 5 s. The interactive dashboard is not built yet;
meanwhile use the <a href="/docs">REST API</a> (<code>/api/files</code>,
<code>/api/nodes</code>, <code>/api/status</code>, <code>/api/events</code>) or the
<code>tossit</code> CLI.</p></body></html>"""
    return HTMLResponse(page)
