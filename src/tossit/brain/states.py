"""The words the brain's state machines and its event log use, in one place.

Each is a ``StrEnum``: a member *is* its string (stored in the database, sent
in JSON, compared with plain strings), so a typo is a type error instead of a
state that silently never matches, and a reader finds every state and every
event kind here rather than across a dozen modules.
"""

from __future__ import annotations

from enum import StrEnum


class NodeState(StrEnum):
    """A node's health, from its heartbeats (``tossit.brain.monitor``)."""

    ONLINE = "online"
    SUSPECT = "suspect"  # a few heartbeats missed
    OFFLINE = "offline"  # silent: its copies still count, for dead_after
    DEAD = "dead"  # silent for dead_after: its copies are re-made elsewhere
    # Heartbeats arrive, but the brain cannot reach the address the node gave (no
    # --advertise-url, an unresolvable name): nothing is read from or written to it.
    UNREACHABLE = "unreachable"


class AdminState(StrEnum):
    """What an administrator asked of a node, on top of its health."""

    DRAINING = "draining"  # its copies are being moved off
    DRAINED = "drained"  # it holds none: it can be removed


# Health states whose copies can be read. Draining is an admin state on top of
# these (a draining node that answers is read from until it is drained).
READABLE_STATES = (NodeState.ONLINE, NodeState.SUSPECT)


class EventKind(StrEnum):
    """Every kind of event in the activity log (docs/api.md says when each is
    written; tests check that it lists them all)."""

    BRAIN_STARTED = "brain_started"
    BRAIN_LEADER = "brain_leader"
    NODE_JOINED = "node_joined"
    NODE_CHANGED = "node_changed"
    NODE_ONLINE = "node_online"
    NODE_SUSPECT = "node_suspect"
    NODE_OFFLINE = "node_offline"
    NODE_DEAD = "node_dead"
    NODE_UNREACHABLE = "node_unreachable"
    NODE_DISK_ERROR = "node_disk_error"
    NODE_DISK_OK = "node_disk_ok"
    NODE_REFUSED = "node_refused"
    NODE_DRAINING = "node_draining"
    NODE_DRAINED = "node_drained"
    NODE_UNDRAINED = "node_undrained"
    DRAIN_WAITING = "drain_waiting"
    NODE_REMOVED = "node_removed"
    REPLICA_CORRUPT = "replica_corrupt"
    REPLICA_MISSING = "replica_missing"
    REPAIR = "repair"
    REBALANCE = "rebalance"
    REPAIR_FAILED = "repair_failed"
    REPAIR_STUCK = "repair_stuck"
    REPAIR_RESUMED = "repair_resumed"
    CHUNKS_UNAVAILABLE = "chunks_unavailable"
    GC = "gc"
    GC_CAPPED = "gc_capped"
    SCRUB = "scrub"
    KEY_CREATED = "key_created"
    KEY_REVOKED = "key_revoked"
    SIGNED_IN = "signed_in"
    SIGN_IN_FAILED = "sign_in_failed"
    KEY_REFUSED = "key_refused"
    JOIN_TOKEN_CREATED = "join_token_created"
    JOIN_TOKEN_REVOKED = "join_token_revoked"
    JOIN_REFUSED = "join_refused"
    NODE_JOIN_TOKEN = "node_join_token"
    FILES_UPLOADED = "files_uploaded"
    FILES_DELETED = "files_deleted"
    DRILL = "drill"
    METADATA_REBUILT = "metadata_rebuilt"
    METADATA_BEHIND = "metadata_behind"
    NEEDS_RECOVERY = "needs_recovery"
    MANIFESTS_RESIGNED = "manifests_resigned"
    MANIFESTS_REWRITTEN = "manifests_rewritten"
    TRASH_MOVED = "trash_moved"
    TRASH_RESTORED = "trash_restored"
    TRASH_PURGED = "trash_purged"
    TRASH_EXPIRED = "trash_expired"
    TRASH_EMPTIED = "trash_emptied"
    UPLOADS_EXPIRED = "uploads_expired"


class ReplicationState(StrEnum):
    """A file's copies as its listing shows them: every chunk at the target,
    some chunk short of it, or some chunk with no readable copy at all."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNAVAILABLE = "unavailable"


class KeyState(StrEnum):
    """An API key as listed: usable, past its expiry, or revoked."""

    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"


class JoinTokenState(StrEnum):
    """A join token as listed (``tossit.brain.jointokens.JoinTokenInfo.state``)."""

    ACTIVE = "active"
    USED = "used"
    EXPIRED = "expired"
    REVOKED = "revoked"
