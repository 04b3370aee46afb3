"""The boundary between the brain's core and the storage nodes.

The write, read, repair and collection paths (``Ingest``, ``Reader``,
``Repairer``, ``Collector``) need only a handful of chunk operations on a node;
they depend on this Protocol, not on how the bytes travel. ``NodeClient``
(HTTP, aiohttp) is the implementation the brain runs with; the tests use an
in-memory one (``tests/memnodes.py``) whose nodes can fail, pause, fill up, lose
or corrupt chunks, so that quorum, fallback, repair and collection races can be
tested in milliseconds on a real metadata store, without processes.

Failures are part of the contract: an implementation raises the errors below,
which the callers sort by kind (another node, a missing copy, a full disk).
"""

from __future__ import annotations

from typing import Protocol

from tossit.brain.registry import NodeView
from tossit.chunking import DATA


class NodeError(Exception):
    """A node could not do what was asked."""


class NodeUnavailable(NodeError):
    """Connection refused, reset, timed out, or a 5xx: try another node."""


class NodeDiskError(NodeUnavailable):
    """The node's disk refused the write (read-only, I/O error, permissions):
    another node takes the copy, and this one is skipped by writers until its
    heartbeat says whether its disk writes again."""


class NodeFull(NodeError):
    """The node refused the write because it reached its storage limit (507)."""


class ChunkMissing(NodeError):
    """The node answered 404 for a chunk it was expected to hold."""


class NodeTransport(Protocol):
    """The chunk operations the brain's core asks of a node."""

    async def put_chunk(self, node: NodeView, chunk_id: str, data: bytes | bytearray,
                        kind: str = DATA) -> None:
        """Store a blob (a chunk, or a manifest pack: ``kind`` meta), durable when
        this returns; storing one the node has already is a success. Raises
        ``NodeFull`` when the node is at its limit, ``NodeError`` otherwise."""
        ...

    async def get_chunk(self, node: NodeView, chunk_id: str) -> bytes:
        """The bytes the node holds under this id, unverified (the caller checks
        them). Raises ``ChunkMissing`` when it has none."""
        ...

    async def delete_chunk(self, node: NodeView, chunk_id: str) -> bool:
        """Delete a blob; True if the node had it."""
        ...

    async def delete_chunks(self, node: NodeView, chunk_ids: list[str]) -> set[str]:
        """Delete many blobs in one request; the ids the node had."""
        ...

    async def inventory(self, node: NodeView, after: str, limit: int,
                        kind: str | None = None) -> dict[str, object]:
        """A page of what the node holds, by id after ``after``: ``{"chunks":
        [{"id", "size", "mtime", "kind"}, ...], "next": cursor or None}``."""
        ...

    async def replicate(self, target: NodeView, chunk_id: str, sources: list[NodeView],
                        kind: str = DATA) -> None:
        """Have ``target`` copy a blob from the first of ``sources`` that serves
        verified bytes. Raises ``NodeFull``, or ``NodeError`` if no source could."""
        ...
