"""Join tokens, the pure parts: the line's encoding, the key derivation, the
proof and the sealed cluster secret (tossit.auth.jointoken)."""

from __future__ import annotations

import hashlib
import os
import ssl

import pytest
import trustme

from tossit.auth import jointoken as jt
from tossit.config import NodeSettings

SECRET = bytes(range(32))


def _token(**kw: object) -> jt.JoinToken:
    fields: dict[str, object] = {
        "id": "JTABCDEFGH2345", "secret": SECRET,
        "brains": ("http://10.0.0.1:8000", "https://b.lan:8000"),
        "cluster": "0123456789abcdef", "expires_at": 1_900_000_000.0, "ca_sha256": None}
    fields.update(kw)
    return jt.JoinToken(**fields)  # type: ignore[arg-type]


def test_round_trip_is_one_printable_line() -> None:
    token = _token(ca_sha256="ab" * 32)
    line = jt.encode(token)
    assert line.startswith("tossit-join-1.")
    assert line.isprintable() and " " not in line and "\n" not in line
    assert jt.decode(line) == token
    assert jt.decode(f"  {line}\n") == token  # pasted with blanks around it
    assert jt.decode(jt.encode(_token())).ca_sha256 is None


def test_new_ids_and_derived_secrets() -> None:
    ids = {jt.new_token_id() for _ in range(50)}
    assert len(ids) == 50
    import re

    assert all(re.fullmatch(jt.TOKEN_ID_PATTERN, i) for i in ids)
    a = jt.derive_secret(b"master", "JTABCDEFGH2345", "salt")
    assert len(a) == 32 and a == jt.derive_secret(b"master", "JTABCDEFGH2345", "salt")
    assert a != jt.derive_secret(b"master", "JTABCDEFGH2346", "salt")
    assert a != jt.derive_secret(b"master", "JTABCDEFGH2345", "salt2")
    assert a != jt.derive_secret(b"master2", "JTABCDEFGH2345", "salt")
    assert jt.secret_hash(a) == hashlib.sha256(a).hexdigest()


@pytest.mark.parametrize("text, says", [
    ("hello", "not a TossIt join token"),
    ("tossit-join-1.", "damaged"),
    ("tossit-join-1.!!!!", "damaged"),
    ("tossit-join-1.e30", "damaged"),  # {}
])
def test_decode_refuses_with_a_sentence(text: str, says: str) -> None:
    with pytest.raises(jt.TokenError, match=says):
        jt.decode(text)


def test_decode_refuses_cut_and_wrong_fields() -> None:
    line = jt.encode(_token())
    with pytest.raises(jt.TokenError, match="damaged"):
        jt.decode(line[:-10])  # copied only in part
    for bad in (_token(secret=SECRET[:16]), _token(id="TK123"), _token(brains=()),
                _token(brains=("ftp://x",)), _token(cluster="xyz"),
                _token(ca_sha256="nothex")):
        with pytest.raises(jt.TokenError, match="damaged"):
            jt.decode(jt.encode(bad))


def test_proof_binds_secret_node_time_and_nonce() -> None:
    p = jt.proof(SECRET, "JTABCDEFGH2345", "node1", "1700000000.000", "aa" * 16)
    assert len(p) == 64
    assert jt.proof_ok(SECRET, "JTABCDEFGH2345", "node1", "1700000000.000", "aa" * 16, p)
    other = bytes([SECRET[0] ^ 1]) + SECRET[1:]
    assert not jt.proof_ok(other, "JTABCDEFGH2345", "node1", "1700000000.000", "aa" * 16, p)
    assert not jt.proof_ok(SECRET, "JTABCDEFGH2345", "node2", "1700000000.000", "aa" * 16, p)
    assert not jt.proof_ok(SECRET, "JTABCDEFGH2345", "node1", "1700000001.000", "aa" * 16, p)
    assert not jt.proof_ok(SECRET, "JTABCDEFGH2345", "node1", "1700000000.000", "bb" * 16, p)
    # The proof is not the secret, nor the sealing key's output.
    assert SECRET.hex() not in p


def test_seal_opens_only_with_the_same_token_node_and_nonce() -> None:
    args = ("JTABCDEFGH2345", "node1", "aa" * 16, "0123456789abcdef")
    sealed = jt.seal(SECRET, *args, b"the cluster secret")
    assert b"the cluster secret" not in sealed.encode()
    assert jt.unseal(SECRET, *args, sealed) == b"the cluster secret"
    assert jt.seal(SECRET, *args, b"x") != jt.seal(SECRET, *args, b"x")  # fresh IV
    other = bytes([SECRET[5] ^ 0x80]) + SECRET[1:]
    with pytest.raises(jt.SealError):
        jt.unseal(other, *args, sealed)
    for i in range(4):
        changed = list(args)
        changed[i] = changed[i][:-1] + ("0" if changed[i][-1] != "0" else "1")
        with pytest.raises(jt.SealError):
            jt.unseal(SECRET, changed[0], changed[1], changed[2], changed[3], sealed)
    tampered = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(jt.SealError):
        jt.unseal(SECRET, *args, tampered)
    with pytest.raises(jt.SealError):
        jt.unseal(SECRET, *args, "short")


def test_ca_fingerprint_is_the_sha256_of_the_first_certificate() -> None:
    ca = trustme.CA()
    pem = ca.cert_pem.bytes().decode()
    der = ssl.PEM_cert_to_DER_cert(pem)
    assert jt.ca_fingerprint(pem) == hashlib.sha256(der).hexdigest()
    other = trustme.CA().cert_pem.bytes().decode()
    assert jt.ca_fingerprint(pem + other) == jt.ca_fingerprint(pem)
    assert jt.ca_fingerprint(other) != jt.ca_fingerprint(pem)
    assert jt.first_certificate(pem + other).strip() == pem.strip()
    with pytest.raises(ValueError):
        jt.ca_fingerprint("no certificate here")


def test_join_setting_from_tossit_join(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("TOSSIT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("JOIN", "not this one")
    assert NodeSettings().join is None
    monkeypatch.setenv("TOSSIT_JOIN", "tossit-join-1.abc")
    settings = NodeSettings()
    assert settings.join is not None and settings.join.get_secret_value() == "tossit-join-1.abc"
    assert NodeSettings.load(None, join="x").join.get_secret_value() == "x"
