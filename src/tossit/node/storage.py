"""Chunks on a node's local disk.

Layout under the node's data dir::

    node.json           persistent identity (see identity.py)
    chunks/abc/<id>     a chunk's bytes, named by its SHA-256; 4096 fan-out dirs
    tmp/                partial writes; emptied at start

A write goes to ``tmp/``, is hashed, fsynced, renamed into place and the fan-out
directory is fsynced: only then is it acknowledged, so an acked chunk survives a
power cut and a crash never leaves a half-written file under its final name.
All methods here are blocking; the node's HTTP handlers call them in threads.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tossit.chunking import is_chunk_id
from tossit.config import capacity_limit

FANOUT_CHARS = 3


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
    chunk_count: int

    @property
    def free(self) -> int:
        """What can still be written: below the limit and physically on the disk."""
        return max(0, min(self.limit - self.used, self.disk_free))


class ChunkStore:
    def __init__(self, root: Path, capacity: str = "50%") -> None:
        self.root = root
        self.chunks_dir = root / "chunks"
        self.tmp_dir = root / "tmp"
        self.capacity_spec = capacity
        self._lock = threading.Lock()
        self._used = 0
        self._count = 0
        self._reserved = 0

    # -- set-up -------------------------------------------------------------

    def open(self) -> None:
        """Create the layout, clear stale partial writes, count what is stored."""
        self.chunks_dir.mkdir(parents=True, exist_ok=True)
        if self.tmp_dir.exists():
            shutil.rmtree(self.tmp_dir)
        self.tmp_dir.mkdir()
        present = set(os.listdir(self.chunks_dir))
        for i in range(16**FANOUT_CHARS):
            name = f"{i:0{FANOUT_CHARS}x}"
            if name not in present:
                (self.chunks_dir / name).mkdir()
        _fsync_dir(self.chunks_dir)
        _fsync_dir(self.root)
        used = count = 0
        for _cid, size, _mtime in self.iter_chunks():
            used += size
            count += 1
        self._used, self._count = used, count

    # -- paths --------------------------------------------------------------

    def path_for(self, cid: str) -> Path:
        if not is_chunk_id(cid):
            raise BadChunkId(cid)
        return self.chunks_dir / cid[:FANOUT_CHARS] / cid

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
            limit=capacity_limit(self.capacity_spec, total),
            used=self._used,
            disk_total=total,
            disk_free=free,
            chunk_count=self._count,
        )

    # -- data ---------------------------------------------------------------

    def exists(self, cid: str) -> bool:
        return self.path_for(cid).exists()

    def write(self, cid: str, data: bytes | bytearray | memoryview, verify: bool = True) -> bool:
        """Store a chunk durably. Returns False if an intact copy was already there.

        An existing copy is re-hashed first: a corrupt one is replaced by these
        (verified) bytes instead of being reported as present. Raises
        HashMismatch when ``data`` is not the chunk ``cid`` and StorageFull when
        it does not fit under the limit.
        """
        final = self.path_for(cid)
        if verify and hashlib.sha256(data).hexdigest() != cid:
            raise HashMismatch(cid)
        repairing = final.exists()
        if repairing and self._intact(final, cid):
            return False
        size = len(data)
        with self._lock:
            u = self.usage()
            if u.used + self._reserved + size > u.limit or size + (1 << 20) > u.disk_free:
                raise StorageFull(
                    f"storage limit reached: {u.used} of {u.limit} bytes used"
                )
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
                    self._count += 1
                else:
                    self._used += size - old_size
            _fsync_dir(final.parent)
            return old_size is None or repairing
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                # The disk filled up under us (another program, a quota): answer as
                # a full node, and the brain puts the chunk elsewhere.
                raise StorageFull(f"the disk is full: {exc.strerror}") from None
            raise
        finally:
            with self._lock:
                self._reserved -= size
            tmp.unlink(missing_ok=True)

    def _intact(self, path: Path, cid: str) -> bool:
        try:
            with open(path, "rb") as fh:
                return hashlib.sha256(fh.read()).hexdigest() == cid
        except FileNotFoundError:
            return False

    def verify(self, cid: str) -> bool | None:
        """Re-hash a stored chunk: True if intact, False if corrupt, None if absent."""
        path = self.path_for(cid)
        if not path.exists():
            return None
        return self._intact(path, cid)

    def quarantine(self, cid: str, keep: int = 100) -> bool:
        """Move a corrupt chunk out of service into ``quarantine/`` (the newest
        ``keep`` are kept for inspection). It no longer counts as stored."""
        path = self.path_for(cid)
        qdir = self.root / "quarantine"
        qdir.mkdir(exist_ok=True)
        with self._lock:
            try:
                size = path.stat().st_size
                os.replace(path, qdir / f"{cid}.{int(time.time())}")
            except FileNotFoundError:
                return False
            self._used -= size
            self._count -= 1
        _fsync_dir(path.parent)
        old = sorted(qdir.iterdir(), key=lambda p: p.stat().st_mtime)[:-keep]
        for p in old:
            p.unlink(missing_ok=True)
        return True

    def read(self, cid: str) -> bytes:
        with open(self.path_for(cid), "rb") as fh:
            return fh.read()

    def delete(self, cid: str) -> bool:
        path = self.path_for(cid)
        with self._lock:
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                return False
            self._used -= size
            self._count -= 1
        _fsync_dir(path.parent)
        return True

    def iter_chunks(self) -> Iterator[tuple[str, int, float]]:
        """(id, size, mtime) of every stored chunk, in fan-out order."""
        for sub in sorted(os.scandir(self.chunks_dir), key=lambda e: e.name):
            if not sub.is_dir():
                continue
            for entry in os.scandir(sub.path):
                if is_chunk_id(entry.name):
                    st = entry.stat()
                    yield entry.name, st.st_size, st.st_mtime

    def inventory(self, after: str = "", limit: int = 10000) -> list[tuple[str, int, float]]:
        """A page of the inventory, ids sorted, starting after ``after``."""
        out: list[tuple[str, int, float]] = []
        start_dir = after[:FANOUT_CHARS] if after else ""
        for sub in sorted(os.listdir(self.chunks_dir)):
            if sub < start_dir:
                continue
            try:
                names = sorted(n for n in os.listdir(self.chunks_dir / sub) if is_chunk_id(n))
            except NotADirectoryError:  # a stray file beside the fan-out dirs
                continue
            for name in names:
                if name <= after:
                    continue
                try:
                    st = (self.chunks_dir / sub / name).stat()
                except FileNotFoundError:
                    continue
                out.append((name, st.st_size, st.st_mtime))
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
