"""Page helpers for the end-to-end tests: drive the dashboard as a person would."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Locator, Page, expect


async def launch(page: Page, name: str, **params: Any) -> Locator:
    """Start a task from the launch form; the new row of the task list."""
    await expect(page.locator("#launch-name option")).not_to_have_count(0)
    await page.select_option("#launch-name", name)
    for key, value in params.items():
        await page.fill(f"#param-{key}", str(value))
    before = await page.locator("#task-list > li").count()
    async with page.expect_response(lambda r: r.url.endswith("/api/tasks/") and r.request.method == "POST") as info:
        await page.click("#launch-button")
    response = await info.value
    assert response.status == 201, await response.text()
    task = await response.json()
    row = page.locator(f"#task-{task['id']}")
    await expect(row).to_be_visible()
    assert await page.locator("#task-list > li").count() == before + 1
    return row


def bar(row: Locator) -> Locator:
    return row.get_by_role("progressbar")


async def wait_state(row: Locator, state: str, timeout: float = 20_000) -> None:
    await expect(row).to_have_attribute("data-state", state, timeout=timeout)
