"""What the dashboard's browser tests share: signing in, and screenshots."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import expect


def sign_in(page: Any, key: str) -> None:
    page.locator("#signin-key").fill(key)
    page.locator("#signin-key").press("Enter")
    expect(page.locator("#shell")).to_be_visible()
    expect(page.locator("#live")).to_have_class(re.compile(r"\bok\b"))  # stream connected


def shot(page: Any, artifacts: Path, name: str) -> None:
    page.wait_for_timeout(300)  # let bars finish their transition
    page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)
