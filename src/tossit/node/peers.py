"""Node-to-node copies: on the brain's order, fetch a chunk from another node.

The chunk travels between the two nodes only (the brain sends the order, not the
data). The request to the source is signed with the cluster MAC like the
brain's; the bytes are verified against the chunk id before they are stored
(fsynced), so a bad or forged source can never plant wrong data.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp

from tossit.auth.mac import Signer
from tossit.chunking import DATA, content_id
from tossit.config import MAX_CHUNK_SIZE, NodeSettings
from tossit.node.pacing import Pacer
from tossit.node.storage import ChunkStore
from tossit.tlsconfig import client_context

log = logging.getLogger("tossit.node.peers")


class CopyFailed(Exception):
    """No source could supply a verified copy; the message lists why."""


class PeerFetcher:
    def __init__(self, settings: NodeSettings, store: ChunkStore,
                 signer: Signer | None) -> None:
        self.store = store
        self.signer = signer
        self.pacer = Pacer(settings.repair_bandwidth)
        self.tls_ca = settings.tls_ca
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=16, ssl=client_context(self.tls_ca)),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=60),
                auto_decompress=False)
        return self._session

    async def fetch(self, chunk_id: str, sources: list[dict[str, str]],
                    kind: str = DATA) -> dict[str, Any]:
        """Store a verified copy from the first source that has one.

        A copy already here and intact (the brain's records were behind, or an
        earlier order's answer was lost) is kept: nothing crosses the network.
        A damaged one is quarantined and fetched again."""
        intact, size = await asyncio.to_thread(self._local_copy, chunk_id, kind)
        if intact:
            return {"id": chunk_id, "size": size, "source": "local", "created": False}
        if intact is False:
            await asyncio.to_thread(self.store.quarantine, chunk_id)
        errors = []
        for src in sources:
            path = f"/chunks/{chunk_id}"
            headers = self.signer.headers("GET", path, src["id"]) if self.signer else {}
            try:
                async with self._http().get(src["address"] + path, headers=headers) as resp:
                    if resp.status != 200:
                        errors.append(f"{src['id']}: HTTP {resp.status}")
                        continue
                    data = await _read_all(resp)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                errors.append(f"{src['id']}: {exc!r}")
                continue
            await self.pacer.take(len(data))
            if await asyncio.to_thread(content_id, data, kind) != chunk_id:
                errors.append(f"{src['id']}: sent bytes that do not match the id")
                continue
            # Verified just above: the store need not hash it again.
            created = await asyncio.to_thread(self.store.write, chunk_id, data, False, kind)
            return {"id": chunk_id, "size": len(data), "source": src["id"],
                    "created": created}
        raise CopyFailed("; ".join(errors) or "no source given")

    def _local_copy(self, chunk_id: str, kind: str) -> tuple[bool | None, int]:
        """(intact?, size) of the copy already here; (None, 0) if there is none."""
        try:
            size = self.store.path_for(chunk_id, kind).stat().st_size
        except FileNotFoundError:
            return None, 0
        return self.store.verify(chunk_id), size


async def _read_all(resp: aiohttp.ClientResponse) -> bytes:
    """The whole body, refusing more than a chunk can be (``content.read(n)``
    returns only what is buffered, not n bytes)."""
    buf = bytearray()
    async for piece in resp.content.iter_chunked(1 << 20):
        buf += piece
        if len(buf) > MAX_CHUNK_SIZE:
            raise aiohttp.ClientPayloadError(f"more than {MAX_CHUNK_SIZE} bytes")
    return bytes(buf)
