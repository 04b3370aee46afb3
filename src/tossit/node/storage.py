"""Chunks on a node's local disk.

Layout under the node's data dir::

    node.json           persistent identity (see identity.py)
    node.lock           held by the running node (tossit.dirlock): one per data dir
    chunks/abc/<id>     a chunk's bytes, named by its SHA-256; 4096 fan-out dirs
    manifests/abc/<id>  packs of the brain's file manifests (kind ``meta``, see
                        tossit.manifests), named by their own hash; the fan-out
                        dirs are made as needed
    tmp/                partial writes; emptied at start

Both kinds share one id space (their hashes are domain-separated, see
``tossit.chunking.content_id``), one capacity and the same durability rules;
reads and deletes find a blob whatever its kind. Manifests live apart so that
``tossit recover`` can find them without reading every chunk.

A write goes to ``tmp/``, is hashed, fsynced, renamed into place and the fan-out
directory is fsynced: only then is it acknowledged, so an acked chunk survives a
power cut and a crash never leaves a half-written file under its final name.
All methods here are blocking; the node's HTTP handlers call them in threads.

A stored blob the disk cannot give back (``UNREADABLE``: an I/O error, a
directory where the file should be) is damaged like one whose bytes fail their
hash: ``verify`` says corrupt and ``read`` raises ``Unreadable``, so the scrubber
and the brain's reads quarantine it and have it re-made, instead of taking the
error for a passing one. Other errors (permissions, too many open files) say
nothing about the bytes and are raised as they are.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tossit.chunking import DATA, KINDS, META, META_ROOM, content_id, is_chunk_id
from tossit.config import capacity_limit

FANOUT_CHARS = 3
# Errors reading a stored blob that mean it is damaged, not that the node is in trouble.
UNREADABLE = frozenset(
    {errno.EIO, errno.EISDIR, errno.EBADMSG, getattr(errno, "EUCLEAN", errno.EIO)})


class Unreadable(OSError):
    """A stored blob the disk cannot give back (see ``UNREADABLE``)."""


class StorageFull(Exception):
    """Writing this chunk would pass the node's storage limit."""


class HashMismatch(Exception):
    """The bytes received do not hash to the chunk id they were sent for."""


class BadChunkId(ValueError):
    pass


@dataclass(frozen=True)
class Usage:
    limit: int  # bytes this node may fill (its configured capacity)
    used: int  # bytes in chunk files
    disk_total: int
    disk_free: int
    chunk_count: int  # file chunks
    manifest_count: int = 0  # manifest packs (their bytes are in ``used``)

    @property
    def free(self) -> int:
        """What can still be written: below the limit and physically on the disk."""
        return max(0, min(self.limit - self.used, self.disk_free))


class ChunkStore:
    def __init__(self, root: Path, capacity: str = "50%") -> None:
        self.root = root
        self.chunks_dir = root / "chunks"
        self.meta_dir = root / "manifests"
        self.tmp_dir = root / "tmp"
        self.capacity_spec = capacity
        self._lock = threading.Lock()
        self._used = 0
        self._count: Counter[str] = Counter()  # blobs by kind
        self._reserved = 0
        # Why the disk refused the last write (None: the last write worked). The
        # heartbeat reports it, so that the brain stops placing copies here, and
        # ``check_writable`` tries the disk again before each report.
        self.write_error: str | None = None

    # -- set-up -------------------------------------------------------------

    def open(self) -> None:
        """Create the layout, clear stale partial writes, count what is stored.

        A disk that refuses writes (read-only after an error, full) does not keep
        the node from starting: what is stored can still be read, so the node
        starts with ``write_error`` set, and takes writes once the disk does."""
        try:
            self._prepare()
        except OSError as exc:
            if not self.chunks_dir.is_dir():
                raise  # nothing stored here to serve: a new node needs a working disk
            self.write_error = exc.strerror or str(exc)
        used, count = 0, Counter[str]()
        for _cid, size, _mtime, kind in self.iter_chunks():
            used += size
            count[kind] += 1
        self._used, self._count = used, count

    def _prepare(self) -> None:
        self.chunks_dir.mkdir(parents=True, exist_ok=True)
        if self.tmp_dir.exists() or self.tmp_dir.is_symlink():
            if self.tmp_dir.is_dir():
                shutil.rmtree(self.tmp_dir)
            else:
                self.tmp_dir.unlink()  # (something else took its name)
        self.tmp_dir.mkdir()
        present = set(os.listdir(self.chunks_dir))
        for i in range(16**FANOUT_CHARS):
            name = f"{i:0{FANOUT_CHARS}x}"
            if name not in present:
                (self.chunks_dir / name).mkdir()
        _fsync_dir(self.chunks_dir)
        self.meta_dir.mkdir(exist_ok=True)
        _fsync_dir(self.root)

    # -- paths --------------------------------------------------------------

    def path_for(self, cid: str, kind: str = DATA) -> Path:
        if not is_chunk_id(cid):
            raise BadChunkId(cid)
        if kind not in KINDS:
            raise ValueError(f"unknown blob kind {kind!r}")
        base = self.chunks_dir if kind == DATA else self.meta_dir
        return base / cid[:FANOUT_CHARS] / cid

    def locate(self, cid: str) -> tuple[Path, str] | None:
        """Where a blob is stored and its kind, whatever the kind; None if absent."""
        for kind in KINDS:
            path = self.path_for(cid, kind)
            if path.exists():
                return path, kind
        return None

    # -- usage --------------------------------------------------------------

    def disk_id(self) -> str:
        """Names the filesystem this node stores on, so the brain can tell when
        several nodes (``tossit up``) share one disk and not count it twice."""
        return f"{socket.gethostname()}:{os.stat(self.root).st_dev}"

    def usage(self) -> Usage:
        st = os.statvfs(self.root)
        total = st.f_blocks * st.f_frsize
        free = st.f_bavail * st.f_frsize
        return Usage(
            # A fixed capacity larger than the disk counts as the disk: placement
            # weighs nodes by it, and no node can hold more than its disk.
            limit=min(capacity_limit(self.capacity_spec, total), total),
            used=self._used,
            disk_total=total,
            disk_free=free,
            chunk_count=self._count[DATA],
            manifest_count=self._count[META],
        )

    # -- data ---------------------------------------------------------------

    def exists(self, cid: str) -> bool:
        return self.locate(cid) is not None

    def write(self, cid: str, data: bytes | bytearray | memoryview, verify: bool = True,
              kind: str = DATA) -> bool:
        """Store a blob durably. Returns False if an intact copy was already there.

        An existing copy is re-hashed first: a corrupt one is replaced by these
        (verified) bytes instead of being reported as present. Raises
        HashMismatch when ``data`` is not the blob ``cid`` of this kind and
        StorageFull when it does not fit under the limit.
        """
        final = self.path_for(cid, kind)
        if verify and content_id(data, kind) != cid:
            raise HashMismatch(cid)
        repairing = final.exists()
        if repairing and self._intact(final, cid, kind):
            return False
        if kind == META and not final.parent.is_dir():
            final.parent.mkdir(exist_ok=True)
            _fsync_dir(self.meta_dir)
        size = len(data)
        with self._lock:
            u = self.usage()
            # Manifest packs may use the room kept over the limit (META_ROOM).
            limit = u.limit + (META_ROOM if kind == META else 0)
            if size + (1 << 20) > u.disk_free:
                raise StorageFull(f"the disk is full: {u.disk_free} bytes free")
            if u.used + self._reserved + size > limit:
                raise StorageFull(f"storage limit reached: {u.used} of {u.limit} bytes used")
            self._reserved += size
        tmp = self.tmp_dir / f"{cid}.{uuid.uuid4().hex}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(data)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                os.fsync(fd)
            finally:
                os.close(fd)
            with self._lock:
                try:
                    old_size: int | None = final.stat().st_size
                except FileNotFoundError:
                    old_size = None
                os.replace(tmp, final)
                if old_size is None:
                    self._used += size
                    self._count[kind] += 1
                else:
                    self._used += size - old_size
            _fsync_dir(final.parent)
            self.write_error = None
            return old_size is None or repairing
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                # The disk filled up under us (another program, a quota): answer as
                # a full node, and the brain puts the chunk elsewhere.
                raise StorageFull(f"the disk is full: {exc.strerror}") from None
            self.write_error = exc.strerror or str(exc)
            raise
        finally:
            with self._lock:
                self._reserved -= size
            tmp.unlink(missing_ok=True)

    def check_writable(self) -> str | None:
        """After a refused write, try the disk again the way a chunk write uses it
        (a file written and fsynced in ``tmp/``, renamed into a fan-out folder,
        removed). Returns why it still cannot write (kept in ``write_error``), or
        None. Nothing to do while writes work."""
        if self.write_error is None:
            return None
        name = f"write-check.{uuid.uuid4().hex}"  # never a chunk id: listings skip it
        probe, placed = self.tmp_dir / name, self.chunks_dir / f"{0:0{FANOUT_CHARS}x}" / name
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, bytes(4096))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(probe, placed)
            _fsync_dir(placed.parent)
            placed.unlink()
        except OSError as exc:
            for leftover in (probe, placed):
                with contextlib.suppress(OSError):
                    leftover.unlink()
            self.write_error = exc.strerror or str(exc)
            return self.write_error
        self.write_error = None
        return None

    def _intact(self, path: Path, cid: str, kind: str = DATA) -> bool:
        try:
            with open(path, "rb") as fh:
                return content_id(fh.read(), kind) == cid
        except FileNotFoundError:
            return False
        except OSError as exc:
            if exc.errno in UNREADABLE:
                return False
            raise

    def verify(self, cid: str) -> bool | None:
        """Re-hash a stored blob: True if intact, False if corrupt, None if absent."""
        found = self.locate(cid)
        if found is None:
            return None
        return self._intact(found[0], cid, found[1])

    def quarantine(self, cid: str, keep: int = 100) -> bool:
        """Move a corrupt blob out of service into ``quarantine/`` (the newest
        ``keep`` are kept for inspection). It no longer counts as stored."""
        found = self.locate(cid)
        if found is None:
            return False
        path, kind = found
        qdir = self.root / "quarantine"
        qdir.mkdir(exist_ok=True)
        with self._lock:
            try:
                size = path.stat().st_size
                os.replace(path, qdir / f"{cid}.{int(time.time())}")
            except FileNotFoundError:
                return False
            self._used -= size
            self._count[kind] -= 1
        _fsync_dir(path.parent)
        old = sorted(qdir.iterdir(), key=lambda p: p.stat().st_mtime)[:-keep]
        for p in old:
            if p.is_dir():  # (what stood where a chunk file should have been)
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        return True

    def read(self, cid: str) -> bytes:
        """A blob's bytes, whatever its kind (FileNotFoundError if absent,
        ``Unreadable`` if the disk cannot give them back)."""
        try:
            try:
                with open(self.path_for(cid), "rb") as fh:
                    return fh.read()
            except FileNotFoundError:
                with open(self.path_for(cid, META), "rb") as fh:
                    return fh.read()
        except OSError as exc:
            if exc.errno in UNREADABLE:
                raise Unreadable(exc.errno, f"{exc.strerror} (chunk {cid})") from exc
            raise

    def delete(self, cid: str) -> bool:
        gone = self._unlink(cid)
        if gone is None:
            return False
        _fsync_dir(gone.parent)
        return True

    def delete_many(self, cids: list[str]) -> list[str]:
        """Delete blobs; returns the ids that were here. Each directory touched is
        fsynced once (a delete lost to a power cut only leaves an orphan, which the
        brain's sweep removes again)."""
        deleted: list[str] = []
        dirs: set[Path] = set()
        for cid in cids:
            gone = self._unlink(cid)
            if gone is not None:
                deleted.append(cid)
                dirs.add(gone.parent)
        for d in dirs:
            _fsync_dir(d)
        return deleted

    def _unlink(self, cid: str) -> Path | None:
        """Remove a blob's file and count it out; its path, or None if absent.
        The caller fsyncs the directory."""
        found = self.locate(cid)
        if found is None:
            return None
        path, kind = found
        with self._lock:
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                return None
            self._used -= size
            self._count[kind] -= 1
        return path

    def iter_chunks(self) -> Iterator[tuple[str, int, float, str]]:
        """(id, size, mtime, kind) of every stored blob, in fan-out order."""
        for kind, base in ((DATA, self.chunks_dir), (META, self.meta_dir)):
            if not base.is_dir():
                continue
            for sub in sorted(os.scandir(base), key=lambda e: e.name):
                if not sub.is_dir():
                    continue
                for entry in os.scandir(sub.path):
                    if is_chunk_id(entry.name):
                        st = entry.stat()
                        yield entry.name, st.st_size, st.st_mtime, kind

    def inventory(self, after: str = "", limit: int = 10000,
                  kinds: tuple[str, ...] = KINDS) -> list[tuple[str, int, float, str]]:
        """A page of the inventory: (id, size, mtime, kind) sorted by id, starting
        after ``after``; both kinds unless ``kinds`` says otherwise."""
        out: list[tuple[str, int, float, str]] = []
        start_dir = after[:FANOUT_CHARS] if after else ""
        bases = [(k, self.chunks_dir if k == DATA else self.meta_dir) for k in kinds]
        subs = sorted({sub for _, base in bases if base.is_dir()
                       for sub in os.listdir(base) if sub >= start_dir})
        for sub in subs:
            names: list[tuple[str, str]] = []
            for kind, base in bases:
                try:
                    names += [(n, kind) for n in os.listdir(base / sub) if is_chunk_id(n)]
                except (FileNotFoundError, NotADirectoryError):  # none yet, or a stray file
                    continue
            for name, kind in sorted(names):
                if name <= after:
                    continue
                try:
                    st = self.path_for(name, kind).stat()
                except FileNotFoundError:
                    continue
                out.append((name, st.st_size, st.st_mtime, kind))
                if len(out) >= limit:
                    return out
        return out


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def now() -> float:
    return time.time()
