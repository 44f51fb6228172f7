"""Static files: hashed names, served by Daphne (WhiteNoise) with a long cache lifetime."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.support import Daphne

pytestmark = [pytest.mark.e2e, pytest.mark.live]

HASHED = re.compile(r"/static/(?:tasklight/)?(\w+)\.([0-9a-f]{12})\.(js|css)")
YEAR = 365 * 24 * 3600


def max_age(response: httpx.Response) -> int:
    match = re.search(r"max-age=(\d+)", response.headers.get("cache-control", ""))
    return int(match.group(1)) if match else 0


async def test_hashed_static_urls_are_served_with_a_long_cache_lifetime(live: Daphne) -> None:
    async with httpx.AsyncClient(base_url=live.base_url, timeout=10) as http:
        page = (await http.get("/")).text
        urls = {m.group(1): m.group(0) for m in HASHED.finditer(page)}
        assert {"tasklight", "notifications", "dashboard", "site"} <= set(urls), page

        for url in urls.values():
            response = await http.get(url, headers={"Accept-Encoding": "gzip"})
            assert response.status_code == 200, url
            assert max_age(response) >= YEAR, response.headers
            assert "immutable" in response.headers["cache-control"]
            assert response.headers.get("content-encoding") == "gzip", response.headers

        # ES module imports point at hashed names too, so a new tasklight.js busts every cache.
        dashboard = (await http.get(urls["dashboard"])).text
        imported = re.search(r'from\s+"\./(tasklight/tasklight\.[0-9a-f]{12}\.js)"', dashboard)
        assert imported, dashboard[:300]
        response = await http.get(f"/static/{imported.group(1)}")
        assert response.status_code == 200 and max_age(response) >= YEAR
        assert "export class TasklightClient" in response.text

        # A name that is not in the manifest is not cached for long.
        plain = await http.get("/static/tasklight/tasklight.js")
        assert max_age(plain) < YEAR
