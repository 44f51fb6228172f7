from __future__ import annotations

import pytest

pytestmark = pytest.mark.live


async def test_count_primes_reports_rising_progress_to_success(visitor):
    ws = await visitor.socket()
    await ws.send({"type": "subscribe"})
    snapshot = await ws.recv()
    assert snapshot == {"type": "snapshot", "tasks": []}
    task = await visitor.launch("demo.count_primes", limit=3_000_000)
    assert task["state"] == "queued"
    final = await ws.until_finished(task["id"])
    assert final["state"] == "succeeded"
    assert final["result"] == {"limit": 3_000_000, "primes": 216816}
    percents = [m["task"]["progress"]["percent"] for m in ws.messages if m.get("type") == "task" and m["task"]["progress"]["percent"] is not None]
    assert percents == sorted(percents) and percents[-1] == 100.0
    assert len(percents) >= 3, percents
    await ws.close()
