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

from tossit.auth.secretfile import CLUSTER_SECRET_FILE, read_secret, write_secret
from tossit.config import NodeSettings


class IdentityError(ValueError):
    """``node.json`` is damaged, or missing beside chunks: the node must not start."""


_RESTORE = ('restore it from a backup, or write {"id": "ID"} into it, with the id '
            "`tossit nodes` lists for this node")


def load_or_create(data_dir: Path) -> str:
    """This node's id; a new one for a new data dir.

    A data dir that holds chunks but no ``node.json`` is refused: started as a
    new node, it would register a second time with the same chunks, which the
    brain would count twice (and the old id would die and be repaired for
    nothing), and it would forget the cluster it belongs to."""
    path = data_dir / "node.json"
    if path.exists():
        try:
            doc = json.loads(path.read_text())
            node_id = str(doc["id"]) if isinstance(doc, dict) else ""
        except (OSError, ValueError, KeyError) as exc:
            raise IdentityError(f"{path} cannot be read ({exc or type(exc).__name__}): it "
                                "holds this node's identity; "
                                + _RESTORE) from None
        if not node_id:
            raise IdentityError(f"{path} has no id; " + _RESTORE)
        return node_id
    if _holds_blobs(data_dir):
        raise IdentityError(
            f"{data_dir} holds chunks but no node.json, which holds this node's identity: "
            "started as a new node it would register again with the same chunks; "
            + _RESTORE + ". To start afresh as a new node, move chunks/ and manifests/ away first")
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    node_id = uuid.uuid4().hex[:16]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"id": node_id, "created": datetime.now(UTC).isoformat()}))
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return node_id


def _holds_blobs(data_dir: Path) -> bool:
    """Any chunk or manifest pack stored under ``data_dir`` (stops at the first)."""
    for kind in ("chunks", "manifests"):
        try:
            with os.scandir(data_dir / kind) as fans:
                for fan in fans:
                    if fan.is_dir():
                        with os.scandir(fan.path) as blobs:
                            if any(b.is_file() for b in blobs):
                                return True
        except FileNotFoundError:
            continue
    return False


def record_address(data_dir: Path, name: str, address: str, zone: str) -> None:
    """Keep the node's name, address and zone in ``node.json`` beside its id, so
    that ``tossit recover --node-dir`` can name and reach it without its brain."""
    _update(data_dir, {"name": name, "address": address, "zone": zone})


def keep_recorded_names(settings: NodeSettings) -> list[str]:
    """The name and zone this node had, for those not given this time (flag,
    environment or config file). Restarted with other flags (another port, a
    unit file without ``--zone``), a node would otherwise rename itself to
    HOST-PORT or move to the zone "default", and placement would move its
    copies. Returns what was kept, in words, for the operator."""
    try:
        doc = json.loads((settings.data_dir / "node.json").read_text())
    except (OSError, ValueError):
        return []
    kept = []
    for field in ("name", "zone"):
        recorded = doc.get(field) if isinstance(doc, dict) else None
        if (field not in settings.model_fields_set and isinstance(recorded, str) and recorded
                and recorded != (settings.node_name() if field == "name" else settings.zone)):
            setattr(settings, field, recorded)
            kept.append(f"{field} {recorded!r}")
    return kept


def load_cluster(data_dir: Path) -> str | None:
    """The id of the cluster this node belongs to (None: it never joined one).

    A brain started on an empty or wrong database has another cluster id; a node
    that remembers its own refuses to join it, instead of handing it chunks that
    brain would take for garbage."""
    doc = json.loads((data_dir / "node.json").read_text())
    return str(doc["cluster"]) if doc.get("cluster") else None


def record_cluster(data_dir: Path, cluster_id: str) -> None:
    """Remember the cluster this node joined (fsynced before it is relied on)."""
    _update(data_dir, {"cluster": cluster_id})


def _update(data_dir: Path, fields: dict[str, str]) -> None:
    path = data_dir / "node.json"
    doc = json.loads(path.read_text())
    if all(doc.get(k) == v for k, v in fields.items()):
        return
    doc.update(fields)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_join_secret(settings: NodeSettings) -> str | None:
    """The cluster secret: ``join_secret``, else ``join_secret_file``, else the copy
    kept in the data dir from an earlier start (so a restart needs no flag).

    A secret given explicitly is saved there (mode 0600) for the next start."""
    kept = settings.data_dir / CLUSTER_SECRET_FILE
    given: str | None = None
    if settings.join_secret is not None:
        given = settings.join_secret.get_secret_value().strip()
    elif settings.join_secret_file is not None:
        given = read_secret(settings.join_secret_file)
    if given is None:
        return read_secret(kept) if kept.exists() else None
    if not given:
        raise ValueError("the join secret is empty")
    if not kept.exists() or read_secret(kept) != given:
        write_secret(kept, given)
    return given


def record_brains(data_dir: Path, urls: list[str]) -> None:
    """Remember the brains a join token named, so a restart needs no ``--brain``."""
    _update(data_dir, {"brains": ",".join(urls)})


def load_brains(data_dir: Path) -> list[str]:
    path = data_dir / "node.json"
    if not path.exists():
        return []
    doc = json.loads(path.read_text())
    return [u for u in str(doc.get("brains") or "").split(",") if u]


def record_joined(data_dir: Path, cluster_id: str) -> None:
    """Remember that a join token gave this node the secret of that cluster, so a
    start with the same token again needs no exchange."""
    _update(data_dir, {"joined": cluster_id})


def load_joined(data_dir: Path) -> str | None:
    path = data_dir / "node.json"
    if not path.exists():
        return None
    doc = json.loads(path.read_text())
    return str(doc["joined"]) if doc.get("joined") else None
