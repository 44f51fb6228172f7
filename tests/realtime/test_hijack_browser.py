"""Issue 12, finding 1 in a real browser: a page on another port of the same host cannot use
the visitor's cookies over the socket (cross-site WebSocket hijacking), while the site's
own page can."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.async_api import async_playwright

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS
from tests.support import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.live]

# Open the socket, ask for every task of whoever's cookies the browser sends, report.
PROBE = """(url) => new Promise(resolve => {
  const ws = new WebSocket(url);
  ws.onopen = () => ws.send(JSON.stringify({type: "subscribe"}));
  ws.onmessage = (e) => { resolve("read " + e.data); ws.close(); };
  ws.onclose = (e) => resolve("closed " + e.code);
})"""


@pytest.fixture
def attacker() -> Iterator[str]:
    """Another site on the same host: 127.0.0.1, another port."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = b"<!doctype html><title>elsewhere</title><p>a page of another site"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_a_page_on_another_port_cannot_open_the_victims_socket(live, attacker):
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"no Chromium at {CHROMIUM}: run `make browser`", pytrace=False)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(base_url=live.base_url)
            context.set_default_timeout(TIMEOUT_MS)
            page = await context.new_page()
            # The victim visits the site and starts a task (its session cookie is Lax).
            await page.goto("/")
            token = next(c["value"] for c in await context.cookies() if c["name"] == "csrftoken")
            made = await context.request.post("/api/tasks/", data=json.dumps({"name": "demo.sleepy", "params": {"seconds": 0}}),
                                              headers={"X-CSRFToken": token, "Content-Type": "application/json"})
            assert made.status == 201, await made.text()
            task_id = (await made.json())["id"]
            # The site's own page reads the victim's tasks over the socket...
            own = await page.evaluate(PROBE, live.ws_url)
            assert own.startswith("read ") and task_id in own, own
            # ...a page of another site on the same host, in the same browser, cannot.
            await page.goto(attacker)
            hijack = await page.evaluate(PROBE, live.ws_url)
            assert hijack.startswith("closed "), hijack
            assert task_id not in hijack
        finally:
            await browser.close()
