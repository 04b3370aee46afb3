"""Secrets on disk: created with mode 0600 (never world-readable, not even for
an instant), written atomically, and read back with a clear error if missing."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

# In the brain's data dir:
ADMIN_KEY_FILE = "admin.key"  # the first admin key's secret (for the CLI on this machine)
CLUSTER_SECRET_FILE = "cluster.secret"  # shared with every node (--join-secret-file)
MASTER_KEY_FILE = "keys.master"  # derives user key secrets; never leaves the brain


class SecretFileError(Exception):
    """A secret file is missing, unreadable or empty."""


def write_secret(path: Path, text: str) -> None:
    """Atomically write ``text`` to ``path`` with mode 0600 (replacing it)."""
    write_atomic(path, text.strip() + "\n")


def write_atomic(path: Path, text: str, mode: int = 0o600,
                 owner: tuple[int, int] | None = None) -> None:
    """Write ``text`` to ``path`` atomically and durably (fsynced, then renamed
    over it, then the folder fsynced), with ``mode`` and ``owner`` set before any
    byte is in it: a file that may hold a secret is never readable by others,
    not even for an instant."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        if owner is not None:
            os.fchown(fd, *owner)
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_secret(path: Path) -> str:
    """The first non-comment line of a secret file."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise SecretFileError(f"{path} does not exist") from None
    except OSError as exc:
        raise SecretFileError(f"cannot read {path}: {exc.strerror}") from None
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            return line
    raise SecretFileError(f"{path} is empty")


def ensure_secret(path: Path, nbytes: int = 32) -> tuple[str, bool]:
    """Read the secret at ``path``, creating a random one first if there is none.

    Returns (secret, created)."""
    if path.exists():
        return read_secret(path), False
    value = secrets.token_urlsafe(nbytes)
    write_secret(path, value)
    return value, True
