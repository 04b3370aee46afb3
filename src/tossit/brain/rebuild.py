"""Rebuilding the metadata from what the nodes hold: the pure part.

``tossit recover`` and ``tossit drill`` gather, from every node they can reach
(or data dir they can read), the node's identity, its inventory (which chunks
and packs it holds) and the manifest packs themselves; ``plan`` turns that into
the rows of a new metadata database and a report. Nothing here does I/O, so
every rule is tested with tables.

The rules:

* the newest entry of each name wins (``tossit.manifests.resolve``): a ``put``
  is a file, a ``del`` keeps it deleted, whatever older packs still say;
* the newest ``trash``/``purge`` entry of each file id says whether that file
  is in the trash (with its purge time): a purged file never comes back, and a
  trashed file never takes back a name (it is in the trash, not under it);
* a chunk's copies are the nodes whose inventory lists it with the size the
  manifest gives (a copy of another size is recorded ``corrupt``);
* a file some of whose chunks have no copy on any node reached is *incomplete*:
  it is kept (a node that was away may bring the chunks back) and named in the
  report;
* a pack is a chunk of kind ``meta`` whose refcount is its number of needed
  entries (``needed_versions``); an entry found in several packs belongs to the
  one with the most copies;
* the newest ``bucket`` entry of each bucket says whether it exists (empty or
  not); a bucket with a file in it exists whatever its entries say, and one
  known only from the entries of its files (logged before buckets had entries
  of their own) is taken to exist;
* from a metadata snapshot (``base``, complete up to version ``as_of``): the
  snapshot's files and keys, then every pack entry newer than ``as_of``. A
  name the snapshot does not have but an older pack still holds a ``put`` for
  (its tombstone was lost) gets a new tombstone, so that a later rebuild from
  the packs alone does not bring it back. Entries in no pack (only in the
  snapshot, or new) are written to the nodes when the brain starts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from tossit.chunking import DATA, META
from tossit.manifests import (
    SYSTEM_BUCKET,
    AnyEntry,
    BucketEntry,
    DelEntry,
    KeyEntry,
    PurgeEntry,
    PutEntry,
    TrashEntry,
    entry_scope,
    needed_versions,
    resolve,
)

Entry = AnyEntry


@dataclass
class NodeFound:
    """A node as it describes itself (its /status, or its data dir)."""

    id: str
    name: str
    address: str = ""
    zone: str = "default"
    capacity: int = 0
    used: int = 0
    free: int = 0
    disk_total: int = 0
    disk_free: int = 0
    chunk_count: int = 0
    version: str = "?"
    cluster: str | None = None  # the cluster id the node remembers (None: never joined)


@dataclass
class PackFound:
    """One manifest pack: its entries (from a copy that checked out), and which
    nodes hold a good copy and which a damaged one."""

    id: str
    size: int
    entries: list[Entry]
    good_on: set[str] = field(default_factory=set)
    bad_on: set[str] = field(default_factory=set)


@dataclass
class Gathered:
    """Everything read from the nodes."""

    nodes: dict[str, NodeFound] = field(default_factory=dict)
    # node id -> blob id -> (size, kind)
    inventory: dict[str, dict[str, tuple[int, str]]] = field(default_factory=dict)
    packs: dict[str, PackFound] = field(default_factory=dict)
    # Packs with no copy that checked out: id -> why (damaged, not signed by this cluster)
    unreadable: dict[str, str] = field(default_factory=dict)
    unreachable: dict[str, str] = field(default_factory=dict)  # source -> why


@dataclass
class ChunkRow:
    size: int
    refcount: int
    kind: str
    replicas: dict[str, str]  # node id -> ok / corrupt


@dataclass
class FileState:
    entry: PutEntry | TrashEntry
    missing: int = 0  # chunk positions with no copy on any node reached
    below: int = 0  # chunk positions with fewer than R copies


@dataclass
class Plan:
    files: list[FileState]
    deleted: int  # names whose newest entry is a tombstone
    keys: list[KeyEntry]
    entries: list[tuple[Entry, str | None, bool]]  # (entry, its pack or None, needed)
    chunks: dict[str, ChunkRow]
    nodes: list[NodeFound]
    max_version: int
    unreadable: dict[str, str]
    unreachable: dict[str, str]
    cluster: str | None = None  # the id the new metadata takes: the nodes' own
    trash: list[FileState] = field(default_factory=list)  # entries are TrashEntry
    conflicts: list[int] = field(default_factory=list)  # versions with two different entries
    buckets: list[BucketEntry] = field(default_factory=list)  # made or deleted, by name

    @property
    def complete(self) -> list[FileState]:
        return [f for f in self.files if not f.missing]

    @property
    def incomplete(self) -> list[FileState]:
        return [f for f in self.files if f.missing]

    def bucket_rows(self, now: float) -> dict[str, tuple[float, float | None]]:
        """Every bucket the new metadata has, as name -> (created, deleted or None):
        as its newest ``bucket`` entry says, made again if a file lives in it
        (a lost pack must not hide a file), and made at ``now`` if only the
        entries of its files name it. ``default`` always exists (the REST API's)."""
        rows: dict[str, tuple[float, float | None]] = {
            b.name: (b.created, b.deleted) for b in self.buckets}
        named = {e.bucket for e, _, _ in self.entries
                 if not isinstance(e, KeyEntry | BucketEntry)}
        for name in sorted({"default", *named, *(f.entry.bucket for f in self.trash)}):
            rows.setdefault(name, (now, None))
        for name in {"default", *(f.entry.bucket for f in self.files)}:
            rows[name] = (rows[name][0], None)
        return rows

    @property
    def missing_chunks(self) -> int:
        return sum(1 for c in self.chunks.values()
                   if c.kind == DATA and c.refcount > 0 and not _ok(c))

    def summary(self) -> dict[str, object]:
        """The figures the CLI prints and the drill compares."""
        return {
            "files": len(self.files),
            "bytes": sum(f.entry.size for f in self.files),
            "complete": len(self.complete),
            "incomplete": len(self.incomplete),
            "incomplete_names": [f"{f.entry.bucket}/{f.entry.key}" for f in self.incomplete],
            "below_target": sum(1 for f in self.files if f.below and not f.missing),
            "deleted": self.deleted,
            "trash": len(self.trash),
            "trash_bytes": sum(f.entry.size for f in self.trash),
            "keys": len(self.keys),
            "buckets": sum(1 for name, (_, deleted) in self.bucket_rows(0.0).items()
                           if deleted is None and name != SYSTEM_BUCKET),
            "chunks_missing": self.missing_chunks,
            "packs": sum(1 for c in self.chunks.values() if c.kind == META),
            "packs_unreadable": len(self.unreadable),
            "nodes": len(self.nodes),
            "nodes_unreachable": len(self.unreachable),
            "max_version": self.max_version,
            "conflicts": len(self.conflicts),
        }


def cluster_of(nodes: list[NodeFound]) -> str | None:
    """The cluster id the rebuilt metadata keeps, so that the nodes accept the
    brain started on it: the one most nodes remember (ties: the smallest id)."""
    counts = Counter(n.cluster for n in nodes if n.cluster)
    if not counts:
        return None
    return min(counts, key=lambda c: (-counts[c], c))


def _ok(c: ChunkRow) -> list[str]:
    return [n for n, st in c.replicas.items() if st == "ok"]


def _home(entry_packs: dict[int, list[str]], packs: dict[str, PackFound]) -> dict[int, str]:
    """Each entry's pack: the one with the most good copies (then the smallest id,
    so that the choice is the same on every run)."""
    return {v: min(ps, key=lambda p: (-len(packs[p].good_on), p))
            for v, ps in entry_packs.items()}


def _tombstones_for_lost(by_version: dict[int, Entry], base: Sequence[Entry], as_of: int,
                         now: float, complete_from: int = 0) -> list[Entry]:
    """Names the snapshot says were gone at ``as_of`` while an older ``put`` of them
    is still in a pack and nothing newer mentions them: new tombstones.

    Only for what the snapshot's brain knew: if its metadata was itself rebuilt
    by a recovery that may have missed packs (``complete_from``: the first
    version after that recovery's newest), an older entry it lacks may be one
    it never saw, not one it deleted; those are left as the packs say."""
    in_base = {entry_scope(e) for e in base}
    newer = {entry_scope(e) for e in by_version.values() if e.version > as_of}
    newest_old: dict[tuple[str, str, str], Entry] = {}
    for e in by_version.values():
        if complete_from <= e.version <= as_of:
            scope = entry_scope(e)
            if scope not in newest_old or e.version > newest_old[scope].version:
                newest_old[scope] = e
    version = max([*by_version, *(e.version for e in base), 0]) + 1
    out: list[Entry] = []
    for scope, e in sorted(newest_old.items(), key=lambda kv: kv[1].version):
        if scope in in_base or scope in newer:
            continue
        if isinstance(e, PutEntry):
            out.append(DelEntry(version=version, bucket=e.bucket, key=e.key, id=e.id,
                                deleted=now))
        elif isinstance(e, TrashEntry):  # left the trash before the snapshot
            out.append(PurgeEntry(version=version, bucket=e.bucket, key=e.key, id=e.id,
                                  purged=now, why="purged"))
        else:
            continue
        version += 1
    return out


def plan(g: Gathered, replicas: int, base: Sequence[Entry] | None = None, as_of: int = 0,
         now: float = 0.0, complete_from: int = 0) -> Plan:
    """The new metadata from what was gathered; with ``base``, on top of a
    snapshot's entries complete up to ``as_of`` (and only from ``complete_from``
    on when the snapshot's metadata was itself rebuilt: see
    ``_tombstones_for_lost``)."""
    entry_packs: dict[int, list[str]] = {}
    seen: dict[int, dict[str, Entry]] = {}  # version -> pack -> its entry of that version
    for pack in g.packs.values():
        for e in pack.entries:
            entry_packs.setdefault(e.version, []).append(pack.id)
            seen.setdefault(e.version, {})[pack.id] = e
    home = _home(entry_packs, g.packs)
    # One version is one change. Two different entries under one version mean two
    # histories (a brain that ran on partial metadata before the counters jumped
    # after a recovery): the home pack's entry is taken, whatever the order the
    # nodes were read in, and the conflict is reported.
    by_version: dict[int, Entry] = {v: packs[home[v]] for v, packs in seen.items()}
    conflicts = sorted(v for v, packs in seen.items()
                       if any(e != by_version[v] for e in packs.values()))
    if base is not None:
        for e in [*_tombstones_for_lost(by_version, base, as_of, now, complete_from), *base]:
            by_version.setdefault(e.version, e)
    everything = list(by_version.values())
    state = resolve(everything)
    needed = needed_versions(everything)

    chunks: dict[str, ChunkRow] = {}
    positions: Counter[str] = Counter()
    sizes: dict[str, int] = {}
    held: list[PutEntry | TrashEntry] = [*state.files.values(), *state.trash.values()]
    for f in held:
        for cid, size in zip(f.chunks, f.sizes(), strict=True):
            positions[cid] += 1
            sizes[cid] = size
    holders: dict[str, dict[str, str]] = {}
    for node_id, inv in g.inventory.items():
        for cid, (size, kind) in inv.items():
            if kind == DATA and cid in sizes:
                holders.setdefault(cid, {})[node_id] = "ok" if size == sizes[cid] else "corrupt"
    for cid, n in positions.items():
        chunks[cid] = ChunkRow(sizes[cid], n, DATA, holders.get(cid, {}))

    pack_refs: Counter[str] = Counter(home[v] for v in needed if v in home)
    for pack in g.packs.values():
        reps = {n: "ok" for n in pack.good_on}
        reps.update({n: "corrupt" for n in pack.bad_on if n not in pack.good_on})
        chunks[pack.id] = ChunkRow(pack.size, pack_refs[pack.id], META, reps)

    def file_state(f: PutEntry | TrashEntry) -> FileState:
        counts = [len(_ok(chunks[c])) for c in f.chunks]
        return FileState(f, missing=sum(1 for n in counts if n == 0),
                         below=sum(1 for n in counts if n < replicas))

    files = [file_state(f) for f in sorted(state.files.values(),
                                           key=lambda e: (e.bucket, e.key))]
    trash = [file_state(t) for t in sorted(state.trash.values(), key=lambda e: e.id)]
    entries = [(e, home.get(e.version), e.version in needed)
               for e in sorted(everything, key=lambda e: e.version)]
    return Plan(files=files, deleted=len(state.deleted),
                keys=sorted(state.keys.values(), key=lambda k: k.created),
                entries=entries, chunks=chunks,
                nodes=sorted(g.nodes.values(), key=lambda n: n.name),
                max_version=state.max_version, unreadable=dict(g.unreadable),
                unreachable=dict(g.unreachable), cluster=cluster_of(list(g.nodes.values())),
                trash=trash, conflicts=conflicts,
                buckets=sorted(state.buckets.values(), key=lambda b: b.name))
