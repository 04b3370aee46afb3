"""Join tokens on the brain: create, list, revoke, and redeem (the exchange).

Only the token id, a salt, the secret's hash, its expiry and who used it are
stored; the secret is re-derived from the master key when a node redeems it
(``tossit.auth.jointoken``). Redeeming checks, in this order: the token is
known, the node's proof matches the secret, the proof is fresh and not a
replay, and the token is neither revoked, expired nor used up. Each refusal
names its reason in a sentence the node prints as it is.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update

from tossit.auth import jointoken as jt
from tossit.brain.models import JoinTokenRow
from tossit.brain.store import Store

CLOCK_WINDOW = 30.0  # seconds a proof's time may be off (the cluster MAC's window)
_MAX_NONCES = 100_000


@dataclass(frozen=True)
class JoinTokenInfo:
    id: str
    created_at: float
    created_by: str
    expires_at: float
    max_uses: int
    uses: int
    used_at: float | None
    used_by: str | None
    used_by_name: str | None
    revoked_at: float | None

    def state(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.uses >= self.max_uses:
            return "used"
        if now >= self.expires_at:
            return "expired"
        return "active"


class JoinTokenNotFound(LookupError):
    pass


class JoinRefused(Exception):
    """The brain will not redeem this token; ``message`` is for the node's operator.
    ``guess``: the caller may be guessing (unknown token or wrong secret), so the
    attempt counts against its address like a wrong API key."""

    def __init__(self, status: int, code: str, message: str, guess: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.guess = guess


def utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _info(row: JoinTokenRow) -> JoinTokenInfo:
    return JoinTokenInfo(row.id, row.created_at, row.created_by, row.expires_at,
                         row.max_uses, row.uses, row.used_at, row.used_by,
                         row.used_by_name, row.revoked_at)


class JoinTokenService:
    def __init__(self, store: Store, master: bytes, cluster_secret: str) -> None:
        self.store = store
        self.master = master
        self.cluster_secret = cluster_secret
        self._nonces: OrderedDict[str, float] = OrderedDict()  # token|nonce -> expiry

    async def create(self, expires_at: float, uses: int, created_by: str, brains: list[str],
                     cluster: str, ca_sha256: str | None) -> tuple[JoinTokenInfo, str]:
        """A new token and its line (the only time the line exists)."""
        token_id, salt = jt.new_token_id(), jt.new_salt()
        secret = jt.derive_secret(self.master, token_id, salt)
        row = JoinTokenRow(id=token_id, salt=salt, secret_sha256=jt.secret_hash(secret),
                           created_at=time.time(), created_by=created_by[:200],
                           expires_at=expires_at, max_uses=uses, uses=0)
        async with self.store.write() as s:
            s.add(row)
        line = jt.encode(jt.JoinToken(token_id, secret, tuple(brains), cluster, expires_at,
                                      ca_sha256))
        return _info(row), line

    async def list(self) -> list[JoinTokenInfo]:
        async with self.store.read() as s:
            rows = (await s.execute(
                select(JoinTokenRow).order_by(JoinTokenRow.created_at))).scalars()
            return [_info(r) for r in rows]

    async def revoke(self, token_id: str) -> JoinTokenInfo:
        async with self.store.write() as s:
            row = await s.get(JoinTokenRow, token_id)
            if row is None:
                raise JoinTokenNotFound(token_id)
            if row.revoked_at is None:
                row.revoked_at = time.time()
            return _info(row)

    async def redeem(self, token_id: str, node_id: str, node_name: str, ts: str, nonce: str,
                     given_proof: str, cluster: str) -> tuple[JoinTokenInfo, str]:
        """Check the node's proof and use the token once; returns the token and
        the cluster secret sealed for this request. Raises ``JoinRefused``."""
        now = time.time()
        async with self.store.write() as s:
            row = await s.get(JoinTokenRow, token_id)
            if row is None:
                raise JoinRefused(401, "join_token_unknown",
                                  f"the brain does not know join token {token_id} (made "
                                  "by another cluster's brain?)", guess=True)
            secret = jt.derive_secret(self.master, row.id, row.salt)
            if jt.secret_hash(secret) != row.secret_sha256:
                raise JoinRefused(409, "join_token_stale",
                                  f"join token {token_id} was made with another master key "
                                  "(the brain's keys.master changed): create a new one")
            if not jt.proof_ok(secret, token_id, node_id, ts, nonce, given_proof):
                raise JoinRefused(401, "join_token_wrong_secret",
                                  f"the secret in join token {token_id} does not match (a "
                                  "damaged or altered token?): copy it again", guess=True)
            when = float(ts)
            if abs(now - when) > CLOCK_WINDOW:
                raise JoinRefused(401, "clock_skew",
                                  f"this machine's clock is {when - now:+.0f} s off the "
                                  f"brain's (allowed: {CLOCK_WINDOW:.0f} s): set the time "
                                  "(NTP) and try again")
            self._remember(f"{token_id}|{nonce}", now)
            info = _info(row)
            if info.revoked_at is not None:
                raise JoinRefused(410, "join_token_revoked",
                                  f"join token {token_id} was revoked at "
                                  f"{utc(info.revoked_at)}: ask for a new one "
                                  "(tossit join-token create)")
            if now >= info.expires_at:
                raise JoinRefused(410, "join_token_expired",
                                  f"join token {token_id} expired at {utc(info.expires_at)}: "
                                  "ask for a new one (tossit join-token create)")
            if info.used_by == node_id and info.uses > 0:
                # The same machine again (its first answer was lost, or it restarted
                # before saving the secret): no further use is counted.
                pass
            elif info.uses >= info.max_uses:
                raise JoinRefused(409, "join_token_used", _used_message(info))
            else:
                done = await s.execute(
                    update(JoinTokenRow)
                    .where(JoinTokenRow.id == token_id,
                           JoinTokenRow.uses < JoinTokenRow.max_uses,
                           JoinTokenRow.revoked_at.is_(None))
                    .values(uses=JoinTokenRow.uses + 1, used_at=now, used_by=node_id,
                            used_by_name=node_name[:128])
                    .execution_options(synchronize_session=False))
                if getattr(done, "rowcount", 1) != 1:  # another brain's redeem won the race
                    raise JoinRefused(409, "join_token_used", _used_message(info))
                info = JoinTokenInfo(info.id, info.created_at, info.created_by,
                                     info.expires_at, info.max_uses, info.uses + 1, now,
                                     node_id, node_name[:128], info.revoked_at)
        sealed = jt.seal(secret, token_id, node_id, nonce, cluster, self.cluster_secret.encode())
        return info, sealed

    def _remember(self, key: str, now: float) -> None:
        """Refuse a proof seen before: a captured request must not use a token up
        (its answer would be useless to the captor, but the owner's node would then
        find its token used)."""
        seen = self._nonces
        while seen:
            oldest, expiry = next(iter(seen.items()))
            if expiry > now and len(seen) < _MAX_NONCES:
                break
            del seen[oldest]
        if key in seen:
            raise JoinRefused(401, "replayed", "this join request was sent before (a replay)")
        seen[key] = now + 2 * CLOCK_WINDOW


def _used_message(info: JoinTokenInfo) -> str:
    by = (f" by node {info.used_by_name} ({info.used_by})" if info.used_by else "")
    at = f" at {utc(info.used_at)}" if info.used_at else ""
    lets = "one machine" if info.max_uses == 1 else f"{info.max_uses} machines"
    return (f"join token {info.id} was already used{by}{at}; it lets {lets} join: create "
            "a new one (tossit join-token create)")
