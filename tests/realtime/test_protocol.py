"""Every message of the /ws/tasks/ protocol, over a real socket to a live Daphne (docs/protocol.md)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.realtime.conftest import assert_task_object, closed_with, frames_about, round_trip, subscribed
from tests.support import TERMINAL

pytestmark = pytest.mark.live


async def test_ping_is_answered_with_pong(visitor):
    ws = await visitor.socket()
    await ws.send({"type": "ping"})
    assert await ws.recv() == {"type": "pong"}
    await ws.close()


async def test_subscribe_all_sends_a_snapshot_then_every_change_of_the_owners_tasks(visitor):
    ws, snapshot = await subscribed(visitor)
    assert snapshot == {"type": "snapshot", "tasks": []}
    task = await visitor.launch("demo.sleepy", seconds=0.3)
    final = await ws.until_finished(task["id"])
    assert final["state"] == "succeeded" and final["result"] == {"slept": 0.3}
    states = [t["state"] for t in frames_about(ws, task["id"])]
    lifecycle = ["queued", "running", "succeeded"]
    assert [lifecycle.index(s) for s in states] == sorted(lifecycle.index(s) for s in states), states
    assert states[-1] == "succeeded" and len(states) >= 2, states
    for t in frames_about(ws, task["id"]):
        assert_task_object(t)
    # Subscribing again gives a fresh snapshot of the owner's recent tasks.
    await ws.send({"type": "subscribe"})
    again = await ws.expect(lambda m: m["type"] == "snapshot")
    assert [t["id"] for t in again["tasks"]] == [task["id"]]
    assert again["tasks"][0]["state"] == "succeeded"
    await ws.close()


async def test_subscribe_one_task_sends_its_snapshot_and_only_its_changes(visitor):
    watched = await visitor.launch("demo.sleepy", seconds=0.3)
    other = await visitor.launch("demo.sleepy", seconds=0.3)
    # Any spelling of the UUID is accepted; answers use the canonical form.
    ws, snapshot = await subscribed(visitor, watched["id"].upper())
    assert [t["id"] for t in snapshot["tasks"]] == [watched["id"]]
    assert_task_object(snapshot["tasks"][0])
    assert (await ws.until_finished(watched["id"]))["state"] == "succeeded"
    control, _ = await subscribed(visitor, other["id"])
    await control.until_finished(other["id"])
    await round_trip(ws)
    assert frames_about(ws, other["id"]) == []
    await ws.close()
    await control.close()


async def test_unsubscribe_stops_the_changes_of_that_task(visitor):
    task = await visitor.launch("demo.sleepy", seconds=30)
    ws, _ = await subscribed(visitor, task["id"])
    await ws.send({"type": "unsubscribe", "task_id": task["id"]})
    await round_trip(ws)
    mark = len(ws.messages)
    control, _ = await subscribed(visitor, task["id"])
    response = await visitor.post(f"/api/tasks/{task['id']}/cancel/")
    assert response.status_code == 202
    assert (await control.until_finished(task["id"]))["state"] == "cancelled"
    await round_trip(ws)
    assert frames_about(ws, task["id"], since=mark) == []
    await ws.close()
    await control.close()


async def test_cancel_over_the_socket_then_already_finished(visitor):
    task = await visitor.launch("demo.sleepy", seconds=30)
    ws, _ = await subscribed(visitor, task["id"])
    await ws.until_task(task["id"], lambda t: t["state"] == "running")
    await ws.send({"type": "cancel", "task_id": task["id"]})
    await ws.until_task(task["id"], lambda t: t["cancel_requested"])
    final = await ws.until_finished(task["id"])
    assert final["state"] == "cancelled" and final["cancel_requested"] is True
    await ws.send({"type": "cancel", "task_id": task["id"]})
    error = await ws.expect(lambda m: m["type"] == "error")
    assert error["code"] == "already_finished" and error["task_id"] == task["id"]
    await round_trip(ws)  # the connection stays open after an error
    await ws.close()


async def test_unknown_task_ids_are_not_found(visitor):
    ws = await visitor.socket()
    missing = str(uuid.uuid4())
    for kind in ("subscribe", "cancel"):
        await ws.send({"type": kind, "task_id": missing})
        error = await ws.recv()
        assert error == {"type": "error", "code": "not_found", "detail": "no such task", "task_id": missing}
    await round_trip(ws)
    await ws.close()


async def test_malformed_requests_get_bad_request_and_the_connection_stays_open(visitor):
    ws = await visitor.socket()
    for frame in ("{nope", '{"type": "dance"}', {"type": "subscribe", "task_id": "nope"}, {"type": "cancel"},
                  {"type": "unsubscribe", "task_id": 7}, b'{"type": "ping"}'):
        await ws.send(frame)
        error = await ws.recv()
        assert error["type"] == "error" and error["code"] == "bad_request", (frame, error)
        assert isinstance(error["detail"], str) and error["detail"]
    await round_trip(ws)
    await ws.close()


async def test_launch_over_the_socket_starts_a_launchable_task(visitor):
    ws, _ = await subscribed(visitor)
    await ws.send({"type": "launch", "name": "demo.sleepy", "params": {"seconds": 0.2}})
    first = await ws.expect(lambda m: m["type"] == "task")
    task = first["task"]
    assert task["name"] == "demo.sleepy" and task["state"] == "queued"
    assert (await ws.until_finished(task["id"]))["state"] == "succeeded"
    bad = [
        ({"type": "launch", "name": "celery.backend_cleanup"}, "unknown_task"),
        ({"type": "launch", "name": "demo.sleepy", "params": {"seconds": -1}}, "invalid_params"),
        ({"type": "launch", "name": "demo.sleepy", "params": {"seconds": 1, "shell": "rm -rf /"}}, "invalid_params"),
    ]
    for frame, code in bad:
        await ws.send(frame)
        error = await ws.expect(lambda m: m["type"] == "error")
        assert error["code"] == code, (frame, error)
    await ws.close()


async def test_a_frame_over_64_kib_closes_the_connection_with_1009(visitor):
    ws = await visitor.socket()
    await ws.send('{"type":"ping","pad":"' + "x" * 60_000 + '"}')  # under the limit: served
    assert await ws.recv() == {"type": "pong"}
    await ws.send('{"type":"ping","pad":"' + "x" * (64 * 1024) + '"}')
    assert await closed_with(ws) == 1009


async def test_too_many_messages_are_rate_limited_then_the_connection_is_closed_1008(visitor):
    ws = await visitor.socket()
    for _ in range(150):
        await ws.send({"type": "ping"})
    assert await closed_with(ws) == 1008
    pongs = [m for m in ws.messages if m["type"] == "pong"]
    limited = [m for m in ws.messages if m["type"] == "error"]
    assert len(pongs) >= 40, len(pongs)  # the burst is served
    assert limited and all(m["code"] == "rate_limited" for m in limited)
    # Limits are per connection: a new one is served at once.
    fresh = await visitor.socket()
    await round_trip(fresh)
    await fresh.close()


async def test_seq_strictly_increases_per_task_within_one_connection(visitor):
    ws, _ = await subscribed(visitor)
    launched = [await visitor.launch("demo.count_primes", limit=1_500_000) for _ in range(2)]
    launched.append(await visitor.launch("demo.sleepy", seconds=0.5))
    for task in launched:
        await ws.until_finished(task["id"])
    await round_trip(ws)
    for task in launched:
        frames = frames_about(ws, task["id"])
        seqs = [t["seq"] for t in frames]
        assert len(seqs) >= 3 and all(a < b for a, b in zip(seqs, seqs[1:])), seqs
        # Nothing follows a terminal state.
        assert [t["state"] in TERMINAL for t in frames].index(True) == len(frames) - 1
        percents = [t["progress"]["percent"] for t in frames if t["progress"]["percent"] is not None]
        assert percents == sorted(percents)
    await ws.close()


async def test_a_reconnecting_client_gets_a_snapshot_at_least_as_new_as_what_it_had(visitor):
    task = await visitor.launch("demo.sleepy", seconds=1.5)
    first, _ = await subscribed(visitor)
    seen = await first.until_task(task["id"], lambda t: t["state"] == "running" and t["progress"]["current"] > 0)
    await first.close()
    # Reconnect while it runs: the snapshot is no older than the last frame received.
    second, snapshot = await subscribed(visitor)
    [now] = [t for t in snapshot["tasks"] if t["id"] == task["id"]]
    assert now["seq"] >= seen["seq"]
    final = await second.until_finished(task["id"])
    await second.close()
    # Reconnect after it finished: both kinds of subscribe give the terminal state.
    third, snapshot = await subscribed(visitor)
    [after] = [t for t in snapshot["tasks"] if t["id"] == task["id"]]
    assert after["state"] == "succeeded" and after["seq"] >= final["seq"]
    await third.send({"type": "subscribe", "task_id": task["id"]})
    one = await third.expect(lambda m: m["type"] == "snapshot")
    assert one["tasks"][0]["seq"] >= final["seq"] and one["tasks"][0]["state"] == "succeeded"
    await third.close()


async def test_messages_between_watchers_are_independent(visitor):
    """Two sockets of one owner both get the terminal state, and an error on one does not reach the other."""
    a, _ = await subscribed(visitor)
    b, _ = await subscribed(visitor)
    task = await visitor.launch("demo.sleepy", seconds=0.1)
    await a.send("garbage")
    results = await asyncio.gather(a.until_finished(task["id"]), b.until_finished(task["id"]))
    assert [r["state"] for r in results] == ["succeeded", "succeeded"]
    assert not [m for m in b.messages if m["type"] == "error"]
    await a.close()
    await b.close()
