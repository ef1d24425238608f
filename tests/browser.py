"""A pytest plugin: real headless Chromium for the web tests.

Debian's chromium driven by Playwright (`executable_path`, never
`playwright install`). Without chromium or playwright a test that asks for
`browser` is skipped here with the reason, and FAILS in CI (`CI=true`).
Use it with `pytest_plugins = ["tests.browser"]`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# Screenshots go to a temporary directory; docs/screenshots.sh points this at
# docs/screenshots/ (linked from docs/) to make the ones the docs show.
SCREENSHOTS_ENV = "EBSHED_SCREENSHOTS_DIR"


def screenshots_dir() -> Path:
    """Where screenshots go (made if need be): $EBSHED_SCREENSHOTS_DIR, else a temporary one."""
    chosen = os.environ.get(SCREENSHOTS_ENV)
    folder = Path(chosen) if chosen else Path(tempfile.gettempdir()) / f"ebshed-shots-{os.getpid()}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
TIMEOUT_MS = 15_000


def playwright_or_skip() -> Any:
    """Playwright's async API, or skip (locally) / fail (CI) with the reason."""
    reason = None
    try:
        from playwright import async_api
    except ImportError:
        reason = "playwright is not installed: .venv/bin/pip install playwright"
    if reason is None and not CHROMIUM.exists():
        reason = f"Debian's chromium is not installed ({CHROMIUM}): apt-get install chromium"
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs the browser test: {reason}")
        pytest.skip(reason)
    return async_api


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async_api = playwright_or_skip()
    async with async_api.async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


class Phone:
    """A phone-sized page that records failed loads and script errors (CSP ones too)
    on our pages (not on the provider's pay page, which asks for a /favicon.ico)."""

    def __init__(self, page: Any, origin: str) -> None:
        self.page = page
        self.errors: list[str] = []

        def record(what: str) -> None:
            if page.url.startswith(origin):
                self.errors.append(f"{page.url}: {what}")

        page.on("pageerror", lambda err: record(f"pageerror: {err}"))
        page.on("console", lambda msg: record(msg.text) if msg.type == "error" else None)

    async def shot(self, name: str) -> Path:
        folder = screenshots_dir()
        await self.page.screenshot(path=str(folder / name), full_page=True)
        return folder / name


async def open_phone(browser: Any, origin: str) -> Phone:
    context = await browser.new_context(
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        locale="zh-CN",
    )
    context.set_default_timeout(TIMEOUT_MS)
    return Phone(await context.new_page(), origin)
