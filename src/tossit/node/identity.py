"""A node's persistent identity, kept in its data dir.

The id survives restarts (so the brain knows it is the same node holding the
same chunks) and is never derived from the address, which may change.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path


def load_or_create(data_dir: Path) -> str:
    path = data_dir / "node.json"
    if path.exists():
        doc = json.loads(path.read_text())
        node_id = str(doc["id"])
        if not node_id:
            raise ValueError(f"{path} has an empty id")
        return node_id
    data_dir.mkdir(parents=True, exist_ok=True)
    node_id = uuid.uuid4().hex[:16]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"id": node_id, "created": datetime.now(UTC).isoformat()}))
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return node_id
