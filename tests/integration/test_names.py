"""Names that lie (issue 15's pen test): text a user or attacker chose must show
what it is and never break a download or a terminal. Real processes throughout."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from alembic import command
from alembic.config import Config

from cluster import Cluster
from tossit.brain.db import MIGRATIONS


@pytest.fixture(scope="module")
def cl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("names"), nodes=3, replicas=3)
    c.start()
    yield c
    c.stop()


def tossit(cl: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tossit", *args, "--brain", cl.url],
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, COLUMNS="250",
                                   TOSSIT_KEY_FILE=str(cl.root / "brain" / "admin.key")))


@pytest.mark.parametrize("name", [
    "evil\u202egpj.exe",  # shows as "evilexe.jpg"
    "a\u200fb.txt", "iso\u2066late.txt", "mark\u061c.txt",
    "c1-\u0085-next-line.txt", "c1-\u009b-csi.txt", "tab\there.txt",
])
def test_names_with_control_or_direction_characters_are_refused(cl: Cluster, name: str) -> None:
    resp = cl.http.put(f"/api/files/{quote(name)}", content=b"x")
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_name", resp.text
    assert "U+" in resp.json()["message"]
    if "\t" not in name:  # (httpx escapes a tab in a multipart file name)
        resp = cl.http.post("/api/files/upload", files={"file": (name, b"x")})
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_name", resp.text
    assert not [f for f in cl.http.get("/api/files").json() if f["name"] == name]


def test_joiners_stay_allowed(cl: Cluster) -> None:
    """Persian and emoji names need the zero-width joiners."""
    for name in ("می\u200cخواهم.txt", "family-\U0001f468\u200d\U0001f469\u200d\U0001f467.jpg"):
        up = cl.upload(name, b"ok")
        assert up["name"] == name


def test_key_names_with_direction_characters_are_refused(cl: Cluster) -> None:
    for name in ("admin\u202e", "x\u0085y"):
        resp = cl.http.post("/api/keys", json={"name": name, "role": "readonly"})
        assert resp.status_code in (400, 422), resp.text
    assert not [k for k in cl.http.get("/api/keys").json() if "\u202e" in k["name"]]


@pytest.mark.parametrize("ctype", ["text/\u20ac", "text/plain\x01", "text/plain\nX-Evil: 1",
                                   "no-slash", "text/plain; charset"])
def test_a_part_content_type_that_is_no_media_type_is_refused(cl: Cluster, ctype: str) -> None:
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"ct.txt\"\r\nContent-Type: {ctype}\r\n\r\nhello\r\n--{boundary}--\r\n"
            ).encode()
    resp = cl.http.post("/api/files/upload", content=body,
                        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_content_type", resp.text


def test_valid_media_types_with_parameters_are_kept(cl: Cluster) -> None:
    resp = cl.http.post("/api/files/upload", files={
        "file": ("kept.txt", b"hello", 'text/plain; charset="utf-8"')})
    assert resp.status_code == 201
    got = cl.http.get(f"/api/files/{resp.json()['id']}/download")
    assert got.headers["content-type"] == 'text/plain; charset="utf-8"'


def test_the_cli_prints_names_as_they_are(cl: Cluster) -> None:
    """Rich markup in a name crashed 'tossit ls' for everyone, or hid a link."""
    names = ["cli[/oops].txt", "[link=mailto:x@evil.example]safe.txt[/link]", "[bold]b[/].txt"]
    ids = []
    for n in names:  # (raw PUTs: a multipart file name loses its folders)
        resp = cl.http.put(f"/api/files/{quote(n)}", content=b"markup")
        assert resp.status_code == 201 and resp.json()["name"] == n, resp.text
        ids.append(resp.json()["id"])
    out = tossit(cl, "ls", "--limit", "500")
    assert out.returncode == 0, out.stderr
    for n in names:
        assert n in out.stdout, (n, out.stdout)
    info = tossit(cl, "info", str(ids[1]))
    assert info.returncode == 0 and names[1] in info.stdout, info.stdout + info.stderr
    rm = tossit(cl, "rm", str(ids[0]))
    assert rm.returncode == 0 and f"deleted {names[0]}" in rm.stdout, rm.stdout + rm.stderr


def test_a_stored_bad_media_type_is_repaired_by_the_migration(cl: Cluster) -> None:
    """Values stored before the check made every download of their file fail: the
    0008 migration turns them into application/octet-stream."""
    up: dict[str, Any] = cl.upload("old-upload.bin", b"stored before the check")
    cl.stop_brain()
    path = cl.root / "brain" / "tossit.db"
    cfg = Config()  # the schema as it was before 0008, then the bad value stored
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", f"sqlite+aiosqlite:///{path}")
    command.downgrade(cfg, "0007")
    db = sqlite3.connect(path)
    try:
        db.execute("UPDATE objects SET content_type = ? WHERE id = ?", ("text/\u20ac\n", up["id"]))
        db.commit()
    finally:
        db.close()
    cl.start_brain()
    cl.wait_online(3)
    got = cl.http.get(f"/api/files/{up['id']}/download")
    assert got.status_code == 200 and got.content == b"stored before the check"
    assert got.headers["content-type"] == "application/octet-stream"
    meta = cl.http.get(f"/api/files/{up['id']}").json()
    assert meta["content_type"] == "application/octet-stream"


def test_a_name_that_is_not_utf8_is_refused_not_replaced(cl: Cluster) -> None:
    """A bad byte used to become U+FFFD: a stored name the client never sent."""
    resp = cl.http.put("/api/files/bad-%FF-byte.txt", content=b"x")
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_name", resp.text
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\""
            ).encode() + b"bad-\xff-byte.txt" + (
            f"\"\r\n\r\nhello\r\n--{boundary}--\r\n").encode()
    resp = cl.http.post("/api/files/upload", content=body,
                        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert resp.status_code == 400, resp.text
    assert not [f for f in cl.http.get("/api/files").json() if "\ufffd" in f["name"]]
