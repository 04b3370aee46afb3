"""The dashboard in a real browser (Chromium) against a real brain and nodes.

Each test signs in through the page and asserts on what the page shows and on
what the API then says (bytes, counts, states). Screenshots of every page go to
the artifacts folder (see conftest.py) for people to look at.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from browser_pages import shot, sign_in
from cluster import Cluster, wait_until

expect = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed"
).expect

Opener = Callable[..., tuple[Any, Any]]
XSS_NAME = "<img src=x onerror=alert(1)>"
MiB = 1024 * 1024


def make_key(cl: Cluster, role: str, name: str | None = None) -> dict[str, Any]:
    resp = cl.http.post("/api/keys", json={"name": name or f"browser {role}", "role": role})
    assert resp.status_code == 201, resp.text
    key: dict[str, Any] = resp.json()
    return key


def listed(cl: Cluster, search: str) -> list[dict[str, Any]]:
    resp = cl.http.get("/api/files", params={"search": search, "limit": 100})
    assert resp.status_code == 200, resp.text
    files: list[dict[str, Any]] = resp.json()
    return files


def put_file(cl: Cluster, name: str, data: bytes) -> dict[str, Any]:
    resp = cl.http.put("/api/files/" + quote(name, safe="/"), content=data)
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


def drop_files(page: Any, files: dict[str, bytes], target: str = "#dropzone") -> None:
    """Drop files on the page as a user dragging them from a file manager would:
    a DataTransfer holding File objects, dispatched as dragenter + drop."""
    payload = [{"name": n, "b64": base64.b64encode(d).decode()} for n, d in files.items()]
    dt = page.evaluate_handle(
        """(files) => {
            const dt = new DataTransfer();
            for (const f of files) {
                const bin = atob(f.b64);
                const bytes = new Uint8Array(bin.length);
                for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
                dt.items.add(new File([bytes], f.name, {type: "application/octet-stream"}));
            }
            return dt;
        }""", payload)
    page.dispatch_event(target, "dragenter", {"dataTransfer": dt})
    page.dispatch_event(target, "dragover", {"dataTransfer": dt})
    page.dispatch_event(target, "drop", {"dataTransfer": dt})


def file_row(page: Any, name: str) -> Any:
    return page.locator("#files-table tbody tr").filter(
        has=page.get_by_role("link", name=name, exact=True))


# -- sign in ---------------------------------------------------------------------


def test_sign_in_rejects_a_bad_key_then_shows_the_overview(
        cl: Cluster, open_page: Opener, artifacts: Path) -> None:
    page, _ = open_page()
    expect(page.locator("#signin")).to_be_visible()
    expect(page.locator("#signin")).to_contain_text("data/brain/admin.key")
    shot(page, artifacts, "signin")
    page.locator("#signin-key").fill("not-a-real-key-0123456789")
    page.locator("#signin-submit").click()
    expect(page.locator("#signin-error")).to_be_visible()
    expect(page.locator("#signin-error")).to_contain_text("unknown API key")
    expect(page.locator("#shell")).to_be_hidden()
    shot(page, artifacts, "signin-error")

    put_file(cl, "overview-sample.bin", os.urandom(700_000))
    sign_in(page, cl.admin_key)
    expect(page.locator("#whoami")).to_contain_text("admin")
    status = cl.http.get("/api/status").json()
    # The numbers are the API's, formatted (1,234).
    expect(page.locator(".card.data .metric")).to_contain_text(f"{status['objects']:,}")
    expect(page.locator(".nodes-card .metric")).to_contain_text(
        f"of {status['nodes']['total']} online")
    expect(page.locator(".health .legend [data-bucket=atR] .legend-value")).to_have_text(
        re.compile(r"^[\d,]+ chunks$"))
    expect(page.locator(".health .verdict")).not_to_be_empty()
    expect(page.locator(".tp .tp-value[data-tp=in]")).to_contain_text("/s")
    # The upload made before signing in shows in the chart (2 s buckets, pushed
    # every 2 s), without a reload.
    expect(page.locator(".tp .chart-svg")).not_to_have_attribute(
        "aria-label", re.compile(r"peak 0 B/s"), timeout=10_000)
    # A page reload keeps the session (the cookie), without the sign-in screen.
    page.reload()
    expect(page.locator("#shell")).to_be_visible()
    expect(page.locator("#signin")).to_be_hidden()
    expect(page.locator(".card.data .metric")).to_be_visible()
    shot(page, artifacts, "overview")


# -- files -------------------------------------------------------------------------


def test_drop_two_files_download_one_delete_the_other(
        cl: Cluster, open_page: Opener, artifacts: Path) -> None:
    page, _ = open_page()
    sign_in(page, cl.admin_key)
    page.get_by_role("link", name="Files", exact=True).click()
    expect(page.locator("#files-table")).to_be_visible()
    a, b = os.urandom(3 * MiB + 123), os.urandom(2 * MiB + 456)
    drop_files(page, {"drop-a.bin": a, "drop-b.bin": b})

    rows = page.locator("#upload-list .upload")
    expect(rows).to_have_count(2)
    for name in ("drop-a.bin", "drop-b.bin"):
        row = page.locator(f'#upload-list .upload[data-name="{name}"]')
        expect(row).to_have_attribute("data-status", "done", timeout=30000)
        expect(row.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
        expect(row.locator(".upload-status")).to_contain_text("Uploaded")
    shot(page, artifacts, "files-uploads")

    # Both are listed on the page and by the API, with their sizes.
    expect(file_row(page, "drop-a.bin")).to_have_count(1)
    expect(file_row(page, "drop-b.bin")).to_have_count(1)
    by_name = {f["name"]: f for f in listed(cl, "drop-")}
    assert by_name["drop-a.bin"]["size"] == len(a)
    assert by_name["drop-b.bin"]["size"] == len(b)
    assert by_name["drop-a.bin"]["sha256"] == hashlib.sha256(a).hexdigest()

    # Download one through the page: the same bytes.
    with page.expect_download() as info:
        file_row(page, "drop-a.bin").locator("[data-action=download]").click()
    download = info.value
    assert download.suggested_filename == "drop-a.bin"
    assert Path(download.path()).read_bytes() == a

    # Delete the other, confirming in the dialog.
    file_row(page, "drop-b.bin").locator("[data-action=delete]").click()
    dialog = page.locator("dialog[open]")
    expect(dialog).to_contain_text("drop-b.bin")
    shot(page, artifacts, "dialog-delete")
    dialog.locator("[data-action=ok]").click()
    expect(dialog).to_have_count(0)
    expect(file_row(page, "drop-b.bin")).to_have_count(0)
    names = {f["name"] for f in listed(cl, "drop-")}
    assert "drop-b.bin" not in names and "drop-a.bin" in names
    shot(page, artifacts, "files")


def test_a_file_dropped_outside_the_drop_zone_does_not_replace_the_dashboard(
        cl: Cluster, open_page: Opener) -> None:
    """Chromium opens a file dropped where no one handles it in place of the
    page (uploads in the tray would go with it): the dashboard takes every file
    drop it does not use, on every page."""
    page, _ = open_page()
    sign_in(page, cl.admin_key)
    for where in ("header", "#main"):
        handled = page.evaluate("""(sel) => {
            const dt = new DataTransfer();
            dt.items.add(new File(["x"], "x.txt", {type: "text/plain"}));
            const ev = new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true});
            document.querySelector(sel).dispatchEvent(ev);
            return ev.defaultPrevented;
        }""", where)
        assert handled, where
    assert page.url.startswith(cl.url)


def test_upload_with_the_button(cl: Cluster, open_page: Opener) -> None:
    page, _ = open_page()
    sign_in(page, cl.admin_key)
    page.goto(cl.url + "/#/files")
    data = os.urandom(MiB + 17)
    with page.expect_file_chooser() as chooser:
        page.locator("#upload-button").click()
    chooser.value.set_files([{"name": "picked.bin", "mimeType": "application/octet-stream",
                              "buffer": data}])
    row = page.locator('#upload-list .upload[data-name="picked.bin"]')
    expect(row).to_have_attribute("data-status", "done", timeout=30000)
    expect(file_row(page, "picked.bin")).to_have_count(1)
    (f,) = listed(cl, "picked.bin")
    assert f["size"] == len(data) and f["sha256"] == hashlib.sha256(data).hexdigest()


def test_a_taken_name_asks_replace_keep_both_or_skip(
        cl: Cluster, open_page: Opener, artifacts: Path) -> None:
    """Three files whose names are taken: Keep both for the first, Replace for the
    second, Skip for the third; then nothing was replaced that should not be."""
    old = {n: put_file(cl, n, f"old {n}".encode()) for n in ("c-keep.txt", "c-repl.txt",
                                                              "c-skip.txt")}
    page, _ = open_page()
    sign_in(page, cl.admin_key)
    page.goto(cl.url + "/#/files")
    expect(page.locator("#files-table")).to_be_visible()
    drop_files(page, {n: f"new {n}".encode() for n in old})
    dialog = page.locator("dialog[open]")
    for name, action in (("c-keep.txt", "rename"), ("c-repl.txt", "replace"),
                         ("c-skip.txt", "skip")):
        expect(dialog).to_contain_text(name)
        if name == "c-keep.txt":
            shot(page, artifacts, "dialog-name-taken")
        dialog.locator(f"[data-action={action}]").click()
    expect(page.locator("dialog[open]")).to_have_count(0)
    kept = page.locator('#upload-list .upload[data-name="c-keep.txt"]')
    expect(kept).to_have_attribute("data-status", "done", timeout=30000)
    expect(kept.locator(".upload-status")).to_contain_text("stored as c-keep (2).txt")
    expect(page.locator('#upload-list .upload[data-name="c-repl.txt"]')).to_have_attribute(
        "data-status", "done", timeout=30000)
    expect(page.locator('#upload-list .upload[data-name="c-skip.txt"]')).to_have_count(0)
    by_name = {f["name"]: f for f in listed(cl, "c-")}
    assert cl.download(by_name["c-keep.txt"]["id"]) == b"old c-keep.txt"
    assert cl.download(by_name["c-keep (2).txt"]["id"]) == b"new c-keep.txt"
    assert cl.download(by_name["c-repl.txt"]["id"]) == b"new c-repl.txt"
    assert cl.download(by_name["c-skip.txt"]["id"]) == b"old c-skip.txt"


def test_upload_errors_show_the_server_message_and_retry_works(
        cl: Cluster, open_page: Opener) -> None:
    page, _ = open_page()
    sign_in(page, cl.admin_key)
    page.goto(cl.url + "/#/files")
    expect(page.locator("#files-table")).to_be_visible()
    calls: list[str] = []

    def flaky(route: Any) -> None:
        calls.append(route.request.method)
        if len(calls) == 1:  # the first try meets a cluster short of nodes
            route.fulfill(status=503, content_type="application/json", body=json.dumps(
                {"error": "not_enough_nodes", "message": "only 1 node can take writes, 2 needed",
                 "needed": 2, "available": 1}))
        else:
            route.continue_()

    page.route("**/api/files/retry-me.bin?*", flaky)
    data = os.urandom(MiB // 2)
    # A name the brain refuses for real (control character): its message is shown.
    drop_files(page, {"retry-me.bin": data, "bad\u0001name.bin": b"x"})
    bad = page.locator('#upload-list .upload[data-name="bad\u0001name.bin"]')
    expect(bad).to_have_attribute("data-status", "failed")
    expect(bad.locator(".upload-status")).to_contain_text("control or text-direction characters")
    row = page.locator('#upload-list .upload[data-name="retry-me.bin"]')
    expect(row).to_have_attribute("data-status", "failed")
    expect(row.locator(".upload-status")).to_contain_text("only 1 node can take writes")
    row.get_by_role("button", name="Retry").click()
    expect(row).to_have_attribute("data-status", "done", timeout=30000)
    assert calls == ["PUT", "PUT"]
    (f,) = listed(cl, "retry-me.bin")
    assert f["size"] == len(data)
    assert not listed(cl, "name.bin")


def test_cancel_an_upload(cl: Cluster, open_page: Opener) -> None:
    page, _ = open_page()
    sign_in(page, cl.admin_key)
    page.goto(cl.url + "/#/files")
    expect(page.locator("#files-table")).to_be_visible()
    # Hold the request so that it is still running when Cancel is clicked.
    page.route("**/api/files/cancel-me.bin?*", lambda route: None)
    drop_files(page, {"cancel-me.bin": os.urandom(64 * 1024)})
    row = page.locator('#upload-list .upload[data-name="cancel-me.bin"]')
    expect(row).to_have_attribute("data-status", re.compile("sending|storing"))
    expect(page.locator("#nav-uploads")).to_have_text("1")  # running uploads, on every page
    row.get_by_role("button", name="Cancel").click()
    expect(row).to_have_attribute("data-status", "cancelled")
    expect(page.locator("#nav-uploads")).to_be_hidden()
    expect(row.get_by_role("button", name="Retry")).to_be_visible()
    page.unroute("**/api/files/cancel-me.bin")
    assert not listed(cl, "cancel-me.bin")


def test_the_upload_tray_sums_up_collapses_and_shows_a_failure(
        cl: Cluster, open_page: Opener, artifacts: Path) -> None:
    """Four files through a slowed link and one name the brain refuses: one
    overall line (files, bytes, speed, time left), bytes done never above the
    total, the failed file first with its reason and a Retry, collapse/expand."""
    page, _ = open_page()
    sign_in(page, cl.admin_key)
    page.goto(cl.url + "/#/files")
    expect(page.locator("#files-table")).to_be_visible()
    # About 1 MB/s for the whole page, so that the uploads take a few seconds.
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1,
        "uploadThroughput": 1_000_000})
    # Every state of the tray as it changes (its data attributes), to check afterwards.
    page.evaluate("""() => {
        window.__tray = [];
        setInterval(() => {
            const t = document.querySelector("#upload-tray");
            if (t && !t.hidden) window.__tray.push({...t.dataset,
                text: document.querySelector("#tray-summary").textContent});
        }, 100);
    }""")
    files = {f"tray-{i}.bin": os.urandom(MiB + i * 1000) for i in range(4)}
    drop_files(page, {**files, "tray-bad\u0001.bin": b"refused"})
    tray = page.locator("#upload-tray")
    expect(tray).to_be_visible()
    expect(tray).to_have_attribute("data-state", "running")
    expect(page.locator("#upload-list .upload")).to_have_count(5)
    summary = page.locator("#tray-summary")
    # A speed over the last seconds and the time left, once they are known.
    expect(summary).to_contain_text(re.compile(r"Uploading \d of [45] files · .+ of 4\.01 MiB · "
                                               r"[\d.]+ [kM]B/s · [\d.]+ s left"),
                                     timeout=15_000)
    shot(page, artifacts, "upload-tray-running")
    # The failed one comes first, with its reason and a Retry.
    first = page.locator("#upload-list .upload").first
    expect(first).to_have_attribute("data-name", "tray-bad\u0001.bin")
    expect(first).to_have_attribute("data-status", "failed")
    expect(first.locator(".upload-status")).to_contain_text("control or text-direction")
    expect(first.get_by_role("button", name="Retry")).to_be_visible()

    # Collapsed: one line, the list hidden; expanded again: the rows are back.
    toggle = page.locator("#tray-toggle")
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(page.locator("#upload-list")).to_be_hidden()
    expect(summary).to_be_visible()
    box = tray.bounding_box()
    assert box is not None and box["height"] < 90, box
    shot(page, artifacts, "upload-tray-collapsed")
    # It stays on other pages while the uploads go on.
    page.get_by_role("link", name="Nodes", exact=True).click()
    expect(page.locator("#nodes-table")).to_be_visible()
    expect(tray).to_be_visible()
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(page.locator("#upload-list .upload")).to_have_count(5)

    total = sum(len(d) for d in files.values())
    expect(tray).to_have_attribute("data-state", "failed", timeout=30_000)
    expect(tray).to_have_attribute("data-done-files", "4")
    expect(tray).to_have_attribute("data-failed", "1")
    expect(tray).to_have_attribute("data-bytes", str(total))
    expect(tray).to_have_attribute("data-done-bytes", str(total))
    expect(summary).to_have_text("4 files uploaded (4.01 MiB) · 1 failed")
    shot(page, artifacts, "upload-tray-done")
    log = page.evaluate("window.__tray")
    running = [s for s in log if s["state"] == "running"]
    assert len(running) >= 5, log[:3]
    # The total counts the refused file's 7 bytes only until it failed.
    assert {int(s["bytes"]) for s in running} <= {total, total + 7}
    assert all(0 <= int(s["doneBytes"]) <= int(s["bytes"]) for s in running), running
    done = [int(s["doneBytes"]) for s in running if int(s["bytes"]) == total]
    assert done == sorted(done), done  # never goes back
    assert any(" left" in s["text"] for s in running)
    # Nonsense is never shown: no NaN, no Infinity, no negative time.
    assert not [s["text"] for s in log if re.search(r"NaN|Infinity|undefined|-\d", s["text"])]
    by_name = {f["name"]: f for f in listed(cl, "tray-")}
    assert {n: f["size"] for n, f in by_name.items()} == {n: len(d) for n, d in files.items()}

    # Close forgets them all; the tray goes away.
    page.locator("#tray-close").click()
    expect(tray).to_be_hidden()


def test_a_folder_upload_keeps_paths_and_the_list_browses_folders(
        cl: Cluster, open_page: Opener, artifacts: Path, tmp_path: Path) -> None:
    root = tmp_path / "album-up"
    tree = {"a.txt": b"a" * 10, "2024/b.bin": os.urandom(300_000),
            "2024/Deep/c.txt": b"c" * 30, "2024/Deep/e.txt": b"e" * 40}
    for rel, data in tree.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    page, _ = open_page()
    sign_in(page, cl.admin_key)
    page.goto(cl.url + "/#/files?sort=name&order=asc")  # kept while browsing
    expect(page.locator("#files-table")).to_be_visible()
    # A name the brain refuses (a control character) is a failed row with the reason.
    (root / "2024" / "bad\u0001.txt").write_bytes(b"refused")
    page.locator("#folder-picker").set_input_files(root)
    for rel in tree:
        row = page.locator(f'#upload-list .upload[data-name="album-up/{rel}"]')
        expect(row).to_have_attribute("data-status", "done", timeout=30_000)
    bad = page.locator('#upload-list .upload[data-name="album-up/2024/bad\u0001.txt"]')
    expect(bad).to_have_attribute("data-status", "failed")
    expect(bad.locator(".upload-status")).to_contain_text("control or text-direction")
    expect(page.locator("#upload-list .upload").first).to_have_attribute("data-status", "failed")
    expect(page.locator("#upload-tray")).to_have_attribute("data-done-files", "4")
    expect(page.locator("#upload-tray")).to_have_attribute(
        "data-done-bytes", str(sum(len(d) for d in tree.values())))
    resp = cl.http.get("/api/files", params={"prefix": "album-up/", "limit": 100})
    assert {f["name"]: f["size"] for f in resp.json()} == {
        f"album-up/{rel}": len(data) for rel, data in tree.items()}
    page.locator("#tray-close").click()

    # The root lists the folder with its file count and size; in it, its folder
    # then its file; the breadcrumb and the browser's Back go up again.
    folder = page.locator('#files-table tr.folder-row[data-folder="album-up/"]')
    expect(folder).to_contain_text("4 files")
    expect(folder.locator("td.num")).to_have_attribute(
        "title", f"{sum(len(d) for d in tree.values()):,} bytes in 4 files")
    folder.locator(".folder-link").click()
    expect(page).to_have_url(re.compile(r"#/files\?dir=album-up%2F&sort=name&order=asc$"))
    expect(page.locator("#breadcrumb li")).to_have_text(["Root", "album-up"])
    names = page.locator("#files-table tbody tr").locator(".folder-link, .file-link")
    expect(names).to_have_text(["2024", "a.txt"])
    expect(page.locator("#file-total")).to_have_text("1 folder, 1 file")
    page.locator('#files-table .folder-link[title="album-up/2024/"]').click()
    expect(page.locator("#breadcrumb li")).to_have_text(["Root", "album-up", "2024"])
    expect(names).to_have_text(["Deep", "b.bin"])
    page.locator('#files-table .folder-link[title="album-up/2024/Deep/"]').click()
    expect(names).to_have_text(["c.txt", "e.txt"])
    shot(page, artifacts, "files-folder")
    page.locator('#breadcrumb a[data-dir="album-up/"]').click()
    expect(page.locator("#breadcrumb li")).to_have_text(["Root", "album-up"])
    expect(names).to_have_text(["2024", "a.txt"])
    page.go_back()
    expect(page.locator("#breadcrumb li")).to_have_text(["Root", "album-up", "2024", "Deep"])
    page.reload()
    expect(page.locator("#breadcrumb li")).to_have_text(["Root", "album-up", "2024", "Deep"])
    expect(names).to_have_text(["c.txt", "e.txt"])
    # A file's page leads back to its folder.
    page.get_by_role("link", name="c.txt", exact=True).click()
    expect(page.locator("#file-name")).to_have_text("album-up/2024/Deep/c.txt")
    page.locator("a.back").click()
    expect(page.locator("#breadcrumb li")).to_have_text(["Root", "album-up", "2024", "Deep"])
    page.locator("#breadcrumb a", has_text="Root").click()
    expect(page.locator('#files-table tr.folder-row[data-folder="album-up/"]')).to_have_count(1)

    # Files dropped in a folder land in it.
    page.goto(cl.url + "/#/files?dir=album-up%2F2024%2F&sort=name&order=asc")
    expect(names).to_have_text(["Deep", "b.bin"])
    drop_files(page, {"dropped-here.txt": b"here"})
    expect(page.locator('#upload-list .upload[data-name="album-up/2024/dropped-here.txt"]')
           ).to_have_attribute("data-status", "done", timeout=30_000)
    expect(names).to_have_text(["Deep", "b.bin", "dropped-here.txt"])


def test_a_big_folder_upload_still_asks_about_a_taken_name(
        cl: Cluster, open_page: Opener, tmp_path: Path) -> None:
    """25 files in one folder: their names are checked with one listing of the
    folder (not 25 lookups), and the one that is taken still asks."""
    put_file(cl, "many-up/f05.txt", b"old")
    root = tmp_path / "many-up"
    root.mkdir()
    for i in range(25):
        (root / f"f{i:02d}.txt").write_bytes(f"new {i}".encode())
    page, _ = open_page()
    sign_in(page, cl.admin_key)
    page.goto(cl.url + "/#/files")
    expect(page.locator("#files-table")).to_be_visible()
    lookups: list[str] = []
    page.on("request", lambda r: lookups.append(r.url) if "/api/files?prefix=" in r.url else None)
    page.locator("#folder-picker").set_input_files(root)
    dialog = page.locator("dialog[open]")
    expect(dialog).to_contain_text("many-up/f05.txt")
    dialog.locator("[data-action=rename]").click()
    expect(page.locator("#upload-tray")).to_have_attribute("data-done-files", "25",
                                                          timeout=30_000)
    assert len(lookups) == 1 and "delimiter=/" in lookups[0], lookups
    by_name = {f["name"]: f for f in listed(cl, "many-up/")}
    assert len(by_name) == 26
    assert cl.download(by_name["many-up/f05.txt"]["id"]) == b"old"
    assert cl.download(by_name["many-up/f05 (2).txt"]["id"]) == b"new 5"


def test_names_sort_case_insensitively(cl: Cluster, open_page: Opener,
                                       artifacts: Path) -> None:
    for name, size in (("sortci/cherry.txt", 2), ("sortci/apple.txt", 3),
                       ("sortci/Banana.txt", 1), ("sortci/Zeta/z.txt", 10),
                       ("sortci/alpha/a.txt", 5)):
        put_file(cl, name, b"s" * size)
    page, _ = open_page()
    sign_in(page, cl.admin_key)
    page.goto(cl.url + "/#/files?dir=sortci%2F")
    names = page.locator("#files-table tbody tr").locator(".folder-link, .file-link")
    expect(names).to_have_count(5)
    page.locator("button.sort[data-sort=name]").click()  # name, ascending
    expect(names).to_have_text(["alpha", "Zeta", "apple.txt", "Banana.txt", "cherry.txt"])
    shot(page, artifacts, "files-sorted-by-name")
    page.locator("button.sort[data-sort=name]").click()  # descending
    expect(names).to_have_text(["Zeta", "alpha", "cherry.txt", "Banana.txt", "apple.txt"])
    # Other sorts still work: by size, folders by their total.
    page.locator("button.sort[data-sort=size]").click()
    expect(page.locator("th[aria-sort=descending] button.sort")).to_have_attribute(
        "data-sort", "size")
    expect(names).to_have_text(["Zeta", "alpha", "apple.txt", "cherry.txt", "Banana.txt"])


def test_names_sort_naturally_on_the_page(cl: Cluster, open_page: Opener) -> None:
    """Numbers in names sort by value (file2 before file10), case ignored. The API
    pages by the lowercased name ("file10" < "file2"); the page orders what it shows."""
    for name in ("natural/file10.txt", "natural/File2.txt", "natural/file1.txt",
                 "natural/disc10/x.txt", "natural/Disc9/x.txt"):
        put_file(cl, name, b"n")
    api = cl.http.get("/api/files", params={"prefix": "natural/", "delimiter": "/",
                                           "sort": "name", "order": "asc"}).json()
    assert [e["name"] for e in api] == ["natural/disc10/", "natural/Disc9/",
                                        "natural/file1.txt", "natural/file10.txt",
                                        "natural/File2.txt"]
    page, _ = open_page()
    sign_in(page, cl.admin_key)
    page.goto(cl.url + "/#/files?dir=natural%2F&sort=name&order=asc")
    names = page.locator("#files-table tbody tr").locator(".folder-link, .file-link")
    expect(names).to_have_text(["Disc9", "disc10", "file1.txt", "File2.txt", "file10.txt"])
    page.locator("button.sort[data-sort=name]").click()  # descending
    expect(names).to_have_text(["disc10", "Disc9", "file10.txt", "File2.txt", "file1.txt"])


def test_cancel_all_uploads_from_the_tray(cl: Cluster, open_page: Opener) -> None:
    page, _ = open_page()
    sign_in(page, cl.admin_key)
    page.goto(cl.url + "/#/files")
    expect(page.locator("#files-table")).to_be_visible()
    page.route("**/api/files/hold-*", lambda route: None)  # held: still running
    drop_files(page, {f"hold-{i}.bin": os.urandom(32 * 1024) for i in range(5)})
    rows = page.locator("#upload-list .upload")
    expect(rows).to_have_count(5)
    expect(page.locator("#nav-uploads")).to_have_text("5")
    expect(page.locator('#upload-list .upload[data-status="queued"]')).to_have_count(2)
    page.locator("#tray-cancel-all").click()
    expect(page.locator('#upload-list .upload[data-status="cancelled"]')).to_have_count(5)
    expect(page.locator("#nav-uploads")).to_be_hidden()
    expect(page.locator("#upload-tray")).to_have_attribute("data-files", "0")
    expect(page.locator("#tray-summary")).to_have_text("Uploads: 5 cancelled")
    page.unroute("**/api/files/hold-*")
    page.locator("#tray-close").click()
    expect(page.locator("#upload-tray")).to_be_hidden()
    assert not listed(cl, "hold-")


def test_search_sort_and_paging_are_done_by_the_server(
        cl: Cluster, open_page: Opener) -> None:
    for i in range(30):
        put_file(cl, f"pagetest/item-{i:03d}.txt", b"x" * (i + 1))
    page, _ = open_page()
    sign_in(page, cl.admin_key)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/api/files?" in r.url else None)
    page.goto(cl.url + "/#/files?size=25")
    page.locator("#file-search").fill("pagetest/item-")
    expect(page.locator("#file-total")).to_contain_text("30 files match")
    expect(page.locator("#files-table tbody tr")).to_have_count(25)
    page.locator("#page-next").click()
    expect(page.locator("#files-table tbody tr")).to_have_count(5)
    page.locator("button.sort[data-sort=name]").click()  # name, ascending, back to page 1
    expect(page.locator("#files-table tbody tr .file-link").first).to_have_text(
        "pagetest/item-000.txt")
    page.locator("button.sort[data-sort=name]").click()  # descending
    expect(page.locator("#files-table tbody tr .file-link").first).to_have_text(
        "pagetest/item-029.txt")
    # Every list request asked for one page only.
    assert requests and all("limit=25" in u or "limit=50" in u for u in requests), requests
    assert any("offset=25" in u for u in requests)
    assert any("search=pagetest" in u for u in requests)


def test_select_several_files_and_delete_them(cl: Cluster, open_page: Opener) -> None:
    for i in range(3):
        put_file(cl, f"multi-{i}.txt", f"file {i}".encode())
    page, _ = open_page()
    sign_in(page, cl.admin_key)
    page.goto(cl.url + "/#/files?q=multi-")
    expect(page.locator("#files-table tbody tr")).to_have_count(3)
    page.locator("#select-page").check()
    expect(page.locator(".selbar")).to_contain_text("3 files selected")
    page.locator("#delete-selected").click()
    dialog = page.locator("dialog[open]")
    expect(dialog).to_contain_text("multi-0.txt")
    dialog.locator("[data-action=ok]").click()
    expect(dialog).to_have_count(0)
    expect(page.locator("#file-total")).to_contain_text("0 files match")
    assert not listed(cl, "multi-")


def test_file_detail_shows_hash_and_chunk_map(
        cl: Cluster, open_page: Opener, artifacts: Path) -> None:
    data = os.urandom(4 * 256 * 1024 + 5)  # 5 chunks of 256 KiB, the last 5 bytes
    f = put_file(cl, "detail/chunky.bin", data)
    page, _ = open_page()
    sign_in(page, cl.admin_key)
    page.goto(f"{cl.url}/#/files/{f['id']}")
    expect(page.locator("#file-name")).to_have_text("detail/chunky.bin")
    expect(page.locator("#file-sha")).to_have_text(hashlib.sha256(data).hexdigest())
    rows = page.locator("#chunk-map tbody tr")
    expect(rows).to_have_count(5)
    info = cl.http.get(f"/api/files/{f['id']}/info").json()
    for chunk in info["chunk_map"]:
        row = page.locator(f'#chunk-map tbody tr[data-chunk="{chunk["index"]}"]')
        expect(row.locator(".cm-copies")).to_have_text("3/3")
        expect(row.locator("td[data-cell=ok], td[data-cell=extra]")).to_have_count(3)
        expect(row.locator(".cm-hash")).to_have_attribute("title", chunk["id"])
    shot(page, artifacts, "file-detail")


# -- escaping -----------------------------------------------------------------------


def test_markup_in_names_is_shown_as_text(cl: Cluster, open_page: Opener,
                                          artifacts: Path) -> None:
    f = put_file(cl, XSS_NAME, b"not html")
    key = make_key(cl, "readonly", name='<b>bold</b><img src=y onerror="alert(2)">')
    page, watch = open_page()
    page.evaluate("""() => {
        window.__pwned = 0;
        window.alert = () => { window.__pwned++; };
    }""")
    sign_in(page, cl.admin_key)
    page.goto(cl.url + "/#/files?q=" + quote("onerror=alert(1)"))
    link = page.get_by_role("link", name=XSS_NAME, exact=True)
    expect(link).to_have_text(XSS_NAME)
    page.goto(f"{cl.url}/#/files/{f['id']}")
    expect(page.locator("#file-name")).to_have_text(XSS_NAME)
    page.goto(cl.url + "/#/activity")
    expect(page.locator("#event-list")).to_contain_text(key["id"])
    page.wait_for_timeout(500)
    assert page.locator('img[src="x"], img[src="y"]').count() == 0
    assert page.locator("main b").count() == 0
    assert page.evaluate("window.__pwned") == 0
    assert not watch.dialogs


# -- roles --------------------------------------------------------------------------


def test_readonly_key_sees_buttons_disabled_with_the_reason(
        cl: Cluster, open_page: Opener, artifacts: Path) -> None:
    put_file(cl, "readonly-visible.txt", b"look, do not touch")
    key = make_key(cl, "readonly")
    page, _ = open_page()
    sign_in(page, key["secret"])
    expect(page.locator("#whoami .role")).to_have_text("readonly")
    page.goto(cl.url + "/#/files?q=readonly-visible")
    upload = page.locator("#upload-button")
    expect(upload).to_be_disabled()
    expect(upload).to_have_attribute("title", re.compile("readwrite key"))
    delete = file_row(page, "readonly-visible.txt").locator("[data-action=delete]")
    expect(delete).to_be_disabled()
    expect(delete).to_have_attribute("title", re.compile("readwrite key"))
    # Downloading is allowed.
    expect(file_row(page, "readonly-visible.txt").locator("[data-action=download]")).to_be_enabled()
    # A drop is refused in the page, nothing is sent.
    drop_files(page, {"sneaky.bin": b"x"})
    expect(page.locator(".toast.error")).to_contain_text("readwrite")
    expect(page.locator("#upload-list .upload")).to_have_count(0)
    shot(page, artifacts, "files-readonly")
    page.goto(cl.url + "/#/nodes")
    drain = page.locator("#nodes-table tbody tr").first.locator("[data-action=drain]")
    expect(drain).to_be_disabled()
    expect(drain).to_have_attribute("title", re.compile("admin key"))
    # "What if" only reads: allowed.
    expect(page.locator("#nodes-table [data-action=whatif]").first).to_be_enabled()
    assert listed(cl, "readonly-visible.txt")


def test_the_overview_says_what_a_brain_loss_would_do_and_runs_a_fire_drill(
        cl: Cluster, open_page: Opener, artifacts: Path) -> None:
    put_file(cl, "drill-me.txt", b"rehearse")
    cl.http.post("/api/admin/snapshot")
    page, _ = open_page()
    sign_in(page, cl.admin_key)
    safety = page.locator("section.safety")
    expect(safety.locator(".verdict")).to_have_attribute("data-safety", "ok")
    expect(safety.locator(".verdict")).to_contain_text("tossit recover would rebuild")
    expect(safety).to_contain_text(re.compile(r"Last snapshot\s*(just now|\d)"))
    safety.locator("[data-action=drill]").click()
    expect(safety.locator("#drill-summary")).to_contain_text(
        re.compile(r"a brain loss now: [0-9,]+ files? recoverable, 0 lost"), timeout=60000)
    expect(safety).to_contain_text("nothing would be lost")
    last = cl.http.get("/api/status").json()["drill"]["last"]
    assert last["ok"] is True and last["lost_count"] == 0
    expect(safety.locator("#drill-summary")).to_have_text(f"At that drill: {last['summary']}")
    shot(page, artifacts, "overview-safety")
    # A readonly key sees the result, and the button says why it cannot run one.
    key = make_key(cl, "readonly", "drill reader")
    page2, _ = open_page()
    sign_in(page2, key["secret"])
    button = page2.locator("section.safety [data-action=drill]")
    expect(button).to_be_disabled()
    expect(button).to_have_attribute("title", re.compile("admin key"))


def test_a_readwrite_key_cannot_manage_nodes(cl: Cluster, open_page: Opener) -> None:
    key = make_key(cl, "readwrite")
    page, _ = open_page()
    sign_in(page, key["secret"])
    page.goto(cl.url + "/#/nodes")
    remove = page.locator("#nodes-table tbody tr").first.locator("[data-action=remove]")
    expect(remove).to_be_disabled()
    expect(remove).to_have_attribute("title", re.compile("admin key"))
    page.goto(cl.url + "/#/files")
    expect(page.locator("#upload-button")).to_be_enabled()


# -- sign out, revoked keys, lost connection -----------------------------------------


def test_sign_out_ends_the_session(cl: Cluster, open_page: Opener) -> None:
    page, _ = open_page()
    sign_in(page, cl.admin_key)
    assert any(c["name"] == "tossit_session" and c["httpOnly"] for c in page.context.cookies())
    assert page.evaluate("document.cookie") == ""  # scripts cannot read it
    page.locator("#signout").click()
    expect(page.locator("#signin")).to_be_visible()
    expect(page.locator("#signin-notice")).to_contain_text("signed out")
    status = page.evaluate("fetch('/api/keys/me').then(r => r.status)")
    assert status == 401
    page.reload()
    expect(page.locator("#signin")).to_be_visible()


def test_a_revoked_key_returns_to_sign_in_with_a_message(
        cl: Cluster, open_page: Opener) -> None:
    key = make_key(cl, "readwrite")
    page, _ = open_page()
    sign_in(page, key["secret"])
    page.goto(cl.url + "/#/files")
    assert cl.http.delete(f"/api/keys/{key['id']}").status_code == 200
    # The stream re-checks the key and says so; the page goes back to sign-in.
    expect(page.locator("#signin")).to_be_visible(timeout=25000)
    expect(page.locator("#signin-notice")).to_contain_text("revoked")


# -- activity ------------------------------------------------------------------------


def test_activity_is_live_and_filterable(cl: Cluster, open_page: Opener,
                                         artifacts: Path) -> None:
    page, _ = open_page()
    sign_in(page, cl.admin_key)
    page.goto(cl.url + "/#/activity")
    expect(page.locator("#event-list .event").first).to_be_visible()
    key = make_key(cl, "readonly", name="live event probe")
    # Arrives through the stream without a reload, near the top (background
    # events, e.g. the collector's, may land above it in the same second).
    probe = page.locator("#event-list .event", has_text=key["id"])
    expect(probe).to_have_count(1, timeout=10000)
    before = probe.evaluate("e => [...e.parentElement.children].indexOf(e)")
    assert before < 5, before
    page.locator("#act-kind").select_option("key_created")
    kinds = page.locator("#event-list .event").evaluate_all("els => els.map(e => e.dataset.kind)")
    assert kinds and set(kinds) == {"key_created"}
    page.locator("#act-kind").select_option("")
    page.locator("#act-text").fill("live event probe")
    expect(page.locator("#event-list .event")).to_have_count(1)
    page.locator("#act-text").fill("")
    expect(page.locator("#event-list .event").nth(1)).to_be_visible()
    shot(page, artifacts, "activity")
    # Opened directly (the nodes never loaded on this page): names, not ids.
    page.reload()
    expect(page.locator("#event-list .event-node").first).to_be_visible()
    shown = page.locator("#event-list .event-node").all_inner_texts()
    assert shown and all(t.startswith("node-") for t in shown), shown


# -- nodes ---------------------------------------------------------------------------


def test_what_if_a_node_stops(cl: Cluster, open_page: Opener, artifacts: Path) -> None:
    put_file(cl, "whatif.bin", os.urandom(600_000))
    node_id = cl.node_id(1)
    page, _ = open_page()
    sign_in(page, cl.admin_key)
    page.goto(cl.url + "/#/nodes")
    page.locator('tr[data-node="node-1"] [data-action=whatif]').click()
    dialog = page.locator("dialog[open]")
    impact = cl.http.get(f"/api/nodes/{node_id}/impact").json()
    expect(dialog.locator("#impact-summary")).to_have_text(impact["if_stopped"]["summary"])
    shot(page, artifacts, "dialog-whatif")
    page.keyboard.press("Escape")  # dialogs close with Escape
    expect(page.locator("dialog[open]")).to_have_count(0)
    shot(page, artifacts, "nodes")


def test_drain_a_node_until_it_is_drained(cl: Cluster, open_page: Opener,
                                          artifacts: Path) -> None:
    for i in range(6):
        put_file(cl, f"drain/f{i}.bin", os.urandom(400_000 + i))
    node_id = cl.node_id(3)
    wait_until(lambda: next(n for n in cl.http.get("/api/nodes").json()
                            if n["id"] == node_id)["chunk_count"] > 0, 20, what="chunks on node-3")
    page, _ = open_page()
    sign_in(page, cl.admin_key)
    page.goto(cl.url + "/#/nodes")
    row = page.locator('#nodes-table tr[data-node="node-3"]')
    row.locator("[data-action=drain]").click()
    dialog = page.locator("dialog[open]")
    impact = cl.http.get(f"/api/nodes/{node_id}/impact").json()
    expect(dialog.locator("#impact-summary")).to_have_text(impact["drain"]["summary"])
    assert impact["drain"]["chunks"] > 0
    shot(page, artifacts, "dialog-drain")
    dialog.locator("[data-action=ok]").click()
    expect(dialog).to_have_count(0)
    expect(row).to_have_attribute("data-admin", re.compile("draining|drained"))
    expect(row).to_have_attribute("data-admin", "drained", timeout=60000)
    expect(row.locator("[data-action=undrain]")).to_be_visible()
    node = next(n for n in cl.http.get("/api/nodes").json() if n["id"] == node_id)
    assert node["admin_state"] == "drained"
    # Drained = no copy of anything in use; copies of earlier tests' deleted files
    # may still be there, for the collector (not the drain) to free.
    wait_until(lambda: next(n for n in cl.http.get("/api/nodes").json()
                            if n["id"] == node_id)["chunk_count"] == 0, 30,
               what="the drained node's leftover garbage collected")
    shot(page, artifacts, "nodes-drained")


def test_a_killed_node_turns_offline_without_a_reload(
        cl: Cluster, open_page: Opener, artifacts: Path) -> None:
    page, _ = open_page()
    sign_in(page, cl.admin_key)
    page.goto(cl.url + "/#/nodes")
    row = page.locator('#nodes-table tr[data-node="node-4"]')
    expect(row).to_have_attribute("data-state", "online")
    page.evaluate("window.__sameDocument = true")
    started = time.monotonic()
    cl.kill_node(4)
    expect(row).to_have_attribute("data-state", "offline", timeout=20000)
    took = time.monotonic() - started
    assert took < 15, f"the page showed node-4 offline only after {took:.1f} s"
    expect(row.locator(".state")).to_contain_text("Offline")
    assert page.evaluate("window.__sameDocument") is True  # no reload happened
    shot(page, artifacts, "nodes-offline")
    # node-3 is drained and node-4 offline: draining another node now would need a
    # copy on node-4. The dialog says so and offers nothing to click.
    page.locator('#nodes-table tr[data-node="node-0"] [data-action=drain]').click()
    dialog = page.locator("dialog[open]")
    expect(dialog.locator("#impact-summary")).to_contain_text("cannot be drained now")
    expect(dialog.locator("#impact-summary")).to_contain_text("node-4 is offline")
    expect(dialog.locator("[data-action=ok]")).to_be_disabled()
    shot(page, artifacts, "dialog-drain-refused")
    dialog.locator("[data-action=cancel]").click()
    assert next(n for n in cl.http.get("/api/nodes").json()
                if n["name"] == "node-0")["admin_state"] is None
    page.goto(cl.url + "/#/overview")
    total = len(cl.http.get("/api/nodes").json())
    online = sum(1 for n in cl.http.get("/api/nodes").json() if n["state"] == "online")
    expect(page.locator(".nodes-card .metric")).to_contain_text(f"{online} of {total} online")
    # The repairer waits on purpose during node-4's grace period, and says so.
    expect(page.locator("#repair-verdict")).to_contain_text("node-4 (offline) is silent")
    expect(page.locator("#repair-verdict")).to_contain_text("re-made elsewhere only if")


# -- phone width ---------------------------------------------------------------------


def test_phone_width_pages_fit_and_navigate(cl: Cluster, open_page: Opener,
                                            artifacts: Path) -> None:
    put_file(cl, "phone/a-file-with-a-rather-long-name-to-wrap.pdf", os.urandom(300_000))
    page, _ = open_page(width=390, height=844)
    shot(page, artifacts, "phone-signin")
    sign_in(page, cl.admin_key)

    def fits() -> None:
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 391, f"the page is {width}px wide on a 390px screen"

    expect(page.locator(".card.data .metric")).to_be_visible()
    fits()
    shot(page, artifacts, "phone-overview")
    # With badges on the links (health alerts, uploads running), no link runs into
    # the next one: the bar scrolls instead.
    overlaps = page.evaluate("""() => {
        for (const a of document.querySelectorAll('.mainnav a')) {
            const b = document.createElement('span');
            b.className = 'nav-alert'; b.textContent = '12';
            a.append(b);
        }
        const boxes = [...document.querySelectorAll('.mainnav a')].map(
            (a) => [a.getBoundingClientRect(), a.scrollWidth, a.clientWidth]);
        const out = [];
        boxes.forEach(([r, sw, cw], i) => {
            if (sw > cw + 1) out.push(`link ${i} overflows itself`);
            if (i && boxes[i - 1][0].right > r.left + 0.5) out.push(`link ${i} overlaps`);
        });
        document.querySelectorAll('.mainnav .nav-alert').forEach((b) => b.remove());
        return out;
    }""")
    assert overlaps == [], overlaps
    # (what to click, what must then show, the screenshot's name)
    for go, shown, name in (
        (page.get_by_role("link", name="Nodes", exact=True), "#nodes-table tbody tr",
         "phone-nodes"),
        (page.get_by_role("link", name="Files", exact=True), "#files-table tbody tr",
         "phone-files"),
        (page.locator('#files-table .folder-link[title="phone/"]'), "#breadcrumb .crumb-here",
         "phone-files-folder"),
        (page.locator("#files-table tbody tr .file-link").first, "#chunk-map",
         "phone-file-detail"),
        (page.get_by_role("link", name="Activity", exact=True), "#event-list .event",
         "phone-activity"),
    ):
        go.click()
        expect(page.locator(shown).first).to_be_visible()
        fits()
        shot(page, artifacts, name)


# -- last: restarts the brain ----------------------------------------------------------


def test_lost_connection_shows_in_the_health_strip_and_clears_itself(
        cl: Cluster, open_page: Opener, artifacts: Path) -> None:
    page, _ = open_page()
    sign_in(page, cl.admin_key)
    page.goto(cl.url + "/#/nodes")
    strip = page.locator("#health-strip")
    expect(strip).not_to_have_attribute("data-level", "unreachable")
    cl.stop_brain()
    try:
        expect(strip).to_have_attribute("data-level", "unreachable", timeout=15000)
        expect(strip).to_contain_text("Brain unreachable")
        expect(strip).to_contain_text("Lost connection to the brain — retrying…")
        expect(page.locator("#live")).to_contain_text("Offline")
        expect(page.locator("html")).to_have_class(re.compile(r"\bstale\b"))
        shot(page, artifacts, "banner-lost-connection")
    finally:
        cl.start_brain()
    # The page reconnects by itself (the session survives the restart).
    expect(strip).not_to_have_attribute("data-level", "unreachable", timeout=30000)
    expect(page.locator("html")).not_to_have_class(re.compile(r"\bstale\b"))
    expect(page.locator("#live")).to_contain_text("Live")
    expect(page.locator("#nodes-table tbody tr").first).to_be_visible()
    expect(page.locator("#signin")).to_be_hidden()


def test_without_auth_the_page_skips_sign_in(browser: Any, tmp_path: Path,
                                             artifacts: Path) -> None:
    """A brain started with --no-auth (benchmarks on loopback): no sign-in screen."""
    c = Cluster(tmp_path / "noauth", nodes=0, replicas=1, brain_args=["--no-auth"])
    c.brain = c._spawn("brain", c.brain_argv())
    ctx = None
    try:
        wait_until(lambda: c.http.get("/health").status_code == 200, 60, what="brain health")
        ctx = browser.new_context(viewport={"width": 1280, "height": 800})
        page = ctx.new_page()
        page.goto(c.url + "/")
        expect(page.locator("#shell")).to_be_visible()
        expect(page.locator("#signin")).to_be_hidden()
        expect(page.locator("#whoami")).to_contain_text("auth off")
        expect(page.locator("#signout")).to_be_hidden()
        expect(page.locator(".nodes-card .metric")).to_contain_text("0 of 0 online")
        expect(page.locator(".health .verdict")).to_contain_text("Nothing stored yet")
        shot(page, artifacts, "overview-empty-no-auth")
    finally:
        if ctx is not None:
            ctx.close()
        c.stop()


def test_usable_capacity_with_uneven_nodes_is_explained(browser: Any, tmp_path: Path,
                                                       artifacts: Path) -> None:
    """Two 256 MiB nodes and a 64 MiB one at R=3 hold 64 MiB of files, not a third
    of 576 MiB: the capacity card says so, and why."""
    c = Cluster(tmp_path / "uneven", nodes=2, replicas=3, node_capacity="256MiB",
                brain_args=["--no-auth"])
    c.brain = c._spawn("brain", c.brain_argv())
    ctx = None
    try:
        wait_until(lambda: c.http.get("/health").status_code == 200, 60, what="brain health")
        c.start_node(0)
        c.start_node(1)
        c.node_capacity = "64MiB"
        c.add_node()
        c.wait_online(3)
        ctx = browser.new_context(viewport={"width": 1280, "height": 800})
        page = ctx.new_page()
        page.goto(c.url + "/")
        capacity = page.locator(".card.cap")
        # The headline is the room left at R copies; all three nodes are empty but
        # for a few manifest packs, so it is the small node's 64 MiB, give or take.
        expect(capacity.locator(".metric")).to_contain_text(re.compile(
            r"Room for about 6[34]\.\d MiB more at 3 copies"))
        expect(capacity).to_contain_text("64.0 MiB of files in all")
        expect(capacity).to_contain_text("Less than raw 576 MiB ÷ 3 copies")
        # They share this machine's disk, and the page says what that means.
        expect(page.locator("#shared-fate")).to_contain_text(
            "node-0, node-1 and node-2 store on one disk")
        expect(page.locator("#shared-fate")).to_contain_text(
            "do not protect against that disk failing")
        shot(page, artifacts, "overview-uneven-nodes")
    finally:
        if ctx is not None:
            ctx.close()
        c.stop()


# -- /docs: the API reference, from the package, under a CSP ------------------------


def test_the_api_reference_renders_offline_under_its_csp(cl: Cluster, open_page: Opener) -> None:
    """Swagger UI from the package (no CDN), no inline script: the page renders with
    its Content-Security-Policy and no request leaves the brain's origin."""
    page, watch = open_page()
    outside: list[str] = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(cl.url) else None)
    resp = page.goto(cl.url + "/docs")
    assert resp is not None and "script-src 'self'" in resp.headers["content-security-policy"]
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("TossIt")
    expect(page.locator(".opblock-summary-path").first).to_be_visible()
    assert not outside, outside
    watch.check()


def test_a_repeating_event_is_one_row_with_a_count(browser: Any, tmp_path: Path,
                                                   artifacts: Path) -> None:
    """R = 2 on one node: every repair pass is stuck. The activity list shows one
    row that counts the passes, replaced live (no reload), not a row per pass."""
    c = Cluster(tmp_path / "stuck", nodes=1, replicas=2, brain_args=["--write-quorum", "1"])
    ctx = None
    try:
        c.start_brain()
        c.start_node(0)
        c.wait_online(1)
        c.upload("lonely.bin", os.urandom(100_000))

        def repair() -> None:
            assert c.http.post("/api/admin/repair", timeout=120).status_code == 200

        repair()
        repair()
        ctx = browser.new_context(viewport={"width": 1280, "height": 800})
        page = ctx.new_page()
        page.goto(c.url + "/")
        sign_in(page, c.admin_key)
        page.goto(c.url + "/#/activity")
        rows = page.locator('#event-list .event[data-kind="repair_stuck"]')
        expect(rows).to_have_count(1)
        expect(rows).to_contain_text("a 2nd copy but only 1 node can take")
        expect(rows.locator(".event-count")).to_contain_text("×2 since")
        repair()  # arrives through the stream and replaces the row
        expect(rows.locator(".event-count")).to_contain_text("×3 since", timeout=10000)
        expect(rows).to_have_count(1)
        shot(page, artifacts, "activity-repeating-event")
        # The overview and the strip say the repair is stuck and what to do (they
        # said "1 chunk waits for a repair pass" and "repair is pending"), and that
        # there is no room at 2 copies on one node.
        page.goto(c.url + "/#/overview")
        expect(page.locator("#repair-verdict")).to_contain_text(
            re.compile(r"Repair is stuck: \d+ chunks? needs? a 2nd copy but only 1 node can take"))
        expect(page.locator("#repair-verdict")).to_contain_text("Add a node.")
        expect(page.locator("#health-strip")).to_contain_text(
            "repair is stuck — only 1 node can take copies, 2 needed: add a node")
        expect(page.locator("#capacity-room")).to_have_text("No room at 2 copies")
        expect(page.locator("#capacity-short")).to_contain_text(
            "Only 1 node can take new copies, 2 needed: new files get only 1 copy")
        expect(page.locator("#capacity-short")).to_contain_text("more that way). Add a node.")
        shot(page, artifacts, "overview-repair-stuck")
    finally:
        if ctx is not None:
            ctx.close()
        c.stop()
