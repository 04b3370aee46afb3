"""The brain's REST API answers as pydantic models: the one definition that the
routes declare (``response_model``, so ``/openapi.json`` documents every body
and the fuzzer checks them) and that the Python client parses answers into
(``tossit.client.sdk``).

Field values are the JSON the routes send: times are ISO 8601 strings, sizes
are bytes, durations seconds, states the ``StrEnum`` words of
``tossit.brain.states``.
"""

from tossit.brain.api.wire.access import JoinToken, JoinTokenCreated, Key, KeyCreated
from tossit.brain.api.wire.base import Wire
from tossit.brain.api.wire.cluster import (
    DrillResult,
    Event,
    GcPass,
    Health,
    MonitorPass,
    Readiness,
    RepairPass,
    ScrubDone,
    ScrubPass,
    ScrubRateSet,
    ScrubRow,
    ScrubStatus,
    ScrubSummary,
    Snapshot,
    Status,
    TrashTotals,
    Unhealthy,
)
from tossit.brain.api.wire.files import (
    BucketEntry,
    ChunkEntry,
    FileDeleted,
    FileInfo,
    FileMeta,
    FileRestored,
    FolderEntry,
    ListingEntry,
    Replication,
    TrashedFile,
    TrashEmptied,
    TrashPage,
    TrashPurged,
    UploadedFile,
)
from tossit.brain.api.wire.nodes import (
    HeartbeatAnswer,
    Joined,
    Node,
    NodeImpact,
    NodeRemoved,
    Registered,
)
from tossit.brain.api.wire.uploads import (
    CompletedUpload,
    CompleteUpload,
    PartRef,
    UploadAborted,
    UploadList,
    UploadPart,
    UploadParts,
    UploadStarted,
)
from tossit.errors import ErrorBody

__all__ = [
    "BucketEntry", "ChunkEntry", "CompleteUpload", "CompletedUpload", "DrillResult",
    "ErrorBody", "Event",
    "FileDeleted", "FileInfo", "FileMeta", "FileRestored", "FolderEntry", "GcPass",
    "Health", "HeartbeatAnswer", "JoinToken", "JoinTokenCreated", "Joined", "Key",
    "KeyCreated", "ListingEntry", "MonitorPass", "Node", "NodeImpact", "NodeRemoved",
    "PartRef", "Readiness", "Registered", "RepairPass", "Replication", "ScrubDone",
    "ScrubPass", "ScrubRateSet", "ScrubRow", "ScrubStatus", "ScrubSummary", "Snapshot",
    "Status", "TrashEmptied", "TrashPage", "TrashPurged", "TrashTotals", "TrashedFile",
    "Unhealthy", "UploadAborted", "UploadList", "UploadPart", "UploadParts",
    "UploadStarted", "UploadedFile", "Wire",
]
