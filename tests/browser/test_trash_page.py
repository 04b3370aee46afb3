"""The dashboard's Trash page in Chromium: a deleted file is listed, restored,
deleted forever; the trash is emptied after a confirmation; the capacity card
shows what the trash holds; a readwrite key cannot purge."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from browser_pages import shot, sign_in
from cluster import Cluster


@pytest.fixture(scope="module")
def cl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Its own cluster, with the trash on (the shared one has it off)."""
    c = Cluster(tmp_path_factory.mktemp("trash-page"), nodes=3, replicas=3,
                chunk_size="256KiB", brain_env={"TOSSIT_TRASH_KEEP": "604800"})
    c.start()
    yield c
    c.stop()


def put(cl: Cluster, name: str, data: bytes) -> int:
    resp = cl.http.put(f"/api/files/{name}", content=data)
    assert resp.status_code == 201, resp.text
    return int(resp.json()["id"])


def row(page: Any, name: str) -> Any:
    return page.locator("#trash-table tbody tr", has=page.locator(".trash-name", has_text=name))


def in_trash(cl: Cluster) -> set[int]:
    return {f["id"] for f in cl.http.get("/api/trash").json()["files"]}


def test_restore_delete_forever_and_empty(cl: Cluster, open_page: Any, artifacts: Path) -> None:
    keep, purge, rest = os.urandom(600_000), os.urandom(300_000), os.urandom(1000)
    ids = {n: put(cl, n, d) for n, d in (("keep.bin", keep), ("purge.bin", purge),
                                          ("rest.bin", rest))}
    for i in ids.values():
        assert cl.http.delete(f"/api/files/{i}").status_code == 200
    page, _ = open_page()
    sign_in(page, cl.admin_key)
    expect(page.locator("#cap-trash")).to_contain_text("In trash: ")
    expect(page.locator("#cap-trash")).to_contain_text("3 files")
    page.get_by_role("link", name="Trash", exact=True).click()
    expect(page.locator("#trash-table tbody tr")).to_have_count(3)
    expect(page.locator("#trash-total")).to_contain_text("3 files")
    expect(row(page, "keep.bin")).to_contain_text("Deleted")
    shot(page, artifacts, "trash")

    # Restore: the file is back, byte for byte.
    row(page, "keep.bin").locator("button.restore").click()
    dialog = page.locator("dialog[open]")
    expect(dialog).to_contain_text("keep.bin")
    shot(page, artifacts, "trash-restore")
    dialog.locator("[data-action=ok]").click()
    expect(dialog).to_have_count(0)
    expect(row(page, "keep.bin")).to_have_count(0)
    got = cl.http.get(f"/api/files/{ids['keep.bin']}/download")
    assert hashlib.sha256(got.content).hexdigest() == hashlib.sha256(keep).hexdigest()

    # Delete one forever.
    row(page, "purge.bin").locator("button.purge").click()
    dialog = page.locator("dialog[open]")
    expect(dialog).to_contain_text("cannot be undone")
    dialog.locator("[data-action=ok]").click()
    expect(row(page, "purge.bin")).to_have_count(0)
    assert in_trash(cl) == {ids["rest.bin"]}

    # Empty: asks first; cancelling keeps everything.
    page.locator("#trash-empty").click()
    dialog = page.locator("dialog[open]")
    expect(dialog).to_contain_text("1 file will be deleted for good")
    shot(page, artifacts, "trash-empty-confirm")
    dialog.locator("[data-action=cancel]").click()
    assert in_trash(cl) == {ids["rest.bin"]}
    page.locator("#trash-empty").click()
    page.locator("dialog[open] [data-action=ok]").click()
    expect(page.locator("#trash-table")).to_contain_text("The trash is empty")
    assert in_trash(cl) == set()


def test_a_readwrite_key_restores_but_cannot_purge(cl: Cluster, open_page: Any,
                                                   artifacts: Path) -> None:
    fid = put(cl, "rw.bin", b"readwrite")
    assert cl.http.delete(f"/api/files/{fid}").status_code == 200
    made = cl.http.post("/api/keys", json={"name": "rw", "role": "readwrite"}).json()
    page, _ = open_page()
    sign_in(page, made["secret"])
    page.goto(cl.url + "/#/trash")
    expect(row(page, "rw.bin")).to_have_count(1)
    expect(row(page, "rw.bin").locator("button.purge")).to_be_disabled()
    expect(row(page, "rw.bin").locator("button.purge")).to_have_attribute(
        "title", re.compile("admin key"))
    expect(page.locator("#trash-empty")).to_be_disabled()
    expect(row(page, "rw.bin").locator("button.restore")).to_be_enabled()
    # The reason is in words once, next to "Empty trash", not on every row.
    expect(page.locator(".why-text")).to_have_count(1)
    expect(page.locator(".why-text")).to_contain_text("admin key")
    shot(page, artifacts, "trash-readwrite")
    assert fid in in_trash(cl)


def test_a_readonly_key_is_told_why_it_sees_no_trash(cl: Cluster, open_page: Any) -> None:
    made = cl.http.post("/api/keys", json={"name": "ro", "role": "readonly"}).json()
    page, _ = open_page()
    sign_in(page, made["secret"])
    page.goto(cl.url + "/#/trash")
    expect(page.locator("#trash-table")).to_contain_text("Needs a readwrite key")
    expect(page.locator("#trash-empty")).to_be_disabled()


def test_a_restore_onto_a_taken_name_says_what_to_choose(cl: Cluster, open_page: Any) -> None:
    """The API's 409 names its parameters (on_conflict=rename); the dialog says it
    in its own choices, and keeping both then works."""
    first = put(cl, "clash.txt", b"old")
    assert cl.http.delete(f"/api/files/{first}").status_code == 200
    put(cl, "clash.txt", b"new")
    page, _ = open_page()
    sign_in(page, cl.admin_key)
    page.get_by_role("link", name="Trash", exact=True).click()
    row(page, "clash.txt").locator("button.restore").click()
    dialog = page.locator("dialog[open]")
    dialog.locator("[data-action=ok]").click()
    error = dialog.locator(".dialog-error")
    expect(error).to_contain_text('A file named clash.txt exists now: choose "Keep both"')
    expect(error).not_to_contain_text("on_conflict")
    dialog.locator("#restore-conflict").select_option("rename")
    dialog.locator("[data-action=ok]").click()
    expect(dialog).to_have_count(0)
    names = {f["name"] for f in cl.http.get("/api/files", params={"search": "clash"}).json()}
    assert names == {"clash.txt", "clash (2).txt"}
