"""A headless Chromium (Debian's, driven by Playwright) for the end-to-end tests.

Never run ``playwright install``: the browser is /usr/bin/chromium (``make browser``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from tests.support import Daphne, Worker

CHROMIUM = os.environ.get("TASKLIGHT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Every wait in these tests is on an event or a DOM condition, bounded by this.
TIMEOUT_MS = 20_000


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not os.path.exists(CHROMIUM):
        # A failure, not a skip: a missing browser must not pass CI silently.
        pytest.fail(f"no Chromium at {CHROMIUM}: run `make browser` (Debian's chromium package) "
                    "or set TASKLIGHT_CHROMIUM to a Chromium binary", pytrace=False)
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


async def new_page(browser: Browser, base_url: str) -> tuple[BrowserContext, Page]:
    """A fresh visitor (own cookies, own session) on the dashboard."""
    context = await browser.new_context(base_url=base_url, accept_downloads=True, viewport={"width": 1100, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors  # type: ignore[attr-defined]
    # Frames and console lines are printed on teardown; pytest shows them for a failure.
    page.on("console", lambda m: print(f"[console {m.type}] {m.text}"))
    page.on("websocket", lambda ws: ws.on("framereceived", lambda f: print(f"[ws <] {str(f)[:300]}")))
    await page.goto("/")
    return context, page


@pytest.fixture
async def page(browser: Browser, live: Daphne) -> AsyncIterator[Page]:
    context, page = await new_page(browser, live.base_url)
    yield page
    assert not page.errors, page.errors  # type: ignore[attr-defined]
    await context.close()


class RestartableDaphne:
    """A Daphne of one test alone, which the test may stop and start again on its port."""

    def __init__(self) -> None:
        self.current = Daphne().start()
        self.port = self.current.port
        self.base_url = self.current.base_url

    def stop(self) -> None:
        self.current.stop()

    def start(self) -> None:
        assert not self.current.alive()
        self.current = Daphne(port=self.port).start()


@pytest.fixture
def own_daphne(transactional_db: None, worker: Worker) -> Iterator[RestartableDaphne]:
    assert worker.alive(), worker.output()[-3000:]
    d = RestartableDaphne()
    yield d
    d.stop()
