"""Prometheus metrics of the brain (scraped at ``/metrics``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge

from tossit.brain.registry import DEAD, DRAINED, DRAINING, OFFLINE, ONLINE, SUSPECT
from tossit.brain.traffic import Traffic

if TYPE_CHECKING:
    from tossit.brain.service import Brain

UPLOAD_BYTES = Counter("tossit_upload_bytes", "Bytes received in committed uploads")
DOWNLOAD_BYTES = Counter("tossit_download_bytes", "Bytes sent to clients in downloads")
UPLOADS = Counter("tossit_uploads", "Upload attempts by result", ["result"])
BATCHES = Counter("tossit_chunk_batches", "Multi-chunk write requests sent to nodes")
BATCHED_CHUNKS = Counter("tossit_batched_chunks", "Chunks sent inside multi-chunk requests")
NODES = Gauge("tossit_nodes", "Nodes by health state", ["state"])
NODES_ADMIN = Gauge("tossit_nodes_admin", "Nodes an administrator is draining or has drained "
                    "(also counted in tossit_nodes by their health)", ["admin_state"])
TRAFFIC = Traffic()  # the same bytes, in recent time buckets (the dashboard's chart)


def refresh(brain: Brain) -> None:
    nodes = list(brain.registry.nodes.values())
    for state in (ONLINE, SUSPECT, OFFLINE, DEAD):
        NODES.labels(state).set(sum(1 for n in nodes if n.state == state))
    for admin in (DRAINING, DRAINED):
        NODES_ADMIN.labels(admin).set(sum(1 for n in nodes if n.admin_state == admin))
