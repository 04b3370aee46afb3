"""The node's process: its parts (chunk store, heartbeat, scrubber, peer
fetcher) put together behind the cluster signature. The routes are in
``chunk_routes`` (the chunk API) and ``cluster_routes`` (replicate, scrub,
status, health, metrics); what they share is in ``parts``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from fastapi import FastAPI

from tossit import __version__
from tossit.apidocs import ASSETS, install_docs
from tossit.auth.asgi import SignedRequests
from tossit.auth.mac import Signer, Verifier
from tossit.config import NodeSettings, capacity_limit
from tossit.errors import install_error_handlers
from tossit.node import chunk_routes, cluster_routes
from tossit.node.heartbeat import Heartbeat
from tossit.node.hot_routes import HotRoutes
from tossit.node.identity import load_join_secret, load_or_create, record_address
from tossit.node.parts import NodeParts
from tossit.node.peers import PeerFetcher
from tossit.node.scrubber import Scrubber
from tossit.node.storage import ChunkStore

log = logging.getLogger("tossit.node")
DISK_THREADS = 32
# Reachable without the cluster secret: nothing here reveals or changes a chunk.
OPEN_PATHS = frozenset({"/health", "/metrics", "/docs", "/docs/init.js", "/openapi.json"})


def create_app(settings: NodeSettings) -> FastAPI:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    node_id = load_or_create(settings.data_dir)
    record_address(settings.data_dir, settings.node_name(), settings.public_url(), settings.zone)
    secret = load_join_secret(settings)
    store = ChunkStore(settings.data_dir, settings.capacity)
    signer = Signer(secret, node_id) if secret else None
    scrubber = Scrubber(store, settings.scrub_rate, settings.scrub_interval, settings.data_dir)
    heartbeat = Heartbeat(settings, node_id, store, signer, scrubber)
    peers = PeerFetcher(settings, store, signer)
    parts = NodeParts.with_metrics(node_id, store, heartbeat, scrubber, peers)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Concurrent fsyncs share journal commits: many disk threads turn a disk
        # that does ~200 fsynced creates/s one at a time into ~1500/s.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(DISK_THREADS, thread_name_prefix="disk"))
        await asyncio.to_thread(store.open)
        u = store.usage()
        log.info(
            "node %s (%s) serving %d chunks, %d of %d bytes used",
            node_id, settings.node_name(), u.chunk_count, u.used, u.limit,
        )
        if capacity_limit(settings.capacity, u.disk_total) > u.disk_total:
            log.warning("the capacity asked for (%s) is more than the disk holds (%d bytes): "
                        "this node counts as the disk's size", settings.capacity, u.disk_total)
        heartbeat.start()
        scrubber.start()
        try:
            yield
        finally:
            await scrubber.stop()
            await heartbeat.stop()
            await peers.close()

    app = FastAPI(
        title="TossIt node",
        version=__version__,
        lifespan=lifespan,
        description="Chunk storage API of one TossIt node (called by the brain and other nodes).",
        docs_url=None, redoc_url=None,
    )
    install_error_handlers(app)
    install_docs(app, "TossIt node", settings.api_docs)
    app.state.parts = parts
    # Added first, so it runs inside the signature check (the last added is outermost).
    app.add_middleware(HotRoutes, parts=parts)
    if secret:
        app.add_middleware(SignedRequests, verifier=Verifier(secret, node_id),
                           open_paths=OPEN_PATHS, open_prefix=ASSETS + "/")
    else:
        log.warning("no cluster secret: this node accepts unsigned requests (loopback only)")

    app.include_router(chunk_routes.router)
    app.include_router(cluster_routes.router)
    return app
