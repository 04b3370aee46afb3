"""Dashboard sessions: a browser signs in once with a key and then holds only a
random token in an HttpOnly cookie (the key's secret never stays in the page).

The token is 256 random bits; the database keeps its SHA-256, the hash of the
key it was made with, and an expiry. Every request re-checks that key, so a
revoked or expired key ends its sessions at once. Sessions survive a brain
restart; signing out deletes the row.
"""

from __future__ import annotations

import hashlib
import secrets
import time

from sqlalchemy import delete

from tossit.brain.keys import CACHE_SECONDS
from tossit.brain.models import WebSession
from tossit.brain.store import Store

COOKIE = "tossit_session"
LIFETIME = 12 * 3600.0  # a working day; then sign in again


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SessionService:
    def __init__(self, store: Store, lifetime: float = LIFETIME) -> None:
        self.store = store
        self.lifetime = lifetime
        # token hash -> (key hash, expires_at, fetched): no DB read per request
        self._cache: dict[str, tuple[str, float, float]] = {}

    async def create(self, key_sha256: str, key_expires_at: float | None) -> tuple[str, float]:
        """A new session for this key: (token for the cookie, expiry as Unix time)."""
        token = secrets.token_urlsafe(32)
        now = time.time()
        expires = now + self.lifetime
        if key_expires_at is not None:
            expires = min(expires, key_expires_at)
        async with self.store.write() as s:
            await s.execute(delete(WebSession).where(WebSession.expires_at < now))
            s.add(WebSession(token_sha256=_digest(token), key_sha256=key_sha256,
                             created_at=now, expires_at=expires))
        return token, expires

    async def key_of(self, token: str) -> str | None:
        """The key hash a live session token stands for, or None."""
        if not token or len(token) > 128:
            return None
        digest = _digest(token)
        mono = time.monotonic()
        hit = self._cache.get(digest)
        if hit is None or mono - hit[2] >= CACHE_SECONDS:
            async with self.store.read() as s:
                row = await s.get(WebSession, digest)
            if row is None:
                self._cache.pop(digest, None)
                return None
            if len(self._cache) > 10_000:
                self._cache.clear()
            hit = (row.key_sha256, row.expires_at, mono)
            self._cache[digest] = hit
        return hit[0] if time.time() < hit[1] else None

    async def end(self, token: str) -> None:
        digest = _digest(token)
        self._cache.pop(digest, None)
        async with self.store.write() as s:
            await s.execute(delete(WebSession).where(WebSession.token_sha256 == digest))
