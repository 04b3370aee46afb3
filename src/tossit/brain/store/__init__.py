"""The metadata store: every read and write of the brain's database.

Handlers and loops call these methods and never build SQL themselves, so the
transaction boundaries (an object appears complete or not at all; a delete
and its reference-count updates are one commit) live in one place. The store
is one object (``Store``) built from one part per concern, each in its module:

* ``base``: the engine, transactions, buckets, and the value types;
* ``buckets``: buckets as S3 makes, lists and deletes them;
* ``objects``: group commit's transaction (uploads, deletes, names, the
  manifest log, moves to the trash) and reference counting;
* ``trash``: listing, restoring and purging the trash;
* ``reads``: one file and its chunk map, listings, folders;
* ``sqlite_reads``: the download path's read, straight from SQLite's file;
* ``replicas``: chunks and their copies, garbage;
* ``nodes``: nodes and cluster state rows;
* ``events``: the event log;
* ``stats``: the counts ``tossit status`` shows;
* ``uploads``: S3 multipart uploads in progress and their parts.
"""

from __future__ import annotations

from tossit.brain.store.base import (
    DEFAULT_BUCKET,
    Applied,
    ChunkPlacement,
    NewEvent,
    NewObject,
    ReplaceOnly,
    Restored,
)
from tossit.brain.store.buckets import BucketStore
from tossit.brain.store.events import EventStore
from tossit.brain.store.nodes import NodeStore
from tossit.brain.store.reads import Folder, ObjectReads, prefix_end, sort_folders
from tossit.brain.store.replicas import ReplicaStore
from tossit.brain.store.stats import StatsStore
from tossit.brain.store.trash import TrashStore
from tossit.brain.store.uploads import UploadStore
from tossit.errors import NameTaken, TrashNotFound

__all__ = ["DEFAULT_BUCKET", "Applied", "ChunkPlacement", "Folder", "NameTaken", "NewEvent",
           "NewObject", "ReplaceOnly", "Restored", "Store", "TrashNotFound", "prefix_end",
           "sort_folders"]


class Store(TrashStore, ObjectReads, BucketStore, ReplicaStore, NodeStore, EventStore,
            StatsStore, UploadStore):
    """The brain's metadata, all of it (see the module's parts)."""
