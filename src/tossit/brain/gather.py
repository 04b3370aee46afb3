"""Reading what the nodes hold, for ``tossit recover`` and ``tossit drill``.

Two kinds of source, one result (``rebuild.Gathered``):

* a node's address: its id from ``/health``, then signed requests (the cluster
  secret) for its ``/status``, its ``/inventory`` and the manifest packs it holds;
* a node's data dir on this machine (the node need not run): ``node.json``,
  the files under ``chunks/`` and ``manifests/``.

Every pack is checked twice: its bytes against its id (the node may have rotted
it) and its signature against the cluster secret (anybody without the secret
could have planted it). A pack is read from one node; another copy is read
only when that one fails its checks (all copies of a pack in a data dir, since
that costs no network).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp

from tossit.auth.mac import Signer
from tossit.brain.rebuild import Gathered, NodeFound, PackFound
from tossit.chunking import DATA, META, content_id, is_chunk_id
from tossit.manifests import PackError, decode_pack
from tossit.tlsconfig import client_context

Progress = Callable[[str, int, int | None], None]  # (what, done, total)
PARALLEL = 16
INVENTORY_PAGE = 50_000


class SourceError(Exception):
    """A source could not be read at all (the message says why)."""


@dataclass(frozen=True)
class Copy:
    """Where one copy of a pack can be read."""

    node_id: str
    read: Callable[[], Any]  # async () -> bytes


def _quiet(what: str, done: int, total: int | None) -> None:
    return None


class Gatherer:
    def __init__(self, pack_key: bytes, secret: str | None, tls_ca: Path | None = None,
                 progress: Progress = _quiet, timeout: float = 60.0) -> None:
        self.pack_key = pack_key
        self.signer = Signer(secret, "recover") if secret else None
        self.tls_ca = tls_ca
        self.progress = progress
        self.timeout = timeout
        self.out = Gathered()
        self._copies: dict[str, list[Copy]] = {}  # pack id -> where to read it
        self._bad_on: dict[str, set[str]] = {}  # pack id -> nodes with a damaged copy
        self._where: dict[str, str | Path] = {}  # node id -> its URL or its data dir

    # -- sources -------------------------------------------------------------

    async def gather(self, urls: Sequence[str] = (), dirs: Sequence[Path] = ()) -> None:
        """Read the nodes at ``urls`` and the data dirs ``dirs``, then their packs
        (every copy when a data dir is read: a damaged copy on a disk is found).
        One HTTP session lasts until the packs are read: the packs of a node read
        over HTTP are fetched through it, whichever source found them."""
        connector = aiohttp.TCPConnector(limit=64, ssl=client_context(self.tls_ca))
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=self.timeout)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            for url in urls:
                try:
                    await self._node(http, url.rstrip("/"))
                except (SourceError, aiohttp.ClientError, TimeoutError, OSError) as exc:
                    self.out.unreachable[url] = _why(exc)
            for d in dirs:
                try:
                    await asyncio.to_thread(self._dir, d)
                except (SourceError, OSError, ValueError) as exc:
                    self.out.unreachable[str(d)] = _why(exc)
            await self._read_packs(every_copy=bool(dirs))

    async def from_nodes(self, urls: Sequence[str]) -> None:
        await self.gather(urls=urls)

    # -- one node over HTTP ---------------------------------------------------

    def _headers(self, method: str, path: str, node_id: str, query: str = "") -> dict[str, str]:
        if self.signer is None:
            return {}
        return self.signer.headers(method, path, node_id, query=query)

    async def _get_json(self, http: aiohttp.ClientSession, url: str, path: str, node_id: str,
                        params: dict[str, str] | None = None) -> Any:
        query = urlencode(params or {})
        async with http.get(f"{url}{path}" + (f"?{query}" if query else ""),
                            headers=self._headers("GET", path, node_id, query)) as resp:
            if resp.status != 200:
                raise SourceError(f"{url}{path} answered {resp.status}: "
                                  f"{(await resp.text())[:200]}")
            return await resp.json()

    async def _node(self, http: aiohttp.ClientSession, url: str) -> None:
        async with http.get(f"{url}/health") as resp:
            if resp.status != 200:
                raise SourceError(f"{url}/health answered {resp.status}")
            node_id = str((await resp.json())["id"])
        status = await self._get_json(http, url, "/status", node_id)
        self.out.nodes[node_id] = NodeFound(
            id=node_id, name=str(status.get("name") or node_id), address=url,
            zone=str(status.get("zone", "default")),
            **{k: int(status.get(k, 0)) for k in (
                "capacity", "used", "free", "disk_total", "disk_free", "chunk_count")},
            version=str(status.get("version", "?")), cluster=status.get("cluster") or None)
        inv: dict[str, tuple[int, str]] = {}
        after = ""
        while True:
            page = await self._get_json(http, url, "/inventory", node_id,
                                        {"after": after, "limit": str(INVENTORY_PAGE)})
            for e in page["chunks"]:
                inv[e["id"]] = (int(e["size"]), e.get("kind", DATA))
            self.progress(f"inventory of {status.get('name', url)}", len(inv), None)
            after = page.get("next") or ""
            if not after:
                break
        self.out.inventory[node_id] = inv
        self._where[node_id] = url
        for cid, (_size, kind) in inv.items():
            if kind == META:
                self._copies.setdefault(cid, []).append(
                    Copy(node_id, _http_reader(http, url, cid, self._headers(
                        "GET", f"/chunks/{cid}", node_id))))

    # -- one data dir -----------------------------------------------------------

    def _dir(self, d: Path) -> None:
        ident = d / "node.json"
        if not ident.is_file():
            raise SourceError(f"{d} is not a node's data dir (no node.json)")
        doc = json.loads(ident.read_text())
        node_id = str(doc["id"])
        inv: dict[str, tuple[int, str]] = {}
        for kind, sub in ((DATA, "chunks"), (META, "manifests")):
            base = d / sub
            if not base.is_dir():
                continue
            for fan in os.scandir(base):
                if not fan.is_dir():
                    continue
                for entry in os.scandir(fan.path):
                    if is_chunk_id(entry.name):
                        inv[entry.name] = (entry.stat().st_size, kind)
        self.out.inventory[node_id] = inv
        self._where[node_id] = d
        used = sum(size for size, _ in inv.values())
        self.out.nodes[node_id] = NodeFound(
            id=node_id, name=str(doc.get("name") or f"node {node_id[:8]}"),
            address=str(doc.get("address") or ""), zone=str(doc.get("zone") or "default"),
            used=used, chunk_count=len(inv), cluster=doc.get("cluster") or None)
        for cid, (_size, kind) in inv.items():
            if kind == META:
                path = d / "manifests" / cid[:3] / cid
                self._copies.setdefault(cid, []).append(Copy(node_id, _file_reader(path)))
        self.progress(f"inventory of {d}", len(inv), len(inv))

    # -- packs ----------------------------------------------------------------

    async def _read_packs(self, every_copy: bool = False) -> None:
        """Read and check each pack, from one copy (or every copy)."""
        total = len(self._copies)
        done = 0
        sem = asyncio.Semaphore(PARALLEL)

        async def one(pid: str, copies: list[Copy]) -> None:
            nonlocal done
            async with sem:
                await self._read_pack(pid, copies, every_copy)
            done += 1
            self.progress("manifest packs", done, total)

        await asyncio.gather(*(one(pid, cs) for pid, cs in self._copies.items()))

    async def _read_pack(self, pid: str, copies: list[Copy], every_copy: bool) -> None:
        found: PackFound | None = None
        why = "no copy could be read"
        unread: list[str] = []
        for i, c in enumerate(copies):
            if found is not None and not every_copy:
                unread = [x.node_id for x in copies[i:]]
                break
            try:
                data = await c.read()
            except (aiohttp.ClientError, TimeoutError, OSError, SourceError) as exc:
                why = f"{c.node_id}: {_why(exc)}"
                continue
            if content_id(data, META) != pid:
                why = "damaged on every node holding it"
                (found.bad_on if found else self._bad(pid)).add(c.node_id)
                continue
            try:
                entries = decode_pack(data, self.pack_key)
            except PackError as exc:
                why = str(exc)
                continue
            if found is None:
                found = PackFound(pid, len(data), entries, bad_on=self._bad(pid))
            found.good_on.add(c.node_id)
        if found is None:
            self.out.unreadable[pid] = why
            return
        # Copies not read (one good copy was enough) count by their size.
        found.good_on.update(n for n in unread
                             if self.out.inventory.get(n, {}).get(pid, (-1, ""))[0] == found.size)
        self.out.packs[pid] = found

    async def fetch_file(self, chunks: Sequence[str], dest: Path) -> None:
        """Write a file's chunks, each verified against its id, from the nodes that
        hold them (after ``gather``). Raises SourceError if a
        chunk has no good copy."""
        connector = aiohttp.TCPConnector(limit=16, ssl=client_context(self.tls_ca))
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=self.timeout)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            with open(dest, "wb") as fh:  # noqa: ASYNC230 - writes run in a thread
                for cid in chunks:
                    data = await self._fetch_chunk(http, cid)
                    await asyncio.to_thread(fh.write, data)

    async def _fetch_chunk(self, http: aiohttp.ClientSession, cid: str) -> bytes:
        why = "no node holds it"
        for node_id, inv in self.out.inventory.items():
            if cid not in inv:
                continue
            where = self._where.get(node_id)
            try:
                if isinstance(where, Path):
                    data = await asyncio.to_thread((where / "chunks" / cid[:3] / cid).read_bytes)
                elif where is not None:
                    data = await _http_reader(http, where, cid, self._headers(
                        "GET", f"/chunks/{cid}", node_id))()
                else:
                    continue
            except (aiohttp.ClientError, TimeoutError, OSError, SourceError) as exc:
                why = f"{node_id}: {_why(exc)}"
                continue
            if content_id(data, DATA) == cid:
                return bytes(data)
            why = f"{node_id}: damaged copy"
        raise SourceError(f"chunk {cid[:12]}: {why}")

    def _bad(self, pid: str) -> set[str]:
        return self._bad_on.setdefault(pid, set())


def _http_reader(http: aiohttp.ClientSession, url: str, cid: str,
                 headers: dict[str, str]) -> Callable[[], Any]:
    async def read() -> bytes:
        async with http.get(f"{url}/chunks/{cid}", headers=headers) as resp:
            if resp.status != 200:
                raise SourceError(f"answered {resp.status}")
            return await resp.read()
    return read


def _file_reader(path: Path) -> Callable[[], Any]:
    async def read() -> bytes:
        return await asyncio.to_thread(path.read_bytes)
    return read


def _why(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
