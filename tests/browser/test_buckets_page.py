"""The Files page's bucket choice in Chromium: absent with only ``default``; with a
bucket made over S3 it lists that bucket's files (folders and search too), the
URL keeps the choice across a reload, and uploads, which go to ``default`` only,
are refused there in words rather than sent to a bucket not shown."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from playwright.sync_api import expect

from browser_pages import shot, sign_in
from cluster import Cluster


@pytest.fixture(scope="module")
def cl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Its own cluster: the page must first see no bucket but ``default``."""
    c = Cluster(tmp_path_factory.mktemp("buckets-page"), nodes=3, replicas=2,
                chunk_size="256KiB")
    c.start()
    yield c
    c.stop()


def s3_of(cl: Cluster) -> Any:
    made = cl.http.post("/api/keys", json={"name": "s3 browser", "role": "readwrite"})
    assert made.status_code == 201, made.text
    key = made.json()
    return boto3.client("s3", endpoint_url=cl.s3_url, aws_access_key_id=key["id"],
                        aws_secret_access_key=key["secret"], region_name="us-east-1",
                        config=Config(s3={"addressing_style": "path"},
                                      signature_version="s3v4"))


def row(page: Any, name: str) -> Any:
    return page.locator("#files-table tbody tr").filter(
        has=page.get_by_role("link", name=name, exact=True))


def with_buckets(page: Any, go: Callable[[], Any]) -> None:
    """Open the files page with ``go`` and wait until it has its buckets (the
    choice, if any, is filled in from that answer)."""
    with page.expect_response(re.compile(r"/api/buckets$")):
        go()


def test_choose_a_bucket_browse_it_and_keep_it_on_reload(
        cl: Cluster, open_page: Any, artifacts: Path) -> None:
    assert cl.http.put("/api/files/only-in-default.txt", content=b"d").status_code == 201
    page, _ = open_page()
    sign_in(page, cl.admin_key)

    # Only "default": the page as it always was, no choice.
    with_buckets(page, lambda: page.goto(cl.url + "/#/files"))
    expect(row(page, "only-in-default.txt")).to_be_visible()
    expect(page.locator("#bucket-select")).to_be_hidden()
    expect(page.locator("#upload-button")).to_be_enabled()

    s3 = s3_of(cl)
    s3.create_bucket(Bucket="pictures")
    s3.put_object(Bucket="pictures", Key="cat.jpg", Body=b"meow" * 100)
    s3.put_object(Bucket="pictures", Key="trip/dog.jpg", Body=b"woof")

    with_buckets(page, page.reload)
    choice = page.get_by_label("Bucket", exact=True)
    expect(choice).to_be_visible()
    expect(choice.locator("option")).to_have_text([re.compile(r"^default \(1 file"),
                                                  re.compile(r"^pictures \(2 files")])
    expect(choice).to_have_value("default")
    page.locator("#select-page").check()  # ticked here, not carried to another bucket
    expect(page.locator(".selbar")).to_contain_text("1 file selected")
    choice.select_option("pictures")
    expect(page).to_have_url(re.compile(r"#/files\?bucket=pictures$"))
    expect(row(page, "cat.jpg")).to_be_visible()
    expect(row(page, "only-in-default.txt")).to_have_count(0)
    expect(page.locator("#file-total")).to_have_text("1 folder, 1 file")
    expect(page.locator(".selbar")).to_be_hidden()

    # Uploads go to "default" only: here they are refused, saying so.
    upload = page.locator("#upload-button")
    expect(upload).to_be_disabled()
    expect(upload).to_have_attribute("title", re.compile("default bucket"))
    expect(page.locator(".page-head")).to_contain_text(
        "Uploads go to the default bucket: switch to it to upload")
    expect(page.locator("#upload-folder-button")).to_be_disabled()
    page.evaluate("""() => {
        const dt = new DataTransfer();
        dt.items.add(new File(["x"], "sneaky.bin"));
        const zone = document.querySelector("#dropzone");
        for (const type of ["dragenter", "dragover", "drop"])
            zone.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true,
                                                    cancelable: true}));
    }""")
    expect(page.locator(".toast.error")).to_contain_text("uploads go to the default bucket")
    expect(page.locator("#upload-list .upload")).to_have_count(0)
    shot(page, artifacts, "files-bucket")

    # The reload keeps the bucket; its folders and search work in it.
    page.reload()
    expect(page.get_by_label("Bucket", exact=True)).to_have_value("pictures")
    expect(row(page, "cat.jpg")).to_be_visible()
    expect(row(page, "only-in-default.txt")).to_have_count(0)
    page.locator("a.folder-link", has_text="trip").click()
    expect(page).to_have_url(re.compile(r"dir=trip%2F.*bucket=pictures|bucket=pictures.*dir=trip"))
    expect(row(page, "dog.jpg")).to_be_visible()
    expect(page.get_by_label("Bucket", exact=True)).to_have_value("pictures")
    page.locator("#breadcrumb a", has_text="Root").click()
    page.locator("#file-search").fill("dog")
    expect(page.locator("#file-total")).to_contain_text("1 file match")
    expect(row(page, "trip/dog.jpg")).to_be_visible()
    page.locator("#file-search").fill("only-in")
    expect(page.locator("#file-total")).to_contain_text("0 files match")

    # Back to "default": its files, and uploads allowed again.
    page.get_by_label("Bucket", exact=True).select_option("default")
    expect(page).not_to_have_url(re.compile("bucket="))
    expect(row(page, "only-in-default.txt")).to_be_visible()
    expect(row(page, "cat.jpg")).to_have_count(0)
    expect(page.locator("#upload-button")).to_be_enabled()


def test_a_link_to_a_deleted_bucket_shows_default(cl: Cluster, open_page: Any) -> None:
    # (Its own file: tests of a module may run in different processes.)
    assert cl.http.put("/api/files/only-in-default.txt", content=b"d").status_code == 201
    page, _ = open_page()
    sign_in(page, cl.admin_key)
    page.goto(cl.url + "/#/files?bucket=no-such-bucket")
    expect(page.locator(".toast")).to_contain_text("no bucket “no-such-bucket”")
    expect(page).not_to_have_url(re.compile("bucket="))
    expect(row(page, "only-in-default.txt")).to_be_visible()
