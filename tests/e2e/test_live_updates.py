"""Live updates in the browser survive a server restart and stay with their owner."""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import Browser, Page, expect

from tests.e2e.conftest import RestartableDaphne, new_page
from tests.e2e.helpers import bar, launch, wait_state
from tests.support import Daphne

pytestmark = [pytest.mark.e2e, pytest.mark.live]


async def value_now(page: Page, row_id: str) -> float:
    return float(await page.locator(f"#{row_id} [role=progressbar]").get_attribute("aria-valuenow") or 0)


async def test_daphne_restart_shows_reconnecting_then_live_with_the_bar_caught_up(
    browser: Browser, own_daphne: RestartableDaphne
) -> None:
    context, page = await new_page(browser, own_daphne.base_url)
    indicator = page.locator("#tl-connection")
    await expect(indicator).to_have_attribute("data-state", "live")
    await expect(indicator).to_have_text("Live")
    row = await launch(page, "demo.count_primes", limit=5_000_000)
    row_id = await row.get_attribute("id")
    assert row_id
    await page.wait_for_function(
        "(el) => parseFloat(el.getAttribute('aria-valuenow')) >= 2", arg=await bar(row).element_handle()
    )

    await asyncio.to_thread(own_daphne.stop)
    await expect(indicator).to_have_attribute("data-state", "reconnecting")
    await expect(indicator).to_have_text("Reconnecting…")
    before = await value_now(page, row_id)

    await asyncio.to_thread(own_daphne.start)
    # "live" is shown only once the new socket's snapshot has been applied, so at that
    # moment the bar already shows the progress made while the server was down.
    await page.wait_for_function(
        "() => document.getElementById('tl-connection').dataset.state === 'live'", timeout=30_000
    )
    caught_up = await value_now(page, row_id)
    state = await row.get_attribute("data-state")
    assert caught_up > before or state == "succeeded", (before, caught_up, state)

    await wait_state(row, "succeeded", timeout=30_000)
    await expect(bar(row)).to_have_attribute("aria-valuenow", "100")
    toast = page.locator(f'#tl-toasts .tl-toast[data-task-id="{row_id.removeprefix("task-")}"]')
    await expect(toast).to_contain_text("succeeded")
    await expect(indicator).to_have_attribute("data-state", "live")
    assert not page.errors  # type: ignore[attr-defined]
    await context.close()


async def test_two_visitors_see_only_their_own_tasks(browser: Browser, live: Daphne) -> None:
    context_a, alice = await new_page(browser, live.base_url)
    context_b, bob = await new_page(browser, live.base_url)
    row_a = await launch(alice, "demo.count_primes", limit=100_000)
    row_b = await launch(bob, "demo.export_csv", rows=100)
    id_a = (await row_a.get_attribute("data-task-id")) or ""
    id_b = (await row_b.get_attribute("data-task-id")) or ""
    await wait_state(row_a, "succeeded")
    await wait_state(row_b, "succeeded")

    for page, mine, theirs in ((alice, id_a, id_b), (bob, id_b, id_a)):
        await expect(page.locator("#task-list > li")).to_have_count(1)
        await expect(page.locator(f"#task-{theirs}")).to_have_count(0)
        await expect(page.locator("#tl-toasts .tl-toast")).to_have_count(1)
        await expect(page.locator("#tl-toasts .tl-toast")).to_have_attribute("data-task-id", mine)
        # After a reload the snapshot holds the visitor's own task only, finished: no toast.
        await page.reload()
        await expect(page.locator("#tl-connection")).to_have_attribute("data-state", "live")
        await expect(page.locator(f"#task-{mine}")).to_have_attribute("data-state", "succeeded")
        await expect(page.locator("#task-list > li")).to_have_count(1)
        await expect(page.locator("#tl-toasts .tl-toast")).to_have_count(0)
        # The other visitor's task answers as if it did not exist.
        status = await page.evaluate(f"fetch('/api/tasks/{theirs}/').then((r) => r.status)")
        assert status == 404
        status = await page.evaluate(f"fetch('/api/tasks/{theirs}/download/').then((r) => r.status)")
        assert status == 404
        assert not page.errors  # type: ignore[attr-defined]
    await context_a.close()
    await context_b.close()


async def test_indicator_says_offline_while_the_browser_is_offline_and_resyncs_after(
    browser: Browser, live: Daphne
) -> None:
    context, page = await new_page(browser, live.base_url)
    indicator = page.locator("#tl-connection")
    await expect(indicator).to_have_attribute("data-state", "live")
    row = await launch(page, "demo.sleepy", seconds=1)
    await context.set_offline(True)
    await expect(indicator).to_have_attribute("data-state", "offline")
    await expect(indicator).to_have_text("Offline")
    # The task finishes while the page hears nothing; back online, the snapshot says so.
    await context.set_offline(False)
    await expect(indicator).to_have_attribute("data-state", "live")
    await wait_state(row, "succeeded")
    await expect(page.locator("#tl-toasts .tl-toast")).to_contain_text("succeeded")
    assert not page.errors  # type: ignore[attr-defined]
    await context.close()
