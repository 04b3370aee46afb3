"""``tossit recover``: a new metadata database built from the nodes alone.

For the day the brain's disk is gone: given the cluster secret and the nodes'
addresses (or their data dirs on this machine), read every node's inventory
and manifest packs, decide what the cluster held (``brain.rebuild``), and
write it as a new database (``brain.rebuild_db``) with a new admin key. A brain
started on it then serves every file; ``docs/operations.md`` is the runbook.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tossit.auth.keys import Role
from tossit.auth.secretfile import (
    ADMIN_KEY_FILE,
    CLUSTER_SECRET_FILE,
    MASTER_KEY_FILE,
    ensure_secret,
    read_secret,
    write_secret,
)
from tossit.brain.db import make_engine
from tossit.brain.gather import Gatherer, Progress, SourceError
from tossit.brain.keys import KeyService
from tossit.brain.rebuild import Plan, plan
from tossit.brain.rebuild_db import write_plan
from tossit.brain.snapshots import PREFIX as SNAPSHOT_PREFIX
from tossit.brain.snapshots import SnapshotContents, read_snapshot
from tossit.brain.store import Store
from tossit.chunking import META
from tossit.manifests import SYSTEM_BUCKET, pack_key, resolve

RECOVERED_ADMIN_KEY_FILE = "admin-recovered.key"  # when an admin.key is already there


class RecoverError(Exception):
    """Nothing was written; the message says why and what to do."""


@dataclass
class Recovery:
    plan: Plan
    database: str
    admin_key_file: Path | None
    seconds: float
    sources: list[str] = field(default_factory=list)
    snapshot_as_of: int | None = None
    keys_master_given: bool = False


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{(data_dir / 'tossit.db').resolve()}"


async def recover(*, secret: str, nodes: Sequence[str] = (), dirs: Sequence[Path] = (),
                  data_dir: Path, database_url: str | None = None, replicas: int = 3,
                  tls_ca: Path | None = None, progress: Progress | None = None,
                  on_plan: Callable[[Plan], None] | None = None,
                  from_snapshot: bool = False, keys_master: Path | None = None) -> Recovery:
    """Rebuild into ``database_url`` (else a new SQLite file in ``data_dir``), and
    keep the cluster secret, the master key (``keys_master``: a backup of the
    lost one, which the S3 secrets of the old keys derive from; else the one in
    ``data_dir``, else a new one) and an admin key in ``data_dir``.
    ``from_snapshot``: start from the newest metadata snapshot on the nodes, then
    apply the manifests written after it."""
    t0 = time.monotonic()
    if not nodes and not dirs:
        raise RecoverError("give the nodes to read: --node URL (repeat it) or --node-dir DIR")
    db_file = data_dir / "tossit.db"
    if database_url is None:
        if db_file.exists():
            raise RecoverError(f"{db_file} already exists: move it away first (recover "
                               "never overwrites a database), or give another --data-dir")
        for part in ("tossit.db-wal", "tossit.db-shm", "tossit.db-journal"):
            if (data_dir / part).exists():
                # SQLite would delete a WAL it finds beside a new database: the old
                # one's last commits, if it is ever put back.
                raise RecoverError(
                    f"{data_dir / part} is here without its tossit.db: it belongs to the "
                    "database moved away (it may hold its latest commits). Move it to "
                    "where that database is, beside it under the same name, then run this "
                    "again")
    master_file = data_dir / MASTER_KEY_FILE
    had_master = master_file.exists()  # (a backup put back before the recovery)
    if keys_master is not None:
        given = read_secret(keys_master)
        if master_file.exists() and read_secret(master_file) != given:
            raise RecoverError(f"{master_file} exists and differs from {keys_master}: move "
                               "one of them away")
    kept = data_dir / CLUSTER_SECRET_FILE
    if kept.exists() and read_secret(kept) != secret:
        raise RecoverError(f"{kept} holds another cluster secret than the one given: the "
                           "nodes only answer to the secret they joined with")
    gatherer = Gatherer(pack_key(secret), secret, tls_ca,
                        progress or (lambda *_: None))
    await gatherer.gather(nodes, dirs)
    found = gatherer.out
    if not found.nodes:
        why = "; ".join(f"{k}: {v}" for k, v in found.unreachable.items())
        raise RecoverError(f"no node could be read ({why})")
    history = None
    if from_snapshot:
        history = await _newest_snapshot(gatherer, data_dir)
        result = plan(found, replicas, base=history.entries, as_of=history.as_of,
                      now=time.time(), complete_from=history.complete_from)
    else:
        result = plan(found, replicas)
    if on_plan is not None:
        on_plan(result)
    await asyncio.to_thread(data_dir.mkdir, mode=0o700, parents=True, exist_ok=True)
    url = database_url or sqlite_url(data_dir)
    note: dict[str, Any] = {"sources": [*nodes, *map(str, dirs)]}
    if history is not None:
        note["snapshot_as_of"] = history.as_of
    await write_plan(url, result, note=note, history=history)
    if not kept.exists():
        write_secret(kept, secret)
    if keys_master is not None and not master_file.exists():
        write_secret(master_file, read_secret(keys_master))
    admin = await _new_admin_key(url, data_dir, secret)
    return Recovery(result, url, admin, time.monotonic() - t0, [*nodes, *map(str, dirs)],
                    history.as_of if history else None,
                    keys_master_given=keys_master is not None or had_master)


async def _newest_snapshot(gatherer: Gatherer, data_dir: Path) -> SnapshotContents:
    """The newest metadata snapshot whose file can be read whole from the nodes."""
    found = gatherer.out
    state = resolve(e for p in found.packs.values() for e in p.entries)
    snaps = sorted((f for (bucket, key), f in state.files.items()
                    if bucket == SYSTEM_BUCKET and key.startswith(SNAPSHOT_PREFIX)),
                   key=lambda f: f.version, reverse=True)
    if not snaps:
        raise RecoverError("no metadata snapshot is on the nodes (the brain takes one "
                           "every snapshot_interval): recover without --from-snapshot")
    problems = []
    await asyncio.to_thread(data_dir.mkdir, mode=0o700, parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tossit-recover-", dir=data_dir) as tmp:
        path = Path(tmp) / "snapshot.db"
        for snap in snaps:
            try:
                await gatherer.fetch_file(snap.chunks, path)
                digest = await asyncio.to_thread(_sha256_file, path)
                if digest != snap.sha256:
                    raise SourceError("its bytes do not match its SHA-256")
                return await asyncio.to_thread(read_snapshot, path)
            except (SourceError, OSError, sqlite3.Error) as exc:
                problems.append(f"{snap.key}: {exc}")
    raise RecoverError("no metadata snapshot could be read whole: " + "; ".join(problems))


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while piece := fh.read(1 << 20):
            h.update(piece)
    return h.hexdigest()


async def _new_admin_key(url: str, data_dir: Path, secret: str) -> Path:
    """The old admin key's secret was on the lost disk: make a new one (its
    manifest entry is written to the nodes when the brain starts)."""
    master, _ = ensure_secret(data_dir / MASTER_KEY_FILE)
    store = Store(make_engine(url), pack_key(secret))
    try:
        _, key_secret = await KeyService(store, master.encode()).create(
            "admin (after recovery)", Role.admin)
    finally:
        await store.close()
    path = data_dir / ADMIN_KEY_FILE
    if path.exists():  # an admin key of the old metadata: it may still be the one in use
        path = data_dir / RECOVERED_ADMIN_KEY_FILE
    write_secret(path, key_secret)
    return path


def report_lines(r: Recovery, limit: int = 20) -> list[tuple[str, str | None]]:
    """The summary, as (text, style) lines for the terminal."""
    from tossit.config import format_duration, format_size, plural

    s: dict[str, Any] = r.plan.summary()
    out: list[tuple[str, str | None]] = [
        (f"rebuilt in {format_duration(r.seconds)} from {plural(s['nodes'], 'node')}: "
         f"{plural(s['files'], 'file')} ({format_size(s['bytes'])}), "
         f"{plural(s['deleted'], 'deleted name')} kept deleted, "
         f"{plural(s['keys'], 'API key')}, {plural(s['buckets'], 'bucket')}, "
         f"newest version {s['max_version']:,}",
         "green" if not s["incomplete"] else "yellow")]
    if s.get("trash"):
        out.append((f"{plural(s['trash'], 'file')} ({format_size(s['trash_bytes'])}) back in "
                    "the trash, each with its purge time", None))
    if r.snapshot_as_of is not None:
        out.append((f"started from the newest metadata snapshot (version "
                    f"{r.snapshot_as_of:,}) and the manifests written after it", None))
    if s["incomplete"]:
        missing = s["chunks_missing"]
        out.append((f"{plural(s['incomplete'], 'file')} cannot be complete now: "
                    f"{plural(missing, 'chunk', verb=('has', 'have'))} no copy "
                    "on the nodes read", "red"))
        names = s["incomplete_names"]
        out += [(f"  {n}", "red") for n in names[:limit]]
        if len(names) > limit:
            out.append((f"  ... and {len(names) - limit:,} more (all listed in the "
                        "metadata_rebuilt event)", "red"))
    else:
        out.append(("every file has all its chunks on the nodes read", "green"))
    if s["below_target"]:
        n = s["below_target"]
        out.append((f"{plural(n, 'file', verb=('has', 'have'))} chunks below the "
                    "target number of copies: the brain re-makes the missing ones", "yellow"))
    for src, why in r.plan.unreachable.items():
        out.append((f"not read: {src} ({why}); its copies count again when it rejoins",
                    "yellow"))
    damaged = sum(1 for c in r.plan.chunks.values() if c.kind == META
                  for state in c.replicas.values() if state == "corrupt")
    if damaged:
        out.append((f"{plural(damaged, 'damaged manifest copy', 'damaged manifest copies')} "
                    "skipped (a good copy on another node was used); the brain replaces "
                    "them", "yellow"))
    if s["packs_unreadable"]:
        out.append((f"{plural(s['packs_unreadable'], 'manifest pack')} could not be used "
                    "(damaged everywhere, or not signed with this cluster secret)", "yellow"))
    out.append((f"database: {r.database.split('@')[-1]}", None))
    if r.plan.conflicts:
        out.append((f"{plural(len(r.plan.conflicts), 'version')} held two different changes "
                    "(a brain ran on partial metadata before this recovery); the copy with "
                    "the most nodes was kept: check the files changed while it ran", "red"))
    if r.admin_key_file:
        out.append((f"new admin key: {r.admin_key_file}", None))
    if s["keys"]:
        out.append(("the API keys made before keep working on the REST API and the "
                    "dashboard; on the S3 API only if this brain has the lost brain's "
                    "keys.master (--keys-master, from a backup): else give S3 clients new "
                    "keys", None if r.keys_master_given else "yellow"))
    return out
