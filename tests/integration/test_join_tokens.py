"""Join tokens (issue 12): a new machine joins with one line, and a token that is
used up, expired, revoked or altered is refused with a sentence and exit code 2."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from cluster import Cluster, free_port, wait_until
from tossit.auth import jointoken as jt


def _cli(c: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TOSSIT_BRAIN_URL=c.url, TOSSIT_KEY=c.admin_key, COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "tossit", *args], env=env, text=True,
                          capture_output=True, timeout=60)


def _refused(c: Cluster, i: int) -> str:
    """Node i's process exits 2; its log (the one line it printed)."""
    proc = c.nodes[i]
    assert proc is not None
    assert proc.wait(60) == 2, c.log(f"node{i}")
    c.nodes[i] = None
    out = c.log(f"node{i}")
    assert "Traceback" not in out, out
    assert not (c.node_dir(i) / "cluster.secret").exists()
    return out


def _token(c: Cluster, **body: object) -> dict[str, object]:
    resp = c.http.post("/api/join-tokens", json=body)
    assert resp.status_code == 201, resp.text
    doc: dict[str, object] = resp.json()
    return doc


def test_a_node_joins_with_a_token(make_cluster: Callable[..., Cluster]) -> None:
    c = make_cluster(nodes=2, replicas=3)
    made = _cli(c, "join-token", "create", "--expires", "1h")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert "\n" not in token and token.startswith("tossit-join-1."), made.stdout
    assert "lets one machine join" in made.stderr
    assert jt.decode(token).brains == (c.url,)

    i = c.add_node(join=token)  # no --join-secret-file, no --brain
    c.wait_online(3)
    kept = c.node_dir(i) / "cluster.secret"
    assert kept.read_text().strip() == c.secret_file.read_text().strip()
    assert kept.stat().st_mode & 0o777 == 0o600
    assert "joined cluster" in c.log(f"node{i}")

    data = os.urandom(3 * 1024 * 1024 + 5)  # 4 chunks of 1 MiB at most
    f = c.upload("joined.bin", data)
    chunks = c.chunk_files(i)
    assert len(chunks) == 4, chunks  # R=3 on 3 nodes: every chunk is on the new one
    for cid, path in chunks.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == cid
    assert set(chunks) == set(c.chunk_files(0))

    listed = _cli(c, "join-token", "ls")
    assert listed.returncode == 0, listed.stderr
    assert "used" in listed.stdout and "1/1" in listed.stdout and f"node-{i}" in listed.stdout

    # A restart needs no token: the secret, cluster and brain URLs are in the data dir.
    c.kill_node(i, signal.SIGTERM)
    wait_until(lambda: c.node_state(i) != "online", 20, what="the node seen gone")
    c.start_node(i, bare=True)
    c.wait_node_state(i, "online")
    assert c.download(int(f["id"])) == data
    # Started again with the same token, it just starts (it is a member already).
    c.kill_node(i, signal.SIGTERM)
    c.start_node(i, join=token)
    wait_until(lambda: "already belongs to cluster" in c.log(f"node{i}"), 30,
               what="the node starting with the secret it keeps")
    c.wait_node_state(i, "online")

    # The same token for a second machine: refused, and said why.
    j = c.add_node(join=token)
    out = _refused(c, j)
    assert "was already used by node node-2" in out, out
    events = c.http.get("/api/events", params={"kind": "join_refused"}).json()
    assert any(f"node-{j}" in e["message"] and "already used" in e["message"]
               for e in events), events
    joined = c.http.get("/api/events", params={"kind": "node_join_token"}).json()
    assert len(joined) == 1 and "node-2" in joined[0]["message"]


def test_expired_revoked_altered_and_unreachable_tokens_are_refused(
        make_cluster: Callable[..., Cluster]) -> None:
    # Wrong join tokens count with wrong keys: the altered one below is the first.
    c = make_cluster(nodes=1, replicas=1, brain_env={"TOSSIT_WRONG_KEYS_FREE": "3"})
    expired = _token(c, expires_in=1)
    revoked = _token(c)
    gone = _cli(c, "join-token", "revoke", str(revoked["id"]))
    assert gone.returncode == 0 and f"revoked join token {revoked['id']}" in gone.stdout
    good = _token(c)
    decoded = jt.decode(str(good["token"]))
    flipped = jt.encode(dataclasses.replace(
        decoded, secret=bytes([decoded.secret[0] ^ 1]) + decoded.secret[1:]))
    nowhere = jt.encode(dataclasses.replace(
        decoded, brains=(f"http://127.0.0.1:{free_port()}",)))
    time.sleep(1.1)  # the first token's second is up
    tokens = {"expired": expired["token"], "revoked": revoked["token"], "flipped": flipped,
              "nowhere": nowhere}
    started = {why: c.add_node(join=str(t)) for why, t in tokens.items()}
    says = {why: _refused(c, i) for why, i in started.items()}

    assert f"join token {expired['id']} expired at 20" in says["expired"], says["expired"]
    assert f"join token {revoked['id']} was revoked at" in says["revoked"], says["revoked"]
    assert "does not match" in says["flipped"], says["flipped"]
    assert "cannot reach the brain at any URL in the join token" in says["nowhere"]
    # The altered copy did not use the real token up.
    states = {t["id"]: t["state"] for t in c.http.get("/api/join-tokens").json()}
    assert states == {expired["id"]: "expired", revoked["id"]: "revoked",
                      good["id"]: "active"}
    refused = [e["message"] for e in c.http.get(
        "/api/events", params={"kind": "join_refused"}).json()]
    assert len(refused) == 3, refused
    for why in ("expired", "revoked", "flipped"):
        assert any(f"node-{started[why]}" in m for m in refused), (why, refused)

    # The exchange itself, as a node makes it: the answer opens with the token's
    # secret and holds the cluster secret; a replay, another node and a wrong
    # clock are refused; the node that used the token may redeem it again.
    def redeem(node: str, nonce: str, skew: float = 0.0) -> httpx.Response:
        ts = f"{time.time() + skew:.3f}"
        return c.http.post("/api/join", headers={"Authorization": ""}, json={
            "token": decoded.id, "node": node, "name": node, "ts": ts, "nonce": nonce,
            "proof": jt.proof(decoded.secret, decoded.id, node, ts, nonce)})

    first = redeem("mynode", "a" * 32)
    assert first.status_code == 200, first.text
    opened = jt.unseal(decoded.secret, decoded.id, "mynode", "a" * 32, decoded.cluster,
                       first.json()["sealed"])
    assert opened.decode() == c.secret_file.read_text().strip()
    assert redeem("mynode", "a" * 32).json()["error"] == "replayed"
    assert redeem("mynode", "b" * 32).status_code == 200  # its answer was lost: again
    other = redeem("othernode", "c" * 32)
    assert other.status_code == 409 and "already used by node mynode" in other.text
    assert redeem("mynode", "d" * 32, skew=-120).json()["error"] == "clock_skew"
    used = [t for t in c.http.get("/api/join-tokens").json() if t["id"] == good["id"]]
    assert used[0]["used"] == 1 and used[0]["used_by"] == "mynode"

    # Guessing is slowed down like wrong keys: past 3 a minute from one address, 429.
    wrong = dataclasses.replace(decoded, secret=bytes(32))
    answers = []
    for n in range(3):
        ts, nonce = f"{time.time():.3f}", f"{n:032x}"
        answers.append(c.http.post("/api/join", json={
            "token": wrong.id, "node": "guesser", "name": "guesser", "ts": ts,
            "nonce": nonce, "proof": jt.proof(wrong.secret, wrong.id, "guesser", ts, nonce)}))
    assert [a.status_code for a in answers] == [401, 401, 429], [a.text for a in answers]
    assert int(answers[-1].headers["retry-after"]) >= 1


def test_a_token_pins_the_brains_tls_ca(tmp_path: Path,
                                         make_cluster: Callable[..., Cluster]) -> None:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    tls = tmp_path / "tls"
    tls.mkdir()
    ca.cert_pem.write_to_path(str(tls / "ca.pem"))
    cert.private_key_pem.write_to_path(str(tls / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tls / "cert.pem"))
    c = make_cluster(nodes=1, replicas=1, tls=tls)
    made = _token(c, uses=2)
    token = jt.decode(str(made["token"]))
    assert token.brains == (c.url,) and c.url.startswith("https://")
    assert token.ca_sha256 == made["ca_sha256"] == jt.ca_fingerprint(
        (tls / "ca.pem").read_text())

    # Another CA's fingerprint in the token: the node refuses that brain.
    other = jt.encode(dataclasses.replace(
        token, ca_sha256=jt.ca_fingerprint(trustme.CA().cert_pem.bytes().decode())))
    bad = c.add_node(join=other)
    out = _refused(c, bad)
    assert f"{token.ca_sha256}" in out and "refusing" in out, out

    # The real token: the node, given no --tls-ca, trusts the CA it pins.
    i = c.add_node(join=str(made["token"]))
    wait_until(lambda: any(n["name"] == f"node-{i}" and n["state"] == "online"
                           for n in c.http.get("/api/nodes").json()), 60,
               what="the node joined over TLS")
    kept = (c.node_dir(i) / "cluster-ca.pem").read_text()
    assert jt.ca_fingerprint(kept) == token.ca_sha256
    assert (c.node_dir(i) / "cluster.secret").read_text().strip() == \
        c.secret_file.read_text().strip()


def test_a_token_names_every_brain_and_the_node_tries_them_in_turn(
        tmp_path: Path, pg_url: str) -> None:
    c = Cluster(tmp_path / "c", database_url=pg_url, nodes=0, replicas=1, brains=2)
    try:
        _every_brain(c)
    finally:
        c.stop()


def _every_brain(c: Cluster) -> None:
    c.start_brain()
    c.start_extra_brain(1)
    with c.client(1) as follower:  # a change on a follower is made by the leader
        resp = follower.post("/api/join-tokens", json={"expires_in": 600})
    assert resp.status_code == 201, resp.text
    token = str(resp.json()["token"])
    assert set(jt.decode(token).brains) == {c.brain_url(0), c.brain_url(1)}
    c.stop_brain()  # the first brain of the token is gone; the other takes over
    wait_until(lambda: httpx.get(c.brain_url(1) + "/health", timeout=5).json()["role"]
               == "leader", 60, what="brain 1 leading")
    i = c.add_node(join=token)
    with c.client(1) as b1:
        wait_until(lambda: [n["state"] for n in b1.get("/api/nodes").json()] == ["online"],
                   60, what="the node online at brain 1")
    assert f"(via {c.brain_url(1)})" in c.log(f"node{i}")
