"""Registration with the brain and the heartbeat loop.

The node keeps serving chunks while the brain is unreachable: it only logs,
backs off and retries, and re-registers if the brain has forgotten it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from tossit import __version__
from tossit.auth.mac import BRAIN, Signer
from tossit.config import NodeSettings
from tossit.node.scrubber import Scrubber
from tossit.node.storage import ChunkStore
from tossit.tlsconfig import client_context

log = logging.getLogger("tossit.node.heartbeat")
# Retry a silent brain at least this often: one small request is cheap, and the
# brain counts this node as offline (no writes to it) until it hears from it again,
# so after a brain restart the cluster is whole again within seconds.
MAX_BACKOFF = 5.0


class Heartbeat:
    def __init__(self, settings: NodeSettings, node_id: str, store: ChunkStore,
                 signer: Signer | None = None, scrubber: Scrubber | None = None) -> None:
        self.settings = settings
        self.node_id = node_id
        self.store = store
        self.signer = signer
        self.scrubber = scrubber
        self.connected = False
        self.rtt_ms: float | None = None  # the last heartbeat's round trip
        self._task: asyncio.Task[None] | None = None
        self._registered = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="heartbeat")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def report(self) -> dict[str, Any]:
        """What this node tells the brain (and its own /status)."""
        u = self.store.usage()
        load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        return {
            "id": self.node_id,
            "name": self.settings.node_name(),
            "address": self.settings.public_url(),
            "zone": self.settings.zone,
            "version": __version__,
            "capacity": u.limit,
            "used": u.used,
            "free": u.free,
            "disk_total": u.disk_total,
            "disk_free": u.disk_free,
            "chunk_count": u.chunk_count,
            "manifest_count": u.manifest_count,
            "load": load1,
            "disk_id": self.store.disk_id(),
        }

    def _signed(self, brain: str, path: str, body: bytes) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if self.signer is not None:
            full = urlsplit(brain + path).path
            headers.update(self.signer.headers("POST", full, BRAIN,
                                               digest=hashlib.sha256(body).hexdigest()))
        return headers

    async def _run(self) -> None:
        """Report to the first brain of the list that answers; when it stops
        answering, go on to the next (any brain passes reports to the leader)."""
        interval = self.settings.heartbeat_interval
        backoff = interval
        brains = self.settings.brain_urls()
        current = 0
        timeout = aiohttp.ClientTimeout(total=max(5.0, interval * 2))
        connector = aiohttp.TCPConnector(ssl=client_context(self.settings.tls_ca))
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
            while True:
                try:
                    report = await asyncio.to_thread(self.report)
                    path = "/api/nodes/register" if not self._registered else (
                        f"/api/nodes/{self.node_id}/heartbeat"
                    )
                    corrupt = self.scrubber.unreported() if self.scrubber else []
                    body = json.dumps({**report, "corrupt": corrupt,
                                       "rtt_ms": self.rtt_ms}).encode()
                    brain = brains[current]
                    t0 = time.monotonic()
                    async with http.post(brain + path, data=body,
                                         headers=self._signed(brain, path, body)) as resp:
                        # Measured on this real exchange (network both ways and the
                        # brain's handling), reported with the next heartbeat.
                        self.rtt_ms = round((time.monotonic() - t0) * 1000, 2)
                        if resp.status == 404 and self._registered:
                            log.warning("brain does not know this node any more; re-registering")
                            self._registered = False
                            continue
                        if resp.status == 401:
                            why = (await resp.text())[:300]
                            raise RuntimeError(
                                f"the brain refused this node ({why}); give the node the "
                                "brain's cluster secret: --join-secret-file "
                                "BRAIN_DATA_DIR/cluster.secret")
                        if resp.status >= 400:
                            text = (await resp.text())[:300]
                            raise RuntimeError(f"brain answered {resp.status}: {text}")
                        if not self._registered:
                            log.info("registered with brain %s as %s", brain, self.node_id)
                            answer = await resp.json()
                            # The brain times failure detection on its interval: follow it.
                            interval = float(answer.get("heartbeat_interval", interval))
                        self._registered = True
                        if corrupt and self.scrubber:
                            self.scrubber.acknowledge(corrupt)
                    if not self.connected:
                        self.connected = True
                    backoff = interval
                    await asyncio.sleep(interval)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if self.connected or backoff == interval:
                        log.warning("no contact with brain %s: %s", brains[current], exc)
                    self.connected = False
                    self.rtt_ms = None  # no figure rather than one from before the outage
                    if len(brains) > 1:  # another brain may answer at once
                        current = (current + 1) % len(brains)
                        if current:
                            continue
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, max(interval, MAX_BACKOFF))
