"""Browser tests of the dashboard: Playwright driving Debian's Chromium.

One real cluster (brain + 5 nodes, repairer on) is shared by the module; each
test opens its own browser context (its own cookies) and signs in through the
page. Screenshots go to ``test-artifacts/screenshots/`` (``TOSSIT_ARTIFACTS``
overrides the folder).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster import Cluster

CHROMIUM = os.environ.get("TOSSIT_CHROMIUM", "/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("TOSSIT_ARTIFACTS") or REPO / "test-artifacts" / "screenshots")


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return ("the playwright package is not installed "
                "(make test installs it: pip install -e '.[test]')")
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        return (f"no Chromium at {CHROMIUM} (make test installs Debian's chromium: "
                "bash scripts/install-test-deps.sh)")
    return None


MISSING = _missing()
if MISSING and os.environ.get("TOSSIT_REQUIRE_BROWSER"):
    raise RuntimeError(f"browser tests required (TOSSIT_REQUIRE_BROWSER) but: {MISSING}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if MISSING:
        for item in items:
            in_here = "tests/browser/" in str(item.fspath).replace(os.sep, "/")
            if in_here and "browser" in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.skip(reason=MISSING))


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-dev-shm-usage"],
        )
        yield b
        b.close()


@pytest.fixture(scope="module")
def cl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Brain + 5 nodes, R=3, small chunks, repairer on (drains progress by themselves).

    Tests that break something use their own nodes: node-4 is killed, node-3 drained.
    """
    root = tmp_path_factory.mktemp("dash")
    c = Cluster(root, nodes=5, replicas=3, chunk_size="256KiB",
                brain_args=["--auto-repair", "--repair-interval", "2"])
    c.start()
    yield c
    c.stop()
    if os.environ.get("TOSSIT_KEEP_LOGS"):
        shutil.copytree(root / "logs", ARTIFACTS.parent / "logs", dirs_exist_ok=True)


class Watch:
    """What a page did that it must not: dialogs (alert, confirm) and CSP or
    script errors."""

    def __init__(self) -> None:
        self.dialogs: list[str] = []
        self.errors: list[str] = []

    def check(self) -> None:
        assert not self.dialogs, f"the page opened a JavaScript dialog: {self.dialogs}"
        assert not self.errors, f"errors in the page: {self.errors}"


@pytest.fixture
def open_page(browser: Any, cl: Cluster) -> Iterator[Callable[..., tuple[Any, Watch]]]:
    """open_page(width=1280, height=800) -> (page, watch), on the dashboard, not signed in."""
    contexts: list[Any] = []
    watches: list[Watch] = []

    def make(width: int = 1280, height: int = 800) -> tuple[Any, Watch]:
        ctx = browser.new_context(viewport={"width": width, "height": height},
                                  accept_downloads=True, locale="en-US",
                                  timezone_id="UTC")
        ctx.set_default_timeout(15000)
        contexts.append(ctx)
        page = ctx.new_page()
        watch = Watch()
        watches.append(watch)

        def on_dialog(d: Any) -> None:
            watch.dialogs.append(f"{d.type}: {d.message}")
            d.dismiss()

        def on_console(msg: Any) -> None:
            text = msg.text
            if msg.type == "error" and ("Content Security Policy" in text or "Refused to" in text
                                        or "Uncaught" in text):
                watch.errors.append(text)

        page.on("dialog", on_dialog)
        page.on("console", on_console)
        page.on("pageerror", lambda exc: watch.errors.append(f"pageerror: {exc}"))
        page.goto(cl.url + "/")
        return page, watch

    yield make
    try:
        for w in watches:
            w.check()
    finally:
        for ctx in contexts:
            ctx.close()

