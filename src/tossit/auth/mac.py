"""The MAC on every brain<->node and node<->node request.

Machines of one cluster share a secret (``cluster.secret``, made by the brain on
its first start). Each request carries::

    X-Tossit-Auth: v1 to=<audience>;from=<sender>;ts=<unix time>;nonce=<hex>;sig=<hex>
    X-Tossit-Content-SHA256: <hex SHA-256 of the body>

where ``sig`` is HMAC-SHA256 over the method, path, canonical query, audience,
sender, time, nonce and body hash. The receiver checks the signature, that it is
the audience (a request signed for node A is useless against node B), that the
time is within ``window`` seconds of its clock, and that it has not seen the
nonce in that window (so a captured request cannot be replayed). The body hash
is checked by whoever reads the body: a chunk's id *is* its hash, so for
``PUT /chunks/{id}`` the node's own content check covers it.

Only requests are authenticated; responses are trusted because chunk bytes are
verified against their content hash by the reader, and TLS (when configured)
authenticates the server. docs/security.md has the whole picture.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode

AUTH_HEADER = "X-Tossit-Auth"
DIGEST_HEADER = "X-Tossit-Content-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
BRAIN = "brain"  # the audience of requests to the brain
DEFAULT_WINDOW = 30.0
_MAX_NONCES = 1_000_000  # a hard memory bound even under a flood of valid requests


class MacError(Exception):
    """The request is not authenticated; the message says why (safe to show)."""


def mac_key(cluster_secret: str) -> bytes:
    """The signing key, separate from the secret so the secret itself is never
    used directly as an HMAC key for anything else."""
    return hmac.new(cluster_secret.encode(), b"tossit-node-mac-v1", hashlib.sha256).digest()


def canonical_query(query: str) -> str:
    if not query:
        return ""
    return urlencode(sorted(parse_qsl(query, keep_blank_values=True)))


def _string_to_sign(method: str, path: str, query: str, audience: str, sender: str,
                    ts: str, nonce: str, digest: str) -> bytes:
    return "\n".join(("TOSSIT-HMAC-SHA256-v1", method.upper(), path, canonical_query(query),
                      audience, sender, ts, nonce, digest)).encode("utf-8", "surrogateescape")


def _sign(keyed: hmac.HMAC, message: bytes) -> str:
    """HMAC of ``message``, starting from a copy of an HMAC already keyed (saves
    hashing the key's two pads on every request)."""
    mac = keyed.copy()
    mac.update(message)
    return mac.hexdigest()


class Signer:
    """Signs outgoing requests as ``sender`` (a node id, or ``brain``)."""

    def __init__(self, cluster_secret: str, sender: str) -> None:
        self._mac = hmac.new(mac_key(cluster_secret), digestmod=hashlib.sha256)
        self.sender = sender
        # Nonces only have to be unique per sender within the replay window: a
        # random per-process prefix and a counter are, without a getrandom()
        # system call per request.
        self._nonce_prefix = secrets.token_hex(8)
        self._nonces = itertools.count()

    def headers(self, method: str, path: str, audience: str, *, query: str = "",
                digest: str = EMPTY_SHA256) -> dict[str, str]:
        ts = f"{time.time():.3f}"
        nonce = f"{self._nonce_prefix}{next(self._nonces):x}"
        sig = _sign(self._mac, _string_to_sign(method, path, query, audience, self.sender,
                                               ts, nonce, digest))
        return {
            AUTH_HEADER: f"v1 to={audience};from={self.sender};ts={ts};nonce={nonce};sig={sig}",
            DIGEST_HEADER: digest,
        }


class Verifier:
    """Checks incoming requests addressed to ``audience``."""

    def __init__(self, cluster_secret: str, audience: str,
                 window: float = DEFAULT_WINDOW) -> None:
        self._mac = hmac.new(mac_key(cluster_secret), digestmod=hashlib.sha256)
        self.audience = audience
        self.window = window
        self._seen: OrderedDict[str, float] = OrderedDict()  # nonce -> expiry, oldest first

    def verify(self, method: str, path: str, query: str,
               headers: Mapping[str, str]) -> tuple[str, str]:
        """Return (sender, claimed body SHA-256) or raise MacError."""
        raw = headers.get(AUTH_HEADER.lower()) or headers.get(AUTH_HEADER)
        if not raw:
            raise MacError("this endpoint needs a request signed with the cluster secret")
        if len(raw) > 512 or not raw.startswith("v1 "):
            raise MacError("malformed X-Tossit-Auth header")
        try:
            fields = dict(part.split("=", 1) for part in raw[3:].split(";"))
            audience, sender, ts = fields["to"], fields["from"], fields["ts"]
            nonce, sig = fields["nonce"], fields["sig"]
            when = float(ts)
        except (KeyError, ValueError):
            raise MacError("malformed X-Tossit-Auth header") from None
        if not math.isfinite(when):
            # nan compares false with everything, so it passed the clock check
            # below, and a request stamped with it could be replayed forever.
            raise MacError("malformed X-Tossit-Auth header: ts is not a finite time")
        digest = headers.get(DIGEST_HEADER.lower()) or headers.get(DIGEST_HEADER) or ""
        if len(digest) != 64 or len(nonce) > 64 or len(sender) > 64:
            raise MacError("malformed X-Tossit-Auth or X-Tossit-Content-SHA256 header")
        expected = _sign(self._mac, _string_to_sign(method, path, query, audience, sender,
                                                    ts, nonce, digest))
        if not hmac.compare_digest(expected, sig):
            raise MacError("bad signature (wrong cluster secret?)")
        if audience != self.audience:
            raise MacError(f"request signed for {audience!r}, not for this server")
        now = time.time()
        if abs(now - when) > self.window:
            raise MacError(f"request time is {now - when:+.0f} s off this server's clock "
                           f"(allowed: {self.window:.0f} s); check NTP")
        self._remember(nonce, now)
        return sender, digest

    def _remember(self, nonce: str, now: float) -> None:
        seen = self._seen
        while seen:
            oldest, expiry = next(iter(seen.items()))
            if expiry > now and len(seen) < _MAX_NONCES:
                break
            del seen[oldest]
        if nonce in seen:
            raise MacError("replayed request (nonce already used)")
        # Any time within +-window is accepted, so a nonce must be remembered
        # for twice the window to cover a request stamped at the far edge.
        seen[nonce] = now + 2 * self.window
