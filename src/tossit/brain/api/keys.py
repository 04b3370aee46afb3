"""API keys: create (admin), list (admin), revoke (admin), and "who am I"."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tossit.auth.keys import KEY_ID_PATTERN, Role
from tossit.brain.api.access import Access, authenticate, who
from tossit.brain.api.common import before_body, brain_of, iso
from tossit.brain.api.wire.access import Key, KeyCreated
from tossit.brain.keys import KeyInfo, KeyNotFound, LastAdminKey
from tossit.brain.states import EventKind
from tossit.errors import ApiError, error_responses
from tossit.names import unsafe_char

# /api/keys/me is for any valid key; the rest of this router needs an admin key,
# checked before a body is read.
me_router = APIRouter(tags=["keys"])
_ADMIN = Access(Role.admin, read=Role.admin)
router = APIRouter(tags=["keys"], dependencies=[Depends(_ADMIN)], route_class=before_body(_ADMIN))
_TEN_YEARS = 10 * 365 * 86400.0
# What ``KeyCreate._name`` enforces, for the schema: no control characters, not blank.
_PRINTABLE = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=128, description="who or what uses it",
                      json_schema_extra={"pattern": _PRINTABLE})
    role: Role = Field(default=Role.readwrite)
    expires_in: float | None = Field(
        default=None, gt=0, le=_TEN_YEARS, description="seconds until it expires [never]")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if unsafe_char(v) or not v.strip():
            raise ValueError("a key name is printable text (no control or text-direction "
                             "characters)")
        return v.strip()


def key_json(k: KeyInfo) -> dict[str, Any]:
    now = time.time()
    return {
        "id": k.id, "name": k.name, "role": k.role.value,
        "created": iso(k.created_at), "expires": iso(k.expires_at),
        "revoked": iso(k.revoked_at),
        "state": "revoked" if k.revoked_at else (
            "expired" if k.problem(now) else "active"),
    }


@me_router.get("/api/keys/me", summary="The key this request was made with",
               response_model=Key)
async def whoami(key: KeyInfo = Depends(authenticate)) -> dict[str, Any]:
    return key_json(key)


@router.post("/api/keys", status_code=201, summary="Create a key (its secret is shown once)",
             response_model=KeyCreated, responses=error_responses(413))
async def create_key(body: KeyCreate, request: Request) -> dict[str, Any]:
    brain = brain_of(request)
    expires = time.time() + body.expires_in if body.expires_in else None
    info, secret = await brain.keys.create(body.name, body.role, expires)
    await brain.store.add_event(EventKind.KEY_CREATED, f"{info.role.value} key {info.id} "
                                f"({info.name}) created {who(request)}")
    return {**key_json(info), "secret": secret}


@router.get("/api/keys", summary="Every key (never their secrets)", response_model=list[Key])
async def list_keys(request: Request) -> list[dict[str, Any]]:
    return [key_json(k) for k in await brain_of(request).keys.list()]


@router.delete("/api/keys/{key_id}", summary="Revoke a key (effective at once)",
               response_model=Key,
               responses=error_responses(404, 409, e409="The last usable admin key"))
async def revoke_key(request: Request,
                     key_id: str = Path(pattern=KEY_ID_PATTERN)) -> dict[str, Any]:
    brain = brain_of(request)
    try:
        info = await brain.keys.revoke(key_id)
    except KeyNotFound:
        raise ApiError(404, "key_not_found", f"no key {key_id}") from None
    except LastAdminKey:
        raise ApiError(409, "last_admin_key",
                       "this is the last usable admin key: create another admin key first"
                       ) from None
    await brain.store.add_event(EventKind.KEY_REVOKED,
                                f"key {info.id} ({info.name}) revoked {who(request)}")
    return key_json(info)
