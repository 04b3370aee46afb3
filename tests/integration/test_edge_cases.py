"""Bad input against a real cluster: every answer is the right 4xx JSON or a
success with exact bytes, never a 500, a traceback or a half-listed file."""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import httpx
import pytest

from cluster import Cluster, wait_until

MiB = 1 << 20
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


# -- helpers ------------------------------------------------------------------


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def unique(name: str) -> str:
    return f"{uuid.uuid4().hex[:8]}-{name}"


def assert_error(resp: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """A clean JSON error: the status, ``error`` + ``message`` keys, no traceback."""
    assert resp.status_code == status, (resp.status_code, resp.text[:500])
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    body: dict[str, Any] = resp.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("message"), str) and body["message"], body
    assert "Traceback" not in resp.text
    if code is not None:
        assert body["error"] == code, body
    return body


class RawResponse:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


def raw_request(port: int, method: str, target: str, body: bytes = b"",
                headers: dict[str, str] | None = None) -> RawResponse:
    """One HTTP/1.1 request written byte for byte (no client-side path
    normalisation), read until the server closes the connection."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    hdrs = {"Content-Length": str(len(body))} if method in ("PUT", "POST") else {}
    hdrs.update(headers or {})
    lines += [f"{k}: {v}" for k, v in hdrs.items()]
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        buf = bytearray()
        while piece := s.recv(65536):
            buf += piece
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in header_lines:
        k, _, v = line.partition(":")
        parsed[k.strip().lower()] = v.strip()
    return RawResponse(int(status_line.split()[1]), parsed, rest)


def auth(cl: Cluster) -> dict[str, str]:
    return {"Authorization": f"Bearer {cl.admin_key}"}


def assert_raw_error(resp: RawResponse, statuses: tuple[int, ...]) -> dict[str, Any]:
    import json

    assert resp.status in statuses, (resp.status, resp.body[:300])
    assert resp.headers.get("content-type", "").startswith("application/json"), resp.headers
    body: dict[str, Any] = json.loads(resp.body)
    assert body.get("error") and body.get("message"), body
    assert b"Traceback" not in resp.body
    return body


def multipart(fields: list[tuple[str, str | None, bytes]], boundary: str = "b0undary-x1") -> tuple[
        bytes, str]:
    """A multipart/form-data body built by hand: (field name, filename or None, bytes)."""
    out = bytearray()
    for name, filename, data in fields:
        out += f"--{boundary}\r\n".encode()
        disp = f'form-data; name="{name}"'
        if filename is not None:
            disp += f'; filename="{filename}"'
        out += f"Content-Disposition: {disp}\r\n".encode()
        out += b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


def listed(c: Cluster) -> dict[int, dict[str, Any]]:
    resp = c.http.get("/api/files", params={"limit": 10000})
    assert resp.status_code == 200
    return {f["id"]: f for f in resp.json()}


def names(c: Cluster) -> set[str]:
    return {f["name"] for f in listed(c).values()}


def on_disk(c: Cluster, chunk_ids: set[str]) -> dict[int, set[str]]:
    """Which of these chunk ids each node has on its disk."""
    return {i: set(c.chunk_files(i)) & chunk_ids for i in range(c.n_nodes)}


def log_sizes(c: Cluster) -> dict[str, int]:
    return {name: len(c.log(name)) for name in ["brain", *(f"node{i}" for i in range(c.n_nodes))]}


def assert_no_unhandled_errors(c: Cluster, since: dict[str, int]) -> None:
    """Nothing the processes logged since ``since`` is a traceback or a 500."""
    for name, start in since.items():
        text = c.log(name)[start:]
        assert "unhandled error" not in text, f"{name} logged an unhandled error:\n{text[-3000:]}"
        assert "Traceback" not in text, f"{name} logged a traceback:\n{text[-3000:]}"


@pytest.fixture
def cl(shared_cluster: Cluster) -> Iterator[Cluster]:
    since = log_sizes(shared_cluster)
    yield shared_cluster
    assert_no_unhandled_errors(shared_cluster, since)


# -- empty files and streaming uploads ---------------------------------------


def test_empty_file_multipart_and_raw(cl: Cluster) -> None:
    name = unique("empty.txt")
    up = cl.upload(name, b"")
    assert (up["size"], up["chunks"], up["sha256"]) == (0, 0, EMPTY_SHA256)
    assert up["replication"]["state"] == "healthy"
    resp = cl.http.get(f"/api/files/{up['id']}/download")
    assert resp.status_code == 200 and resp.content == b""
    assert resp.headers["content-length"] == "0"
    info = cl.http.get(f"/api/files/{up['id']}/info").json()
    assert info["chunk_map"] == [] and info["size"] == 0
    # A Range on an empty file cannot be satisfied.
    resp = cl.http.get(f"/api/files/{up['id']}/download", headers={"Range": "bytes=0-"})
    assert_error(resp, 416)
    assert resp.headers["content-range"] == "bytes */0"

    raw_name = unique("empty-raw.bin")
    resp = cl.http.put(f"/api/files/{raw_name}", content=b"")
    assert resp.status_code == 201, resp.text
    raw = resp.json()
    assert (raw["size"], raw["chunks"], raw["sha256"]) == (0, 0, EMPTY_SHA256)
    assert cl.download(raw["id"]) == b""
    listing = listed(cl)
    assert listing[up["id"]]["size"] == 0 and listing[raw["id"]]["name"] == raw_name
    for fid in (up["id"], raw["id"]):
        assert cl.http.delete(f"/api/files/{fid}").status_code == 200
        assert_error(cl.http.get(f"/api/files/{fid}/download"), 404, "file_not_found")


def test_chunked_upload_without_content_length(cl: Cluster) -> None:
    data = os.urandom(2 * MiB + 12345)
    sent: list[int] = []

    def body() -> Iterator[bytes]:
        for i in range(0, len(data), 100_000):
            sent.append(i)
            yield data[i : i + 100_000]

    name = unique("piped.bin")
    req = cl.http.build_request("PUT", f"/api/files/{name}", content=body())
    assert "content-length" not in req.headers
    assert req.headers["transfer-encoding"] == "chunked"
    resp = cl.http.send(req)
    assert resp.status_code == 201, resp.text
    up = resp.json()
    assert up["size"] == len(data) and up["sha256"] == sha(data) and up["chunks"] == 3
    assert len(sent) == 22
    assert sha(cl.download(up["id"])) == sha(data)
    info = cl.http.get(f"/api/files/{up['id']}/info").json()
    assert [ch["id"] for ch in info["chunk_map"]] == [
        sha(data[i : i + MiB]) for i in range(0, len(data), MiB)
    ]


# -- names --------------------------------------------------------------------


@pytest.mark.parametrize("name", [
    "résumé – 日本語 🚀.txt",
    "Ωmega/with sub/dirs/файл.bin",
    "e\u0301tude.txt",  # decomposed: stored in NFC
    "spaces and 'quotes' \"double\" %41 ;,=.bin",
])
def test_unicode_names_round_trip(cl: Cluster, name: str) -> None:
    import unicodedata

    data = os.urandom(1000)
    stored = unicodedata.normalize("NFC", name)
    resp = cl.http.put("/api/files/" + quote(name, safe="/"), content=data)
    assert resp.status_code == 201, resp.text
    up = resp.json()
    assert up["name"] == stored
    assert listed(cl)[up["id"]]["name"] == stored
    resp = cl.http.get(f"/api/files/{up['id']}/download")
    assert resp.status_code == 200 and resp.content == data
    base = stored.rsplit("/", 1)[-1]
    assert f"filename*=UTF-8''{quote(base, safe='')}" in resp.headers["content-disposition"]
    cl.http.delete(f"/api/files/{up['id']}")

    if "/" not in name and '"' not in name:  # multipart: only the last path segment;
        # (clients escape '"' in a part's filename in different ways)
        up = cl.upload(name, data)
        assert up["name"] == stored
        assert cl.download(up["id"]) == data
        cl.http.delete(f"/api/files/{up['id']}")


def test_name_length_limit(cl: Cluster) -> None:
    ok = "é" * 511 + uuid.uuid4().hex[:2]  # 1022 + 2 = 1024 UTF-8 bytes
    assert len(ok.encode()) == 1024
    resp = cl.http.put("/api/files/" + quote(ok), content=b"long name")
    assert resp.status_code == 201, resp.text
    up = resp.json()
    assert up["name"] == ok and listed(cl)[up["id"]]["name"] == ok
    assert cl.download(up["id"]) == b"long name"
    cl.http.delete(f"/api/files/{up['id']}")

    too_long = ok + "x"
    before = len(listed(cl))
    assert_error(cl.http.put("/api/files/" + quote(too_long), content=b"x"), 400, "invalid_name")
    body, ctype = multipart([("file", too_long, b"x")])
    resp = cl.http.post("/api/files/upload", content=body, headers={"content-type": ctype})
    assert_error(resp, 400, "invalid_name")
    assert len(listed(cl)) == before


@pytest.mark.parametrize("target", [
    "/api/files/a%00b.txt",
    "/api/files/a%01b.txt",
    "/api/files/line%0Abreak.txt",
    "/api/files/del%7F.txt",
    "/api/files/../etc/passwd",
    "/api/files/a/../b.txt",
    "/api/files/a/./b.txt",
    "/api/files/%2e%2e/b.txt",
    "/api/files/%2e%2e%2fb.txt",
    "/api/files/..",
    "/api/files/dir//b.txt",
    "/api/files/dir/",
    "/api/files//abs.txt",
])
def test_bad_raw_names_refused(cl: Cluster, target: str) -> None:
    before = names(cl)
    resp = raw_request(cl.port, "PUT", target, b"should not be stored", headers=auth(cl))
    if "%0A" in target:
        # Starlette's path routes never match a newline, so no upload route
        # applies: a 405 JSON error, nothing stored.
        assert_raw_error(resp, (400, 405))
    elif resp.status == 404:
        # Only a path that left /api/files/ may miss the route; never stored.
        assert not target.startswith("/api/files/") or "/../" in target, target
        assert_raw_error(resp, (404,))
    else:
        assert_raw_error(resp, (400,))
    assert names(cl) == before


@pytest.mark.parametrize("filename", ["..", ".", "a\x01b.txt", "tab\there.txt", ""])
def test_bad_multipart_filenames_refused(cl: Cluster, filename: str) -> None:
    before = names(cl)
    body, ctype = multipart([("file", filename, b"data")])
    resp = cl.http.post("/api/files/upload", content=body, headers={"content-type": ctype})
    assert_error(resp, 400)
    assert names(cl) == before


def test_multipart_path_in_filename_keeps_the_base_name(cl: Cluster) -> None:
    base = unique("passwd")
    body, ctype = multipart([("file", f"../../etc/{base}", b"data")])
    resp = cl.http.post("/api/files/upload", content=body, headers={"content-type": ctype})
    assert resp.status_code == 201, resp.text
    assert resp.json()["name"] == base
    cl.http.delete(f"/api/files/{resp.json()['id']}")


# -- malformed requests -------------------------------------------------------


def test_upload_form_errors(cl: Cluster) -> None:
    before = names(cl)
    # No 'file' field at all.
    resp = cl.http.post("/api/files/upload", files={"document": ("x.txt", b"abc")})
    assert_error(resp, 400, "invalid_multipart")
    # A 'file' field that is not a file.
    body, ctype = multipart([("file", None, b"just text")])
    resp = cl.http.post("/api/files/upload", content=body, headers={"content-type": ctype})
    assert_error(resp, 400, "invalid_multipart")
    # Not multipart at all.
    assert_error(cl.http.post("/api/files/upload", json={"file": "x"}), 400)
    assert_error(cl.http.post("/api/files/upload", content=b"raw bytes"), 400)
    resp = cl.http.post("/api/files/upload", content=b"--x\r\n",
                        headers={"content-type": "multipart/form-data"})  # no boundary
    assert_error(resp, 400)
    # Garbage after a valid boundary line.
    resp = cl.http.post("/api/files/upload", content=b"--b0undary-x1\r\n\x00\x01garbage",
                        headers={"content-type": "multipart/form-data; boundary=b0undary-x1"})
    assert_error(resp, 400)
    # A body cut before its closing boundary: nothing is committed.
    name = unique("truncated.bin")
    body, ctype = multipart([("file", name, os.urandom(50_000))])
    resp = cl.http.post("/api/files/upload", content=body[:-40], headers={"content-type": ctype})
    assert_error(resp, 400, "invalid_multipart")
    assert names(cl) == before


def test_unknown_and_invalid_ids(cl: Cluster) -> None:
    for path in ("/api/files/987654321", "/api/files/987654321/info",
                 "/api/files/987654321/download"):
        assert_error(cl.http.get(path), 404, "file_not_found")
    assert_error(cl.http.delete("/api/files/987654321"), 404, "file_not_found")
    for bad in ("abc", "1.5", "0x10", "1e3", "%20"):
        for path in (f"/api/files/{bad}", f"/api/files/{bad}/info", f"/api/files/{bad}/download"):
            assert_error(cl.http.get(path), 400)
        assert_error(cl.http.delete(f"/api/files/{bad}"), 400)
    # Integers the database cannot hold are a 4xx too, never a 500.
    for big in ("99999999999999999999999", "-1", "0"):
        resp = cl.http.get(f"/api/files/{big}/download")
        assert resp.status_code in (400, 404), resp.text
        assert_error(resp, resp.status_code)
    assert_error(cl.http.get("/api/no/such/route"), 404)
    assert_error(cl.http.patch("/api/files/1"), 405)


# -- ranges ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def ranged(shared_cluster: Cluster) -> tuple[int, bytes]:
    data = os.urandom(2 * MiB + 777)
    up = shared_cluster.upload(unique("ranged.bin"), data)
    return up["id"], data


@pytest.mark.parametrize(("header", "lo", "hi"), [
    ("bytes=-10", -10, None),
    ("bytes=-1", -1, None),
    (f"bytes=-{10 * MiB}", 0, None),  # suffix longer than the file: all of it
    ("bytes=100-", 100, None),
    (f"bytes={2 * MiB}-", 2 * MiB, None),  # open range starting in the last chunk
    ("bytes=0-0", 0, 1),
    (f"bytes={MiB - 6}-{MiB + 9}", MiB - 6, MiB + 10),  # across a chunk boundary
    (f"bytes={MiB}-{2 * MiB - 1}", MiB, 2 * MiB),  # exactly one chunk
    (f"bytes=5-{100 * MiB}", 5, None),  # end past the file: clamped
])
def test_range_requests(cl: Cluster, ranged: tuple[int, bytes], header: str, lo: int,
                        hi: int | None) -> None:
    fid, data = ranged
    want = data[lo:hi]
    start = len(data) - len(want) if hi is None else lo % len(data)
    resp = cl.http.get(f"/api/files/{fid}/download", headers={"Range": header})
    assert resp.status_code == 206, resp.text
    assert sha(resp.content) == sha(want)
    assert resp.headers["content-length"] == str(len(want))
    assert resp.headers["content-range"] == f"bytes {start}-{start + len(want) - 1}/{len(data)}"


@pytest.mark.parametrize("header", [
    "bytes=abc", "bytes=5-2", "items=0-1", "bytes=-", "bytes=1-2-3", "bytes 0-1", "=0-1",
    "bytes=" + "9" * 300,
])
def test_malformed_range_is_400(cl: Cluster, ranged: tuple[int, bytes], header: str) -> None:
    fid, _ = ranged
    resp = cl.http.get(f"/api/files/{fid}/download", headers={"Range": header})
    assert_error(resp, 400, "invalid_range")


@pytest.mark.parametrize("header", ["bytes={n}-", "bytes={n}-{m}", "bytes=-0"])
def test_unsatisfiable_range_is_416(cl: Cluster, ranged: tuple[int, bytes], header: str) -> None:
    fid, data = ranged
    n = len(data)
    resp = cl.http.get(f"/api/files/{fid}/download",
                       headers={"Range": header.format(n=n, m=n + 10)})
    assert_error(resp, 416, "range_not_satisfiable")
    assert resp.headers["content-range"] == f"bytes */{n}"


def test_multi_range_gets_the_whole_file(cl: Cluster, ranged: tuple[int, bytes]) -> None:
    fid, data = ranged
    resp = cl.http.get(f"/api/files/{fid}/download", headers={"Range": "bytes=0-1,5-6"})
    assert resp.status_code == 200 and sha(resp.content) == sha(data)


# -- the node's chunk API -------------------------------------------------------


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under the cluster's node folders (path -> size, mtime).

    Manifest packs are left out: the brain's collector retires superseded packs
    in the background (earlier tests' deletes), which is not what these tests
    are about; the chunk store, tmp and identity files are.
    """
    out = {}
    for top in root.iterdir():
        if top.name in ("brain", "logs"):
            continue
        for dirpath, dirs, files in os.walk(top):
            if dirpath == str(top):
                dirs[:] = [d for d in dirs if d != "manifests"]
            for f in files:
                st = os.stat(os.path.join(dirpath, f))
                out[os.path.join(dirpath, f)] = (st.st_size, st.st_mtime_ns)
    return out


def test_node_refuses_bad_chunk_ids(cl: Cluster) -> None:
    port = cl.node_ports[0]
    node = cl.node_http(0 if port == cl.node_ports[0] else 1)
    before = _tree(cl.root)
    bad_ids = ["z" * 64, "ab" * 31, "ab" * 33, "AB" * 32, "g" + "a" * 63, "a" * 63 + " ",
               "0" * 64 + ".tmp", "%2e%2e"]
    for cid in bad_ids:
        assert_error(node.put(f"/chunks/{cid}", content=b"x"), 400, "invalid_chunk_id")
        assert_error(node.get(f"/chunks/{cid}"), 400, "invalid_chunk_id")
        assert_error(node.delete(f"/chunks/{cid}"), 400, "invalid_chunk_id")
        assert node.head(f"/chunks/{cid}").status_code == 400

    # Traversal written byte for byte, so no client normalises the path away.
    good = sha(b"x")
    targets = [
        "/chunks/../evil", "/chunks/../../evil", "/chunks/../../../evil",
        "/chunks/%2e%2e%2fevil", "/chunks/%2e%2e%2f%2e%2e%2fevil", "/chunks/..%2F..%2Fevil",
        "/chunks/%2E%2E/evil", f"/chunks/{good}/../../evil", f"/chunks/abc/{good}",
        f"/chunks/../chunks/{good[:3]}/{good}", "/chunks/..", "/chunks/%2e%2e",
        "/chunks/..\\..\\evil", "/chunks/%00",
    ]
    signer = cl.node_auth(0)

    def signed(method: str, target: str, body: bytes = b"") -> RawResponse:
        # Signed over the path as the server decodes it, so the MAC passes and
        # the id check is what answers.
        headers = signer.headers(method, unquote(target), "", body)
        return raw_request(port, method, target, body, headers)

    for target in targets:
        for method in ("PUT", "GET", "DELETE"):
            resp = signed(method, target, b"x" if method == "PUT" else b"")
            assert_raw_error(resp, (400,))
            # Without the cluster MAC the node does not even look at the path.
            unsigned = raw_request(port, method, target, b"x" if method == "PUT" else b"")
            assert_raw_error(unsigned, (401,))
    for target in ("/../evil", "/%2e%2e/evil", "/%2e%2e%2fnode.json", "/chunks%2f..%2fevil"):
        resp = signed("PUT", target, b"x")
        assert_raw_error(resp, (400, 404, 405))
    # The node's identity file is never served through a traversal.
    for target in ("/chunks/../node.json", "/chunks/%2e%2e%2fnode.json", "/chunks/..%2fnode.json"):
        resp = signed("GET", target)
        assert resp.status == 400 and b'"id"' not in resp.body

    _nothing_written_but_chunks(before, _tree(cl.root))
    for d in (cl.root.parent, cl.root, *(cl.node_dir(i) for i in range(cl.n_nodes))):
        assert not list(d.glob("evil*")), d
    node.close()


def _nothing_written_but_chunks(before: dict[str, tuple[int, int]],
                                after: dict[str, tuple[int, int]]) -> None:
    """Nothing that was there changed or went; what is new can only be a chunk
    under its own hash (the brain's metadata snapshot may land meanwhile on the
    shared cluster), never the bytes the refused requests sent."""
    assert {p: after.get(p) for p in before} == before
    for path in set(after) - set(before):
        p = Path(path)
        data = p.read_bytes()
        assert p.parent.parent.name == "chunks" and p.name == sha(data), path
        assert data != b"x", path


def test_node_refuses_bytes_that_do_not_match_the_id(cl: Cluster) -> None:
    port = cl.node_ports[1]
    node = cl.node_http(0 if port == cl.node_ports[0] else 1)
    claimed = sha(os.urandom(64))
    before = _tree(cl.root)
    assert_error(node.put(f"/chunks/{claimed}", content=b"other bytes"), 422, "hash_mismatch")
    assert_error(node.put(f"/chunks/{claimed}", content=b""), 422, "hash_mismatch")
    assert_error(node.get(f"/chunks/{claimed}"), 404, "chunk_not_found")
    assert claimed not in cl.chunk_files(1)
    assert not list((cl.node_dir(1) / "tmp").iterdir())
    _nothing_written_but_chunks(before, _tree(cl.root))
    # The node's own inventory agrees.
    inv = node.get("/inventory", params={"after": claimed[:-1] + "0"}).json()
    assert claimed not in {e["id"] for e in inv["chunks"]}
    assert_error(node.get("/inventory", params={"after": "../x"}), 400)

    # The small-chunk batch endpoint: malformed framing is a 400, a frame whose
    # bytes do not match its id is refused on its own, the good one is stored.
    def frame(cid: str, data: bytes) -> bytes:
        return bytes.fromhex(cid) + struct.pack(">I", len(data)) + data

    good_data = os.urandom(3000)
    good = sha(good_data)
    for junk in (b"x" * 10, frame(good, good_data)[:-1], frame(good, good_data) + b"\0" * 5):
        assert_error(node.post("/chunk-batch", content=junk), 400, "invalid_batch")
    assert good not in cl.chunk_files(1)
    resp = node.post("/chunk-batch", content=frame(claimed, b"lie") + frame(good, good_data))
    assert resp.status_code == 200, resp.text
    assert [r["status"] for r in resp.json()["results"]] == ["hash_mismatch", "created"]
    files = cl.chunk_files(1)
    assert claimed not in files and files[good].read_bytes() == good_data
    assert node.delete(f"/chunks/{good}").status_code == 200
    assert good not in cl.chunk_files(1)
    node.close()


# -- dedup, overwrite ---------------------------------------------------------


def test_dedup_refcount_and_gc(cl: Cluster) -> None:
    data = os.urandom(2 * MiB + 500)
    a = cl.upload(unique("a.bin"), data)
    b = cl.upload(unique("b.bin"), data)
    assert a["id"] != b["id"]
    map_a = cl.http.get(f"/api/files/{a['id']}/info").json()["chunk_map"]
    map_b = cl.http.get(f"/api/files/{b['id']}/info").json()["chunk_map"]
    ids = [ch["id"] for ch in map_a]
    assert ids == [ch["id"] for ch in map_b] and len(set(ids)) == 3
    for i in range(cl.n_nodes):
        files = cl.chunk_files(i)
        assert all(sha(files[cid].read_bytes()) == cid for cid in ids)

    assert cl.http.delete(f"/api/files/{a['id']}").status_code == 200
    cl.gc()
    assert sha(cl.download(b["id"])) == sha(data)
    assert on_disk(cl, set(ids)) == {i: set(ids) for i in range(cl.n_nodes)}

    assert cl.http.delete(f"/api/files/{b['id']}").status_code == 200
    cl.gc()
    assert on_disk(cl, set(ids)) == {i: set() for i in range(cl.n_nodes)}
    assert not {a["id"], b["id"]} & set(listed(cl))


def test_repeated_content_inside_one_file(cl: Cluster) -> None:
    block = os.urandom(MiB)
    data = block * 3 + b"tail"
    up = cl.upload(unique("repeat.bin"), data)
    assert up["chunks"] == 4
    chunk_map = cl.http.get(f"/api/files/{up['id']}/info").json()["chunk_map"]
    assert [ch["id"] for ch in chunk_map] == [sha(block)] * 3 + [sha(b"tail")]
    assert sha(cl.download(up["id"])) == sha(data)
    resp = cl.http.get(f"/api/files/{up['id']}/download",
                       headers={"Range": f"bytes={MiB - 2}-{2 * MiB + 1}"})
    assert resp.status_code == 206 and resp.content == data[MiB - 2 : 2 * MiB + 2]
    cl.http.delete(f"/api/files/{up['id']}")
    cl.gc()
    assert on_disk(cl, {sha(block), sha(b"tail")}) == {i: set() for i in range(cl.n_nodes)}


def test_overwrite_replaces_atomically(cl: Cluster) -> None:
    name = unique("same.txt")
    v1, v2 = os.urandom(MiB + 10), os.urandom(MiB + 20)
    first = cl.upload(name, v1)
    second = cl.upload(name, v2)
    assert second["id"] != first["id"]
    entries = [f for f in listed(cl).values() if f["name"] == name]
    assert len(entries) == 1
    assert entries[0]["id"] == second["id"] and entries[0]["sha256"] == sha(v2)
    assert entries[0]["size"] == len(v2)
    assert sha(cl.download(second["id"])) == sha(v2)
    assert_error(cl.http.get(f"/api/files/{first['id']}/download"), 404)
    # The raw PUT overwrites the same way.
    v3 = os.urandom(5000)
    resp = cl.http.put(f"/api/files/{name}", content=v3)
    assert resp.status_code == 201
    entries = [f for f in listed(cl).values() if f["name"] == name]
    assert [e["sha256"] for e in entries] == [sha(v3)]
    # The replaced versions' chunks are freed on every node.
    old = {sha(v1[:MiB]), sha(v1[MiB:]), sha(v2[:MiB]), sha(v2[MiB:])}
    cl.gc()
    assert on_disk(cl, old) == {i: set() for i in range(cl.n_nodes)}
    assert cl.download(resp.json()["id"]) == v3
    cl.http.delete(f"/api/files/{resp.json()['id']}")
    # A deleted file's id is never handed to a new file.
    again = cl.upload(unique("after-delete.txt"), b"new")
    assert again["id"] > resp.json()["id"]
    cl.http.delete(f"/api/files/{again['id']}")


# -- a client that goes away ------------------------------------------------------


@pytest.mark.parametrize("mode", ["multipart", "raw"])
def test_client_disconnect_mid_upload(cl: Cluster, mode: str) -> None:
    name = unique(f"partial-{mode}.bin")
    prefix = os.urandom(3 * MiB + 1000)
    ids = {sha(prefix[i : i + MiB]) for i in range(0, 3 * MiB, MiB)}
    declared = 40 * MiB
    if mode == "multipart":
        boundary = "disconnect-boundary"
        preamble = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                    f"filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                    ).encode()
        target = "/api/files/upload"
        length = len(preamble) + declared + len(f"\r\n--{boundary}--\r\n")
        ctype = f"multipart/form-data; boundary={boundary}"
    else:
        preamble, target, length, ctype = b"", f"/api/files/{name}", declared, "text/plain"
    sock = cl.open_upload(target, method="POST" if mode == "multipart" else "PUT",
                          ctype=ctype, length=length, first=preamble + prefix)
    try:
        # The brain has stored the prefix's full chunks on the nodes ...
        wait_until(lambda: set().union(*on_disk(cl, ids).values()) == ids, 20,
                   what="the prefix's chunks on disk")
    finally:
        sock.close()  # ... and the client goes away mid-body.

    assert name not in names(cl)

    def collected() -> bool:
        cl.gc()
        return on_disk(cl, ids) == {i: set() for i in range(cl.n_nodes)}

    wait_until(collected, 20, interval=0.3, what="the partial upload's chunks collected")
    assert name not in names(cl)
    assert cl.http.get("/api/files", params={"search": name}).json() == []
