"""The fire drill: would a brain lost right now lose anything?

A safe rehearsal on the live cluster (``tossit drill``, ``POST /api/admin/drill``):
the brain reads every live node's manifests and inventory as ``tossit recover``
would, rebuilds the metadata into a scratch database, and compares it file by
file with its own. Nothing on the nodes or in the live metadata changes.

It reports, with names:

* files a rebuild now would lose, or bring back wrong (another version);
* deleted files a rebuild would bring back;
* files in the trash a rebuild would lose, and purged ones it would bring back
  into the trash;
* buckets a rebuild would lose, and deleted ones it would bring back;
* files whose manifest is on fewer than R nodes, or with a chunk on fewer than
  R nodes (recoverable today, one failure away from not);

and says it in one sentence: "a brain loss now: 12,403 files recoverable, 0
lost; last snapshot 4 min ago". Changes committed while the drill reads the
nodes are left out of the comparison (their versions are newer than its start).
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from tossit.brain.db import make_engine
from tossit.brain.gather import Gatherer
from tossit.brain.manifest_rows import BUCKET, PURGE, PUT, TRASH
from tossit.brain.models import Bucket, ManifestEntry, Object, TrashedObject
from tossit.brain.rebuild import Plan, plan
from tossit.brain.rebuild_db import write_plan
from tossit.brain.registry import READABLE_STATES, Registry
from tossit.brain.store import Store
from tossit.config import format_duration, plural
from tossit.manifests import SYSTEM_BUCKET

log = logging.getLogger("tossit.brain.drill")
_LISTS = ("lost", "wrong", "incomplete", "reappear", "manifest_below", "chunks_below",
          "trash_lost", "trash_reappear")
_BUCKET_LISTS = ("buckets_lost", "buckets_reappear")  # of bucket names
NAMES = 50  # names listed per finding (the counts are complete)

Name = tuple[str, str]  # (bucket, file name)


@dataclass
class Findings:
    files: int = 0  # live files compared
    recoverable: int = 0
    lost: list[Name] = field(default_factory=list)
    wrong: list[Name] = field(default_factory=list)  # a rebuild gives another version
    incomplete: list[Name] = field(default_factory=list)  # its chunks are not all there
    reappear: list[Name] = field(default_factory=list)  # deleted, would come back
    manifest_below: list[Name] = field(default_factory=list)  # manifest on < R nodes
    chunks_below: list[Name] = field(default_factory=list)  # a chunk on < R nodes
    trash: int = 0  # files in the trash compared
    trash_lost: list[Name] = field(default_factory=list)  # in the trash, a rebuild loses it
    trash_reappear: list[Name] = field(default_factory=list)  # purged, would come back
    buckets: int = 0  # buckets compared
    buckets_lost: list[str] = field(default_factory=list)
    buckets_reappear: list[str] = field(default_factory=list)  # deleted, would come back

    @property
    def ok(self) -> bool:
        return not (self.lost or self.wrong or self.incomplete or self.reappear
                    or self.trash_lost or self.trash_reappear or self.buckets_lost
                    or self.buckets_reappear)


class Drill:
    def __init__(self, store: Store, registry: Registry, secret: str, replicas: int,
                 data_dir: Path, tls_ca: Path | None = None) -> None:
        self.store = store
        self.registry = registry
        self.secret = secret
        self.replicas = replicas
        self.data_dir = data_dir
        self.tls_ca = tls_ca

    async def run(self) -> dict[str, Any]:
        t0 = time.time()
        assert self.store.pack_key is not None
        boundary = await self.store.log.max_version()
        live_nodes = [n for n in self.registry.nodes.values() if n.state in READABLE_STATES]
        gatherer = Gatherer(self.store.pack_key, self.secret, self.tls_ca)
        await gatherer.from_nodes([n.address for n in live_nodes])
        rebuilt = plan(gatherer.out, self.replicas)
        with tempfile.TemporaryDirectory(prefix="tossit-drill-", dir=self.data_dir) as tmp:
            scratch = f"sqlite+aiosqlite:///{Path(tmp) / 'scratch.db'}"
            await write_plan(scratch, rebuilt, note={"drill": True})
            found = await self._compare(scratch, rebuilt, boundary)
        snapshot = await self.store.get_state("snapshot")
        result = {
            "at": t0, "seconds": round(time.time() - t0, 2), "ok": found.ok,
            "nodes_read": len(gatherer.out.nodes),
            "nodes_unreachable": gatherer.out.unreachable,
            "files": found.files, "recoverable": found.recoverable,
            "trash": found.trash,
            **{k: [f"{b}/{n}" for b, n in getattr(found, k)[:NAMES]] for k in _LISTS},
            **{f"{k}_count": len(getattr(found, k)) for k in _LISTS},
            "buckets": found.buckets,
            **{k: getattr(found, k)[:NAMES] for k in _BUCKET_LISTS},
            **{f"{k}_count": len(getattr(found, k)) for k in _BUCKET_LISTS},
            "packs_unreadable": len(gatherer.out.unreadable),
            "snapshot_age_s": None if snapshot is None else round(t0 - snapshot["at"], 1),
        }
        result["summary"] = summary(result)
        return result

    async def _live(self, boundary: int) -> tuple[dict[Name, tuple[int, str, int]],
                                                 dict[Name, int]]:
        """Live files (name -> id, SHA-256, version) committed up to ``boundary``,
        and the newest logged version of every name (deleted ones included)."""
        async with self.store.read() as s:
            buckets = dict((await s.execute(select(Bucket.id, Bucket.name))).all())
            rows = (await s.execute(
                select(Object.bucket_id, Object.key, Object.id, Object.sha256,
                       ManifestEntry.version)
                .join(ManifestEntry, (ManifestEntry.object_id == Object.id)
                      & (ManifestEntry.op == PUT)))).all()
            newest = (await s.execute(
                select(ManifestEntry.bucket_id, ManifestEntry.key, ManifestEntry.version)
                .where(ManifestEntry.bucket_id.is_not(None),
                       ManifestEntry.op.not_in([TRASH, PURGE])))).all()
        # The brain's own files (snapshots) are not counted as the users' files.
        live = {(buckets[b], k): (i, sha, v) for b, k, i, sha, v in rows
                if v <= boundary and buckets[b] != SYSTEM_BUCKET}
        touched: dict[Name, int] = {}
        for b, k, v in newest:
            if b is not None:
                name = (buckets[b], k)
                touched[name] = max(touched.get(name, 0), v)
        return live, touched

    async def _live_trash(self, boundary: int) -> tuple[dict[int, tuple[Name, str]],
                                                        dict[int, int]]:
        """Files in the trash (id -> name, SHA-256) moved there up to ``boundary``,
        and the newest trash/purge version of every id the log knows."""
        async with self.store.read() as s:
            buckets = dict((await s.execute(select(Bucket.id, Bucket.name))).all())
            rows = (await s.execute(
                select(TrashedObject.id, TrashedObject.bucket_id, TrashedObject.key,
                       TrashedObject.sha256, ManifestEntry.version)
                .join(ManifestEntry, (ManifestEntry.object_id == TrashedObject.id)
                      & (ManifestEntry.op == TRASH)))).all()
            log = (await s.execute(select(ManifestEntry.object_id, ManifestEntry.version)
                                   .where(ManifestEntry.op.in_([TRASH, PURGE])))).all()
        trash: dict[int, tuple[Name, str]] = {}
        for i, b, k, sha, v in rows:
            if v <= boundary:
                trash[i] = ((buckets[b], k), sha)
        touched: dict[int, int] = {}
        for oid, v in log:
            if oid is not None:
                touched[oid] = max(touched.get(oid, 0), v)
        return trash, touched

    def _compare_trash(self, out: Findings, live: dict[int, tuple[Name, str]],
                       touched: dict[int, int], got: dict[int, str], rebuilt: Plan,
                       boundary: int) -> None:
        out.trash = len(live)
        for oid, (name, sha) in sorted(live.items()):
            if got.get(oid) != sha:
                out.trash_lost.append((name[0], f"{name[1]} (in the trash, id {oid})"))
        for f in rebuilt.trash:
            oid = f.entry.id
            if oid not in live and f.entry.version <= boundary and touched.get(
                    oid, 0) <= boundary:
                out.trash_reappear.append(
                    (f.entry.bucket, f"{f.entry.key} (purged, id {oid})"))

    async def _compare(self, scratch: str, rebuilt: Plan, boundary: int) -> Findings:
        live, touched = await self._live(boundary)
        live_trash, trash_touched = await self._live_trash(boundary)
        engine = make_engine(scratch)
        try:
            async with engine.connect() as conn:
                buckets = dict((await conn.execute(select(Bucket.id, Bucket.name))).all())
                got = {(buckets[b], k): (i, sha) for b, k, i, sha in (await conn.execute(
                    select(Object.bucket_id, Object.key, Object.id, Object.sha256))).all()}
                got_trash = {i: sha for i, sha in (await conn.execute(
                    select(TrashedObject.id, TrashedObject.sha256))).all()}
        finally:
            await engine.dispose()
        state = {(f.entry.bucket, f.entry.key): f for f in rebuilt.files
                 if f.entry.bucket != SYSTEM_BUCKET}
        pack_copies = {cid: len([n for n, st in c.replicas.items() if st == "ok"])
                       for cid, c in rebuilt.chunks.items()}
        homes = {e.version: pack for e, pack, _ in rebuilt.entries}
        out = Findings(files=len(live))
        for name, (oid, sha, _version) in sorted(live.items()):
            if name not in got:
                out.lost.append(name)
                continue
            if got[name] != (oid, sha):
                out.wrong.append(name)
                continue
            f = state[name]
            if f.missing:
                out.incomplete.append(name)
                continue
            out.recoverable += 1
            home = homes.get(f.entry.version)
            if home is None or pack_copies.get(home, 0) < self.replicas:
                out.manifest_below.append(name)
            if f.below:
                out.chunks_below.append(name)
        for name, f in sorted(state.items()):
            if name not in live and f.entry.version <= boundary and touched.get(
                    name, 0) <= boundary:
                out.reappear.append(name)
        self._compare_trash(out, live_trash, trash_touched, got_trash, rebuilt, boundary)
        await self._compare_buckets(out, rebuilt, boundary)
        return out

    async def _compare_buckets(self, out: Findings, rebuilt: Plan, boundary: int) -> None:
        """The buckets that exist now against those a rebuild makes (an empty
        one lost, a deleted one back), but for those changed after the drill
        began reading."""
        async with self.store.read() as s:
            live = {n for n, d in (await s.execute(select(Bucket.name, Bucket.deleted_at)))
                    .all() if d is None and n != SYSTEM_BUCKET}
            touched = dict((await s.execute(
                select(ManifestEntry.key, func.max(ManifestEntry.version))
                .where(ManifestEntry.op == BUCKET).group_by(ManifestEntry.key))).all())
        made = {n for n, (_, deleted) in rebuilt.bucket_rows(0.0).items()
                if deleted is None and n != SYSTEM_BUCKET}
        settled = {n for n in live | made if touched.get(n, 0) <= boundary}
        out.buckets = len(live & settled)
        out.buckets_lost = sorted((live - made) & settled)
        out.buckets_reappear = sorted((made - live) & settled)


def _files(n: int, word: str = "file") -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def summary(r: dict[str, Any]) -> str:
    """One sentence a person can act on."""
    text = (f"a brain loss now: {_files(r['recoverable'])} recoverable, "
            f"{r['lost_count'] + r['wrong_count'] + r['incomplete_count']:,} lost")
    if r["reappear_count"]:
        text += f", {_files(r['reappear_count'], 'deleted file')} would come back"
    if r.get("trash_lost_count"):
        text += f", {_files(r['trash_lost_count'], 'file')} in the trash lost"
    if r.get("trash_reappear_count"):
        text += (f", {_files(r['trash_reappear_count'], 'purged file')} would come back "
                 "into the trash")
    if r.get("trash"):
        text += f" ({_files(r['trash'])} in the trash)"
    if r.get("buckets_lost_count"):
        text += f", {plural(r['buckets_lost_count'], 'bucket')} lost"
    if r.get("buckets_reappear_count"):
        text += f", {plural(r['buckets_reappear_count'], 'deleted bucket')} would come back"
    at_risk = max(r["manifest_below_count"], r["chunks_below_count"])
    if at_risk:
        text += f"; {_files(at_risk)} with fewer than the full number of copies"
    if r["nodes_unreachable"]:
        text += f"; {plural(len(r['nodes_unreachable']), 'node')} could not be read"
    age = r["snapshot_age_s"]
    text += "; " + ("no metadata snapshot yet" if age is None else
                    f"last snapshot {format_duration(age)} ago")
    return text
