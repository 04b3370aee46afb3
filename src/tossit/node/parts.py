"""What the node's routes share: its parts, the id and signature checks, and the
OpenAPI descriptions, in one place so each router stays about its own requests."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request
from prometheus_client import CollectorRegistry, Counter

from tossit.chunking import KINDS, is_chunk_id
from tossit.errors import ApiError, error_responses
from tossit.node.heartbeat import Heartbeat
from tossit.node.peers import PeerFetcher
from tossit.node.scrubber import Scrubber
from tossit.node.storage import ChunkStore


@dataclass
class NodeParts:
    node_id: str
    store: ChunkStore
    heartbeat: Heartbeat
    scrubber: Scrubber
    peers: PeerFetcher
    registry: CollectorRegistry
    ops: Counter  # tossit_node_chunk_ops{op, result}
    bytes_io: Counter  # tossit_node_bytes{direction}

    @classmethod
    def with_metrics(cls, node_id: str, store: ChunkStore, heartbeat: Heartbeat,
                     scrubber: Scrubber, peers: PeerFetcher) -> NodeParts:
        registry = CollectorRegistry()
        return cls(
            node_id, store, heartbeat, scrubber, peers, registry,
            Counter("tossit_node_chunk_ops", "Chunk operations", ["op", "result"],
                    registry=registry),
            Counter("tossit_node_bytes", "Chunk bytes moved", ["direction"], registry=registry),
        )


async def _parts(request: Request) -> NodeParts:
    # async: FastAPI runs a plain ``def`` dependency in its thread pool, a thread
    # hop on every chunk request for what is an attribute read.
    parts: NodeParts = request.app.state.parts
    return parts


Parts = Annotated[NodeParts, Depends(_parts)]

# The pattern is documented, not enforced by FastAPI: check_id answers a bad id
# with its own error code.
ChunkId = Annotated[str, Path(description="the chunk's SHA-256, 64 lowercase hex digits",
                              json_schema_extra={"pattern": "^[0-9a-f]{64}$"})]
KIND_PATTERN = "^(" + "|".join(KINDS) + ")$"
Kind = Annotated[str, Query(pattern=KIND_PATTERN, description=(
    "data: a piece of a file (id = SHA-256 of the bytes); meta: a pack of manifests "
    "(id = SHA-256 of a fixed prefix and the bytes, see tossit.chunking)"))]
BYTES = {"content": {"application/octet-stream": {"schema": {"type": "string",
                                                             "format": "binary"}}}}


def signed(*codes: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route behind the cluster signature (401 without it)."""
    return error_responses(401, *codes, e401="Not signed with the cluster secret",
                           **descriptions)


def check_id(chunk_id: str) -> str:
    if not is_chunk_id(chunk_id):
        raise ApiError(400, "invalid_chunk_id", "a chunk id is 64 lowercase hex digits")
    return chunk_id


def signed_digest(request: Request) -> str | None:
    """The body hash the caller signed (None when running without a secret)."""
    digest: str | None = getattr(request.state, "content_sha256", None)
    return digest


def check_signed_body(request: Request, body: bytes | bytearray) -> None:
    """The body read is the one the caller signed (the signature middleware
    checked the headers only: it does not buffer bodies)."""
    digest = signed_digest(request)
    if digest is not None and hashlib.sha256(body).hexdigest() != digest:
        raise ApiError(401, "unauthorized", "the body does not match its signed hash")
