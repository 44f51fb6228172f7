"""The dashboard in headless Chromium against the live stack: Daphne, worker, Redis."""

from __future__ import annotations

import csv
import io
import re

import pytest
from playwright.async_api import Browser, Page, Route, expect

from tests.e2e.helpers import bar, launch, wait_state
from tests.support import Daphne

pytestmark = [pytest.mark.e2e, pytest.mark.live]

RECORD_BAR = """(bar) => {
  window.__seen = [];
  new MutationObserver(() => {
    const v = bar.getAttribute("aria-valuenow");
    if (v !== null) window.__seen.push(parseFloat(v));
  }).observe(bar, { attributes: true, attributeFilter: ["aria-valuenow"] });
}"""


async def test_count_primes_bar_rises_to_100_and_a_success_toast_shows_the_result(page: Page) -> None:
    await expect(page.locator("#tl-connection")).to_have_attribute("data-state", "live")
    row = await launch(page, "demo.count_primes", limit=3_000_000)
    task_id = await row.get_attribute("data-task-id")
    # The same task in a <task-progress> element, as any other page could show it.
    await page.evaluate(
        "(id) => { const el = document.createElement('task-progress'); el.setAttribute('task-id', id);"
        " document.querySelector('main').append(el); }",
        task_id,
    )
    progress = bar(row)
    await progress.evaluate(RECORD_BAR)
    # Partway: a value strictly between 0 and 100, with words for assistive technology.
    await page.wait_for_function(
        "(el) => { const v = parseFloat(el.getAttribute('aria-valuenow')); return v > 0 && v < 100; }",
        arg=await progress.element_handle(),
    )
    await expect(progress).to_have_attribute("aria-valuetext", re.compile(r"^\d+(\.\d+)?%$"))
    await expect(row.locator(".badge")).to_have_text("running")
    await expect(row.locator(".cancel")).to_be_visible()
    await expect(row.locator(".elapsed")).to_have_text(re.compile(r"running for \d+ s"))

    await wait_state(row, "succeeded")
    await expect(progress).to_have_attribute("aria-valuenow", "100")
    await expect(row.locator(".percent")).to_have_text("100%")
    await expect(row.locator(".cancel")).to_be_hidden()
    seen = await page.evaluate("window.__seen")
    assert seen == sorted(seen), seen
    assert seen[-1] == 100 and len(set(seen)) >= 3, seen

    element = page.locator("task-progress")
    await expect(element).to_have_attribute("data-state", "succeeded")
    assert await element.locator("progress").evaluate("(p) => p.value") == 100
    await expect(element).to_contain_text("succeeded, 100%")

    toast = page.locator(f'#tl-toasts .tl-toast[data-task-id="{task_id}"]')
    await expect(toast).to_have_attribute("data-state", "succeeded")
    await expect(toast).to_have_attribute("role", "status")
    await expect(toast).to_contain_text("Count primes below 3,000,000 succeeded.")
    await expect(toast).to_contain_text("primes: 216,816")
    await toast.get_by_role("button", name="Dismiss notification").click()
    await expect(toast).to_have_count(0)


async def test_export_csv_toast_links_to_the_download(page: Page) -> None:
    row = await launch(page, "demo.export_csv", rows=5000)
    await wait_state(row, "succeeded")
    link = page.locator(f'#tl-toasts .tl-toast[data-task-id="{await row.get_attribute("data-task-id")}"] a.tl-toast-download')
    await expect(link).to_have_text("Download")
    async with page.expect_download() as info:
        await link.click()
    download = await info.value
    assert download.suggested_filename.endswith(".csv")
    path = await download.path()
    rows = list(csv.reader(io.StringIO(path.read_text())))
    assert rows[0] == ["id", "name", "amount", "created"]
    assert len(rows) == 5001
    assert rows[1][0] == "1" and rows[-1][0] == "5000"
    assert re.fullmatch(r"customer-\d{4}", rows[1][1])


async def test_cancel_a_running_task_ends_it_cancelled(page: Page) -> None:
    row = await launch(page, "demo.sleepy", seconds=30)
    await wait_state(row, "running")
    # Indeterminate: no value, said in words, animated bar.
    progress = bar(row)
    await expect(progress).not_to_have_attribute("aria-valuenow", re.compile(".*"))
    await expect(progress).to_have_attribute("aria-valuetext", "in progress, amount of work unknown")
    await expect(progress).to_have_class(re.compile(r"\bindeterminate\b"))
    cancel = row.get_by_role("button", name=re.compile("^Cancel "))
    await cancel.click()
    await expect(row.locator(".cancel")).to_have_text("Cancelling…")
    await wait_state(row, "cancelled", timeout=15_000)
    await expect(row.locator(".badge")).to_have_text("cancelled")
    await expect(row.locator(".cancel")).to_be_hidden()
    toast = page.locator(f'#tl-toasts .tl-toast[data-task-id="{await row.get_attribute("data-task-id")}"]')
    await expect(toast).to_contain_text("was cancelled.")


async def test_a_running_task_that_cannot_be_stopped_shows_the_warning(browser: Browser, live: Daphne) -> None:
    # What the watchdog writes when the pool cannot stop a cancelled task (docs/cancellation.md):
    # the state stays running, with cancel_requested and a CannotStop error. The list the page
    # reads first over HTTP is answered with such a task.
    message = "This worker's pool cannot stop a running task; it will end on its own."
    task = {
        "id": "00000000-0000-4000-8000-00000000c570", "name": "demo.stubborn", "label": "Stubborn task",
        "state": "running", "cancel_requested": True, "attempt": 1,
        "created_at": "2030-01-01T00:00:00Z", "started_at": "2030-01-01T00:00:01Z", "finished_at": None,
        "updated_at": "2030-01-01T00:00:12Z", "result": None,
        "error": {"type": "CannotStop", "message": message},
        "progress": {"current": 0, "total": None, "percent": None, "message": ""}, "eta_seconds": None, "seq": 7,
    }

    async def tasks_list(route: Route) -> None:
        if route.request.method == "GET":
            await route.fulfill(json={"tasks": [task]})
        else:
            await route.fallback()

    context = await browser.new_context(base_url=live.base_url)
    try:
        await context.route("**/api/tasks/", tasks_list)
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto("/")
        row = page.locator(f"#task-{task['id']}")
        await expect(row).to_have_attribute("data-state", "running")
        outcome = row.locator(".outcome")
        await expect(outcome).to_have_text(f"Warning: {message}")
        await expect(outcome).to_have_class(re.compile(r"\boutcome-warning\b"))
        await expect(outcome).to_have_attribute("aria-live", "polite")
        await expect(row.locator(".badge")).to_have_text("cancelling")
        cancel = row.locator(".cancel")
        await expect(cancel).to_have_text("Cancelling…")
        await expect(cancel).to_be_disabled()
        # It stays while the page re-renders the running task every second.
        await page.wait_for_timeout(1500)
        await expect(outcome).to_have_text(f"Warning: {message}")
        assert not errors, errors
    finally:
        await context.close()
