"""Files: upload results, metadata, chunk maps, listings with folders, deletes, trash."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from tossit.brain.api.wire.base import Bytes, Seconds, Timestamp, Wire
from tossit.brain.states import ReplicationState


class Replication(Wire):
    """How well a file's chunks are copied, counting the copies on readable nodes."""

    state: ReplicationState
    min_copies: int = Field(description="copies of the file's least copied chunk")
    target: int = Field(description="copies wanted of each chunk (the cluster's replicas)")
    under_replicated_chunks: int = Field(description="chunks with fewer copies than target")


class FileMeta(Wire):
    """One file, as listed and as ``GET /api/files/{id}`` answers."""

    id: int
    name: str = Field(description="the file's name (object key); '/' separates folders")
    size: Bytes
    content_type: str
    sha256: str = Field(description="SHA-256 of the whole file, hex")
    chunks: int = Field(description="how many chunks the file is split into")
    chunk_size: Bytes = Field(description="bytes per chunk (the last may be shorter)")
    replication: Replication
    created: Timestamp


class UploadedFile(FileMeta):
    """The answer to an upload (201, ``Location: /api/files/{id}``)."""

    bucket: str


class FolderEntry(Wire):
    """A folder in a ``delimiter=/`` listing: the files under it, at any depth."""

    type: Literal["folder"] = "folder"
    name: str = Field(description="the folder with its trailing '/', e.g. photos/2024/")
    files: int = Field(description="files under it, at any depth")
    size: Bytes = Field(description="their bytes together")
    created: Timestamp | None = Field(description="the newest upload under it")


class BucketEntry(Wire):
    """A bucket as ``GET /api/buckets`` lists it, for the dashboard's bucket choice."""

    name: str
    created: Timestamp | None = Field(description="when it was made (null only for 'default' "
                                      "while it is deleted over S3: it is listed anyway)")
    files: int = Field(description="files in it (the trash not counted)")
    bytes: Bytes = Field(description="their sizes together")


ListingEntry = Annotated[FolderEntry | FileMeta, Field(union_mode="left_to_right")]


class ChunkReplica(Wire):
    """One copy of a chunk: the node holding it and the copy's state."""

    id: str = Field(description="the node's id")
    name: str = Field(description="the node's name (its id once removed)")
    node_state: str = Field(description="the node's health (a NodeState), or 'unknown'")
    replica_state: str = Field(description="ok, corrupt or missing")


class ChunkEntry(Wire):
    index: int = Field(description="the chunk's place in the file, from 0")
    id: str = Field(description="the chunk's id (SHA-256 of its bytes, hex)")
    size: Bytes
    offset: Bytes = Field(description="where the chunk starts in the file")
    nodes: list[ChunkReplica]
    desired_nodes: list[str] = Field(description="the node ids placement wants it on")


class FileInfo(FileMeta):
    """A file with its chunk map (``GET /api/files/{id}/info``)."""

    chunk_map: list[ChunkEntry]


class FileDeleted(Wire):
    id: int
    deleted: bool
    trash: bool = Field(description="true: the file went to the trash (restorable)")


class TrashedFile(Wire):
    id: int = Field(description="the file's id (kept when it is restored)")
    bucket: str | None
    name: str
    size: Bytes
    content_type: str
    sha256: str
    chunks: int
    created: Timestamp
    deleted: Timestamp
    purge_at: Timestamp | None = Field(description="when it is deleted for good")
    why: str = Field(description="deleted, or overwritten by an upload of its name")


class TrashPage(Wire):
    files: list[TrashedFile]
    total: int = Field(description="files in the trash")
    bytes: Bytes = Field(description="what the whole trash keeps stored")
    keep_s: Seconds = Field(description="how long a file stays in the trash (0: no trash)")


class FileRestored(Wire):
    id: int
    name: str
    size: Bytes
    sha256: str
    content_type: str
    created: Timestamp
    replaced: int | None = Field(description="the id of the file that had the name and went "
                                 "to the trash (on_conflict=replace)")


class TrashPurged(Wire):
    id: int
    purged: bool
    bytes: Bytes


class TrashEmptied(Wire):
    purged: int = Field(description="files deleted for good")
    bytes: Bytes
