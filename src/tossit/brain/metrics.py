"""Prometheus metrics of the brain (scraped at ``/metrics``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge

from tossit.brain.traffic import Traffic

if TYPE_CHECKING:
    from tossit.brain.service import Brain

UPLOAD_BYTES = Counter("tossit_upload_bytes", "Bytes received in committed uploads")
DOWNLOAD_BYTES = Counter("tossit_download_bytes", "Bytes sent to clients in downloads")
UPLOADS = Counter("tossit_uploads", "Upload attempts by result", ["result"])
BATCHES = Counter("tossit_chunk_batches", "Multi-chunk write requests sent to nodes")
BATCHED_CHUNKS = Counter("tossit_batched_chunks", "Chunks sent inside multi-chunk requests")
NODES = Gauge("tossit_nodes", "Nodes by state", ["state"])
TRAFFIC = Traffic()  # the same bytes, in recent time buckets (the dashboard's chart)


def refresh(brain: Brain) -> None:
    counts: dict[str, int] = {}
    for n in brain.registry.nodes.values():
        counts[n.state] = counts.get(n.state, 0) + 1
    for state in ("online", "suspect", "offline", "dead", "draining", "drained"):
        NODES.labels(state).set(counts.get(state, 0))
