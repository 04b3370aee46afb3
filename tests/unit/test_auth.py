"""The pure parts of authentication: key material, the request MAC, secret files,
the loopback rule, and secrets kept out of configuration errors."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tossit.auth import mac
from tossit.auth.binding import is_loopback
from tossit.auth.keys import (
    KEY_ID_PATTERN,
    Role,
    derive_secret,
    looks_like_secret,
    new_key_id,
    new_salt,
    secret_hash,
)
from tossit.auth.secretfile import SecretFileError, ensure_secret, read_secret, write_secret
from tossit.config import ConfigError, NodeSettings

SECRET = "cluster-secret-for-tests"


def test_key_material_shapes_and_derivation() -> None:
    import re

    ids = {new_key_id() for _ in range(200)}
    assert len(ids) == 200 and all(re.match(KEY_ID_PATTERN, i) for i in ids)
    master, salt = b"m" * 32, new_salt()
    key_id = new_key_id()
    secret = derive_secret(master, key_id, salt)
    assert looks_like_secret(secret) and len(secret) == 40
    assert derive_secret(master, key_id, salt) == secret  # reproducible (SigV4 needs it)
    assert derive_secret(b"n" * 32, key_id, salt) != secret  # needs the master key
    assert derive_secret(master, key_id, new_salt()) != secret
    assert secret_hash(secret) == hashlib.sha256(secret.encode()).hexdigest()
    for bad in ("", "x" * 39, "x" * 41, "é" * 40, "a b" + "c" * 37, "x" * 39 + "/"):
        assert not looks_like_secret(bad)


def test_roles_include_the_ones_below() -> None:
    assert Role.admin.allows(Role.readwrite) and Role.admin.allows(Role.readonly)
    assert Role.readwrite.allows(Role.readonly) and not Role.readwrite.allows(Role.admin)
    assert not Role.readonly.allows(Role.readwrite)


def signed(method: str = "PUT", path: str = "/chunks/ab", query: str = "",
           audience: str = "node-1", digest: str = mac.EMPTY_SHA256) -> dict[str, str]:
    return mac.Signer(SECRET, "brain").headers(method, path, audience, query=query,
                                                digest=digest)


def test_mac_accepts_a_good_request_once() -> None:
    v = mac.Verifier(SECRET, "node-1")
    h = signed(query="limit=5&after=")
    sender, digest = v.verify("PUT", "/chunks/ab", "after=&limit=5", h)  # query order free
    assert (sender, digest) == ("brain", mac.EMPTY_SHA256)
    with pytest.raises(mac.MacError, match="replayed"):
        v.verify("PUT", "/chunks/ab", "after=&limit=5", h)


@pytest.mark.parametrize("change", ["method", "path", "query", "digest", "secret",
                                    "audience", "sig", "missing", "garbage"])
def test_mac_rejects_any_change(change: str) -> None:
    v = mac.Verifier(SECRET, "node-1")
    h = signed(query="a=1")
    method, path, query = "PUT", "/chunks/ab", "a=1"
    if change == "method":
        method = "DELETE"
    elif change == "path":
        path = "/chunks/ac"
    elif change == "query":
        query = "a=2"
    elif change == "digest":
        h[mac.DIGEST_HEADER] = "0" * 64
    elif change == "secret":
        h = mac.Signer("other", "brain").headers("PUT", "/chunks/ab", "node-1", query="a=1")
    elif change == "audience":
        h = signed(query="a=1", audience="node-2")
    elif change == "sig":
        h[mac.AUTH_HEADER] = h[mac.AUTH_HEADER][:-1] + ("0" if h[mac.AUTH_HEADER][-1] != "0"
                                                         else "1")
    elif change == "missing":
        del h[mac.AUTH_HEADER]
    else:
        h[mac.AUTH_HEADER] = "v1 nonsense"
    with pytest.raises(mac.MacError):
        v.verify(method, path, query, h)


def test_mac_rejects_stale_and_future_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    real = time.time
    v = mac.Verifier(SECRET, "node-1", window=30)
    for skew in (-31, 31):
        monkeypatch.setattr(mac.time, "time", lambda s=skew: real() + s)
        h = signed()
        monkeypatch.undo()
        with pytest.raises(mac.MacError, match="clock"):
            v.verify("PUT", "/chunks/ab", "", h)
    monkeypatch.setattr(mac.time, "time", lambda: real() - 20)
    h = signed()
    monkeypatch.undo()
    v.verify("PUT", "/chunks/ab", "", h)  # inside the window


@pytest.mark.parametrize("ts", ["nan", "NaN", "inf", "-inf", "1e999"])
def test_mac_rejects_non_finite_times(ts: str) -> None:
    """A correctly signed request stamped ``ts=nan`` passed the clock check (nan
    compares false) and could be replayed once its nonce was forgotten."""
    signer = mac.Signer(SECRET, "brain")
    sig = mac._sign(signer._mac, mac._string_to_sign("GET", "/status", "", "node-1", "brain",
                                                     ts, "n1", mac.EMPTY_SHA256))
    h = {mac.AUTH_HEADER: f"v1 to=node-1;from=brain;ts={ts};nonce=n1;sig={sig}",
         mac.DIGEST_HEADER: mac.EMPTY_SHA256}
    with pytest.raises(mac.MacError, match="finite"):
        mac.Verifier(SECRET, "node-1").verify("GET", "/status", "", h)


@given(st.text(max_size=300))
def test_mac_never_crashes_on_garbage(header: str) -> None:
    v = mac.Verifier(SECRET, "node-1")
    with pytest.raises(mac.MacError):
        v.verify("GET", "/x", "", {mac.AUTH_HEADER: header, mac.DIGEST_HEADER: "0" * 64})


def test_secret_files_are_private_and_atomic(tmp_path: Path) -> None:
    p = tmp_path / "sub" / "s.secret"
    value, created = ensure_secret(p)
    assert created and len(value) >= 40
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert ensure_secret(p) == (value, False)
    write_secret(p, "# comment\nnew-value")
    assert read_secret(p) == "new-value" and stat.S_IMODE(p.stat().st_mode) == 0o600
    assert not [f for f in p.parent.iterdir() if f.name.endswith(".tmp")]
    p.write_text("\n# only a comment\n")
    with pytest.raises(SecretFileError, match="empty"):
        read_secret(p)
    with pytest.raises(SecretFileError, match="does not exist"):
        read_secret(tmp_path / "nope")


@pytest.mark.parametrize("host,loop", [
    ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("0.0.0.0", False), ("::", False), ("192.168.1.5", False),
    ("nas.lan", False), ("", False),
])
def test_loopback(host: str, loop: bool) -> None:
    assert is_loopback(host) is loop


def test_config_errors_never_echo_secrets(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        NodeSettings.load(join_secret="SUPERSECRETVALUE", tls_cert=str(tmp_path / "nope.pem"))
    assert "SUPERSECRETVALUE" not in str(err.value)
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    with pytest.raises(ConfigError) as err:  # a model-level error sees every setting
        NodeSettings.load(join_secret="SUPERSECRETVALUE", tls_cert=str(cert))
    assert "tls_cert and tls_key go together" in str(err.value)
    assert "SUPERSECRETVALUE" not in str(err.value)
