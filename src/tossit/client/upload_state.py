"""The small file that lets an interrupted parted upload resume.

One per upload in progress, under ``$XDG_STATE_HOME/tossit/uploads/`` (else
``~/.local/state/tossit/uploads/``), named after the brain, bucket and name it
uploads to, so running the same ``tossit put`` again finds it. It records
the upload's id and the local file as it was (path, size, modification time):
a file changed since then starts a new upload, since parts already sent may
hold the old bytes anywhere. Which parts the brain has is never kept here:
the brain is asked (with each part's MD5), so the state cannot go stale.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class UploadState:
    upload_id: str
    brain_url: str
    bucket: str
    name: str
    path: str  # the local file, absolute
    size: int
    mtime_ns: int
    part_size: int

    def same_file(self, path: Path, size: int, mtime_ns: int) -> bool:
        """Is the local file the one this upload was started from, unchanged?"""
        return (self.path, self.size, self.mtime_ns) == (str(path), size, mtime_ns)


def state_dir(env: dict[str, str] | None = None) -> Path:
    """Where upload states live (the XDG base directory for state data)."""
    env = dict(os.environ) if env is None else env
    base = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME", "~")) / ".local" / "state")
    return Path(base).expanduser() / "tossit" / "uploads"


def state_path(folder: Path, brain_url: str, bucket: str, name: str) -> Path:
    """The state file of an upload to this brain, bucket and name."""
    digest = hashlib.sha256(f"{brain_url.rstrip('/')}\n{bucket}\n{name}".encode()).hexdigest()
    return folder / f"{digest[:32]}.json"


def load(path: Path) -> UploadState | None:
    """The state saved there, or None (absent, or unreadable: start over)."""
    try:
        return UploadState(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def save(path: Path, state: UploadState) -> None:
    """Write the state whole or not at all (a crash mid-write leaves the old one)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=1))
    os.replace(tmp, path)


def forget(path: Path) -> None:
    path.unlink(missing_ok=True)
