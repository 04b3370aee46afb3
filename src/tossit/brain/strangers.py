"""When this brain's metadata may not be the cluster's: never delete, say so.

A brain started on an empty database (a lost disk, a wrong path, a fresh install
given the old secret) or on an old backup sees the nodes' chunks as things it has
never heard of. Taking them for garbage would delete the cluster. Three signs
that the metadata is not the cluster's, each checked with positive evidence:

* a node remembers another cluster id than this brain's: it is refused at the
  door (``cluster_refusal``), and nothing of it is touched;
* a node's inventory is mostly blobs this metadata has never heard of: a
  *stranger* (``is_stranger``), kept as it is;
* a node holds manifest packs with changes newer than any this brain made: the
  metadata is behind (set by the collector, which reads the packs).

Any of the last two stops every deletion until a restart (after ``tossit
recover``, or with the right database); all three raise the "needs recovery"
alarm in the status, the dashboard and the log. The rules here are pure, so the
thresholds are table-tested without servers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

# A node is a stranger when at least this share of its blobs is unknown, and at
# least STRANGER_MIN of them (a new node with a few leftovers of a failed upload
# is not one).
STRANGER_SHARE = 0.5
STRANGER_MIN = 16
RECOVER_HINT = ("if this brain's database is new, lost or restored from an old backup, "
                "stop it and run 'tossit recover' (docs/operations.md)")


def cluster_refusal(ours: str | None, theirs: str | None, adopt: str | None = None) -> str | None:
    """Why a node that remembers cluster ``theirs`` may not join this brain's
    cluster ``ours`` (None: it may). A node that never joined a cluster (no id)
    joins any; one that names this brain's id in ``adopt`` (the operator's
    explicit ``--adopt-cluster``) moves over."""
    if ours is None or theirs is None or theirs == ours or adopt == ours:
        return None
    return (f"this node belongs to cluster {theirs}, but this brain's metadata is cluster "
            f"{ours}: {RECOVER_HINT}; to move the node to cluster {ours} on purpose, start "
            f"it with --adopt-cluster {ours}")


def is_stranger(total: int, unknown: int) -> bool:
    """Is a node whose inventory holds ``unknown`` of ``total`` blobs the metadata
    has never heard of a stranger (its data belongs to metadata this brain lacks)?"""
    return unknown >= STRANGER_MIN and unknown >= STRANGER_SHARE * total


@dataclass
class Suspect:
    """A node the alarm is about."""

    name: str
    reason: str
    at: float = field(default_factory=time.time)


@dataclass
class RecoveryAlarm:
    """What this brain has seen that says its metadata may not be the cluster's."""

    refused: dict[str, Suspect] = field(default_factory=dict)  # other cluster id
    strangers: dict[str, Suspect] = field(default_factory=dict)  # inventory unknown
    behind: str | None = None  # manifest packs newer than the metadata
    # Nodes whose inventory the last sweep found this metadata's own.
    vouched: set[str] = field(default_factory=set)

    def may_learn_cluster(self, node_id: str, blobs: int) -> bool:
        """May a node with no cluster id yet (new, or from before ids) take this
        brain's? An empty one may; one holding ``blobs`` only once a sweep found
        its data known here. A stranger must not: if the real database comes
        back, it must still be able to join it."""
        return blobs == 0 or node_id in self.vouched

    @property
    def blocks_deletion(self) -> bool:
        """Refused nodes never got in; strangers and newer packs mean what looks
        like garbage here may be what the real metadata uses."""
        return bool(self.strangers) or self.behind is not None

    def message(self) -> str | None:
        """The alarm in one paragraph for people (None: nothing seen)."""
        parts: list[str] = []
        if self.behind:
            parts.append(self.behind)
        if self.strangers:
            names = ", ".join(sorted(s.name for s in self.strangers.values()))
            parts.append(f"{names} "
                         f"{'holds' if len(self.strangers) == 1 else 'hold'} mostly data this "
                         "brain's metadata has never heard of; nothing is deleted anywhere "
                         f"until this is sorted out: {RECOVER_HINT}")
        if self.refused:
            names = ", ".join(sorted(s.name for s in self.refused.values()))
            parts.append(f"{names} refused: {next(iter(self.refused.values())).reason}")
        return " ".join(parts) or None
