"""The brain as one object: settings, store, registry and the loops, wired once.

Routes reach it through ``request.app.state.brain``; tests and the CLI can
drive the same object (``run_once`` of each loop) without HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from tossit.auth.mac import BRAIN, Signer, Verifier
from tossit.auth.secretfile import CLUSTER_SECRET_FILE, MASTER_KEY_FILE, ensure_secret
from tossit.auth.throttle import WrongKeys
from tossit.brain.activity import ActivityLog
from tossit.brain.brainlock import BrainLock, BrainLockError
from tossit.brain.brains import BrainDirectory, brain_id
from tossit.brain.commits import CommitBatcher
from tossit.brain.db import make_engine, migrate
from tossit.brain.drill import Drill
from tossit.brain.eventlog import EventPruner
from tossit.brain.gc import Collector
from tossit.brain.ingest import Ingest
from tossit.brain.jointokens import JoinTokenService
from tossit.brain.keys import KeyService
from tossit.brain.manifest_rows import Pack
from tossit.brain.manifest_writer import ManifestWriter
from tossit.brain.metrics import CORRUPT_COPIES
from tossit.brain.monitor import Monitor
from tossit.brain.multipart_uploads import MultipartUploads
from tossit.brain.nodeclient import NodeClient, NodeError
from tossit.brain.pins import ChunkPins
from tossit.brain.reader import Reader
from tossit.brain.registry import DEAD, ONLINE, SUSPECT, UNREACHABLE, NodeView, Registry
from tossit.brain.repair import Repairer
from tossit.brain.schema import SchemaTooNew, check_not_too_new
from tossit.brain.scrubs import ScrubWatch
from tossit.brain.sessions import SessionService
from tossit.brain.snapshots import Snapshotter
from tossit.brain.states import EventKind
from tossit.brain.store import Store
from tossit.brain.trash import TrashService
from tossit.brain.upload_expiry import UploadExpiry
from tossit.config import BrainSettings, plural
from tossit.errors import MetadataFull
from tossit.manifests import SYSTEM_BUCKET, pack_key

log = logging.getLogger("tossit.brain")
MIRROR_EVERY = 1.0  # seconds between a follower's reads of the nodes table
TAKEOVER_GRACE = 5.0  # seconds a new leader waits when another led a moment ago
SLOW_STOP_STEP = 1.0  # seconds: a step of the stop that takes longer is logged
CONFIRM_WAIT = 1.0  # seconds a leader's start waits for the nodes it asks (_confirm_nodes)


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel these tasks and wait until each has ended."""
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await t


def join_ca(settings: BrainSettings) -> tuple[str, str] | None:
    """The CA certificate a join token pins (its PEM and SHA-256): the first one
    of ``tls_ca`` when this brain serves TLS. None without TLS, or with TLS and
    no CA of its own (a publicly trusted certificate: the system store checks it)."""
    if settings.tls_cert is None or settings.tls_ca is None:
        return None
    from tossit.auth.jointoken import ca_fingerprint, first_certificate

    pem = first_certificate(settings.tls_ca.read_text())
    return pem, ca_fingerprint(pem)


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
        self.store.trash_keep = settings.trash_keep
        self.lock = BrainLock(self.url, self.store.engine, settings.data_dir)
        self.registry = Registry(settings.replicas, settings.high_water,
                                 away_after=settings.suspect_after)
        self.keys = KeyService(self.store, master.encode())
        self.sessions = SessionService(self.store)
        self.join_tokens = JoinTokenService(self.store, master.encode(), cluster_secret)
        self.join_ca = join_ca(settings)  # (PEM, SHA-256) a join token pins, or None
        self.wrong_keys = WrongKeys(free=settings.wrong_keys_free)  # per client address
        self.auth = settings.auth
        self.node_verifier = Verifier(cluster_secret, BRAIN) if settings.auth else None
        signer = Signer(cluster_secret, BRAIN) if settings.auth else None
        self.nodes = NodeClient(self.registry, settings.node_timeout, signer,
                                settings.tls_ca)
        self.pins = ChunkPins()
        self.collector = Collector(settings, self.store, self.registry, self.nodes, self.pins)
        self.repairer = Repairer(settings, self.store, self.registry, self.nodes, self.pins)
        self.scrubs = ScrubWatch(self.registry, self.nodes)
        self.monitor = Monitor(settings, self.store, self.registry, self.repairer.wake)
        self.collector.on_missing = self.repairer.wake
        self.commits = CommitBatcher(self.store, self.collector.release)
        self.ingest = Ingest(settings, self.store, self.registry, self.nodes, self.pins,
                             self.collector, self.commits)
        self.manifests = ManifestWriter(
            self.store, self.ingest.place, self.pins, self.collector.release,
            lambda: len(self.registry.writable(1, meta=True)) >= settings.replicas)
        self.commits.writer = self.manifests
        self.trash = TrashService(settings, self.store, self.manifests, self.collector.release)
        self.collector.written_packs = self.manifests.written_ids
        self.collector.written_versions = self.manifests.written_versions
        self.repairer.on_lost_packs = self._packs_lost
        self.store.after_log = self._logged_alone
        self.snapshots = Snapshotter(settings, self.store, self.url, self.ingest, self.commits)
        self.drill = Drill(self.store, self.registry, cluster_secret, settings.replicas,
                           settings.data_dir, settings.tls_ca)
        self.ingest.on_degraded = self.repairer.wake
        self.reader = Reader(self.store, self.registry, self.nodes, settings.read_ahead_chunks,
                             self.repairer.wake, hedge_after=settings.straggler_wait)
        self.event_pruner = EventPruner(settings, self.store)
        # S3 multipart uploads (the S3 API's service), and the leader's loop
        # aborting those left incomplete longer than multipart_keep.
        self.multipart = MultipartUploads(settings, self.store, self.ingest, self.reader,
                                          self.commits, self.collector, self.pins)
        self.upload_expiry = UploadExpiry(settings, self.store, self.collector.release)
        # Who uploaded and deleted what.
        self.activity = ActivityLog(self.store, to_trash=settings.trash_keep > 0)
        self.started = time.time()
        self.cluster_id: str | None = None  # loaded at start (metadata state "cluster")
        self._tasks: list[asyncio.Task[None]] = []  # the leader's loops, or the follower's
        self._own_tasks: list[asyncio.Task[None]] = []  # whatever the role
        self.directory = BrainDirectory(self.store, brain_id(settings.data_dir),
                                        settings.public_url())

    @property
    def leader(self) -> bool:
        return self.lock.leader

    async def start(self) -> None:
        self.lock.on_promote = self._promote
        self.lock.leader_silent = self.directory.leader_silent
        self.lock.on_demote = self._demote
        try:
            await self.lock.acquire()
        except BrainLockError as exc:
            log.error("%s", exc)  # the one line to read above uvicorn's traceback
            raise
        if self.lock.shared:
            self.store.fence = self.lock.still_leader
            self.repairer.publish = True
            self.collector.publish = True
        try:
            if self.leader:
                await migrate(self.url)
            else:
                await self._schema_ready()
        except SchemaTooNew as exc:
            log.error("%s", exc)
            raise
        await self.store.bucket_id("default")
        # Created up front rather than by the first snapshot: until it exists, every
        # commit asked the database for it again (a missing id is not cached).
        await self.store.bucket_id(SYSTEM_BUCKET)
        self.cluster_id = await self._cluster_id()
        if not self.auth:
            log.warning("authentication is OFF (auth = false): anyone who can reach "
                        "%s:%d can read and change everything", self.settings.host,
                        self.settings.port)
        elif self.leader:
            await self.keys.bootstrap(self.settings.data_dir, force=self.new_admin_key,
                                      show=self.settings.show_admin_key)
        await self._load_nodes()
        await self.collector.resume_alarm()
        await self.nodes.start()
        self.activity.start()
        if self.lock.shared:
            self._own_tasks.append(asyncio.create_task(
                self.directory.run_forever(lambda: "leader" if self.leader else "follower"),
                name="brain-row"))
        if self.leader:
            await self._lead()
        else:
            self._follow()
        role = "" if not self.lock.shared else (
            " as the leader" if self.leader else " as a follower")
        try:  # (a record only: a full metadata disk must not keep reads from starting)
            await self.store.add_event(
                EventKind.BRAIN_STARTED, f"brain started{role} (R={self.settings.replicas}, "
                f"W={self.settings.quorum}, {len(self.registry.nodes)} known nodes)")
        except MetadataFull as exc:
            log.error("%s", exc)
        log.info("brain ready%s: metadata at %s", role, self.url.split("@")[-1])

    async def _cluster_id(self) -> str | None:
        """This metadata's cluster id, made by the leader on a first start. Nodes
        remember it, and refuse a brain with another one (an empty or wrong
        database) instead of handing it chunks it would not know."""
        state = await self.store.get_state("cluster")
        if state is None and self.leader:
            state = {"id": uuid.uuid4().hex[:16], "created": time.time()}
            await self.store.set_state("cluster", state)
            log.info("new cluster %s", state["id"])
        return None if state is None else str(state["id"])

    async def _schema_ready(self) -> None:
        """A follower does not migrate (the leader does): it waits for the schema."""
        deadline = time.monotonic() + 120
        while True:
            try:
                await check_not_too_new(self.url)  # an older brain never waits for it
                if await self.store.schema_is_current():
                    return
            except SchemaTooNew:
                raise
            except Exception as exc:
                log.info("waiting for the leader to create the schema (%s)", exc)
            if time.monotonic() > deadline:
                raise RuntimeError("the metadata schema is not at this version's revision; "
                                   "start a brain of this version as the leader first")
            await asyncio.sleep(1)

    async def _load_nodes(self) -> None:
        """The nodes as the metadata last saw them (at start, and when taking over).
        The registry is rebuilt without a pause in between: uploads served
        meanwhile must not find it empty (503 "0 nodes available")."""
        rows = await self.store.list_nodes()
        suspect = []
        self.registry.nodes.clear()
        for row in rows:
            view = self.registry.update(
                {c: getattr(row, c) for c in (
                    "id", "name", "address", "zone", "capacity", "used", "free",
                    "disk_total", "disk_free", "chunk_count", "load", "version")},
                state=row.state,
            )
            view.registered_at = row.registered_at
            view.last_heartbeat = row.last_heartbeat
            silence = self._silence_at_start(row)
            view.seen_mono = time.monotonic() - silence
            if (self.leader and row.state in (ONLINE, UNREACHABLE)
                    and silence >= self.settings.suspect_after):
                # Not heard from by this brain yet: neither offered to writers nor
                # shown online until its next heartbeat (nodes retry every few
                # seconds), instead of "online" until the monitor's first pass.
                view.state = SUSPECT
                suspect.append(row)
            view.rtt_ms = row.latency_ms
            view.admin_state = row.admin_state
        for row in suspect:
            await self.store.set_node_state(row.id, SUSPECT, row.latency_ms)
        recovered = await self.store.get_state("recovered")
        if recovered is not None:
            self.collector.keep_orphans_until = (float(recovered["at"])
                                                 + self.settings.recovery_hold)

    async def _lead(self) -> None:
        """Commit, and run the background loops."""
        assert self.store.pack_key is not None
        if self.cluster_id is None:  # a follower taking over before the first leader made it
            self.cluster_id = await self._cluster_id()
        await self._confirm_nodes()
        resigned = await self.store.log.follow_key(self.store.pack_key)
        if resigned:
            await self.store.add_event(
                EventKind.MANIFESTS_RESIGNED, f"the cluster secret changed: {resigned:,} manifest "
                "entries are written to the nodes again, signed with the new one",
                severity="warning")
        self.commits.start()
        self._tasks = [
            asyncio.create_task(self.monitor.run_forever(), name="monitor"),
            asyncio.create_task(self.collector.run_forever(), name="gc"),
            asyncio.create_task(self.collector.intents.run_forever(), name="intents"),
            asyncio.create_task(self.manifests.run_forever(), name="manifests"),
            asyncio.create_task(self.manifests.run_recorder(), name="manifest-records"),
            asyncio.create_task(self.snapshots.run_forever(), name="snapshots"),
            asyncio.create_task(self.event_pruner.run_forever(), name="event-pruner"),
            asyncio.create_task(self.trash.run_forever(), name="trash"),
            asyncio.create_task(self.upload_expiry.run_forever(), name="upload-expiry"),
        ]
        if self.settings.auto_repair:
            self._tasks.append(asyncio.create_task(self.repairer.run_forever(), name="repair"))
            # Plan at once rather than after repair_interval: the last leader may
            # have stopped mid-repair, and the node states are known now (a
            # confirmed node is online without the state change that would wake
            # the repairer; one not confirmed yet is suspect, whose copies count).
            self.repairer.wake()
        if self.lock.shared:
            await self.directory.renew("leader")

    def _packs_lost(self, packs: list[str]) -> None:
        """The repairer queued the entries of packs no node can give for writing
        again: the writer's flush writes them now; the old packs are garbage."""
        self.manifests.wake()
        self.collector.release(packs)

    async def _confirm_nodes(self) -> None:
        """Ask the nodes suspect since this brain started (silent for longer than
        ``suspect_after`` when it loaded them) whether they are there: one that
        answers its ``/health`` with its id is online again now, not at its next
        heartbeat. Nodes back off to 5 s between heartbeats while no brain
        answers, so without this a brain restarted after a longer stop refused
        uploads with 503 not_enough_nodes for up to that long. Waits
        CONFIRM_WAIT at most (a node that is down may take that long to fail);
        later answers still count."""
        views = [v for v in self.registry.nodes.values() if v.state == SUSPECT]
        if not views:
            return

        async def confirm(view: NodeView) -> None:
            if await self.nodes.probe(view) is None and view.state == SUSPECT:
                view.state = ONLINE
                view.seen_mono = time.monotonic()  # heard from, as by a heartbeat
                view.last_heartbeat = time.time()
                await self.store.set_node_state(view.id, ONLINE, view.rtt_ms)

        probes = [asyncio.create_task(confirm(v), name=f"confirm-{v.name}") for v in views]
        self._own_tasks = [t for t in self._own_tasks if not t.done()] + probes
        await asyncio.wait(probes, timeout=CONFIRM_WAIT)

    def _follow(self) -> None:
        """Serve reads; the leader's view of the nodes comes from the metadata."""
        self._tasks = [asyncio.create_task(self._mirror_nodes(), name="mirror")]

    async def _stop_tasks(self) -> None:
        await _cancel(self._tasks)
        self._tasks = []

    async def _promote(self) -> None:
        """This brain took the leadership (the leader stopped)."""
        await self._stop_tasks()
        if await self.directory.another_led_recently():
            # The old leader may be finishing a step it began before its lock went:
            # its commits are fenced, but not its deletes on the nodes. Let it notice.
            await asyncio.sleep(TAKEOVER_GRACE)
            if not await self.lock.holds():
                # Lost again during the grace: leading now would run the loops
                # (and their deletes on the nodes) beside the brain that took it.
                log.warning("lost the leadership again before taking over; not leading")
                return
        await self._load_nodes()
        await self._lead()
        await self.store.add_event(EventKind.BRAIN_LEADER, f"{self.directory.url} now leads the "
                                   "cluster (the previous leader stopped)", severity="warning")

    async def _demote(self) -> None:
        """This brain lost the leadership: stop acting, keep serving."""
        await self._stop_tasks()
        await self.commits.stop()
        await self.manifests.record_written()
        self.manifests.abandon()
        self.repairer.forget_stuck()  # led again later: published anew
        self._follow()

    async def _mirror_nodes(self) -> None:
        while True:
            try:
                self.registry.mirror(await self.store.list_nodes())
            except Exception as exc:
                log.warning("could not read the nodes from the metadata: %s", exc)
            await asyncio.sleep(MIRROR_EVERY)

    async def _logged_alone(self, pack: Pack | None, garbage: list[str]) -> None:
        """A key or a bucket was made or changed: its manifest entry goes to the
        nodes now if they take it, else from the outbox as soon as they do (the
        change itself already holds on this brain)."""
        if garbage:
            self.collector.release(garbage)
        if pack is None:
            return
        try:
            await self.manifests.write(pack)
        except Exception as exc:
            log.warning("key or bucket change not on the nodes yet (%s); retrying", exc)
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
            EventKind.DRILL, f"fire drill: {result['summary']}",
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
                                      f"{plural(len(corrupt), 'corrupt chunk')}; "
                                      "repairing them")
            out.append({"node": node.id, "name": node.name, **report})
        return out

    async def record_corrupt(self, node_id: str, chunks: list[str], message: str) -> None:
        """Copies a node's scrubber found rotten (on request or by itself): marked
        corrupt so the repairer replaces them from good copies, and told once."""
        if not chunks:
            return
        for cid in chunks:
            await self.store.set_replica_state(cid, node_id, "corrupt")
        CORRUPT_COPIES.labels("scrub").inc(len(chunks))
        await self.store.add_event(EventKind.REPLICA_CORRUPT, message, severity="warning",
                                   node_id=node_id, data={"chunks": chunks[:100]})
        self.repairer.wake()

    async def stop(self) -> None:
        """Stop in order, each step timed: a stop that takes long says which step
        held it (in the log) instead of only being slow."""
        async def own_tasks() -> None:
            await _cancel(self._own_tasks)

        async def renew() -> None:
            if self.lock.shared:
                with contextlib.suppress(Exception):
                    await self.directory.renew("stopped")

        async def record() -> None:
            if self.leader:
                await self.manifests.record_written()

        async def intents() -> None:
            if self.leader:
                await self.collector.intents.close()

        steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("the background loops", self._stop_tasks), ("the brain's own tasks", own_tasks),
            ("the leadership record", renew), ("the commits", self.commits.stop),
            ("the written packs' record", record), ("the activity log", self.activity.stop),
            ("the delete intents", intents), ("the scrub reports", self.scrubs.close),
            ("the node connections", self.nodes.close), ("the brain lock", self.lock.release),
            ("the metadata database", self.store.close)]
        for name, step in steps:
            began = time.monotonic()
            await step()
            if (took := time.monotonic() - began) > SLOW_STOP_STEP:
                log.warning("stopping: %s took %.1f s", name, took)
