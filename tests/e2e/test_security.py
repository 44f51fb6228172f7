"""The page's own defences in headless Chromium: link schemes and the Content-Security-Policy."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, Route, expect

from tests.e2e.conftest import TIMEOUT_MS
from tests.e2e.helpers import launch, wait_state
from tests.support import Daphne

pytestmark = [pytest.mark.e2e, pytest.mark.live]

HOSTILE_URLS = [
    "javascript:alert(document.cookie)",
    " JavaScript:alert(1)",
    "java\tscript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    "blob:https://example.com/x",
    "file:///etc/passwd",
]
EXPECTED_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
# Recorded before any script of the page runs (Playwright's init scripts are not subject to CSP).
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
});
"""


def succeeded(task_id: str, download_url: str) -> dict[str, Any]:
    return {
        "id": task_id, "name": "demo.export_csv", "label": "Export CSV", "state": "succeeded",
        "cancel_requested": False, "attempt": 1, "created_at": "2030-01-01T00:00:00Z",
        "started_at": "2030-01-01T00:00:01Z", "finished_at": "2030-01-01T00:00:02Z",
        "updated_at": "2030-01-01T00:00:02Z", "result": {"rows": 1, "download_url": download_url}, "error": None,
        "progress": {"current": 1, "total": 1, "percent": 100.0, "message": ""}, "eta_seconds": None, "seq": 3,
    }


async def test_a_result_link_is_drawn_only_for_http_https_and_relative_urls(browser: Browser, live: Daphne) -> None:
    # A compromised task writes what it likes into its result: the list the page reads first
    # over HTTP is answered with such results, next to well-formed ones.
    hostile = [succeeded(f"00000000-0000-4000-8000-{i:012d}", url) for i, url in enumerate(HOSTILE_URLS)]
    fine = {
        "00000000-0000-4000-8000-100000000001": "/files/export.csv",
        "00000000-0000-4000-8000-100000000002": "export.csv",
        "00000000-0000-4000-8000-100000000003": "https://files.example.com/export.csv",
    }
    tasks = hostile + [succeeded(task_id, url) for task_id, url in fine.items()]

    async def tasks_list(route: Route) -> None:
        if route.request.method == "GET":
            await route.fulfill(json={"tasks": tasks})
        else:
            await route.fallback()

    context = await browser.new_context(base_url=live.base_url)
    context.set_default_timeout(TIMEOUT_MS)
    try:
        await context.route("**/api/tasks/", tasks_list)
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto("/")
        for task_id in fine:
            await expect(page.locator(f"#task-{task_id} a.download")).to_have_count(1)
        assert await page.locator("#task-list a.download").count() == len(fine)
        for task in hostile:
            row = page.locator(f"#task-{task['id']}")
            await expect(row).to_have_attribute("data-state", "succeeded")
            assert await row.locator("a").count() == 0, task["result"]
        hrefs = await page.eval_on_selector_all("a[href]", "(links) => links.map((a) => a.href)")
        assert all(href.startswith(("http://", "https://")) for href in hrefs), hrefs
        assert f"{live.base_url}/files/export.csv" in hrefs and f"{live.base_url}/export.csv" in hrefs

        # The toast of a finished task goes through the same helper.
        drawn = await page.evaluate(
            """async (urls) => {
              const src = document.querySelector('script[src*="tasklight/tasklight"]').src;
              const m = await import(src);
              for (const [i, url] of urls.entries()) {
                m.tasklight()._emit("finished", { seenRunning: true, task: {
                  id: `toast-${i}`, name: "demo.export_csv", label: "Export", state: "succeeded",
                  result: { download_url: url } } });
              }
              return urls.map((url) => { const a = m.downloadLink(url, "x"); return a && a.href; });
            }""",
            HOSTILE_URLS + ["/files/a.csv"],
        )
        assert drawn == [None] * len(HOSTILE_URLS) + [f"{live.base_url}/files/a.csv"], drawn
        await expect(page.locator("#tl-toasts .tl-toast")).to_have_count(5)   # MAX_TOASTS, the newest
        assert await page.locator("#tl-toasts a").count() == 1
        assert not await page.locator('a[href^="javascript:" i], a[href^="data:" i]').count()
        assert not errors, errors
    finally:
        await context.close()


async def test_every_page_sends_the_content_security_policy(live: Daphne) -> None:
    async with httpx.AsyncClient(base_url=live.base_url, timeout=10) as http:
        for path in ("/", "/accounts/login/", "/api/launchable/", "/healthz"):
            response = await http.get(path)
            assert response.headers.get("content-security-policy") == EXPECTED_POLICY, (path, response.headers)


async def test_the_dashboard_works_under_its_policy_with_no_violation(browser: Browser, live: Daphne) -> None:
    context = await browser.new_context(base_url=live.base_url)
    context.set_default_timeout(TIMEOUT_MS)
    await context.add_init_script(RECORD_VIOLATIONS)
    console: list[str] = []
    try:
        page: Page = await context.new_page()
        page.on("console", lambda m: console.append(m.text))
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        response = await page.goto("/")
        assert response is not None and response.headers["content-security-policy"] == EXPECTED_POLICY
        # Live means the same-origin ws: socket was allowed by connect-src 'self' and answered.
        await expect(page.locator("#tl-connection")).to_have_attribute("data-state", "live")
        row = await launch(page, "demo.count_primes", limit=200_000)
        await wait_state(row, "succeeded")
        await expect(row.locator(".percent")).to_have_text("100%")   # bar width set from script
        toast = page.locator(f'#tl-toasts .tl-toast[data-task-id="{await row.get_attribute("data-task-id")}"]')
        await expect(toast).to_contain_text("succeeded")
        # The config the page reads is <script type="application/json">: data, never blocked.
        assert await page.evaluate("JSON.parse(document.getElementById('tasklight-config').textContent).ws")
        await page.goto("/accounts/login/")
        await expect(page.locator("input[name=username]")).to_be_visible()
        assert await page.evaluate("window.__violations") == []
        await page.goto("/")
        await expect(page.locator("#tl-connection")).to_have_attribute("data-state", "live")
        await expect(page.locator("#task-list > li")).to_have_count(1)
        assert await page.evaluate("window.__violations") == []
        assert not [line for line in console if "Content Security Policy" in line], console
        assert not errors, errors

        # The recorder works: an inline script injected now is refused and reported.
        await page.evaluate(
            "() => { const s = document.createElement('script'); s.textContent = 'window.__ran = 1';"
            " document.body.append(s); }"
        )
        await page.wait_for_function("window.__violations.length > 0")
        assert await page.evaluate("window.__ran") is None
        assert "script-src" in (await page.evaluate("window.__violations"))[0]
    finally:
        await context.close()
