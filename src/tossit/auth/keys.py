"""User API keys: what is generated, what is stored, how a secret is checked.

A key has a public id (``TK`` + 18 characters, the shape of an S3 access key id)
and a 40-character secret. The secret is never stored: it is derived as
HMAC-SHA256(master key, id + salt), and the metadata database keeps only its
SHA-256 and the salt. So

- a bearer token is checked by hashing it and looking the hash up (secrets are
  random 240-bit strings: a fast hash is enough, no password stretching needed);
- the S3 API can still verify SigV4 signatures, which need the secret itself:
  the brain re-derives it from its master key (``data_dir/keys.master``), which
  never enters the database. A stolen database dump gives neither secrets nor
  anything to brute-force.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import secrets

KEY_ID_PREFIX = "TK"
_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
KEY_ID_PATTERN = r"^TK[A-Z2-7]{18}$"
SECRET_LENGTH = 40


class Role(enum.StrEnum):
    """What a key may do; each role includes the ones below it."""

    readonly = "readonly"  # list, download, look at the cluster
    readwrite = "readwrite"  # + upload, delete files
    admin = "admin"  # + node and key management, admin one-shots

    @property
    def rank(self) -> int:
        return _RANK[self]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


_RANK = {Role.readonly: 0, Role.readwrite: 1, Role.admin: 2}


def new_key_id() -> str:
    return KEY_ID_PREFIX + "".join(secrets.choice(_ID_ALPHABET) for _ in range(18))


def new_salt() -> str:
    return secrets.token_hex(16)


def derive_secret(master: bytes, key_id: str, salt: str) -> str:
    """The key's secret: 40 URL-safe characters, reproducible from the master key."""
    mac = hmac.new(master, f"tossit-key-v1|{key_id}|{salt}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:30]).decode()


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


def looks_like_secret(value: str) -> bool:
    """Cheap shape check before any lookup (and before hashing attacker input)."""
    return len(value) == SECRET_LENGTH and all(
        c.isascii() and (c.isalnum() or c in "-_") for c in value
    )
