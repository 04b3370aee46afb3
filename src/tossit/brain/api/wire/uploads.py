"""Resumable uploads: a big file sent in numbered parts, several at once, that a
client can pick up again after an interruption (``/api/uploads``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from tossit.brain.api.wire.base import Bytes, Timestamp, Wire
from tossit.brain.api.wire.files import UploadedFile

MAX_PARTS = 10_000


class UploadStarted(Wire):
    """An upload in progress: nothing is visible under ``name`` until it completes."""

    id: str = Field(description="the upload's id, for its parts, completion and abort")
    name: str = Field(description="the file's name once completed")
    content_type: str
    created: Timestamp


class UploadPart(Wire):
    """A part the brain holds: its number, size and the MD5 of its bytes, which a
    client compares with its own file's bytes before deciding to send it again."""

    number: int = Field(ge=1, le=MAX_PARTS)
    size: Bytes
    md5: str = Field(description="MD5 of the part's bytes, hex")
    uploaded: Timestamp


class UploadParts(Wire):
    """A page of an upload's parts, by number (``after`` = ``next_after`` for more)."""

    upload: UploadStarted
    parts: list[UploadPart]
    truncated: bool = Field(description="more parts follow this page")
    next_after: int = Field(description="the last part number listed")


class UploadList(Wire):
    """A page of the uploads in progress, by name then age."""

    uploads: list[UploadStarted]
    truncated: bool = Field(description="more uploads follow this page")
    next_name: str = Field(description="with next_id, where the next page starts")
    next_id: str


class PartRef(BaseModel):
    """A part to assemble: its number and the MD5 the brain gave for it."""

    model_config = ConfigDict(extra="forbid")
    number: int = Field(ge=1, le=MAX_PARTS)
    md5: str = Field(pattern="^[0-9a-fA-F]{32}$", description="MD5 of the part's bytes, hex")


class CompleteUpload(BaseModel):
    """The body of a completion: the parts that make the file, in ascending order."""

    model_config = ConfigDict(extra="forbid")
    parts: list[PartRef] = Field(min_length=1, max_length=MAX_PARTS)


class CompletedUpload(UploadedFile):
    """The file a completed upload made (201, ``Location: /api/files/{id}``)."""

    etag: str = Field(description="MD5 of the parts' MD5s, then '-' and the number of parts")


class UploadAborted(Wire):
    id: str
    aborted: bool = True
