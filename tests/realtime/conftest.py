"""Helpers of the WebSocket protocol tests (docs/protocol.md)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import websockets

from tests.support import Socket, Visitor


@pytest.fixture(autouse=True)
def no_traceback_in_daphne(request: pytest.FixtureRequest) -> Iterator[None]:
    """Whatever a live test here sends, Daphne logs no traceback while it runs."""
    if "live" not in request.fixturenames:
        yield
        return
    daphne = request.getfixturevalue("daphne")
    start = len(daphne.output())
    yield
    log = daphne.output()[start:]
    assert "Traceback" not in log, log[log.index("Traceback") - 200:][:4000]


TASK_KEYS = {
    "id", "name", "label", "state", "cancel_requested", "progress", "eta_seconds", "seq",
    "created_at", "started_at", "finished_at", "updated_at", "result", "error",
}
PROGRESS_KEYS = {"current", "total", "percent", "message"}


def assert_task_object(obj: dict[str, Any]) -> None:
    """The task object (docs/protocol.md): every key, the right types."""
    assert TASK_KEYS <= set(obj), TASK_KEYS - set(obj)
    assert set(obj["progress"]) >= PROGRESS_KEYS
    assert isinstance(obj["seq"], int) and obj["seq"] > 0
    assert obj["state"] in ("queued", "running", "retrying", "succeeded", "failed", "cancelled")
    assert obj["created_at"].endswith("Z")


async def subscribed(visitor: Visitor, task_id: str | None = None) -> tuple[Socket, dict[str, Any]]:
    """A socket subscribed to all of the visitor's tasks (or to one), and its snapshot."""
    ws = await visitor.socket()
    await ws.send({"type": "subscribe"} if task_id is None else {"type": "subscribe", "task_id": task_id})
    snapshot = await ws.expect(lambda m: m["type"] in ("snapshot", "error"))
    assert snapshot["type"] == "snapshot", snapshot
    return ws, snapshot


async def round_trip(ws: Socket) -> None:
    """Ping and wait for the pong: everything sent before has been handled by the server."""
    await ws.send({"type": "ping"})
    await ws.expect(lambda m: m["type"] == "pong", 10)


async def closed_with(ws: Socket, timeout: float = 10.0) -> int | None:
    """Read until the server closes the connection; its close code."""
    import asyncio

    async def drain() -> None:
        try:
            while True:
                await ws.recv(timeout)
        except websockets.ConnectionClosed:
            return

    await asyncio.wait_for(drain(), timeout)
    return ws.ws.close_code


def frames_about(ws: Socket, task_id: str, since: int = 0) -> list[dict[str, Any]]:
    """The task objects this socket received about one task (snapshots included), in order."""
    out = []
    for message in ws.messages[since:]:
        if message.get("type") == "task" and message["task"]["id"] == task_id:
            out.append(message["task"])
        elif message.get("type") == "snapshot":
            out.extend(t for t in message["tasks"] if t["id"] == task_id)
    return out
