"""A picture of the dashboard with tasks in every kind of state, for docs/screenshot.png."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Page, expect

from tests.e2e.helpers import bar, launch, wait_state
from tests.support import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.live]

SCREENSHOT = ROOT / "docs" / "screenshot.png"


async def test_dashboard_screenshot_shows_running_succeeded_failed_and_cancelled_tasks(page: Page) -> None:
    await page.set_viewport_size({"width": 1280, "height": 1180})
    done = await launch(page, "demo.count_primes", limit=300_000)
    export = await launch(page, "demo.export_csv", rows=2000)
    flaky = await launch(page, "demo.flaky", fail_times=5, retry_delay=0)
    await wait_state(done, "succeeded")
    await wait_state(export, "succeeded")
    await wait_state(flaky, "failed")
    await expect(flaky.locator(".outcome")).to_contain_text("simulated failure")
    flaky_toast = page.locator(f'.tl-toast[data-task-id="{await flaky.get_attribute("data-task-id")}"]')
    await expect(flaky_toast).to_have_attribute("role", "alert")

    cancelled = await launch(page, "demo.sleepy", seconds=30)
    await wait_state(cancelled, "running")
    await cancelled.locator(".cancel").click()
    await wait_state(cancelled, "cancelled")

    waiting = await launch(page, "demo.sleepy", seconds=60)
    counting = await launch(page, "demo.count_primes", limit=30_000_000)
    await wait_state(waiting, "running")
    await page.wait_for_function(
        "(el) => parseFloat(el.getAttribute('aria-valuenow')) >= 3", arg=await bar(counting).element_handle()
    )
    await expect(counting.locator(".eta")).to_have_text(re.compile(r"left$"))

    # Keep the newest toasts in view but out of the list's way: dismiss all but two.
    toasts = page.locator("#tl-toasts .tl-toast")
    while await toasts.count() > 2:
        await toasts.first.get_by_role("button", name="Dismiss notification").click()
    await page.mouse.move(0, 0)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    await page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 10_000

    # Leave the worker idle for the next test.
    for row in (waiting, counting):
        await row.locator(".cancel").click()
    for row in (waiting, counting):
        await wait_state(row, "cancelled")
