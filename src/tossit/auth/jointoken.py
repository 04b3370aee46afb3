"""Join tokens: one printable line that lets a new machine join the cluster.

A token is ``tossit-join-1.`` + base64url(JSON) carrying the brain URL(s), the
cluster id, a token id, a random 256-bit token secret, the expiry and, when
the brain serves TLS with a CA of its own, that CA certificate's SHA-256. The
node never sends the secret: it proves it holds it (an HMAC over the token id,
its node id, a time and a nonce) and receives the cluster secret sealed with
AES-GCM under a key derived from it. So a token seen on the wire is useless,
and a brain that does not know the secret cannot hand the node a forged cluster
secret either. docs/security.md ("Join tokens") has the whole picture.

Pure functions only (no I/O): the brain's side is ``tossit.brain.jointokens``,
the node's ``tossit.node.join``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
import secrets
import ssl
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "tossit-join-1."
TOKEN_ID_PATTERN = r"^JT[A-Z2-7]{12}$"
_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
SECRET_BYTES = 32  # 256 bits
NONCE_PATTERN = r"^[0-9a-f]{32}$"
MAX_TOKEN_CHARS = 4096
_URL = re.compile(r"^https?://[^/\s,]+$")


class TokenError(ValueError):
    """The text is not a usable join token; the message says why (safe to show:
    it never contains the secret)."""


class SealError(Exception):
    """A sealed cluster secret does not open with this token's key: it was not
    made by a brain holding this token's secret, or was altered on the way."""


@dataclass(frozen=True)
class JoinToken:
    id: str
    secret: bytes
    brains: tuple[str, ...]
    cluster: str
    expires_at: float
    ca_sha256: str | None = None  # the brain's TLS CA certificate (DER), when it has one


def new_token_id() -> str:
    return "JT" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))


def new_salt() -> str:
    return secrets.token_hex(16)


def derive_secret(master: bytes, token_id: str, salt: str) -> bytes:
    """The token's secret, reproducible from the brain's master key: the database
    keeps only the salt and a hash, so a dump of it cannot redeem a token (as for
    API keys, ``tossit.auth.keys``)."""
    return hmac.new(master, f"tossit-join-token-v1|{token_id}|{salt}".encode(),
                    hashlib.sha256).digest()


def secret_hash(secret: bytes) -> str:
    return hashlib.sha256(secret).hexdigest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode(token: JoinToken) -> str:
    """The one line an operator copies to the new machine."""
    doc: dict[str, object] = {"v": 1, "id": token.id, "s": _b64(token.secret),
                              "b": list(token.brains), "c": token.cluster,
                              "e": math.ceil(token.expires_at)}
    if token.ca_sha256:
        doc["fp"] = token.ca_sha256
    return PREFIX + _b64(json.dumps(doc, separators=(",", ":")).encode())


def decode(text: str) -> JoinToken:
    """Parse a token, checking every field (a damaged copy fails here, with a
    sentence, rather than as a confusing refusal from the brain)."""
    text = text.strip()
    if not text.startswith(PREFIX):
        raise TokenError(f"this is not a TossIt join token (one starts with {PREFIX!r}; "
                         "make one with: tossit join-token create)")
    if len(text) > MAX_TOKEN_CHARS:
        raise TokenError("this join token is too long to be one")
    damaged = TokenError("this join token is damaged (was it copied whole, on one line?)")
    try:
        doc = json.loads(_unb64(text[len(PREFIX):]))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise damaged from None
    if not isinstance(doc, dict) or doc.get("v") != 1:
        raise damaged
    try:
        token_id, brains, cluster = doc["id"], doc["b"], doc["c"]
        secret = _unb64(doc["s"])
        expires = float(doc["e"])
        fp = doc.get("fp")
    except (KeyError, TypeError, ValueError, binascii.Error):
        raise damaged from None
    if (not isinstance(token_id, str) or not re.fullmatch(TOKEN_ID_PATTERN, token_id)
            or len(secret) != SECRET_BYTES or not math.isfinite(expires)
            or not isinstance(cluster, str) or not re.fullmatch(r"[0-9a-f]{16,64}", cluster)
            or not isinstance(brains, list) or not 1 <= len(brains) <= 16
            or not all(isinstance(u, str) and _URL.match(u) for u in brains)
            or (fp is not None and (not isinstance(fp, str)
                                    or not re.fullmatch(r"[0-9a-f]{64}", fp)))):
        raise damaged
    return JoinToken(token_id, secret, tuple(brains), cluster, expires, fp)


def _subkey(secret: bytes, purpose: str, token_id: str) -> bytes:
    """A key for one purpose, so the secret itself keys nothing directly."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=f"tossit-join-v1|{purpose}|{token_id}".encode()).derive(secret)


def _proof_message(token_id: str, node_id: str, ts: str, nonce: str) -> bytes:
    return "\n".join(("TOSSIT-JOIN-v1", token_id, node_id, ts, nonce)).encode()


def proof(secret: bytes, token_id: str, node_id: str, ts: str, nonce: str) -> str:
    """What the node sends instead of the secret: an HMAC the brain recomputes."""
    return hmac.new(_subkey(secret, "proof", token_id),
                    _proof_message(token_id, node_id, ts, nonce), hashlib.sha256).hexdigest()


def proof_ok(secret: bytes, token_id: str, node_id: str, ts: str, nonce: str,
             given: str) -> bool:
    return hmac.compare_digest(proof(secret, token_id, node_id, ts, nonce), given)


def _aad(token_id: str, node_id: str, nonce: str, cluster: str) -> bytes:
    # Binds the sealed secret to this very request: it cannot be replayed to
    # another node, nor answer another exchange.
    return "\n".join(("TOSSIT-JOIN-SEAL-v1", token_id, node_id, nonce, cluster)).encode()


def seal(secret: bytes, token_id: str, node_id: str, nonce: str, cluster: str,
         plaintext: bytes) -> str:
    """AES-256-GCM under a key derived from the token secret; base64url(iv + ct)."""
    iv = secrets.token_bytes(12)
    box = AESGCM(_subkey(secret, "seal", token_id))
    return _b64(iv + box.encrypt(iv, plaintext, _aad(token_id, node_id, nonce, cluster)))


def unseal(secret: bytes, token_id: str, node_id: str, nonce: str, cluster: str,
           sealed: str) -> bytes:
    try:
        raw = _unb64(sealed)
    except (binascii.Error, ValueError):
        raise SealError("the sealed secret is not base64") from None
    if len(raw) < 12 + 16:
        raise SealError("the sealed secret is too short")
    box = AESGCM(_subkey(secret, "seal", token_id))
    try:
        return box.decrypt(raw[:12], raw[12:], _aad(token_id, node_id, nonce, cluster))
    except InvalidTag:
        raise SealError("the sealed secret does not open with this token") from None


def first_certificate(pem: str) -> str:
    """The first certificate of a PEM bundle: the CA a token pins."""
    begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
    start = pem.find(begin)
    stop = pem.find(end, start)
    if start < 0 or stop < 0:
        raise ValueError("no PEM certificate found")
    return pem[start:stop + len(end)] + "\n"


def ca_fingerprint(pem: str) -> str:
    """SHA-256 (hex) of the first certificate of a PEM bundle, as DER."""
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(first_certificate(pem))).hexdigest()
