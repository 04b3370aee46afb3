"""The trash: list, restore, purge one, empty (``tossit.brain.trash``).

Roles: a ``readwrite`` key lists the trash and restores from it (it could have
deleted those files; bringing them back destroys nothing). Purging a file or
emptying the trash needs ``admin``: the trash is the safety net against a
readwrite key that deletes or overwrites what it should not (a script gone
wrong, a leaked key), so that key must not be able to cut the net too.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from tossit.auth.keys import Role
from tossit.brain.api.access import Access, who
from tossit.brain.api.common import brain_of, check_name, iso
from tossit.brain.api.wire.files import FileRestored, TrashEmptied, TrashPage, TrashPurged
from tossit.brain.models import TrashedObject
from tossit.errors import TrashNotFound, error_responses

router = APIRouter(tags=["trash"])
_ADMIN = [Depends(Access(Role.admin, read=Role.admin))]
TrashId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the file's id")]


def trash_json(t: TrashedObject) -> dict[str, Any]:
    return {
        "id": t.id, "bucket": None, "name": t.key, "size": t.size,
        "content_type": t.content_type, "sha256": t.sha256, "chunks": t.chunk_count,
        "created": iso(t.created_at), "deleted": iso(t.deleted_at),
        "purge_at": iso(t.purge_at), "why": t.why,
    }


@router.get("/api/trash", summary="Files in the trash, newest first", response_model=TrashPage)
async def list_trash(
    request: Request, response: Response,
    limit: int = Query(100, ge=1, le=10000), offset: int = Query(0, ge=0, le=10**9),
) -> dict[str, Any]:
    """Each file with when it was deleted (``why``: deleted, or overwritten by an
    upload of its name) and when it is purged; ``X-Total-Count`` has the total,
    ``bytes`` what the whole trash keeps stored."""
    brain = brain_of(request)
    rows, total = await brain.store.list_trash(limit, offset)
    _, size = await brain.store.trash_totals()
    response.headers["X-Total-Count"] = str(total)
    out = []
    for t in rows:
        body = trash_json(t)
        body["bucket"] = await brain.store.bucket_name(t.bucket_id)
        out.append(body)
    return {"files": out, "total": total, "bytes": size, "keep_s": brain.settings.trash_keep}


@router.post("/api/trash/{file_id}/restore", summary="Restore a file from the trash",
             response_model=FileRestored,
             responses=error_responses(400, 404, 409, 503, e409="the name is taken and "
                                       "on_conflict=fail"))
async def restore(
    file_id: TrashId, request: Request,
    name: str | None = Query(None, max_length=1024,
                             description="restore under this name (default: its own)"),
    on_conflict: Literal["fail", "rename", "replace"] = Query(
        "fail", description="when a file has that name now: fail with 409 name_taken "
        "(default), rename this one (\"name (2).ext\"), or replace that file (it goes to "
        "the trash)"),
) -> dict[str, Any]:
    """The file comes back with its id and bytes; the answer is its metadata."""
    brain = brain_of(request)
    key = check_name(name) if name is not None else None
    done = await brain.trash.restore(file_id, key, on_conflict, who(request))
    o = done.obj
    return {"id": o.id, "name": o.key, "size": o.size, "sha256": o.sha256,
            "content_type": o.content_type, "created": iso(o.created_at),
            "replaced": done.replaced}


@router.delete("/api/trash/{file_id}", summary="Delete a file from the trash for good",
               dependencies=_ADMIN, response_model=TrashPurged,
               responses=error_responses(404))
async def purge(file_id: TrashId, request: Request) -> dict[str, Any]:
    """Its chunks no other file uses are freed on the nodes. Needs an admin key."""
    brain = brain_of(request)
    found = await brain.trash.purge_one(file_id, who(request))
    if found is None:
        raise TrashNotFound(file_id)
    return {"id": file_id, "purged": True, "bytes": found.size}


@router.delete("/api/trash", summary="Empty the trash", dependencies=_ADMIN,
               response_model=TrashEmptied)
async def empty(request: Request) -> dict[str, Any]:
    """Every file in the trash is deleted for good. Needs an admin key."""
    brain = brain_of(request)
    return await brain.trash.empty(who(request))
