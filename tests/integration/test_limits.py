"""Slow and oversized requests against a real server started through
``tossit.serve.serve`` (``limits_app.py``: header and body timeouts of 1 s).

Raw sockets, so the tests control exactly when each byte leaves: slowloris
headers, huge header blocks, bodies that stall, JSON bodies over the cap, and
the ordinary traffic (keep-alive, pipelining, big streamed uploads) that must
not be disturbed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cluster import free_port, wait_until

pytestmark = pytest.mark.timeout(60)

HERE = Path(__file__).parent
HEADER_TIMEOUT = 1.0  # as in limits_app.py
BODY_TIMEOUT = 1.0
SLACK = 1.5
KiB = 1 << 10
MiB = 1 << 20


# -- the server -----------------------------------------------------------------


class Server:
    def __init__(self, log_dir: Path, tls: tuple[Path, Path] | None = None) -> None:
        self.port = free_port()
        self.tls = tls
        self.log = log_dir / f"limits-app-{self.port}.log"
        args = [sys.executable, str(HERE / "limits_app.py"), str(self.port)]
        if tls:
            args += [str(tls[0]), str(tls[1])]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        try:
            wait_until(lambda: self.client().get("/ping").status_code == 200, timeout=30,
                       what="the limits app")
        except TimeoutError:
            self.stop()
            raise AssertionError(self.log.read_text()) from None

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=False, timeout=10)

    def connect(self) -> Conn:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        if self.tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            sock = ctx.wrap_socket(sock, server_hostname="127.0.0.1")
        return Conn(sock)

    def outcomes(self, route: str) -> list[dict[str, Any]]:
        with self.client() as c:
            return [o for o in c.get("/outcomes").json() if o["route"] == route]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("limits"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl command to make a test certificate")
    d = tmp_path_factory.mktemp("limits-tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    srv = Server(d, tls=(cert, key))
    yield srv
    srv.stop()


# -- a raw HTTP/1.1 connection ------------------------------------------------------


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


class Conn:
    """A socket plus what was read past the last response (for pipelining)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> bool:
        """False once the server has closed its end."""
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        return True

    def _fill(self, timeout: float) -> bool:
        self.sock.settimeout(timeout)
        try:
            piece = self.sock.recv(256 * KiB)
        except (ConnectionResetError, ssl.SSLError):
            piece = b""
        self.buf += piece
        return bool(piece)

    def response(self, timeout: float = 10.0) -> Response | None:
        """The next response, or None if the server closed without one."""
        while b"\r\n\r\n" not in self.buf:
            if not self._fill(timeout):
                assert not self.buf, f"connection closed mid-response: {bytes(self.buf)!r}"
                return None
        head, _, _ = bytes(self.buf).partition(b"\r\n\r\n")
        del self.buf[:len(head) + 4]
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            assert self._fill(timeout), "connection closed mid-body"
        body = bytes(self.buf[:length])
        del self.buf[:length]
        return Response(int(status_line.split()[1]), headers, body)

    def closed(self, timeout: float = 5.0) -> bool:
        """True if the server closes the connection (EOF or reset) within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if not self._fill(deadline - time.monotonic()):
                    return True
            except TimeoutError:
                return False
        return False

    def readable(self, timeout: float) -> bool:
        """True if the server sent something or hung up within ``timeout``
        (what it sent is kept for ``response``). Not ``select``: over TLS the
        socket is also readable for records that carry no data."""
        if self.buf:
            return True
        try:
            self._fill(timeout)
        except TimeoutError:
            return False
        return True


def request(method: str, target: str, body: bytes = b"", /, **headers: str) -> bytes:
    """Request bytes; ``Content_Type="x"`` becomes ``Content-Type: x``."""
    fields = {k.replace("_", "-"): v for k, v in headers.items()}
    if (body or method in ("POST", "PUT")) and "Transfer-Encoding" not in fields:
        fields.setdefault("Content-Length", str(len(body)))
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in fields.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def assert_error(resp: Response | None, status: int, code: str) -> None:
    assert resp is not None, f"expected {status}, the server closed without answering"
    assert resp.status == status, (resp.status, resp.body[:300])
    assert resp.headers["content-type"] == "application/json"
    assert resp.headers.get("connection") == "close"
    body = resp.json()
    assert body["error"] == code and body["message"], body


# -- ordinary traffic still works -------------------------------------------------


def send_chunks_until_cut_off(conn: Conn) -> int:
    """Send 64 KiB chunks (of a chunked body already begun) until the server
    answers, at most 3 MiB; it must answer 413. Returns the bytes sent."""
    piece = b"%x\r\n" % (64 * KiB) + b"a" * (64 * KiB) + b"\r\n"
    sent = 0
    while sent < 3 * MiB and not conn.readable(0.01):
        assert conn.send(piece), "closed without an answer"
        sent += 64 * KiB
    assert_error(conn.response(timeout=3), 413, "body_too_large")
    return sent


def test_keep_alive_and_pipelining(server: Server) -> None:
    conn = server.connect()
    try:
        payload = os.urandom(4 * KiB)
        for raw, status in [
            (request("GET", "/ping"), 200),
            (request("POST", "/json", b'{"a": 1, "b": 2}', Content_Type="application/json"), 200),
            (request("PUT", "/upload", payload, Content_Type="application/octet-stream"), 200),
            (request("GET", "/ping"), 200),
        ]:
            assert conn.send(raw)
            resp = conn.response()
            assert resp is not None and resp.status == status, resp and resp.body
            assert resp.headers.get("connection") != "close"
        assert resp is not None and resp.json() == {"ok": True}
        # Three requests in one write: three answers, in order, same connection.
        assert conn.send(request("GET", "/ping") + request("PUT", "/upload", payload)
                         + request("GET", "/outcomes"))
        first, second, third = conn.response(), conn.response(), conn.response()
        assert first is not None and first.json() == {"ok": True}
        assert second is not None and second.json()["sha256"] == hashlib.sha256(payload).hexdigest()
        assert third is not None and third.status == 200
        # The connection outlives the header timeout while a request is being served
        # and between requests (keep-alive is uvicorn's 30 s here).
        time.sleep(HEADER_TIMEOUT + 0.5)
        assert conn.send(request("GET", "/ping"))
        resp = conn.response()
        assert resp is not None and resp.status == 200
    finally:
        conn.close()


def test_headers_at_the_limits_are_accepted(server: Server) -> None:
    conn = server.connect()
    try:
        many = {f"X_H{i}": "v" for i in range(90)}
        assert conn.send(request("GET", "/ping", **many))
        resp = conn.response()
        assert resp is not None and resp.status == 200
        assert conn.send(request("GET", "/ping", X_Big="b" * (60 * KiB)))
        resp = conn.response()
        assert resp is not None and resp.status == 200
    finally:
        conn.close()


def test_large_streamed_upload(server: Server) -> None:
    payload = os.urandom(20 * MiB)
    conn = server.connect()
    try:
        assert conn.send(request("PUT", "/upload", Content_Length=str(len(payload)),
                                 Content_Type="application/octet-stream"))
        step = 256 * KiB
        for i in range(0, len(payload), step):
            assert conn.send(payload[i:i + step])
        resp = conn.response(timeout=30)
        assert resp is not None and resp.status == 200, resp and resp.body
        assert resp.json() == {"bytes": len(payload),
                               "sha256": hashlib.sha256(payload).hexdigest()}
    finally:
        conn.close()
    # Chunked (no Content-Length) and over the JSON cap: not a capped type, not cut.
    pieces = [os.urandom(512 * KiB) for _ in range(6)]
    with server.client() as c:
        r = c.put("/upload", content=iter(pieces),
                  headers={"content-type": "application/octet-stream"})
    assert r.status_code == 200, r.text
    assert r.json()["bytes"] == 3 * MiB


def test_body_pauses_shorter_than_the_timeout(server: Server) -> None:
    """The body timeout limits each pause, not the whole body."""
    conn = server.connect()
    try:
        assert conn.send(request("PUT", "/upload", Content_Length=str(4 * 1000)))
        for _ in range(4):
            time.sleep(BODY_TIMEOUT * 0.5)
            assert conn.send(b"x" * 1000)
        resp = conn.response()
        assert resp is not None and resp.status == 200, resp and resp.body
        assert resp.json()["bytes"] == 4000
    finally:
        conn.close()


# -- slow headers -------------------------------------------------------------------


def test_idle_connection_is_closed(server: Server) -> None:
    conn = server.connect()
    try:
        start = time.monotonic()
        assert conn.closed(timeout=HEADER_TIMEOUT + SLACK)
        assert time.monotonic() - start > HEADER_TIMEOUT * 0.8
        assert not conn.buf
    finally:
        conn.close()


def _slowloris(conn: Conn) -> tuple[Response | None, float]:
    """Send headers one byte every 0.3 s until the server answers or hangs up."""
    raw = request("GET", "/ping", X_Padding="p" * 100)
    start = time.monotonic()
    for i in range(len(raw) - 2):  # never the final CRLF
        if conn.readable(0.3) or not conn.send(raw[i:i + 1]):
            break
        assert time.monotonic() - start < HEADER_TIMEOUT + SLACK, "not cut off in time"
    resp = conn.response(timeout=SLACK)
    return resp, time.monotonic() - start


@pytest.mark.parametrize("after_a_request", [False, True])
def test_slowloris_headers_are_cut_off(server: Server, after_a_request: bool) -> None:
    conn = server.connect()
    try:
        if after_a_request:  # the deadline also applies on a kept-alive connection
            assert conn.send(request("GET", "/ping"))
            ok = conn.response()
            assert ok is not None and ok.status == 200
        resp, elapsed = _slowloris(conn)
        assert HEADER_TIMEOUT * 0.8 < elapsed < HEADER_TIMEOUT + SLACK, elapsed
        assert_error(resp, 408, "request_timeout")
        assert conn.closed(timeout=3)
    finally:
        conn.close()


def test_slowloris_over_tls(tls_server: Server) -> None:
    with tls_server.client() as c:
        assert c.get("/ping").json() == {"ok": True}
    conn = tls_server.connect()
    try:
        resp, elapsed = _slowloris(conn)
        assert HEADER_TIMEOUT * 0.8 < elapsed < HEADER_TIMEOUT + SLACK, elapsed
        assert_error(resp, 408, "request_timeout")
        assert conn.closed(timeout=3)
    finally:
        conn.close()


# -- big headers ------------------------------------------------------------------------


def test_200_kib_of_headers_is_431(server: Server) -> None:
    conn = server.connect()
    try:
        conn.send(request("GET", "/ping", X_Big="b" * (200 * KiB)))
        assert_error(conn.response(), 431, "headers_too_large")
        assert conn.closed(timeout=3)
    finally:
        conn.close()


def test_unfinished_header_block_is_refused_when_too_big(server: Server) -> None:
    """The cap holds before the block is complete: httptools buffers it meanwhile."""
    conn = server.connect()
    try:
        start = time.monotonic()
        conn.send(b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: ")
        for _ in range(16):  # 128 KiB of one header value, never finished
            if conn.readable(0.02) or not conn.send(b"b" * (8 * KiB)):
                break
        assert_error(conn.response(), 431, "headers_too_large")
        assert time.monotonic() - start < HEADER_TIMEOUT, "refused by the timeout, not the cap"
    finally:
        conn.close()


def test_150_header_fields_is_431(server: Server) -> None:
    conn = server.connect()
    try:
        conn.send(request("GET", "/ping", **{f"X_H{i}": "v" for i in range(150)}))
        assert_error(conn.response(), 431, "headers_too_large")
        assert conn.closed(timeout=3)
    finally:
        conn.close()


# -- bodies -------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["upload", "chunk"])
def test_stalled_body_is_408_and_the_handler_sees_it_incomplete(
        server: Server, route: str) -> None:
    before = len(server.outcomes(route))
    conn = server.connect()
    try:
        conn.send(request("PUT", f"/{route}", Content_Length="100000",
                          Content_Type="application/octet-stream") + b"x" * 30000)
        start = time.monotonic()
        resp = conn.response(timeout=BODY_TIMEOUT + SLACK + 1)
        elapsed = time.monotonic() - start
        assert_error(resp, 408, "request_timeout")
        assert BODY_TIMEOUT * 0.8 < elapsed < BODY_TIMEOUT + SLACK, elapsed
        assert conn.closed(timeout=3)
    finally:
        conn.close()
    seen = server.outcomes(route)[before:]
    assert seen == [{"route": route, "complete": False, "bytes": 30000,
                     "error": "BodyTimeout"}]


def test_json_over_the_cap_is_413_unread(server: Server) -> None:
    before = len(server.outcomes("json"))
    conn = server.connect()
    try:
        # Only the headers and a first slice: the answer must not wait for the rest.
        conn.send(request("POST", "/json", Content_Length=str(2 * MiB),
                          Content_Type="application/json; charset=utf-8") + b'{"a": "')
        assert_error(conn.response(timeout=3), 413, "body_too_large")
    finally:
        conn.close()
    # Form bodies too.
    conn = server.connect()
    try:
        conn.send(request("POST", "/json", Content_Length=str(2 * MiB),
                          Content_Type="application/x-www-form-urlencoded"))
        assert_error(conn.response(timeout=3), 413, "body_too_large")
    finally:
        conn.close()
    assert server.outcomes("json")[before:] == []


def test_chunked_json_over_the_cap_is_cut_off(server: Server) -> None:
    before = len(server.outcomes("json"))
    conn = server.connect()
    try:
        conn.send(request("POST", "/json", Transfer_Encoding="chunked",
                          Content_Type="application/json") + b"2\r\n[\"\r\n")
        sent = send_chunks_until_cut_off(conn)
        assert sent >= MiB  # plus the 2-byte first chunk: just over the cap
    finally:
        conn.close()
    assert server.outcomes("json")[before:] == []


def test_json_under_the_cap_is_fine(server: Server) -> None:
    with server.client() as c:
        r = c.post("/json", json={"k": "v" * (900 * KiB)})
        assert r.status_code == 200 and r.json() == {"keys": 1}
        # Chunked, under the cap.
        body = json.dumps({"a": 1, "b": "x" * 100_000}).encode()
        r = c.post("/json", content=iter([body[:50_000], body[50_000:]]),
                   headers={"content-type": "application/json"})
        assert r.status_code == 200 and r.json() == {"keys": 2}


def test_json_file_upload_to_a_stream_path_is_not_capped(server: Server) -> None:
    """A PUT upload under ``stream_paths`` is a file that happens to be JSON."""
    payload = b"[" + b"1," * (1 * MiB) + b"1]"
    with server.client() as c:
        r = c.put("/upload", content=payload, headers={"content-type": "application/json"})
        assert r.status_code == 200, r.text
        assert r.json()["bytes"] == len(payload)
        # Not a stream path: capped.
        r = c.put("/chunk", content=payload,
                  headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"] == "body_too_large"


@pytest.mark.parametrize("ctype", ["text/plain", "application/octet-stream",
                                   "application/x-json-stream", None])
def test_any_body_off_the_upload_routes_is_capped(server: Server, ctype: str | None) -> None:
    """FastAPI reads a body whole whatever its type: the cap goes by route."""
    before = len(server.outcomes("chunk"))
    headers = {"Content_Type": ctype} if ctype else {}
    conn = server.connect()
    try:
        conn.send(request("PUT", "/chunk", Content_Length=str(2 * MiB), **headers) + b"x")
        assert_error(conn.response(timeout=3), 413, "body_too_large")
    finally:
        conn.close()
    conn = server.connect()
    try:  # chunked: cut off once past the cap
        conn.send(request("PUT", "/chunk", Transfer_Encoding="chunked", **headers))
        send_chunks_until_cut_off(conn)
    finally:
        conn.close()
    seen = server.outcomes("chunk")[before:]
    assert [o["complete"] for o in seen] == [False], seen


@pytest.mark.parametrize("raw", [b"GARBAGE\r\n\r\n", b"GET /ping HTTP/1.1\r\nHost x\r\n\r\n",
                                 b"GET /ping HTTP/1.1\r\nContent-Length: -5\r\n\r\n"])
def test_malformed_http_gets_the_json_error_shape(server: Server, raw: bytes) -> None:
    conn = server.connect()
    try:
        conn.send(raw)
        assert_error(conn.response(timeout=3), 400, "invalid_request")
        assert conn.closed(timeout=3)
    finally:
        conn.close()
