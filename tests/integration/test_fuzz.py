"""Schemathesis fuzzing of the brain's and a node's HTTP APIs on a real cluster.

Every operation in each OpenAPI description gets generated requests, valid and
invalid ones (schemathesis's examples, coverage and fuzzing phases). Every
answer must be no 5xx, with a status code, content type and body the schema
documents: the schema is the contract clients are written against, so an
undocumented answer is a bug in the code or in the schema.

- The brain gets each request twice: with no key, when everything but
  ``/health`` must be a 401 (or a 404/405 JSON error for a path or method no
  route serves), then with an admin key (a second one, made for the fuzzer).
- Node 0 gets each request unsigned, when everything but its open paths must
  be a 401, then signed with the cluster secret.
- No node may ever write a file outside its ``chunks/`` and ``tmp/`` folders.
- Bodies are checked against the response models the routes declare
  (``tossit.brain.api.wire``): ``test_brain_documents_every_answer_body`` makes sure
  that the schema the fuzzer reads has one for every answer, since an empty schema
  would let any body pass ``response_schema_conformance``.

Environment (the defaults keep this file around a minute on two cores):

    TOSSIT_FUZZ_EXAMPLES  examples per operation in the fuzzing phase [25];
                          e.g. ``TOSSIT_FUZZ_EXAMPLES=1000`` for a long hunt.
    TOSSIT_FUZZ_SEED      the generation seed [0], fixed so CI runs are
                          reproducible; set another one to explore new inputs.

Not fuzzed: the stateful phase (see ``fuzz_config``); changes to the fuzzer's
own key and to the real nodes (see ``spared``); node-protocol calls signed as
a real node (see ``test_brain``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import requests
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from cluster import Cluster, SignedAuth

EXAMPLES = int(os.environ.get("TOSSIT_FUZZ_EXAMPLES", "25"))
SEED = int(os.environ.get("TOSSIT_FUZZ_SEED", "0"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
# Reachable on a node without the cluster secret (tossit.node.app.OPEN_PATHS).
NODE_OPEN_PATHS = {"/health", "/metrics", "/docs", "/docs/init.js", "/openapi.json"}
# Where generated file ids are folded to (see aim_at_files): reads aim at the
# fixture's three files and the first uploads, deletes spare the fixture's.
READ_IDS = range(1, 6)
DELETE_IDS = range(4, 65)
MAX_FILE_ID = 2**31 - 1

pytestmark = pytest.mark.timeout(120 + 4 * EXAMPLES)


def fuzz_config() -> schemathesis.Config:
    """A fixed seed and budget. The stateful phase is off: it chains responses
    into requests (``GET /api/keys`` into ``DELETE /api/keys/{key_id}``) and
    could revoke the fuzzer's own key, making the rest of the run 401s.

    The only 5xx allowed are the deliberate "not now" answers, and only where
    the operation documents them (``status_code_conformance``): 502 (a node
    could not copy a chunk from the given sources), 503 (not enough nodes),
    507 (storage full). A 500 always fails."""
    return schemathesis.Config.from_dict({
        "seed": SEED,
        "generation": {"max-examples": EXAMPLES, "mode": "all", "database": "none"},
        "phases": {"stateful": {"enabled": False}},
        "checks": {"not_a_server_error": {
            "expected-statuses": ["2xx", "3xx", "4xx", "502", "503", "507"]}},
    })


@pytest.fixture(scope="module")
def fuzz_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A cluster of its own (fuzzing uploads, deletes and makes keys), with a
    few files to read: empty, small, and three chunks for ranges across chunks."""
    c = Cluster(tmp_path_factory.mktemp("fuzz"), nodes=3, replicas=3)
    c.start()
    for name, size in (("empty", 0), ("small.txt", 100), ("three-chunks.bin", 5 << 19)):
        c.upload(name, os.urandom(size))
    yield c
    c.stop()


@pytest.fixture(scope="module")
def fuzzer_key(fuzz_cluster: Cluster) -> dict[str, str]:
    """A second admin key for the fuzzer (id + secret), so the cluster's own
    admin key stays usable whatever the fuzzer does."""
    resp = fuzz_cluster.http.post("/api/keys", json={"name": "fuzzer", "role": "admin"})
    assert resp.status_code == 201, resp.text
    body: dict[str, str] = resp.json()
    return body


@pytest.fixture(scope="module")
def spared(fuzz_cluster: Cluster, fuzzer_key: dict[str, str]) -> dict[str, tuple[set[str], str]]:
    """Path parameters the fuzzer must not change anything with, and a harmless
    stand-in: its own key (revoking it would make the rest of the run 401s)
    and the real nodes (draining or removing one would break uploads)."""
    nodes = {fuzz_cluster.node_id(i) for i in range(fuzz_cluster.n_nodes)}
    return {"key_id": ({fuzzer_key["id"]}, "TK" + "A" * 18),
            "node_id": (nodes, "no-such-node")}


def spare(case: Any, spared: dict[str, tuple[set[str], str]]) -> None:
    """Point a changing request at a stand-in instead of a spared resource. Ids
    are random, so only the stateful phase (off) could find them; this is the
    belt to its braces."""
    if case.method.upper() in ("GET", "HEAD") or not case.path_parameters:
        return
    for name, (values, stand_in) in spared.items():
        if case.path_parameters.get(name) in values:
            case.path_parameters[name] = stand_in


@pytest.fixture(scope="module")
def node_files(fuzz_cluster: Cluster) -> list[set[str]]:
    """What each node has outside its chunk storage before any fuzzing."""
    return [files_outside_storage(fuzz_cluster.node_dir(i)) for i in range(fuzz_cluster.n_nodes)]


@pytest.fixture(scope="module")
def brain_api(fuzz_cluster: Cluster) -> Any:
    return schemathesis.openapi.from_url(f"{fuzz_cluster.url}/openapi.json",
                                         config=fuzz_config())


@pytest.fixture(scope="module")
def node_api(fuzz_cluster: Cluster) -> Any:
    return schemathesis.openapi.from_url(
        f"http://127.0.0.1:{fuzz_cluster.node_ports[0]}/openapi.json", config=fuzz_config())


def aim_at_files(case: Any) -> None:
    """Fold a generated file id into ids that exist, so reads, ranges and
    deletes get past the 404 (random 31-bit ids almost never name a file).
    Deletes spare the fixture's files for the reads that come after them.
    Anything else, and the largest id (a 404), is left as generated."""
    fid = (case.path_parameters or {}).get("file_id")
    if isinstance(fid, str) and fid.isascii() and fid.isdigit():
        fid = int(fid)  # the coverage phase sends some ids as text
    if type(fid) is int and 1 <= fid < MAX_FILE_ID:
        ids = DELETE_IDS if case.operation.method.upper() == "DELETE" else READ_IDS
        case.path_parameters["file_id"] = ids[fid % len(ids)]


def files_outside_storage(root: Path) -> set[str]:
    """Every path under a node's data dir but outside ``chunks/``, ``manifests/``
    (the packs of uploads the fuzzer makes) and ``tmp/`` (those are not walked:
    4096 fan-out folders would make each case slow)."""
    out: set[str] = set()
    for folder, dirs, files in os.walk(root):
        if Path(folder) == root:
            dirs[:] = [d for d in dirs if d not in ("chunks", "manifests", "tmp")]
        rel = Path(folder).relative_to(root)
        out.update(str(rel / name) for name in dirs + files)
    return out


def assert_nodes_kept_to_storage(cluster: Cluster, before: list[set[str]]) -> None:
    for i, files in enumerate(before):
        assert files_outside_storage(cluster.node_dir(i)) == files, f"node {i} wrote outside"


class RequestsSigner(requests.auth.AuthBase):
    """``SignedAuth`` for the ``requests`` session schemathesis sends with."""

    def __init__(self, signed: SignedAuth) -> None:
        self.signed = signed

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        url = urlsplit(r.url or "")
        body = r.body or b""
        if isinstance(body, str):
            body = body.encode()
        assert isinstance(body, bytes), "a streamed body cannot be signed"
        # Servers check the decoded path and the raw query string, as uvicorn
        # hands them over.
        r.headers.update(self.signed.headers(r.method or "GET", unquote(url.path),
                                             url.query, body))
        return r


def method_probe(case: Any) -> bool:
    """A case sending a method its operation does not have (expects a 405)."""
    return bool(case.method.upper() != case.operation.method.upper())


def shown(case: Any, resp: Any) -> tuple[str, str, int, bytes]:
    return case.method, case.formatted_path, resp.status_code, resp.content[:300]


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    """schemathesis 4.32 names each operation's subtest by rewriting the test
    item's ``_nodeid``, an attribute pytest 9.2 no longer has: give it one."""
    request.node._nodeid = request.node.nodeid


# /api/stream answers with an endless event stream (tests/integration/test_live.py).
brain = schemathesis.pytest.from_fixture("brain_api").exclude(path="/api/stream")
node = schemathesis.pytest.from_fixture("node_api")


def test_brain_documents_every_answer_body(fuzz_cluster: Cluster) -> None:
    """Every success answer of the served ``/openapi.json`` has a body schema
    (a 204 has no body): a route returning a bare dict again would show up here."""
    schema = requests.get(f"{fuzz_cluster.url}/openapi.json", timeout=30).json()
    blind = []
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            for status, answer in op["responses"].items():
                if not status.startswith("2") or status == "204":
                    continue
                bodies = [media.get("schema") or {} for media in
                          answer.get("content", {}).values()]
                if not bodies or not all(b.get("$ref") or b.get("type") for b in bodies):
                    blind.append(f"{method.upper()} {path} {status}")
    assert blind == []
    files = schema["paths"]["/api/files"]["get"]["responses"]["200"]["content"]
    assert files["application/json"]["schema"]["type"] == "array"


@brain.parametrize()
def test_brain(case: Any, fuzz_cluster: Cluster, fuzzer_key: dict[str, str],
               spared: dict[str, tuple[set[str], str]], node_files: list[set[str]]) -> None:
    """Each generated request twice: without a key, then with the fuzzer's."""
    spare(case, spared)
    aim_at_files(case)
    check_brain_without_key(case)
    auth = None
    if "node protocol" in case.operation.tags:
        # These take the cluster signature instead of a key. The sender is a
        # name no node id can have ('!'), so a well-formed report is a 403
        # ("signed by another node") and the fuzzer never registers a fake node
        # that uploads would then try to place chunks on.
        auth = RequestsSigner(SignedAuth(fuzz_cluster.secret_file.read_text().strip(),
                                         "brain", sender="fuzzer!"))
    case.call_and_validate(headers={"Authorization": f"Bearer {fuzzer_key['secret']}"},
                           auth=auth, checks=CHECKS)
    assert_nodes_kept_to_storage(fuzz_cluster, node_files)


def check_brain_without_key(case: Any) -> None:
    case.headers = {k: v for k, v in (case.headers or {}).items()
                    if k.lower() != "authorization"}
    resp = case.call()
    case.validate_response(resp, checks=CHECKS)
    if case.path == "/health":
        expected = {405} if method_probe(case) else {200}
    elif case.path == "/ready":  # public too; 503 while too few nodes take writes
        expected = {405} if method_probe(case) else {200, 503}
    elif case.path == "/api/session":
        # Signing in takes a key in the body (and the CSRF header the fuzzer
        # does not send); signing out needs nothing.
        expected = {405} if method_probe(case) else {204} if case.method == "DELETE" else {
            400, 401, 403}
    elif case.path == "/api/join":
        # A new node redeeming a join token has no key: it proves it holds the
        # token's secret, which the fuzzer cannot (401), or sends a bad body (400).
        expected = {405} if method_probe(case) else {400, 401}
    else:
        # Routing comes before the key check: a path no route serves is a 404,
        # or a 405 when routes serve it for other methods only.
        expected = {401, 404, 405}
    assert resp.status_code in expected, ("without a key", *shown(case, resp))


@node.parametrize()
def test_node(case: Any, fuzz_cluster: Cluster, node_files: list[set[str]]) -> None:
    """Each generated request twice: unsigned, then signed with the cluster secret."""
    resp = case.call()
    case.validate_response(resp, checks=CHECKS)
    if case.path in NODE_OPEN_PATHS:
        assert resp.status_code == (405 if method_probe(case) else 200), shown(case, resp)
    else:
        # The signature is checked before routing: even a wrong method is a 401.
        assert resp.status_code == 401, ("unsigned", *shown(case, resp))
    case.call_and_validate(auth=RequestsSigner(fuzz_cluster.node_auth(0)), checks=CHECKS)
    assert_nodes_kept_to_storage(fuzz_cluster, node_files)
