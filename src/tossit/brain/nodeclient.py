"""The brain's HTTP client for the nodes' chunk API.

One pooled aiohttp session for every node (keep-alive matters: a 4 KiB chunk
costs less to send than a new TCP handshake). Failures are sorted into the few
kinds the callers act on differently.

Small chunks bound for the same node are coalesced: the first goes out at once;
those that arrive while it is in flight wait and leave together in one
``/chunk-batch`` request. Under load that divides the per-request cost (HTTP
parsing on both sides, a thread hop on the node) by the batch size; an idle
cluster sees no added latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp

from tossit import chunkbatch
from tossit.auth.mac import EMPTY_SHA256, Signer
from tossit.brain.metrics import BATCHED_CHUNKS, BATCHES
from tossit.brain.registry import NodeView, Registry
from tossit.brain.transport import (
    ChunkMissing,
    NodeDiskError,
    NodeError,
    NodeFull,
    NodeUnavailable,
)
from tossit.chunking import DATA, META
from tossit.tlsconfig import client_context

# The failures belong to the transport boundary (brain/transport.py, which
# NodeClient implements); they are still importable from here.
__all__ = ["ChunkMissing", "NodeClient", "NodeDiskError", "NodeError", "NodeFull",
           "NodeUnavailable"]

SCRUB_TIMEOUT = 10.0  # seconds a node has to answer a scrub status or order
BATCH_BELOW = 256 * 1024  # chunks smaller than this may travel in batches
BATCHES_IN_FLIGHT = 2  # per node: the next batch gathers while these are sent


class _Pending:
    __slots__ = ("cid", "data", "future", "kind")

    def __init__(
        self, cid: str, data: bytes | bytearray, future: asyncio.Future[None], kind: str,
    ) -> None:
        self.cid = cid
        self.data = data
        self.future = future
        self.kind = kind


class _NodeQueue:
    """Small-chunk writes waiting for one node."""

    def __init__(self) -> None:
        self.waiting: list[_Pending] = []
        self.in_flight = 0
        self.kick_due = False  # a kick is scheduled for the end of this loop tick

    def take(self) -> list[_Pending]:
        batch: list[_Pending] = []
        size = 0
        while self.waiting and len(batch) < chunkbatch.MAX_BATCH_CHUNKS:
            nxt = self.waiting[0]
            if batch and size + len(nxt.data) > chunkbatch.MAX_BATCH_BYTES:
                break
            batch.append(self.waiting.pop(0))
            size += len(nxt.data)
        return batch


# How much of a node's answer aiohttp buffers before it stops reading the socket
# (its default, 64 KiB, paused and resumed the socket dozens of times per chunk).
# A chunk read is kept whole in memory anyway, so this adds nothing to the peak.
READ_BUFFER = 4 * 1024 * 1024
PROBE_TIMEOUT = 3.0  # seconds the registration's reachability probe waits
SEND_SLICE = 256 * 1024  # a big chunk goes to a node in pieces of this size


def _body(data: bytes | bytearray) -> memoryview | AsyncIterator[memoryview]:
    """A chunk as a request body, never copied: a memoryview (slicing bytes would
    copy the chunk once per node). A big one goes in slices, each sent once the
    socket has taken the last: written whole, the part a busy node's socket does
    not take at once is copied into the connection's buffer, so three copies of
    every chunk in flight would sit in the brain's memory."""
    view = memoryview(data)
    if len(view) <= SEND_SLICE:
        return view

    async def slices() -> AsyncIterator[memoryview]:
        for start in range(0, len(view), SEND_SLICE):
            yield view[start:start + SEND_SLICE]
    return slices()


class NodeClient:
    """The nodes over HTTP: the brain's ``NodeTransport`` (plus the calls only the
    service and the API make: scrubs, probes)."""

    def __init__(self, registry: Registry, timeout: float, signer: Signer | None = None,
                 tls_ca: Path | None = None) -> None:
        self.registry = registry
        self.timeout = timeout
        self.signer = signer
        self.tls_ca = tls_ca
        self._session: aiohttp.ClientSession | None = None
        self._queues: dict[str, _NodeQueue] = {}
        self._senders: set[asyncio.Task[None]] = set()

    @contextlib.contextmanager
    def _transport_errors(self, node: NodeView, mark: bool) -> Iterator[None]:
        """Connection refused, reset or timed out -> NodeUnavailable (and, for
        data operations, skip the node for a few seconds)."""
        try:
            yield
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            if mark:
                self.registry.mark_unreachable(node.id)
            raise NodeUnavailable(f"{node.name} unreachable: {exc!r}") from exc

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256, limit_per_host=64, keepalive_timeout=30,
                                           ssl=client_context(self.tls_ca)),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=3, sock_read=self.timeout),
            skip_auto_headers=("User-Agent",),
            auto_decompress=False,
            read_bufsize=READ_BUFFER,
        )

    async def close(self) -> None:
        if self._session:
            await self._session.close()

    def _headers(self, method: str, path: str, node: NodeView, *, query: str = "",
                 digest: str = EMPTY_SHA256, **extra: str) -> dict[str, str]:
        """Signed request headers (the node rejects unsigned requests)."""
        if self.signer is None:
            return extra
        return {**extra, **self.signer.headers(method, path, node.id, query=query,
                                               digest=digest)}

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self._session is not None, "NodeClient.start() was not called"
        return self._session

    async def put_chunk(self, node: NodeView, chunk_id: str, data: bytes | bytearray,
                        kind: str = DATA) -> None:
        """Store a chunk (or a manifest pack: ``kind`` meta) on a node, fsynced when
        this returns."""
        if len(data) >= BATCH_BELOW:
            return await self._put_one(node, chunk_id, data, kind)
        queue = self._queues.setdefault(node.id, _NodeQueue())
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        queue.waiting.append(_Pending(chunk_id, data, fut, kind))
        # A manifest pack opens no request of its own while one to this node is on
        # its way: it rides the next one (a chunk arriving takes it along, or that
        # request's end sends it), one node request saved per pack and node.
        riding = kind == META and queue.in_flight > 0
        if not riding and not queue.kick_due:
            # Sent at the end of this loop tick, not now: the writes that other
            # uploads start in the same tick (a busy brain handles many requests
            # per tick) then share one request. Alone, it still leaves at once.
            queue.kick_due = True
            loop.call_soon(self._kick, node, queue)
        await fut

    def _kick(self, node: NodeView, queue: _NodeQueue) -> None:
        queue.kick_due = False
        while queue.waiting and queue.in_flight < BATCHES_IN_FLIGHT:
            batch = queue.take()
            queue.in_flight += 1
            task = asyncio.create_task(self._send_batch(node, batch, queue))
            self._senders.add(task)  # keep a reference until it finishes
            task.add_done_callback(self._senders.discard)

    async def _send_batch(self, node: NodeView, batch: list[_Pending], queue: _NodeQueue) -> None:
        try:
            await self._send(node, batch)
        finally:
            queue.in_flight -= 1
            self._kick(node, queue)

    async def _send(self, node: NodeView, batch: list[_Pending]) -> None:
        live = [p for p in batch if not p.future.done()]  # the caller may have given up
        if not live:
            return
        if len(live) == 1:
            p = live[0]
            try:
                await self._put_one(node, p.cid, p.data, p.kind)
            except Exception as exc:
                _settle(p.future, exc)
            else:
                _settle(p.future, None)
            return
        BATCHES.inc()
        BATCHED_CHUNKS.inc(len(live))
        t0 = time.monotonic()
        try:
            body = chunkbatch.encode((p.cid, p.data, p.kind) for p in live)
            digest = hashlib.sha256(body).hexdigest() if self.signer else EMPTY_SHA256
            async with self.http.post(
                f"{node.address}/chunk-batch", data=body,
                headers=self._headers("POST", "/chunk-batch", node, digest=digest,
                                      **{"content-type": "application/octet-stream"}),
            ) as resp:
                if resp.status != 200:
                    text = (await resp.text())[:200]
                    cls = NodeUnavailable if resp.status >= 500 else NodeError
                    raise cls(f"{node.name} answered {resp.status} to a batch: {text}")
                results = (await resp.json())["results"]
            self.registry.observe_latency(node.id, time.monotonic() - t0)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.registry.mark_unreachable(node.id)
            err: Exception = NodeUnavailable(f"{node.name} unreachable: {exc!r}")
            for p in live:
                _settle(p.future, err)
            return
        except NodeError as exc:
            for p in live:
                _settle(p.future, exc)
            return
        outcome = {r["id"]: r["status"] for r in results}
        why = {r["id"]: r["message"] for r in results if r.get("message")}
        for p in live:
            status = outcome.get(p.cid)
            if status in ("created", "exists"):
                _settle(p.future, None)
            elif status == "full":
                _settle(p.future, NodeFull(f"{node.name}: storage limit reached"))
            else:
                said = f" ({why[p.cid]})" if p.cid in why else ""
                error = NodeDiskError if status == "disk_error" else NodeError
                _settle(p.future, error(f"{node.name} refused chunk {p.cid}: {status}{said}"))

    async def _put_one(
        self, node: NodeView, chunk_id: str, data: bytes | bytearray, kind: str = DATA,
    ) -> None:
        t0 = time.monotonic()
        query = "" if kind == DATA else urlencode({"kind": kind})
        with self._transport_errors(node, mark=True):
            async with self.http.put(
                f"{node.address}/chunks/{chunk_id}" + (f"?{query}" if query else ""),
                data=_body(data),
                # The body's hash is the chunk id, and the node checks the body against it.
                headers=self._headers("PUT", f"/chunks/{chunk_id}", node, query=query,
                                      digest=chunk_id,
                                      **{"content-type": "application/octet-stream",
                                         "content-length": str(len(data))}),
            ) as resp:
                if resp.status in (200, 201):
                    await resp.read()
                    self.registry.observe_latency(node.id, time.monotonic() - t0)
                    return
                body = (await resp.text())[:200]
                if resp.status == 507:
                    raise NodeFull(f"{node.name}: {body}")
                if resp.status == 500 and '"disk_error"' in body:
                    raise NodeDiskError(f"{node.name} refused chunk {chunk_id}: {body}")
                if resp.status >= 500:
                    raise NodeUnavailable(f"{node.name} answered {resp.status}: {body}")
                raise NodeError(f"{node.name} refused chunk {chunk_id}: {resp.status} {body}")

    async def get_chunk(self, node: NodeView, chunk_id: str) -> bytes:
        t0 = time.monotonic()
        with self._transport_errors(node, mark=True):
            path = f"/chunks/{chunk_id}"
            async with self.http.get(node.address + path,
                                     headers=self._headers("GET", path, node)) as resp:
                if resp.status == 200:
                    data = await resp.read()
                    self.registry.observe_latency(node.id, time.monotonic() - t0)
                    return data
                if resp.status == 404:
                    raise ChunkMissing(f"{node.name} does not have chunk {chunk_id}")
                raise NodeUnavailable(f"{node.name} answered {resp.status}")

    async def delete_chunk(self, node: NodeView, chunk_id: str) -> bool:
        """Delete a chunk; True if the node had it (deleting nothing is fine)."""
        with self._transport_errors(node, mark=False):
            path = f"/chunks/{chunk_id}"
            async with self.http.delete(node.address + path,
                                        headers=self._headers("DELETE", path, node)) as resp:
                if resp.status >= 400:
                    raise NodeUnavailable(f"{node.name} answered {resp.status} to a delete")
                return bool((await resp.json()).get("deleted"))

    async def delete_chunks(self, node: NodeView, chunk_ids: list[str]) -> set[str]:
        """Delete many chunks (or packs) on a node in one request; returns the ids
        it had (deleting nothing is fine)."""
        async with self._post_json(node, "/chunk-deletes", {"ids": chunk_ids}) as resp:
            if resp.status != 200:
                raise NodeUnavailable(f"{node.name} answered {resp.status} to deletes")
            return set((await resp.json())["deleted"])

    @contextlib.asynccontextmanager
    async def _post_json(self, node: NodeView, path: str,
                         payload: dict[str, Any]) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST a signed JSON order to a node (transport errors as NodeUnavailable)."""
        body = json.dumps(payload).encode()
        digest = hashlib.sha256(body).hexdigest() if self.signer else EMPTY_SHA256
        with self._transport_errors(node, mark=False):
            async with self.http.post(
                f"{node.address}{path}", data=body,
                headers=self._headers("POST", path, node, digest=digest,
                                      **{"content-type": "application/json"}),
            ) as resp:
                yield resp

    async def replicate(self, target: NodeView, chunk_id: str, sources: list[NodeView],
                        kind: str = DATA) -> None:
        """Order ``target`` to fetch a chunk from one of ``sources`` (node to node;
        the target verifies the bytes against the id and fsyncs them)."""
        order: dict[str, Any] = {"chunk_id": chunk_id, "sources": [
            {"id": s.id, "address": s.address} for s in sources]}
        if kind != DATA:
            order["kind"] = kind
        async with self._post_json(target, "/replicate", order) as resp:
            if resp.status in (200, 201):
                await resp.read()
                return
            text = (await resp.text())[:300]
            if resp.status == 507:
                raise NodeFull(f"{target.name}: {text}")
            if resp.status == 500 and '"disk_error"' in text:
                raise NodeDiskError(f"{target.name} could not store a copy of "
                                    f"{chunk_id[:12]}: {text}")
            raise NodeError(f"{target.name} could not copy {chunk_id[:12]}: "
                            f"{resp.status} {text}")

    async def scrub(self, node: NodeView) -> dict[str, Any]:
        """Have the node re-hash everything now; returns its report."""
        with self._transport_errors(node, mark=False):
            async with self.http.post(f"{node.address}/scrub",
                                      headers=self._headers("POST", "/scrub", node)) as resp:
                if resp.status != 200:
                    raise NodeUnavailable(f"{node.name} answered {resp.status} to a scrub")
                result: dict[str, Any] = await resp.json()
                return result

    async def scrub_call(self, node: NodeView, action: str,
                         rate: int | None = None) -> dict[str, Any]:
        """The node's background scrub: ``status``, ``start``, ``pause``,
        ``resume`` or ``rate`` (with ``rate``); returns its status. A short
        timeout: an operator waits for the answer, and a node that does not
        answer is shown as such rather than holding up the others."""
        timeout = aiohttp.ClientTimeout(total=SCRUB_TIMEOUT)
        with self._transport_errors(node, mark=False):
            if action == "status":
                ctx = self.http.get(f"{node.address}/scrub", timeout=timeout,
                                    headers=self._headers("GET", "/scrub", node))
            elif action == "rate":
                body = json.dumps({"rate": rate}).encode()
                digest = hashlib.sha256(body).hexdigest() if self.signer else EMPTY_SHA256
                ctx = self.http.put(f"{node.address}/scrub/rate", data=body, timeout=timeout,
                                    headers=self._headers(
                                        "PUT", "/scrub/rate", node, digest=digest,
                                        **{"content-type": "application/json"}))
            else:
                path = f"/scrub/{action}"
                ctx = self.http.post(f"{node.address}{path}", timeout=timeout,
                                     headers=self._headers("POST", path, node))
            async with ctx as resp:
                if resp.status == 404 and action == "status":
                    raise NodeError(f"{node.name} runs an older version without scrub "
                                    "control")
                if resp.status != 200:
                    text = (await resp.text())[:300]
                    cls = NodeUnavailable if resp.status >= 500 else NodeError
                    raise cls(f"{node.name} answered {resp.status}: {text}")
                result: dict[str, Any] = await resp.json()
                return result

    async def inventory(self, node: NodeView, after: str, limit: int,
                        kind: str | None = None) -> dict[str, object]:
        with self._transport_errors(node, mark=False):
            params = {"after": after, "limit": str(limit)}
            if kind is not None:
                params["kind"] = kind
            query = urlencode(params)
            async with self.http.get(
                f"{node.address}/inventory?{query}",
                headers=self._headers("GET", "/inventory", node, query=query),
            ) as resp:
                if resp.status != 200:
                    raise NodeUnavailable(f"{node.name} answered {resp.status} to inventory")
                result: dict[str, object] = await resp.json()
                return result


    async def probe(self, node: NodeView) -> str | None:
        """Can this brain reach the node at the address it gave? None if its
        ``/health`` answers with its id, else why not, for people."""
        url = f"{node.address}/health"
        hint = ("; start the node with --advertise-url set to an address this brain can "
                "reach")
        try:
            async with self.http.get(url, timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT)
                                     ) as resp:
                answer = await resp.json(content_type=None) if resp.status == 200 else None
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            return f"{url} does not answer ({type(exc).__name__}: {exc})"[:300] + hint
        if not isinstance(answer, dict):
            return f"{url} answered {resp.status}, not as a TossIt node{hint}"
        if answer.get("id") != node.id:
            return f"another node ({answer.get('id')}) answers at {url}{hint}"
        return None


def _settle(future: asyncio.Future[None], exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is None:
        future.set_result(None)
    else:
        future.set_exception(exc)
