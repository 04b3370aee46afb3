"""API keys, dashboard sessions (they answer with the key) and join tokens."""

from __future__ import annotations

from pydantic import Field

from tossit.auth.keys import Role
from tossit.brain.api.wire.base import Timestamp, Wire
from tossit.brain.states import JoinTokenState, KeyState


class Key(Wire):
    """An API key, never its secret (also the answer to signing in)."""

    id: str
    name: str = Field(description="who or what uses it")
    role: Role
    created: Timestamp
    expires: Timestamp | None
    revoked: Timestamp | None
    state: KeyState


class KeyCreated(Key):
    secret: str = Field(description="the key's secret: shown this once only")


class JoinToken(Wire):
    """A join token, never its secret."""

    id: str
    state: JoinTokenState
    created: Timestamp
    created_by: str
    expires: Timestamp
    uses: int = Field(description="machines it lets join")
    used: int = Field(description="machines that joined with it")
    used_at: Timestamp | None
    used_by: str | None = Field(description="the id of the last node that joined with it")
    used_by_name: str | None
    revoked: Timestamp | None


class JoinTokenCreated(JoinToken):
    token: str = Field(description="the line to give the new machine: shown this once only")
    brains: list[str]
    ca_sha256: str | None = Field(description="the CA certificate the token pins (SHA-256)")
