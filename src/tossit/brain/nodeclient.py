"""The brain's HTTP client for the nodes' chunk API.

One pooled aiohttp session for every node (keep-alive matters: a 4 KiB chunk
costs less to send than a new TCP handshake). Failures are sorted into the few
kinds the callers act on differently.
"""

from __future__ import annotations

import time

import aiohttp

from tossit.brain.registry import NodeView, Registry


class NodeError(Exception):
    """A node could not do what was asked."""


class NodeUnavailable(NodeError):
    """Connection refused, reset, timed out, or a 5xx: try another node."""


class NodeFull(NodeError):
    """The node refused the write because it reached its storage limit (507)."""


class ChunkMissing(NodeError):
    """The node answered 404 for a chunk it was expected to hold."""


class NodeClient:
    def __init__(self, registry: Registry, timeout: float) -> None:
        self.registry = registry
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256, limit_per_host=64, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=3, sock_read=self.timeout),
            skip_auto_headers=("User-Agent",),
            auto_decompress=False,
        )

    async def close(self) -> None:
        if self._session:
            await self._session.close()

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self._session is not None, "NodeClient.start() was not called"
        return self._session

    async def put_chunk(self, node: NodeView, chunk_id: str, data: bytes) -> None:
        t0 = time.monotonic()
        try:
            async with self.http.put(
                f"{node.address}/chunks/{chunk_id}", data=data,
                headers={"content-type": "application/octet-stream"},
            ) as resp:
                if resp.status in (200, 201):
                    await resp.read()
                    self.registry.observe_latency(node.id, time.monotonic() - t0)
                    return
                body = (await resp.text())[:200]
                if resp.status == 507:
                    raise NodeFull(f"{node.name}: {body}")
                if resp.status >= 500:
                    raise NodeUnavailable(f"{node.name} answered {resp.status}: {body}")
                raise NodeError(f"{node.name} refused chunk {chunk_id}: {resp.status} {body}")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.registry.mark_unreachable(node.id)
            raise NodeUnavailable(f"{node.name} unreachable: {exc!r}") from exc

    async def get_chunk(self, node: NodeView, chunk_id: str) -> bytes:
        t0 = time.monotonic()
        try:
            async with self.http.get(f"{node.address}/chunks/{chunk_id}") as resp:
                if resp.status == 200:
                    data = await resp.read()
                    self.registry.observe_latency(node.id, time.monotonic() - t0)
                    return data
                if resp.status == 404:
                    raise ChunkMissing(f"{node.name} does not have chunk {chunk_id}")
                raise NodeUnavailable(f"{node.name} answered {resp.status}")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.registry.mark_unreachable(node.id)
            raise NodeUnavailable(f"{node.name} unreachable: {exc!r}") from exc

    async def delete_chunk(self, node: NodeView, chunk_id: str) -> None:
        try:
            async with self.http.delete(f"{node.address}/chunks/{chunk_id}") as resp:
                if resp.status >= 400:
                    raise NodeUnavailable(f"{node.name} answered {resp.status} to a delete")
                await resp.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise NodeUnavailable(f"{node.name} unreachable: {exc!r}") from exc

    async def inventory(self, node: NodeView, after: str, limit: int) -> dict[str, object]:
        try:
            async with self.http.get(
                f"{node.address}/inventory", params={"after": after, "limit": str(limit)}
            ) as resp:
                if resp.status != 200:
                    raise NodeUnavailable(f"{node.name} answered {resp.status} to inventory")
                result: dict[str, object] = await resp.json()
                return result
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise NodeUnavailable(f"{node.name} unreachable: {exc!r}") from exc
