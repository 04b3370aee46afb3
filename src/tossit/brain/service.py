"""The brain as one object: settings, store, registry and the loops, wired once.

Routes reach it through ``request.app.state.brain``; tests and the CLI can
drive the same object (``run_once`` of each loop) without HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from tossit.auth.mac import BRAIN, Signer, Verifier
from tossit.auth.secretfile import CLUSTER_SECRET_FILE, MASTER_KEY_FILE, ensure_secret
from tossit.brain.brainlock import BrainLock, BrainLockError
from tossit.brain.commits import CommitBatcher
from tossit.brain.db import make_engine, migrate
from tossit.brain.drill import Drill
from tossit.brain.gc import Collector
from tossit.brain.ingest import Ingest
from tossit.brain.keys import KeyService
from tossit.brain.manifest_rows import Pack
from tossit.brain.manifest_writer import ManifestWriter
from tossit.brain.monitor import Monitor
from tossit.brain.nodeclient import NodeClient, NodeError
from tossit.brain.pins import ChunkPins
from tossit.brain.reader import Reader
from tossit.brain.registry import DEAD, Registry
from tossit.brain.repair import Repairer
from tossit.brain.sessions import SessionService
from tossit.brain.snapshots import Snapshotter
from tossit.brain.store import Store
from tossit.config import BrainSettings
from tossit.manifests import pack_key

log = logging.getLogger("tossit.brain")


class Brain:
    def __init__(self, settings: BrainSettings, new_admin_key: bool = False) -> None:
        self.settings = settings
        self.new_admin_key = new_admin_key
        self.url = settings.resolved_database_url()
        # Secrets live in data_dir even when metadata is in PostgreSQL: a database
        # dump must not be enough to act as the cluster or to recover key secrets.
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        master, _ = ensure_secret(settings.data_dir / MASTER_KEY_FILE)
        cluster_secret, _ = ensure_secret(settings.data_dir / CLUSTER_SECRET_FILE)
        self.store = Store(make_engine(self.url), pack_key(cluster_secret))
        self.lock = BrainLock(self.url, self.store.engine)
        self.registry = Registry(settings.replicas, settings.high_water)
        self.keys = KeyService(self.store, master.encode())
        self.sessions = SessionService(self.store)
        self.auth = settings.auth
        self.node_verifier = Verifier(cluster_secret, BRAIN) if settings.auth else None
        signer = Signer(cluster_secret, BRAIN) if settings.auth else None
        self.nodes = NodeClient(self.registry, settings.node_timeout, signer,
                                settings.tls_ca)
        self.pins = ChunkPins()
        self.collector = Collector(settings, self.store, self.registry, self.nodes, self.pins)
        self.repairer = Repairer(settings, self.store, self.registry, self.nodes, self.pins)
        self.monitor = Monitor(settings, self.store, self.registry, self.repairer.wake)
        self.collector.on_missing = self.repairer.wake
        self.commits = CommitBatcher(self.store, self.collector.release)
        self.ingest = Ingest(settings, self.store, self.registry, self.nodes, self.pins,
                             self.collector, self.commits)
        self.manifests = ManifestWriter(
            self.store, self.ingest.place, self.pins, self.collector.release,
            lambda: len(self.registry.writable(1)) >= settings.replicas)
        self.commits.writer = self.manifests
        self.keys.after_change = self._key_changed
        self.snapshots = Snapshotter(settings, self.store, self.url, self.ingest, self.commits)
        self.drill = Drill(self.store, self.registry, cluster_secret, settings.replicas,
                           settings.data_dir, settings.tls_ca)
        self.ingest.on_degraded = self.repairer.wake
        self.reader = Reader(self.store, self.registry, self.nodes, settings.read_ahead_chunks,
                             self.repairer.wake)
        self.started = time.time()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        try:
            await self.lock.acquire()
        except BrainLockError as exc:
            log.error("%s", exc)  # the one line to read above uvicorn's traceback
            raise
        await migrate(self.url)
        await self.store.bucket_id("default")
        if self.auth:
            await self.keys.bootstrap(self.settings.data_dir, force=self.new_admin_key)
        else:
            log.warning("authentication is OFF (auth = false): anyone who can reach "
                        "%s:%d can read and change everything", self.settings.host,
                        self.settings.port)
        for row in await self.store.list_nodes():
            view = self.registry.update(
                {c: getattr(row, c) for c in (
                    "id", "name", "address", "zone", "capacity", "used", "free",
                    "disk_total", "disk_free", "chunk_count", "load", "version")},
                state=row.state,
            )
            view.registered_at = row.registered_at
            view.last_heartbeat = row.last_heartbeat
            view.seen_mono = time.monotonic() - self._silence_at_start(row)
            view.latency_ms = row.latency_ms
            view.admin_state = row.admin_state
        recovered = await self.store.get_state("recovered")
        if recovered is not None:
            self.collector.keep_orphans_until = (float(recovered["at"])
                                                 + self.settings.recovery_hold)
        await self.nodes.start()
        self.commits.start()
        self._tasks = [
            asyncio.create_task(self.monitor.run_forever(), name="monitor"),
            asyncio.create_task(self.collector.run_forever(), name="gc"),
            asyncio.create_task(self.manifests.run_forever(), name="manifests"),
            asyncio.create_task(self.snapshots.run_forever(), name="snapshots"),
        ]
        if self.settings.auto_repair:
            self._tasks.append(asyncio.create_task(self.repairer.run_forever(), name="repair"))
        await self.store.add_event(
            "brain_started", f"brain started (R={self.settings.replicas}, "
            f"W={self.settings.quorum}, {len(self.registry.nodes)} known nodes)")
        log.info("brain ready: metadata at %s", self.url.split("@")[-1])

    async def _key_changed(self, pack: Pack | None, garbage: list[str]) -> None:
        """A key was created or revoked: its manifest entry goes to the nodes now if
        they take it, else from the outbox as soon as they do (the change itself
        already holds on this brain)."""
        if garbage:
            self.collector.release(garbage)
        if pack is None:
            return
        try:
            await self.manifests.write(pack)
        except Exception as exc:
            log.warning("key change not on the nodes yet (%s); retrying", exc)
            self.manifests.wake()

    def _silence_at_start(self, row: Any) -> float:
        """How long a known node has been silent, as the monitor should see it now.

        A node that was dead stays dead until it talks to us again. Any other node
        is given at most ``suspect_after`` of silence: while the brain was down
        nobody listened, so a long outage of the brain must not declare every node
        dead (and start a repair storm) in its first second; a node that does not
        heartbeat soon goes offline and dead on the usual clock from here.
        """
        age = max(0.0, time.time() - row.last_heartbeat)
        if row.state == DEAD:
            return max(age, self.settings.dead_after)
        return min(age, self.settings.suspect_after)

    async def run_drill(self) -> dict[str, Any]:
        """A fire drill (brain/drill.py), remembered and told in the event log."""
        result = await self.drill.run()
        await self.store.set_state("drill", result)
        await self.store.add_event(
            "drill", f"fire drill: {result['summary']}",
            severity="info" if result["ok"] else "error",
            data={k: v for k, v in result.items() if k != "summary"})
        return result

    async def scrub_all(self) -> list[dict[str, Any]]:
        """Every online node re-hashes its chunks now; corrupt ones are marked and
        the repairer woken (the admin hook behind ``POST /api/admin/scrub``)."""
        out = []
        for node in [n for n in self.registry.nodes.values() if n.state == "online"]:
            try:
                report = await self.nodes.scrub(node)
            except NodeError as exc:
                out.append({"node": node.id, "name": node.name, "error": str(exc)})
                continue
            corrupt = report.get("corrupt", [])
            await self.record_corrupt(node.id, corrupt, f"scrub of {node.name} found "
                                      f"{len(corrupt)} corrupt chunk(s); repairing them")
            out.append({"node": node.id, "name": node.name, **report})
        return out

    async def record_corrupt(self, node_id: str, chunks: list[str], message: str) -> None:
        """Copies a node's scrubber found rotten (on request or by itself): marked
        corrupt so the repairer replaces them from good copies, and told once."""
        if not chunks:
            return
        for cid in chunks:
            await self.store.set_replica_state(cid, node_id, "corrupt")
        await self.store.add_event("replica_corrupt", message, severity="warning",
                                   node_id=node_id, data={"chunks": chunks[:100]})
        self.repairer.wake()

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await self.commits.stop()
        await self.nodes.close()
        await self.lock.release()
        await self.store.close()
