"""Manifests on the nodes: what lets the brain's metadata be rebuilt from the nodes.

Every change to what the cluster stores is one **entry** of a log, numbered by a
cluster-wide **version** that only grows:

* ``put``: a file as committed (bucket, name, id, size, SHA-256, content type,
  times, chunk size and its chunk ids in order);
* ``del``: a tombstone, the file with that id was deleted;
* ``key``: the state of an API key (its secret's hash and salt, never the secret);
* ``trash``: a file moved to the trash (deleted or overwritten while the trash is
  on): the whole file as ``put`` has it, with when it was moved, when it is
  purged and why;
* ``purge``: the end of a file's stay in the trash (purged, expired, or
  restored, which also logs a ``put`` of its name);
* ``bucket``: a bucket made or deleted (over S3), so that a rebuild makes the
  empty ones again and keeps the deleted ones deleted.

The brain commits a batch of changes in its database, then writes the batch's
entries as one **pack** to R nodes (fsynced, as chunks are), and only then
answers the clients. Rebuilding is then a pure function of the entries found
on the nodes: for each name, the entry with the highest version wins; a ``put``
makes the file, a ``del`` keeps it deleted. A file in the trash no longer owns
its name (a new upload may take it), so ``trash`` and ``purge`` entries have a
scope of their own, the file's id: the newest of them says whether that file is
in the trash. So an old version can only come
back if every copy of every newer entry for its name was lost, and the brain
keeps a tombstone on the nodes for as long as an older ``put`` of that name may
still be on one (``needed_versions``).

A pack is::

    TOSSIT-MANIFESTS v1\\n
    <HMAC-SHA256 of the payload, hex>\\n
    <payload: JSON {"format": 1, "entries": [...]}>

The HMAC key derives from the cluster secret, so a pack planted by anyone
without the secret (a file uploaded through the API, say) is refused at
rebuild. A pack is stored under ``content_id(bytes, "meta")`` (tossit.chunking):
the nodes check it like any chunk, and repair, drain, scrub and reconcile it
with the same machinery.

Pure functions only: tested without servers.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from tossit.chunking import META, content_id

MAGIC = b"TOSSIT-MANIFESTS v1\n"
FORMAT = 1
MAX_PACK_BYTES = 32 * 1024 * 1024  # below the nodes' largest chunk (64 MiB)
# The chunk list of one file must fit in a pack: 400,000 chunks is 1.5 TiB at the
# default 4 MiB chunk size (a bigger chunk size allows bigger files).
MAX_CHUNKS_PER_FILE = 400_000
SYSTEM_BUCKET = ".tossit"  # the brain's own files (metadata snapshots); not a user bucket
# Versions and file ids a brain rebuilt by ``tossit recover`` leaves unused above
# the newest it found (``brain.rebuild_db``): that recovery may have missed the
# newest changes (packs whose every copy was on nodes it could not read), and
# their versions and ids must never be handed out again. An entry found later
# in that gap is from the history the recovery missed (``brain.gc``). Versions
# are 64-bit; file ids are 32-bit on PostgreSQL (2,000 recoveries).
VERSION_GAP = 1 << 32
ID_GAP = 1 << 20

_HEX64 = r"^[0-9a-f]{64}$"


class PackError(ValueError):
    """Not a valid pack of this cluster: the message says why."""


class _Entry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    version: int = Field(ge=1)


class _FileEntry(_Entry):
    """About one file: its bucket, its name, and the id it had."""

    bucket: str = Field(min_length=1, max_length=63)
    key: str = Field(min_length=1, max_length=4096)
    id: int = Field(ge=1)


class _FileBody(_FileEntry):
    """A whole file: what a rebuild needs to make it again."""

    size: int = Field(ge=0)
    sha256: str = Field(pattern=_HEX64)
    content_type: str = Field(max_length=255)
    created: float
    chunk_size: int = Field(ge=1)
    chunks: tuple[Annotated[str, Field(pattern=_HEX64)], ...] = ()
    # Only when the sizes are not the regular ones (every chunk chunk_size bytes but
    # the last, which holds the rest): fixed-size chunking never needs it.
    chunk_sizes: tuple[int, ...] | None = None
    etag: str | None = None
    user_meta: dict[str, Any] | None = None

    def sizes(self) -> list[int]:
        """Each chunk's size, in order."""
        if self.chunk_sizes is not None:
            return list(self.chunk_sizes)
        return regular_sizes(self.size, self.chunk_size, len(self.chunks))

    def check(self) -> None:
        """The sizes add up (raises PackError): a pack with a wrong chunk list
        must not rebuild a file that reads back short or long."""
        sizes = self.sizes()
        if len(sizes) != len(self.chunks) or sum(sizes) != self.size or any(
                not 0 < s <= max(self.chunk_size, 1) for s in sizes):
            raise PackError(f"file {self.key!r} (id {self.id}): chunk sizes do not add up "
                            f"to its size {self.size}")


class PutEntry(_FileBody):
    """A committed file."""

    op: Literal["put"] = "put"


class TrashEntry(_FileBody):
    """A file moved to the trash: still whole (its chunks stay), no longer under
    its name. ``why``: deleted, or overwritten by a newer upload of its name."""

    op: Literal["trash"] = "trash"
    deleted: float
    purge_at: float
    why: Literal["deleted", "overwritten"] = "deleted"


class PurgeEntry(_FileEntry):
    """A file's stay in the trash ended: purged (by hand or emptied), expired, or
    restored (then a ``put`` of the file, same id, is logged with it)."""

    op: Literal["purge"] = "purge"
    purged: float
    why: Literal["purged", "expired", "restored"] = "purged"


class DelEntry(_FileEntry):
    """A deleted file (a tombstone)."""

    op: Literal["del"] = "del"
    deleted: float


class KeyEntry(_Entry):
    """An API key's state. No secret: its SHA-256 (of 240 random bits) checks a
    bearer token, and the salt only derives the secret with the brain's master
    key, which never leaves the brain."""

    op: Literal["key"] = "key"
    key_id: str = Field(min_length=1, max_length=32)
    name: str = Field(max_length=128)
    role: str = Field(max_length=16)
    secret_sha256: str = Field(pattern=_HEX64)
    salt: str = Field(max_length=64)
    created: float
    expires: float | None = None
    revoked: float | None = None


class BucketEntry(_Entry):
    """A bucket's state: made (``deleted`` None) or deleted. The newest entry of a
    bucket is always needed: buckets are few, and without it a rebuild would make
    a deleted bucket again from the tombstones of the files it held."""

    op: Literal["bucket"] = "bucket"
    name: str = Field(min_length=1, max_length=63)
    created: float
    deleted: float | None = None


AnyEntry = PutEntry | DelEntry | KeyEntry | TrashEntry | PurgeEntry | BucketEntry
Entry = Annotated[AnyEntry, Field(discriminator="op")]
_ENTRIES = TypeAdapter(list[Entry])


def regular_sizes(size: int, chunk_size: int, count: int) -> list[int]:
    """Chunk sizes of fixed-size chunking: all ``chunk_size`` but the last."""
    if count == 0:
        return []
    return [chunk_size] * (count - 1) + [size - chunk_size * (count - 1)]


def put_entry(*, version: int, bucket: str, key: str, object_id: int, size: int,
              sha256: str, content_type: str, created: float, chunk_size: int,
              chunks: Sequence[tuple[str, int]], etag: str | None = None,
              user_meta: dict[str, Any] | None = None) -> PutEntry:
    """The entry of a committed file, from its (chunk id, size) list."""
    ids = tuple(c for c, _ in chunks)
    sizes = [s for _, s in chunks]
    regular = sizes == regular_sizes(size, chunk_size, len(sizes))
    return PutEntry(version=version, bucket=bucket, key=key, id=object_id, size=size,
                    sha256=sha256, content_type=content_type, created=created,
                    chunk_size=chunk_size, chunks=ids,
                    chunk_sizes=None if regular else tuple(sizes), etag=etag,
                    user_meta=user_meta)


def pack_key(cluster_secret: str) -> bytes:
    """The HMAC key of packs, derived so the secret itself signs nothing else."""
    return hmac.new(cluster_secret.encode(), b"tossit-manifest-pack-v1",
                    hashlib.sha256).digest()


def encode_pack(entries: Iterable[AnyEntry], key: bytes) -> bytes:
    """A pack's bytes. Deterministic: the same entries and key give the same bytes
    (and so the same id), so a pack written again after a crash is a duplicate."""
    items = sorted(entries, key=lambda e: e.version)
    payload = json.dumps(
        {"format": FORMAT, "entries": [e.model_dump(mode="json", exclude_none=True)
                                       for e in items]},
        separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()
    mac = hmac.new(key, payload, hashlib.sha256).hexdigest().encode()
    return MAGIC + mac + b"\n" + payload


def pack_id(data: bytes | bytearray) -> str:
    return content_id(data, META)


def decode_pack(data: bytes | bytearray, key: bytes) -> list[AnyEntry]:
    """The entries of a pack, after checking its signature (raises PackError)."""
    if not bytes(data[: len(MAGIC)]) == MAGIC:
        raise PackError("not a manifest pack (no TOSSIT-MANIFESTS header)")
    rest = bytes(data[len(MAGIC):])
    mac, sep, payload = rest.partition(b"\n")
    if not sep or len(mac) != 64:
        raise PackError("malformed pack header")
    expected = hmac.new(key, payload, hashlib.sha256).hexdigest().encode()
    if not hmac.compare_digest(mac, expected):
        raise PackError("bad signature: written with another cluster secret, or forged")
    try:
        doc = json.loads(payload)
        fmt = doc.get("format") if isinstance(doc, dict) else None
        if fmt != FORMAT:
            raise PackError(f"unknown pack format {fmt!r}")
        entries = _ENTRIES.validate_python(doc.get("entries"))
    except (ValueError, ValidationError) as exc:
        if isinstance(exc, PackError):
            raise
        raise PackError(f"unreadable pack: {str(exc).splitlines()[0][:200]}") from None
    for e in entries:
        if isinstance(e, PutEntry | TrashEntry):
            e.check()
    return entries


def entry_scope(e: AnyEntry) -> tuple[str, str, str]:
    """What an entry is about: a file name in a bucket, an API key, or a file in
    the trash (by its id: it has no name of its own there). The newest entry of
    each scope is the truth."""
    if isinstance(e, KeyEntry):
        return ("key", "", e.key_id)
    if isinstance(e, BucketEntry):
        return ("bucket", "", e.name)
    if isinstance(e, TrashEntry | PurgeEntry):
        return ("trash", "", str(e.id))
    return ("file", e.bucket, e.key)


@dataclass
class Resolved:
    """What a set of entries says the cluster holds."""

    files: dict[tuple[str, str], PutEntry] = field(default_factory=dict)
    deleted: dict[tuple[str, str], DelEntry] = field(default_factory=dict)
    keys: dict[str, KeyEntry] = field(default_factory=dict)
    trash: dict[int, TrashEntry] = field(default_factory=dict)  # by file id
    purged: dict[int, PurgeEntry] = field(default_factory=dict)
    buckets: dict[str, BucketEntry] = field(default_factory=dict)  # made or deleted
    max_version: int = 0


def resolve(entries: Iterable[AnyEntry]) -> Resolved:
    """Newest entry per scope wins (duplicates of one version are the same entry)."""
    newest: dict[tuple[str, str, str], AnyEntry] = {}
    top = 0
    for e in entries:
        top = max(top, e.version)
        scope = entry_scope(e)
        cur = newest.get(scope)
        if cur is None or e.version > cur.version:
            newest[scope] = e
    out = Resolved(max_version=top)
    for (_, bucket, name), e in newest.items():
        if isinstance(e, PutEntry):
            out.files[(bucket, name)] = e
        elif isinstance(e, DelEntry):
            out.deleted[(bucket, name)] = e
        elif isinstance(e, TrashEntry):
            out.trash[e.id] = e
        elif isinstance(e, PurgeEntry):
            out.purged[e.id] = e
        elif isinstance(e, BucketEntry):
            out.buckets[name] = e
        else:
            out.keys[name] = e
    # One id, two truths (a pack lost between a restore and a later delete): the
    # newer entry is the file's state.
    live = {f.id: f for f in out.files.values()}
    for oid, t in list(out.trash.items()):
        f = live.get(oid)
        if f is not None:
            if f.version > t.version:
                del out.trash[oid]
            else:
                del out.files[(f.bucket, f.key)]
    return out


def needed_versions(entries: Iterable[AnyEntry]) -> set[int]:
    """The entries the nodes must keep for a rebuild to come out right.

    The newest entry of each scope is needed, except a tombstone (``del`` of a
    name, ``purge`` of a file in the trash) with no older ``put`` (``trash``) of
    its scope left anywhere: nothing to keep deleted. Every other entry is
    superseded: a pack whose entries are all unneeded can be deleted.
    """
    by_scope: dict[tuple[str, str, str], list[AnyEntry]] = {}
    for e in entries:
        by_scope.setdefault(entry_scope(e), []).append(e)
    needed: set[int] = set()
    for items in by_scope.values():
        newest = max(items, key=lambda e: e.version)
        if isinstance(newest, DelEntry | PurgeEntry) and not any(
                isinstance(e, PutEntry | TrashEntry) and e.version < newest.version
                for e in items):
            continue
        needed.add(newest.version)
    return needed
