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
from tossit.node.identity import load_cluster, record_cluster
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
        # The cluster this node belongs to (node.json); None until it first joins.
        self.cluster: str | None = load_cluster(settings.data_dir)

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
        write_error = self.store.check_writable()  # (a thread: report() runs in one)
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
            "write_error": write_error,
            "cluster": self.cluster,
        }

    async def _joined(self, cluster: str | None) -> None:
        """Remember the brain's cluster id (the first join, or an adoption the
        operator asked for: the brain only accepts another id when ``adopt`` names
        its own)."""
        if cluster and cluster != self.cluster:
            if self.cluster:
                log.warning("this node now belongs to cluster %s (was %s), as asked "
                            "(--adopt-cluster)", cluster, self.cluster)
            await asyncio.to_thread(record_cluster, self.settings.data_dir, cluster)
            self.cluster = cluster

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
                    extra = ({"adopt": self.settings.adopt_cluster}
                             if self.settings.adopt_cluster else {})
                    body = json.dumps({**report, **extra, "corrupt": corrupt,
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
                        if resp.status in (401, 409):
                            raise Refused(_refusal(resp.status, await resp.text()))
                        if resp.status >= 400:
                            text = (await resp.text())[:300]
                            raise RuntimeError(f"brain answered {resp.status}: {text}")
                        answer = await resp.json()
                        if not self._registered:
                            log.info("registered with brain %s as %s", brain, self.node_id)
                            # The brain times failure detection on its interval: follow it.
                            interval = float(answer.get("heartbeat_interval", interval))
                        await self._joined(answer.get("cluster"))
                        self._registered = True
                        if corrupt and self.scrubber:
                            self.scrubber.acknowledge(corrupt)
                    if not self.connected:
                        self.connected = True
                    backoff = interval
                    await asyncio.sleep(interval)
                except asyncio.CancelledError:
                    raise
                except Refused as exc:
                    # Every time, not only the first: an operator tailing the log
                    # after fixing something must see whether it is still refused.
                    log.warning("brain %s refused this node: %s", brains[current], exc)
                    self.connected = False
                    self.rtt_ms = None
                    if len(brains) > 1:
                        current = (current + 1) % len(brains)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, max(interval, MAX_BACKOFF))
                except Exception as exc:
                    if self.connected or backoff == interval:
                        log.warning("no contact with brain %s: %s", brains[current],
                                    describe_error(exc, timeout.total))
                    self.connected = False
                    self.rtt_ms = None  # no figure rather than one from before the outage
                    if len(brains) > 1:  # another brain may answer at once
                        current = (current + 1) % len(brains)
                        if current:
                            continue
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, max(interval, MAX_BACKOFF))


def describe_error(exc: BaseException, timeout: float | None = None) -> str:
    """An exception in words for the log. A timeout's text is empty (aiohttp's and
    asyncio's): say what it is, and after how long, rather than nothing."""
    text = str(exc).strip()
    if text:
        return text
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout:g} s" if timeout else "timed out"
    return type(exc).__name__


class Refused(Exception):
    """The brain will not take this node as it is (wrong secret, other cluster):
    retried, since the operator may fix the brain, but logged every time."""


def _refusal(status: int, text: str) -> str:
    """The brain's reason, and what to do about it."""
    try:
        message = str(json.loads(text).get("message") or text)
    except (ValueError, AttributeError):
        message = text
    message = message[:500]
    if status == 401:
        return (f"{message}; give the node the brain's cluster secret: a join token "
                "(tossit join-token create; tossit node --join TOKEN) or "
                "--join-secret-file BRAIN_DATA_DIR/cluster.secret")
    return message
