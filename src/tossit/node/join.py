"""A new node joins with a token: it obtains the cluster secret from the brain.

Runs once, before the node's server starts (``tossit node --join TOKEN``). The
node proves it holds the token's secret (``tossit.auth.jointoken.proof``), and
the brain answers with the cluster secret sealed under a key derived from it.
The secret, the cluster id, the brain URLs and (with TLS) the pinned CA are
then kept in the data dir, so later starts need no token. Every failure is a
``JoinError`` whose message is the one line the operator reads.
"""

from __future__ import annotations

import re
import secrets
import ssl
import time
from pathlib import Path
from typing import Any

import httpx

from tossit.auth import jointoken as jt
from tossit.auth.secretfile import CLUSTER_SECRET_FILE, write_secret
from tossit.config import NodeSettings
from tossit.node.identity import (
    load_brains,
    load_cluster,
    load_joined,
    load_or_create,
    record_brains,
    record_joined,
)
from tossit.tlsconfig import client_context

JOIN_CA_FILE = "cluster-ca.pem"  # the CA a join token pinned (not a secret)
TIMEOUT = httpx.Timeout(15.0, connect=5.0)


class JoinError(Exception):
    """Joining failed; the message says why and what to do, in one line."""


def apply_remembered(settings: NodeSettings) -> None:
    """What an earlier join left in the data dir, for settings not given: the
    brain URLs and the CA to verify them with."""
    if "brain" not in settings.model_fields_set:
        urls = load_brains(settings.data_dir)
        if urls:
            settings.brain = ",".join(urls)
    ca = settings.data_dir / JOIN_CA_FILE
    if settings.tls_ca is None and ca.exists():
        settings.tls_ca = ca


def join(settings: NodeSettings, text: str) -> str:
    """Obtain and keep the cluster secret with the join token ``text``; returns
    what happened, for the operator. Raises ``JoinError``."""
    try:
        token = jt.decode(text)
    except jt.TokenError as exc:
        raise JoinError(str(exc)) from None
    data_dir = settings.data_dir
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    node_id = load_or_create(data_dir)
    cluster = load_cluster(data_dir)
    kept = data_dir / CLUSTER_SECRET_FILE
    if token.cluster in (cluster, load_joined(data_dir)) and kept.exists():
        apply_remembered(settings)
        return (f"this node already belongs to cluster {token.cluster}: starting with the secret "
                f"it keeps (the join token is not needed)")
    if cluster not in (None, token.cluster) and settings.adopt_cluster != token.cluster:
        raise JoinError(f"this node belongs to cluster {cluster}, the join token to cluster "
                        f"{token.cluster}: start a new node with an empty data dir, or give "
                        f"--adopt-cluster {token.cluster} to move this one")
    problems: list[str] = []
    for url in token.brains:
        try:
            ca_pem = _pinned_ca(url, token.ca_sha256) if token.ca_sha256 else None
            verify = (ssl.create_default_context(cadata=ca_pem) if ca_pem
                      else client_context(settings.tls_ca))
            nonce = secrets.token_hex(16)
            answer = _exchange(url, verify, token, node_id, settings, nonce)
        except (httpx.TransportError, _Unavailable) as exc:
            problems.append(f"{url} ({exc})")
            continue
        break
    else:
        raise JoinError("cannot reach the brain at any URL in the join token: "
                        + "; ".join(problems) + ". Is it running, and reachable from here?")
    try:
        secret = jt.unseal(token.secret, token.id, node_id, nonce, token.cluster,
                           str(answer.get("sealed", ""))).decode()
    except (jt.SealError, UnicodeDecodeError):
        raise JoinError(f"the answer of {url} does not open with this join token: it is not "
                        "the brain that made it, or something in between altered it") from None
    if answer.get("cluster") != token.cluster:
        raise JoinError(f"the brain at {url} is of cluster {answer.get('cluster')}, not "
                        f"{token.cluster} as the join token says")
    if ca_pem:
        _write_public(data_dir / JOIN_CA_FILE, ca_pem)
    write_secret(kept, secret)
    # Not node.json's "cluster": the brain tells the node that on registration, by
    # its own rules (a node holding chunks of unknown origin, an adoption).
    record_joined(data_dir, token.cluster)
    # The token's brains, then any other the brain knows now (a brain added since).
    brains = list(token.brains)
    for u in answer.get("brains") or []:
        if isinstance(u, str) and re.match(r"^https?://[^/\s,]+$", u) and u not in brains:
            brains.append(u)
    record_brains(data_dir, brains)
    apply_remembered(settings)
    return (f"joined cluster {token.cluster} with join token {token.id} (via {url}); the "
            f"cluster secret is kept in {kept}: later starts need no token")


class _Unavailable(Exception):
    """This brain cannot answer now (5xx): another one of the token may."""


def _pinned_ca(url: str, expected: str) -> str:
    """The brain's CA certificate, checked against the token's fingerprint.

    It is fetched without verification (this machine trusts nothing yet) and
    trusted only if its SHA-256 is the one the token carries; the exchange then
    verifies the brain's certificate and host name against it."""
    blind = ssl.create_default_context()
    blind.check_hostname = False
    blind.verify_mode = ssl.CERT_NONE
    with httpx.Client(verify=blind, timeout=TIMEOUT) as http:
        resp = http.get(url + "/api/join/ca")
    if resp.status_code >= 500:
        raise _Unavailable(f"HTTP {resp.status_code}")
    if resp.status_code != 200:
        raise JoinError(f"the join token pins a TLS CA, but the brain at {url} has none "
                        f"(HTTP {resp.status_code}): not the brain that made the token?")
    try:
        found = jt.ca_fingerprint(resp.text)
    except ValueError:
        raise JoinError(f"the brain at {url} sent no CA certificate") from None
    if found != expected:
        raise JoinError(f"the brain at {url} presents a CA with SHA-256 {found}, the join "
                        f"token pins {expected}: refusing (another server, or someone in "
                        "between)")
    return jt.first_certificate(resp.text)


def _exchange(url: str, verify: ssl.SSLContext, token: jt.JoinToken, node_id: str,
              settings: NodeSettings, nonce: str) -> dict[str, Any]:
    ts = f"{time.time():.3f}"
    body = {"token": token.id, "node": node_id, "name": settings.node_name(),
            "address": settings.public_url(), "ts": ts, "nonce": nonce,
            "proof": jt.proof(token.secret, token.id, node_id, ts, nonce)}
    with httpx.Client(verify=verify, timeout=TIMEOUT) as http:
        resp = http.post(url + "/api/join", json=body)
    if resp.status_code >= 500:
        raise _Unavailable(f"HTTP {resp.status_code}: {_message(resp)}")
    if resp.status_code != 200:
        raise JoinError(f"the brain refused the join token: {_message(resp)}")
    try:
        answer = resp.json()
    except ValueError:
        raise _Unavailable("the answer is not JSON") from None
    if not isinstance(answer, dict):
        raise _Unavailable("unexpected answer")
    return answer


def _message(resp: httpx.Response) -> str:
    try:
        doc = resp.json()
        return str(doc.get("message") or doc.get("error"))[:500]
    except (ValueError, AttributeError):
        return resp.text[:300] or resp.reason_phrase


def _write_public(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)

