"""User API keys on the brain: create, list, revoke, authenticate, bootstrap.

Lookups are cached for a few seconds (a bearer check must not cost a database
round trip per request); a revocation drops the cached entry in the same
process, so it takes effect at once. Expiry is checked on every request.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select, update

from tossit.auth.keys import (
    Role,
    derive_secret,
    looks_like_secret,
    new_key_id,
    new_salt,
    secret_hash,
)
from tossit.auth.secretfile import ADMIN_KEY_FILE, SecretFileError, read_secret, write_secret
from tossit.brain.manifest_rows import log_key
from tossit.brain.models import ApiKey
from tossit.brain.states import EventKind
from tossit.brain.store import Store

log = logging.getLogger("tossit.brain.keys")
CACHE_SECONDS = 10.0


@dataclass(frozen=True)
class KeyInfo:
    id: str
    name: str
    role: Role
    created_at: float
    expires_at: float | None
    revoked_at: float | None

    def problem(self, now: float) -> str | None:
        """Why this key cannot be used now, or None if it can."""
        if self.revoked_at is not None:
            return "this key was revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "this key has expired"
        return None


class KeyNotFound(LookupError):
    pass


class LastAdminKey(Exception):
    """Revoking this key would leave no usable admin key."""


def _info(row: ApiKey) -> KeyInfo:
    return KeyInfo(row.id, row.name, Role(row.role), row.created_at, row.expires_at,
                   row.revoked_at)


class KeyService:
    def __init__(self, store: Store, master: bytes) -> None:
        self.store = store
        self.master = master
        self._cache: dict[str, tuple[KeyInfo, float]] = {}  # secret hash -> (key, fetched)
        self._by_id: dict[str, tuple[KeyInfo, str, float]] = {}  # id -> (key, secret, fetched)

    async def create(self, name: str, role: Role,
                     expires_at: float | None = None) -> tuple[KeyInfo, str]:
        """A new key and its secret (the only time the secret is available)."""
        key_id, salt = new_key_id(), new_salt()
        secret = derive_secret(self.master, key_id, salt)
        row = ApiKey(id=key_id, name=name, role=role.value, secret_sha256=secret_hash(secret),
                     salt=salt, created_at=time.time(), expires_at=expires_at)
        async with self.store.write() as s:
            s.add(row)
            await s.flush()
            garbage, pack = await self.store.log_alone(s, log_key, key_id)
        # Every key change is also a manifest entry (recoverable from the nodes).
        await self.store.after_log(pack, garbage)
        return _info(row), secret

    async def list(self) -> list[KeyInfo]:
        async with self.store.read() as s:
            rows = (await s.execute(select(ApiKey).order_by(ApiKey.created_at))).scalars()
            return [_info(r) for r in rows]

    async def get(self, key_id: str) -> KeyInfo:
        async with self.store.read() as s:
            row = await s.get(ApiKey, key_id)
        if row is None:
            raise KeyNotFound(key_id)
        return _info(row)

    async def revoke(self, key_id: str) -> KeyInfo:
        now = time.time()
        async with self.store.write() as s:
            row = await s.get(ApiKey, key_id)
            if row is None:
                raise KeyNotFound(key_id)
            if row.revoked_at is None:
                if row.role == Role.admin and _info(row).problem(now) is None:
                    admins = (await s.execute(select(ApiKey).where(
                        ApiKey.role == Role.admin.value, ApiKey.revoked_at.is_(None),
                        ApiKey.id != key_id))).scalars()
                    if not any(_info(a).problem(now) is None for a in admins):
                        raise LastAdminKey(key_id)
                await s.execute(update(ApiKey).where(ApiKey.id == key_id).values(revoked_at=now))
                row.revoked_at = now
                garbage, pack = await self.store.log_alone(s, log_key, key_id)
            else:
                garbage, pack = [], None
            digest = row.secret_sha256
        self._cache.pop(digest, None)
        self._by_id.pop(key_id, None)
        await self.store.after_log(pack, garbage)
        return _info(row)

    async def authenticate(self, secret: str) -> KeyInfo | None:
        """The key this bearer secret belongs to (usable or not), or None."""
        if not looks_like_secret(secret):
            return None
        return await self.by_digest(secret_hash(secret))

    async def by_digest(self, digest: str) -> KeyInfo | None:
        """The key whose secret hashes to ``digest`` (a dashboard session holds this)."""
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and now - hit[1] < CACHE_SECONDS:
            return hit[0]
        async with self.store.read() as s:
            row = (await s.execute(
                select(ApiKey).where(ApiKey.secret_sha256 == digest))).scalar_one_or_none()
        if row is None:
            return None
        info = _info(row)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (info, now)
        return info

    async def signing(self, key_id: str) -> tuple[KeyInfo, str] | None:
        """A key and its secret by key id (S3 requests name the key and sign
        with its secret), or None; cached like ``by_digest``, and a revocation
        here drops it at once."""
        now = time.monotonic()
        hit = self._by_id.get(key_id)
        if hit is not None and now - hit[2] < CACHE_SECONDS:
            return hit[0], hit[1]
        async with self.store.read() as s:
            row = await s.get(ApiKey, key_id)
        if row is None:
            return None
        info, secret = _info(row), derive_secret(self.master, row.id, row.salt)
        if len(self._by_id) > 10_000:
            self._by_id.clear()
        self._by_id[key_id] = (info, secret, now)
        return info, secret

    async def signing_secret(self, key_id: str) -> str:
        """The key's secret, re-derived (for S3 SigV4 verification)."""
        async with self.store.read() as s:
            row = await s.get(ApiKey, key_id)
        if row is None:
            raise KeyNotFound(key_id)
        return derive_secret(self.master, row.id, row.salt)

    async def _knows_secret_in(self, path: Path) -> bool:
        """Is the key in this file one of this database's (revoked or expired)?"""
        try:
            digest = secret_hash(read_secret(path))
        except SecretFileError:
            return False
        async with self.store.read() as s:
            return await s.scalar(select(ApiKey.id).where(
                ApiKey.secret_sha256 == digest)) is not None

    async def bootstrap(self, data_dir: Path, force: bool = False,
                        show: bool = False) -> Path | None:
        """Make sure somebody can administer the cluster: when no usable admin key
        exists (first start, or every admin key revoked or expired), or when
        ``force`` is set (``tossit brain --new-admin-key``: the secret was lost),
        create an admin key and write its secret to ``data_dir/admin.key`` (0600).

        The secret is printed on a terminal; ``show`` (``show_admin_key``) prints it
        on stdout anyway, for a container whose log is the only screen there is."""
        path = data_dir / ADMIN_KEY_FILE
        now = time.time()
        usable = any(k.role == Role.admin and k.problem(now) is None for k in await self.list())
        if usable and not force:
            return None
        info, secret = await self.create("admin", Role.admin)
        if path.exists() and not force and not await self._knows_secret_in(path):
            # This database has no usable admin key, and the key file holds a key it
            # never made: the key of another database (this one is new or empty by
            # mistake, and the real one may come back). Never overwrite it unasked.
            kept, path = path, path.with_name(ADMIN_KEY_FILE + ".new")
            log.warning("this database has no usable admin key but %s exists (the key of "
                        "another database?): it is kept; the new admin key is in %s. If %s "
                        "is no longer needed, restart with --new-admin-key", kept, path, kept)
        write_secret(path, secret)  # the secret alone: $(cat admin.key) works in a shell
        log.info("created admin key %s; its secret is in %s (mode 0600)", info.id, path)
        if show or sys.stdout.isatty():  # shown once; to a log only when asked
            print(f"\n  admin key {info.id}\n  secret    {secret}\n  (also in {path})\n",
                  flush=True)
        why = "on request (--new-admin-key)" if force else "(no usable admin key)"
        await self.store.add_event(EventKind.KEY_CREATED, f"admin key {info.id} created {why}")
        return path
