"""The node's hot routes answer exactly as FastAPI's routes do.

Two nodes in-process (their whole ASGI app, signature check included): the same
requests go to one as they are (the hot path) and to the other with an extra
query parameter, which the hot path leaves to FastAPI (FastAPI ignores it).
Every answer, status and bytes, must be the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from cluster import SignedAuth
from tossit import chunkbatch
from tossit.auth.asgi import SignedRequests
from tossit.chunking import DATA, META, content_id
from tossit.config import NodeSettings
from tossit.limits import BodyTimeout
from tossit.node.app import create_app
from tossit.node.hot_routes import HotRoutes

SECRET = "hot-routes-test-secret"


@contextlib.asynccontextmanager
async def two_nodes(tmp_path: Path) -> AsyncIterator[list[httpx.AsyncClient]]:
    """Two nodes' apps, started (their lifespan: the store opened), each with a
    client that signs as the brain does."""
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        for name in ("hot", "cold"):
            settings = NodeSettings(data_dir=tmp_path / name, join_secret=SecretStr(SECRET),
                                    brain="http://127.0.0.1:9", heartbeat_interval=60)
            app = create_app(settings)
            await stack.enter_async_context(app.router.lifespan_context(app))
            clients.append(await stack.enter_async_context(httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://node",
                auth=SignedAuth(SECRET, app.state.parts.node_id))))
        yield clients


def _answer(resp: httpx.Response) -> tuple[int, str, bytes]:
    return resp.status_code, resp.headers.get("content-type", ""), resp.content


def test_the_hot_routes_answer_as_fastapi_does(tmp_path: Path) -> None:
    asyncio.run(_same_answers(tmp_path))


async def _same_answers(tmp_path: Path) -> None:
    a, b = os.urandom(5000), os.urandom(3000)
    meta = b'{"a pack": 1}'
    ida, idb, idm = content_id(a), content_id(b), content_id(meta, META)
    missing = content_id(b"never stored")
    batch = chunkbatch.encode([(idb, b, DATA), (missing, b"not these bytes", DATA)])
    script: list[tuple[str, str, str, bytes]] = [
        ("PUT", f"/chunks/{ida}", "", a),  # 201 created
        ("PUT", f"/chunks/{ida}", "", a),  # 200 already there
        ("PUT", f"/chunks/{idb}", "", a),  # 422 hash mismatch
        ("PUT", f"/chunks/{idm}", "kind=meta", meta),  # 201, a pack
        ("PUT", f"/chunks/{idm}", "kind=data", meta),  # 422: not a data chunk's id
        ("GET", f"/chunks/{ida}", "", b""),  # the bytes
        ("GET", f"/chunks/{idm}", "", b""),  # a pack is read by id too
        ("GET", f"/chunks/{missing}", "", b""),  # 404
        ("POST", "/chunk-batch", "", batch),  # created and hash_mismatch
        ("POST", "/chunk-batch", "", batch),  # exists and hash_mismatch
        ("POST", "/chunk-batch", "", b"\x00" * 10),  # 400 invalid_batch
        ("POST", "/chunk-batch", "", b""),  # nothing to do
        ("GET", f"/chunks/{idb}", "", b""),  # stored by the batch
    ]
    async with two_nodes(tmp_path) as (hot, cold):
        seen = await _play(script, hot, cold)
    # And the answers are the right ones, not only the same.
    assert [s for s, _, _ in seen] == [201, 200, 422, 201, 422, 200, 200, 404, 200, 200, 400,
                                       200, 200]
    assert seen[5][2] == a and seen[6][2] == meta and seen[12][2] == b
    assert b'"created"' in seen[8][2] and b'"exists"' in seen[9][2]
    assert seen[9][2].count(b'"hash_mismatch"') == 1


async def _play(script: list[tuple[str, str, str, bytes]], hot: httpx.AsyncClient,
                cold: httpx.AsyncClient) -> list[tuple[int, str, bytes]]:
    """Each request to ``hot`` as it is and to ``cold`` with ``x=1`` added; their
    answers, checked equal."""
    seen: list[tuple[int, str, bytes]] = []
    for method, path, query, body in script:
        scope: dict[str, Any] = {"type": "http", "method": method, "path": path,
                                 "query_string": query.encode()}
        handled = HotRoutes(None, None).match(scope)  # type: ignore[arg-type]
        assert handled is not None, (method, path, query)
        extra = f"{query}&x=1" if query else "x=1"
        assert HotRoutes(None, None).match(  # type: ignore[arg-type]
            {**scope, "query_string": extra.encode()}) is None
        got = _answer(await hot.request(method, f"{path}?{query}" if query else path,
                                        content=body))
        want = _answer(await cold.request(method, f"{path}?{extra}", content=body))
        assert got == want, (method, path, query)
        seen.append(got)
    return seen


def test_unsigned_requests_never_reach_the_hot_routes(tmp_path: Path) -> None:
    async def run() -> None:
        data = os.urandom(100)
        cid = content_id(data)
        async with two_nodes(tmp_path) as (hot, _):
            resp = await hot.put(f"/chunks/{cid}", content=data, auth=httpx.Auth())
            assert resp.status_code == 401 and resp.json()["error"] == "unauthorized"
            assert (await hot.get(f"/chunks/{cid}")).status_code == 404  # nothing stored

    asyncio.run(run())


@pytest.mark.parametrize(("method", "path", "query"), [
    ("GET", "/chunks/" + "a" * 64, "kind=data"),  # GET takes no parameter
    ("PUT", "/chunks/" + "A" * 64, ""),  # not lowercase hex
    ("PUT", "/chunks/" + "a" * 63, ""),
    ("PUT", "/chunks/" + "a" * 64, "kind=other"),
    ("DELETE", "/chunks/" + "a" * 64, ""),
    ("HEAD", "/chunks/" + "a" * 64, ""),
    ("POST", "/chunk-batch", "x=1"),
    ("GET", "/inventory", ""),
    ("PUT", "/chunks/../" + "a" * 64, ""),
])
def test_anything_else_is_left_to_fastapi(method: str, path: str, query: str) -> None:
    scope = {"type": "http", "method": method, "path": path, "query_string": query.encode()}
    assert HotRoutes(None, None).match(scope) is None  # type: ignore[arg-type]


def test_the_hot_routes_run_inside_the_signature_check(tmp_path: Path) -> None:
    app = create_app(NodeSettings(data_dir=tmp_path, join_secret=SecretStr(SECRET)))
    order: list[object] = [m.cls for m in app.user_middleware]  # outermost first
    assert order.index(SignedRequests) < order.index(HotRoutes)


def test_a_client_gone_mid_chunk_is_no_server_error(tmp_path: Path) -> None:
    asyncio.run(_gone_mid_chunk(tmp_path))


async def _gone_mid_chunk(tmp_path: Path) -> None:
    """The brain gave up on a chunk write (a straggler cut off, an upload
    aborted): the node stores nothing and answers, instead of raising
    ``ClientDisconnect`` to the server, which logged a traceback for each."""
    data = os.urandom(100_000)
    cid = content_id(data)
    settings = NodeSettings(data_dir=tmp_path / "n", join_secret=SecretStr(SECRET),
                            brain="http://127.0.0.1:9", heartbeat_interval=60)
    app = create_app(settings)
    cases = [(q, end) for q in ("", "?x=1")  # the hot path, and FastAPI's route
             for end in ("gone", "timeout")]  # the client left; the limits cut it off
    async with app.router.lifespan_context(app):
        for query, end in cases:
            sent = await _put_cut_short(app, data, query, cut_by_limits=end == "timeout")
            assert sent[0]["status"] == (400 if end == "gone" else 408), sent
            assert not app.state.parts.store.exists(cid)


async def _put_cut_short(app: Any, data: bytes, query: str,
                         cut_by_limits: bool) -> list[MutableMapping[str, Any]]:
    """A signed chunk PUT whose body stops after 1,000 bytes: the client leaves
    (``cut_by_limits``: the limits middleware's BodyTimeout instead). What was sent back."""
    cid = content_id(data)
    request = httpx.Request("PUT", f"http://node/chunks/{cid}{query}", content=data)
    signed = next(SignedAuth(SECRET, app.state.parts.node_id).auth_flow(request))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "PUT", "scheme": "http", "path": f"/chunks/{cid}",
             "raw_path": f"/chunks/{cid}".encode(), "root_path": "",
             "query_string": query[1:].encode(),
             "headers": [(k.lower().encode(), v.encode()) for k, v in signed.headers.items()],
             "client": ("127.0.0.1", 1), "server": ("node", 80)}
    first = True
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": data[:1000], "more_body": True}
        if cut_by_limits:
            raise BodyTimeout(30)  # what tossit.limits raises from receive()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent
