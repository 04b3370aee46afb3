"""How the brain's node client groups small writes into requests.

A real aiohttp server on loopback stands in for a node: it records each request
(a single PUT or a ``/chunk-batch`` with its frames) and can hold one open, so
the tests see which writes left together.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from tossit import chunkbatch
from tossit.brain.nodeclient import NodeClient
from tossit.brain.registry import NodeView, Registry
from tossit.chunking import DATA, META, content_id


@dataclass
class FakeNode:
    """Stores nothing; answers every write as created, after ``gate`` opens."""

    requests: list[list[tuple[str, str]]] = field(default_factory=list)  # (id, kind) per request
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def put(self, request: web.Request) -> web.Response:
        await request.read()
        self.requests.append([(request.match_info["cid"], request.query.get("kind", DATA))])
        self.arrived.set()
        await self.gate.wait()
        return web.json_response({"created": True}, status=201)

    async def batch(self, request: web.Request) -> web.Response:
        frames = chunkbatch.decode(await request.read())
        self.requests.append([(cid, kind) for cid, _, kind in frames])
        self.arrived.set()
        await self.gate.wait()
        return web.json_response({"results": [{"id": cid, "status": "created"}
                                              for cid, _, _ in frames]})


@pytest.fixture
async def node() -> AsyncIterator[tuple[FakeNode, NodeClient, NodeView]]:
    fake = FakeNode()
    app = web.Application()
    app.router.add_put("/chunks/{cid}", fake.put)
    app.router.add_post("/chunk-batch", fake.batch)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    view = NodeView(id="n1", name="node-1", address=f"http://127.0.0.1:{port}", zone="z",
                    state="online", capacity=1 << 30, used=0, free=1 << 30,
                    disk_total=1 << 30, disk_free=1 << 30, chunk_count=0)
    client = NodeClient(Registry(replicas=1, high_water=0.9), timeout=10)
    await client.start()
    try:
        yield fake, client, view
    finally:
        fake.gate.set()
        await client.close()
        await runner.cleanup()


def blob(tag: bytes, kind: str = DATA) -> tuple[str, bytes]:
    data = hashlib.sha256(tag).digest() * 8
    return content_id(data, kind), data


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0.01)


async def test_a_lone_chunk_leaves_at_once(node: tuple[FakeNode, NodeClient, NodeView]) -> None:
    fake, client, view = node
    fake.gate.set()
    cid, data = blob(b"a")
    await asyncio.wait_for(client.put_chunk(view, cid, data), 5)
    assert fake.requests == [[(cid, DATA)]]


async def test_a_pack_rides_the_next_chunk_while_a_request_is_on_its_way(
        node: tuple[FakeNode, NodeClient, NodeView]) -> None:
    fake, client, view = node
    first, first_data = blob(b"first")
    held = asyncio.create_task(client.put_chunk(view, first, first_data))
    await asyncio.wait_for(fake.arrived.wait(), 5)  # the first request is held open
    pack, pack_data = blob(b"pack", META)
    pack_put = asyncio.create_task(client.put_chunk(view, pack, pack_data, kind=META))
    await settle()
    assert len(fake.requests) == 1, "a pack opened a request while one was on its way"
    chunk, chunk_data = blob(b"next")
    chunk_put = asyncio.create_task(client.put_chunk(view, chunk, chunk_data))
    await settle()
    assert fake.requests[1] == [(pack, META), (chunk, DATA)]
    fake.gate.set()
    await asyncio.wait_for(asyncio.gather(held, pack_put, chunk_put), 5)
    assert len(fake.requests) == 2


async def test_a_waiting_pack_leaves_when_the_request_ahead_ends(
        node: tuple[FakeNode, NodeClient, NodeView]) -> None:
    fake, client, view = node
    first, first_data = blob(b"first")
    held = asyncio.create_task(client.put_chunk(view, first, first_data))
    await asyncio.wait_for(fake.arrived.wait(), 5)
    pack, pack_data = blob(b"pack", META)
    pack_put = asyncio.create_task(client.put_chunk(view, pack, pack_data, kind=META))
    await settle()
    assert not pack_put.done() and len(fake.requests) == 1
    fake.gate.set()
    await asyncio.wait_for(asyncio.gather(held, pack_put), 5)
    assert fake.requests == [[(first, DATA)], [(pack, META)]]


async def test_a_pack_with_nothing_on_its_way_leaves_at_once(
        node: tuple[FakeNode, NodeClient, NodeView]) -> None:
    fake, client, view = node
    fake.gate.set()
    pack, pack_data = blob(b"pack", META)
    await asyncio.wait_for(client.put_chunk(view, pack, pack_data, kind=META), 5)
    assert fake.requests == [[(pack, META)]]
