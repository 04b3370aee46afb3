"""Prometheus metrics of the brain (scraped at ``/metrics``).

Everything an alert needs is here as a number, so Grafana needs no JSON
scraping: nodes by state, chunks by number of copies and the bytes at risk,
repair progress, capacity, what the nodes' scrubs found, and request latency.

A scrape must stay cheap on a cluster with millions of chunks: the copy counts
come from one grouped query, cached for ``HISTOGRAM_TTL`` seconds (sooner when
the set of readable nodes changes, so a node going away shows at once); node,
capacity and repair figures are in memory; the scrub figures are the nodes'
last answers (``tossit.brain.scrubs``), refreshed in the background.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge, Histogram

from tossit.brain.registry import (
    DEAD,
    DRAINED,
    DRAINING,
    OFFLINE,
    ONLINE,
    READABLE_STATES,
    SUSPECT,
    cluster_capacity,
)
from tossit.brain.traffic import Traffic

if TYPE_CHECKING:
    from tossit.brain.service import Brain

UPLOAD_BYTES = Counter("tossit_upload_bytes", "Bytes received in committed uploads")
DOWNLOAD_BYTES = Counter("tossit_download_bytes", "Bytes sent to clients in downloads")
UPLOADS = Counter("tossit_uploads", "Upload attempts by result", ["result"])
UPLOAD_BUFFER = Gauge("tossit_upload_buffer_bytes", "Upload data the brain holds now "
                      "(reserved chunk by chunk until the nodes have it), and its limit",
                      ["kind"])
UPLOADS_WAITING = Gauge("tossit_uploads_waiting_for_buffer", "Uploads that stopped reading "
                        "their body until the upload buffer has room")
BATCHES = Counter("tossit_chunk_batches", "Multi-chunk write requests sent to nodes")
BATCHED_CHUNKS = Counter("tossit_batched_chunks", "Chunks sent inside multi-chunk requests")
COMMITS = Counter("tossit_commits", "Group-commit transactions (uploads and deletes made "
                  "visible together)")
COMMITTED = Counter("tossit_committed_changes", "Uploads and deletes made visible by those "
                    "transactions")
MANIFEST_PACKS = Counter("tossit_manifest_packs_written", "Manifest packs written to the "
                         "nodes (each one write on each of R nodes)")
NODES = Gauge("tossit_nodes", "Nodes by health state", ["state"])
NODES_ADMIN = Gauge("tossit_nodes_admin", "Nodes an administrator is draining or has drained "
                    "(also counted in tossit_nodes by their health)", ["admin_state"])
TRAFFIC = Traffic()  # the same bytes, in recent time buckets (the dashboard's chart)

# -- replication health ---------------------------------------------------------
REPLICAS = Gauge("tossit_replicas_target", "R: the copies every chunk should have")
CHUNKS_BY_COPIES = Gauge(
    "tossit_chunks_by_copies", "File chunks by their number of good copies on readable "
    "nodes (copies=\"0\": unreadable now)", ["copies"])
CHUNK_BYTES_BY_COPIES = Gauge(
    "tossit_chunk_bytes_by_copies", "Bytes of file chunks by their number of good copies on "
    "readable nodes", ["copies"])
BYTES_AT_RISK = Gauge("tossit_bytes_at_risk", "Bytes of file chunks with fewer than R good "
                      "copies on readable nodes")
CHUNKS_AT_RISK = Gauge("tossit_chunks_at_risk", "File chunks with fewer than R good copies "
                       "on readable nodes")

# -- repair -------------------------------------------------------------------------
REPAIRED_CHUNKS = Counter("tossit_repair_copied_chunks", "Chunk copies the repairer made, by "
                          "reason (under-replicated, drain, rebalance)", ["reason"])
REPAIRED_BYTES = Counter("tossit_repair_copied_bytes", "Bytes the repairer copied node to "
                         "node, by reason", ["reason"])
REPAIR_FAILURES = Counter("tossit_repair_failed_copies", "Copies the repairer could not make "
                          "(tried again on the next pass)")
REPAIR_QUEUE = Gauge("tossit_repair_queue_chunks", "Copies the current repair pass planned "
                     "and has not made yet")
REPAIR_QUEUE_BYTES = Gauge("tossit_repair_queue_bytes", "Bytes the current repair pass has "
                           "still to copy")
REPAIR_RATE = Gauge("tossit_repair_rate_bytes_per_second", "The current repair pass's average "
                    "copy rate (0 when none runs)")

# -- capacity -----------------------------------------------------------------------
CAPACITY = Gauge("tossit_capacity_bytes", "Capacity of the readable nodes: raw, used, free, "
                 "usable (at R copies) and room (more file data that fits at R copies)",
                 ["kind"])

# -- corruption and scrubbing -----------------------------------------------------------
READ_HEDGES = Counter("tossit_read_hedges", "Chunk reads that asked another copy because "
                      "the copies asked had not answered within straggler_wait (or 4 "
                      "times what those nodes usually take): a paused or hung node")
CORRUPT_COPIES = Counter("tossit_corrupt_copies", "Copies found corrupt and marked for "
                         "repair, by who found them (read, scrub)", ["found_by"])
SCRUB_CORRUPT = Gauge("tossit_scrub_corrupt_found", "Corrupt copies a node's scrubs found "
                      "since its first pass", ["node"])
SCRUB_PROGRESS = Gauge("tossit_scrub_progress_ratio", "How far a node's scrub pass is "
                       "(0-1; 0 when none runs)", ["node"])
SCRUB_LAST_PASS = Gauge("tossit_scrub_last_full_pass_timestamp_seconds", "When a node's last "
                        "complete scrub pass ended (0: never)", ["node"])
SCRUB_RATE = Gauge("tossit_scrub_rate_bytes_per_second", "A node's scrub rate (0: off)",
                   ["node"])
SCRUB_PAUSED = Gauge("tossit_scrub_paused", "1 while an operator has paused a node's scrub",
                     ["node"])

# -- requests -----------------------------------------------------------------------------
REQUEST_SECONDS = Histogram(
    "tossit_http_request_duration_seconds",
    "Time from a request's arrival to its response headers (a download: its first byte), "
    "by route template and method", ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0))
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
UNMATCHED = "<unmatched>"
S3_REQUESTS = Counter("tossit_s3_requests", "S3 API requests by operation (ListObjectsV2, "
                      "PutObject, ...; unknown before one is known) and result (ok, or the "
                      "S3 error code)", ["operation", "result"])
S3_SECONDS = Histogram(
    "tossit_s3_request_duration_seconds",
    "S3 API: time from a request's arrival to its answer (a GET: its first chunk read; a "
    "PUT: the object committed), by operation", ["operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0))

for _who in ("read", "scrub"):  # the series exist (at 0) before anything is found
    CORRUPT_COPIES.labels(_who)
for _why in ("under-replicated", "drain", "rebalance"):
    REPAIRED_CHUNKS.labels(_why)
    REPAIRED_BYTES.labels(_why)

HISTOGRAM_TTL = 10.0  # seconds a copy-count histogram serves scrapes


class _HistogramCache:
    def __init__(self) -> None:
        self.key: tuple[str, ...] | None = None
        self.at = 0.0
        self.hist: dict[int, dict[str, int]] = {}
        self.lock = asyncio.Lock()

    async def get(self, brain: Brain, live: tuple[str, ...]) -> dict[int, dict[str, int]]:
        async with self.lock:  # concurrent scrapes share one query
            if self.key != live or time.monotonic() - self.at > HISTOGRAM_TTL:
                totals = await brain.store.totals(list(live))
                self.hist = totals["replica_histogram"]
                self.key, self.at = live, time.monotonic()
            return self.hist


_HIST = _HistogramCache()


async def refresh(brain: Brain) -> None:
    """Bring the gauges up to date before a scrape."""
    nodes = list(brain.registry.nodes.values())
    for state in (ONLINE, SUSPECT, OFFLINE, DEAD):
        NODES.labels(state).set(sum(1 for n in nodes if n.state == state))
    for admin in (DRAINING, DRAINED):
        NODES_ADMIN.labels(admin).set(sum(1 for n in nodes if n.admin_state == admin))

    r = brain.settings.replicas
    REPLICAS.set(r)
    budget = brain.ingest.budget
    UPLOAD_BUFFER.labels("held").set(budget.held)
    UPLOAD_BUFFER.labels("limit").set(budget.total)
    UPLOADS_WAITING.set(budget.waiting)
    live = [n for n in nodes if n.state in READABLE_STATES]
    hist = await _HIST.get(brain, tuple(sorted(n.id for n in live)))
    CHUNKS_BY_COPIES.clear()
    CHUNK_BYTES_BY_COPIES.clear()
    for k in range(r + 1):  # 0..R always there, so an alert's series never vanishes
        CHUNKS_BY_COPIES.labels(str(k)).set(0)
        CHUNK_BYTES_BY_COPIES.labels(str(k)).set(0)
    for k, v in hist.items():
        CHUNKS_BY_COPIES.labels(str(k)).set(v["chunks"])
        CHUNK_BYTES_BY_COPIES.labels(str(k)).set(v["bytes"])
    BYTES_AT_RISK.set(sum(v["bytes"] for k, v in hist.items() if k < r))
    CHUNKS_AT_RISK.set(sum(v["chunks"] for k, v in hist.items() if k < r))

    cap = cluster_capacity(live, r)
    for kind in ("raw", "used", "free", "usable", "room"):
        CAPACITY.labels(kind).set(cap[kind])

    p = brain.repairer.progress
    running = brain.leader and p.running
    REPAIR_QUEUE.set(max(0, p.chunks_total - p.chunks_done - p.failed) if running else 0)
    REPAIR_QUEUE_BYTES.set(max(0, p.bytes_total - p.bytes_done) if running else 0)
    REPAIR_RATE.set(p.to_dict()["rate_bytes_per_s"] if running else 0)

    _scrub_gauges(brain, brain.scrubs.cached())


def _scrub_gauges(brain: Brain, latest: dict[str, dict[str, Any]]) -> None:
    for gauge in (SCRUB_CORRUPT, SCRUB_PROGRESS, SCRUB_LAST_PASS, SCRUB_RATE, SCRUB_PAUSED):
        gauge.clear()  # removed nodes go away
    for node_id, s in latest.items():
        view = brain.registry.get(node_id)
        if view is None:
            continue
        name = view.name
        last = s.get("last_full_pass")
        SCRUB_CORRUPT.labels(name).set(s.get("corrupt_found") or 0)
        SCRUB_PROGRESS.labels(name).set(s.get("progress") or 0)
        SCRUB_LAST_PASS.labels(name).set(float(last["finished"]) if last else 0)
        SCRUB_RATE.labels(name).set(s.get("rate") or 0 if s.get("state") != "off" else 0)
        SCRUB_PAUSED.labels(name).set(1 if s.get("state") == "paused" else 0)


class RequestLatency:
    """ASGI middleware: observes each request's time to its response headers,
    labelled by the route's path template (``/api/files/{file_id}``), never the
    raw path, so the label set stays bounded whatever clients send."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        done = False

        async def timed_send(message: dict[str, Any]) -> None:
            nonlocal done
            if not done and message["type"] == "http.response.start":
                done = True
                _observe(scope, time.perf_counter() - t0)
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            if not done:  # the client went away, or an error with no answer
                _observe(scope, time.perf_counter() - t0)


def _observe(scope: dict[str, Any], seconds: float) -> None:
    route = scope.get("route")
    template = getattr(route, "path", None) or UNMATCHED
    method = scope.get("method", "")
    REQUEST_SECONDS.labels(method if method in _METHODS else "other", template).observe(seconds)
