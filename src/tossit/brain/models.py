"""The metadata schema (SQLAlchemy 2 declarative). Alembic migrations in
``migrations/`` create and evolve it; this module is their source of truth.

Times are stored as float seconds since the epoch: identical on SQLite and
PostgreSQL, cheap to compare, and turned into ISO 8601 at the API edge.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Bucket(Base):
    __tablename__ = "buckets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    created_at: Mapped[float] = mapped_column(Float)
    # Deleted over S3 (the row stays: the manifest log and the trash refer to it);
    # creating the name again clears it.
    deleted_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class Object(Base):
    """A stored file: an ordered list of chunks under (bucket, key)."""

    __tablename__ = "objects"
    # sqlite_autoincrement: never hand a deleted file's id to a new file.
    __table_args__ = (
        UniqueConstraint("bucket_id", "key", name="uq_objects_bucket_key"),
        # The files browser's sorts: a page deep in 100,000 files is read from
        # the index alone (tossit.brain.store.Store.list_objects).
        Index("ix_objects_bucket_created", "bucket_id", "created_at", "id"),
        Index("ix_objects_bucket_size", "bucket_id", "size", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    bucket_id: Mapped[int] = mapped_column(ForeignKey("buckets.id"))
    # Byte order (S3 lists keys in UTF-8 byte order): SQLite's default; the "C"
    # collation on PostgreSQL, so the (bucket_id, key) index serves S3 listings.
    key: Mapped[str] = mapped_column(
        String(1024).with_variant(String(1024, collation="C"), "postgresql"))
    size: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    etag: Mapped[str | None] = mapped_column(String(80), nullable=True)
    chunk_size: Mapped[int] = mapped_column(Integer)
    chunk_count: Mapped[int] = mapped_column(Integer)
    user_meta: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[float] = mapped_column(Float, index=True)


class ObjectChunk(Base):
    """Position ``seq`` of an object is chunk ``chunk_id``."""

    __tablename__ = "object_chunks"

    object_id: Mapped[int] = mapped_column(
        ForeignKey("objects.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    chunk_id: Mapped[str] = mapped_column(ForeignKey("chunks.id"), index=True)
    size: Mapped[int] = mapped_column(Integer)


class TrashedObject(Base):
    """A file in the trash (deleted or overwritten while ``trash_keep`` > 0): the
    object row as it was, moved here so that its name is free, with its chunk
    list in ``trash_chunks``. Its chunks keep their references (the collector
    leaves them) until it is purged: by hand, by emptying the trash, or at
    ``purge_at``. ``id`` is the object's id, kept: a restored file has it again."""

    __tablename__ = "trash"
    __table_args__ = (Index("ix_trash_deleted", "deleted_at", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    bucket_id: Mapped[int] = mapped_column(ForeignKey("buckets.id"))
    key: Mapped[str] = mapped_column(String(1024))
    size: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    etag: Mapped[str | None] = mapped_column(String(80), nullable=True)
    chunk_size: Mapped[int] = mapped_column(Integer)
    chunk_count: Mapped[int] = mapped_column(Integer)
    user_meta: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    deleted_at: Mapped[float] = mapped_column(Float)
    purge_at: Mapped[float] = mapped_column(Float, index=True)
    why: Mapped[str] = mapped_column(String(16))  # deleted, overwritten


class TrashChunk(Base):
    """Position ``seq`` of a file in the trash is chunk ``chunk_id``."""

    __tablename__ = "trash_chunks"

    trash_id: Mapped[int] = mapped_column(
        ForeignKey("trash.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    chunk_id: Mapped[str] = mapped_column(ForeignKey("chunks.id"), index=True)
    size: Mapped[int] = mapped_column(Integer)


class MultipartUpload(Base):
    """An S3 multipart upload in progress: the object it will become, once
    completed. Its parts hold references on their chunks (``multipart_part_chunks``)
    so the collector leaves them; completing, aborting or expiring it (after
    ``multipart_keep``) drops the row, its parts and their references."""

    __tablename__ = "multipart_uploads"
    __table_args__ = (
        # ListMultipartUploads: by key then upload id, within a bucket.
        Index("ix_multipart_uploads_listing", "bucket_id", "key", "id"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    bucket_id: Mapped[int] = mapped_column(ForeignKey("buckets.id"))
    key: Mapped[str] = mapped_column(String(1024))
    content_type: Mapped[str] = mapped_column(String(255))
    user_meta: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[float] = mapped_column(Float, index=True)


class MultipartPart(Base):
    """One uploaded part; a part uploaded again under its number replaces the row."""

    __tablename__ = "multipart_parts"

    upload_id: Mapped[str] = mapped_column(
        ForeignKey("multipart_uploads.id", ondelete="CASCADE"), primary_key=True)
    part_number: Mapped[int] = mapped_column(Integer, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    md5: Mapped[str] = mapped_column(String(32))  # hex: the part's ETag, unquoted
    uploaded_at: Mapped[float] = mapped_column(Float)


class MultipartPartChunk(Base):
    """Position ``seq`` of a part is chunk ``chunk_id``: a counted reference,
    like an object's (``Chunk.refcount``)."""

    __tablename__ = "multipart_part_chunks"

    upload_id: Mapped[str] = mapped_column(
        ForeignKey("multipart_uploads.id", ondelete="CASCADE"), primary_key=True)
    part_number: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    chunk_id: Mapped[str] = mapped_column(ForeignKey("chunks.id"), index=True)
    size: Mapped[int] = mapped_column(Integer)


class Chunk(Base):
    """Unique content: one row per distinct SHA-256, shared by every object using it.

    ``refcount`` counts the positions that use it (of objects, of files in the
    trash, of parts of multipart uploads in progress); at 0 the chunk is garbage
    and the collector frees its replicas, then the row.
    """

    __tablename__ = "chunks"
    __table_args__ = (Index("ix_chunks_refcount_zero", "refcount"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    refcount: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Float)
    # data: a piece of files; meta: a pack of manifest entries (tossit.manifests),
    # whose refcount is the number of its entries still needed.
    kind: Mapped[str] = mapped_column(String(8), default="data", server_default="data")


class ManifestEntry(Base):
    """One entry of the manifest log (tossit.manifests): a file committed (put),
    deleted (del), moved to the trash (trash) or out of it (purge), or an API
    key's state (key). ``version`` orders every change
    of the cluster. ``pack`` is the pack on the nodes that holds the entry (NULL
    until written: the brain writes those at start and retries them); the row
    goes when its pack is dropped. ``needed``: the nodes must keep it for a rebuild (the
    newest entry of its name, see ``tossit.manifests.needed_versions``)."""

    __tablename__ = "manifest_log"
    __table_args__ = (
        Index("ix_manifest_log_scope", "bucket_id", "key", "version"),
        {"sqlite_autoincrement": True},
    )

    version: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    op: Mapped[str] = mapped_column(String(8))
    bucket_id: Mapped[int | None] = mapped_column(ForeignKey("buckets.id"), nullable=True)
    key: Mapped[str] = mapped_column(String(1024))  # file name, or API key id
    object_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    needed: Mapped[bool] = mapped_column(Boolean)
    # The pack's chunk row appears once the pack is on the nodes (Store.drop_unreferenced
    # removes the entries of a pack it drops).
    pack: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    created_at: Mapped[float] = mapped_column(Float)


class ChunkIntent(Base):
    """A blob this brain asked nodes to store that no committed file may use yet:
    the orphan sweep's positive knowledge. A copy the metadata does not know is
    deleted only if its id is here (a failed or interrupted upload's chunk, a
    pack); any other unknown copy is kept and counted, never taken for garbage
    on mere absence from the metadata (an empty or old database would delete
    the cluster). Rows expire after ``intent_keep``; those of chunks that
    committed go sooner."""

    __tablename__ = "chunk_intents"
    __table_args__ = (Index("ix_chunk_intents_at", "at"),)

    chunk_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    at: Mapped[float] = mapped_column(Float)


class ClusterState(Base):
    """Facts the brain keeps about itself: the last metadata snapshot, the last
    fire drill, when the metadata was rebuilt from the nodes."""

    __tablename__ = "cluster_state"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[float] = mapped_column(Float)


class BrainRow(Base):
    """A brain serving this metadata (several on PostgreSQL): where it answers, and
    whether it leads (runs the background loops and commits). Each brain renews
    its row every few seconds; the others send changes to the leader's URL."""

    __tablename__ = "brains"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    url: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))  # leader, follower, stopped
    version: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[float] = mapped_column(Float)
    last_seen: Mapped[float] = mapped_column(Float)


class PackOutbox(Base):
    """A pack committed in the metadata but not yet confirmed on the nodes, with
    its bytes, so that it is written again, identical, after a crash or while
    too few nodes take it."""

    __tablename__ = "pack_outbox"

    pack_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    # The oldest change in it: garbage a commit up to this version made must stay
    # on the nodes until the pack is out (Collector).
    first_version: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                               index=True)
    created_at: Mapped[float] = mapped_column(Float)


class Replica(Base):
    """A copy of a chunk on a node. ``state``: ok, corrupt, missing."""

    __tablename__ = "replicas"

    chunk_id: Mapped[str] = mapped_column(
        ForeignKey("chunks.id", ondelete="CASCADE"), primary_key=True
    )
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"), primary_key=True, index=True)
    state: Mapped[str] = mapped_column(String(16), default="ok")
    updated_at: Mapped[float] = mapped_column(Float)


class Node(Base):
    """A storage node as last reported. ``state`` is one of online, suspect,
    offline, dead, draining, drained (the last three used by the healing work)."""

    __tablename__ = "nodes"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    address: Mapped[str] = mapped_column(String(255))
    zone: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    admin_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    capacity: Mapped[int] = mapped_column(BigInteger)
    used: Mapped[int] = mapped_column(BigInteger)
    free: Mapped[int] = mapped_column(BigInteger)
    disk_total: Mapped[int] = mapped_column(BigInteger)
    disk_free: Mapped[int] = mapped_column(BigInteger)
    chunk_count: Mapped[int] = mapped_column(BigInteger)
    load: Mapped[float] = mapped_column(Float, default=0.0)
    latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    version: Mapped[str] = mapped_column(String(32))
    registered_at: Mapped[float] = mapped_column(Float)
    last_heartbeat: Mapped[float] = mapped_column(Float)
    # Kept so that follower brains see them too (the leader's registry has them).
    disk_id: Mapped[str | None] = mapped_column(String(300), nullable=True)
    write_error: Mapped[str | None] = mapped_column(String(500), nullable=True)


class Event(Base):
    """A plain-words record of what the cluster did and why.

    A failure that repeats (every repair pass, say) is one row, not one per
    pass: ``count`` says how often it happened, ``first_at`` when it began and
    ``ts`` when it was last seen (see ``Store.add_event``'s ``repeat_key``)."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ts: Mapped[float] = mapped_column(Float, index=True)  # the last time it happened
    kind: Mapped[str] = mapped_column(String(48), index=True)
    severity: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    node_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    count: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    first_at: Mapped[float | None] = mapped_column(Float, nullable=True)  # None: = ts
    repeat_key: Mapped[str | None] = mapped_column(String(128), nullable=True)


class ApiKey(Base):
    """A user's API key. The secret is not stored: only its SHA-256 (to check a
    bearer token) and the salt that, with the brain's master key, re-derives it
    for S3 signatures (see tossit.auth.keys)."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    secret_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    salt: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class WebSession(Base):
    """A dashboard sign-in. The browser holds a random token in an HttpOnly
    cookie; only its SHA-256 is stored, with the hash of the key it was made
    with, so revoking or expiring that key ends the session too."""

    __tablename__ = "web_sessions"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_sha256: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float, index=True)


class JoinTokenRow(Base):
    """A join token (``tossit join-token create``). Like an API key's, its secret
    is not stored: the salt and the brain's master key re-derive it (the brain
    needs it to check the node's proof and to seal the cluster secret), and its
    SHA-256 tells whether the master key is still the one it was made with."""

    __tablename__ = "join_tokens"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    salt: Mapped[str] = mapped_column(String(64))
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[float] = mapped_column(Float)
    max_uses: Mapped[int] = mapped_column(Integer)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    used_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    used_by: Mapped[str | None] = mapped_column(String(64), nullable=True)  # node id
    used_by_name: Mapped[str | None] = mapped_column(String(128), nullable=True)
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)
