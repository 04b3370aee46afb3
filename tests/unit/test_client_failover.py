"""The Python client moves on to the next brain listed when one cannot be reached,
for the parts of a big upload too (sent from several threads).

A small HTTP server on loopback plays the live brain's part endpoint; the dead
brain is a port nobody listens on.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tossit.client.errors import TossitError
from tossit.client.sdk import TossitClient


class _PartBrain(BaseHTTPRequestHandler):
    received: dict[str, bytes] = {}

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.received[self.path] = body
        number = int(self.path.rsplit("/", 1)[1])
        answer = json.dumps({"number": number, "size": len(body),
                             "md5": hashlib.md5(body).hexdigest(),
                             "uploaded": "2026-12-06T12:00:00+00:00"}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def live_brain() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PartBrain)
    _PartBrain.received = {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def dead_brain() -> str:
    """A loopback port nobody listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_a_part_sent_to_an_unreachable_brain_fails_and_the_next_goes_to_the_next_brain(
        live_brain: str) -> None:
    dead = dead_brain()
    with TossitClient(f"{dead},{live_brain}") as client:
        with pytest.raises(TossitError) as failed:
            client.upload_part("u1", 1, b"first try", size=9)
        assert failed.value.code == "transfer_failed"  # the caller sends it again
        assert client.url == live_brain
        got = client.upload_part("u1", 1, b"first try", size=9)
    assert (got.number, got.size) == (1, 9)
    assert _PartBrain.received == {"/api/uploads/u1/parts/1": b"first try"}


def test_parts_that_failed_on_the_same_brain_move_the_client_on_once(live_brain: str) -> None:
    # Parts go from several threads: news of a brain the client has already
    # left (a thread late to report it) must not move it back to a dead one.
    dead, also_dead = dead_brain(), dead_brain()
    with TossitClient(f"{dead},{also_dead},{live_brain}") as client:
        client._next_brain(dead)
        client._next_brain(dead)  # a second thread with the same news
        assert client.url == also_dead
        client._next_brain(also_dead)
        client._next_brain(dead)  # a third one, late
        assert client.url == live_brain
        client.upload_part("u1", 9, b"last", size=4)
    assert _PartBrain.received["/api/uploads/u1/parts/9"] == b"last"


def test_one_brain_listed_stays_put() -> None:
    dead = dead_brain()
    with TossitClient(dead) as client:
        with pytest.raises(TossitError):
            client.upload_part("u1", 1, b"x", size=1)
        assert client.url == dead


@pytest.fixture
def vanishing_brain() -> Iterator[tuple[str, list[bytes]]]:
    """A brain that reads each request and closes the connection unanswered (it
    died meanwhile); the requests it got are listed."""
    server = socket.create_server(("127.0.0.1", 0))
    got: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                with contextlib.suppress(OSError):
                    got.append(conn.recv(65536))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}", got
    finally:
        server.close()


def test_a_change_the_brain_did_not_answer_is_reported_and_not_sent_again(
        vanishing_brain: tuple[str, list[bytes]], live_brain: str) -> None:
    url, got = vanishing_brain
    with TossitClient(f"{url},{live_brain}") as client, pytest.raises(TossitError) as failed:
        client.upload_bytes(b"photo", "a.jpg")
    assert failed.value.code == "no_answer"
    assert "may or may not have taken effect" in failed.value.message
    sent = [r.split(b" ", 2)[:2] for r in got]
    assert sent == [[b"PUT", b"/api/files/a.jpg?on_conflict=replace"]]
    assert _PartBrain.received == {}  # not sent to the next brain either


def test_a_read_the_brain_did_not_answer_is_asked_of_the_next_brain(
        vanishing_brain: tuple[str, list[bytes]]) -> None:
    url, got = vanishing_brain
    with TossitClient(f"{url},{dead_brain()}") as client, pytest.raises(TossitError) as failed:
        client.status()
    assert failed.value.code == "unreachable"  # both tried, neither answered
    assert len(got) == 1


class _FileBrain(BaseHTTPRequestHandler):
    """Serves file 1's download, with its SHA-256 as the brain sends it."""

    body = b"the photo, whole" * 1000

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-length", str(len(self.body)))
        self.send_header("x-content-sha256", hashlib.sha256(self.body).hexdigest())
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_download_cut_off_by_a_dying_brain_is_fetched_from_the_next(
        vanishing_brain: tuple[str, list[bytes]], tmp_path: Path) -> None:
    url, got = vanishing_brain
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FileBrain)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        live = f"http://127.0.0.1:{server.server_address[1]}"
        with TossitClient(f"{url},{live}") as client:
            out = client.download(1, tmp_path / "photo.jpg")
        assert (tmp_path / "photo.jpg").read_bytes() == _FileBrain.body
        assert out.size == len(_FileBrain.body) and len(got) == 1
        assert not list(tmp_path.glob(".*partial"))
        # One brain listed, and it dies: a clear error, nothing left behind.
        with TossitClient(url) as client, pytest.raises(TossitError) as failed:
            client.download(1, tmp_path / "again.jpg")
        assert failed.value.code == "transfer_failed"
        assert list(tmp_path.iterdir()) == [tmp_path / "photo.jpg"]
    finally:
        server.shutdown()
        server.server_close()
