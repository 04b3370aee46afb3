"""One process per data dir: an exclusive ``flock`` on a file in it.

Two brains on one database, or two nodes on one chunk folder, would each
believe their view of it: the node counts, the deletes, the identity. The kernel
releases a ``flock`` however its holder dies (no stale lock to clean up after a
crash), and the holder's pid is written inside, for the refusal to name it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class Held(Exception):
    """Another live process holds the lock; ``pid`` as it wrote it ("?" unknown)."""

    def __init__(self, pid: str) -> None:
        super().__init__(pid)
        self.pid = pid


def take(lock: Path) -> int:
    """Lock ``lock`` for this process and return the fd, which holds the lock
    until it is closed (or the process ends); raise ``Held`` if another has it."""
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        writable = True
    except OSError:
        # A disk that refuses writes (read-only): an existing lock file still
        # locks, read-only; the pid is not written (other errors go to the caller).
        fd = os.open(lock, os.O_RDONLY)
        writable = False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise Held(pid) from None
    if writable:
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass  # (a full disk: the lock holds all the same)
    return fd
