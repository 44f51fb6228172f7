"""A hostile client: other owners' tasks, foreign origins, forged posts, malformed frames."""

from __future__ import annotations

import json
import uuid

import pytest
import websockets

from tests.realtime.conftest import closed_with, frames_about, round_trip, subscribed

pytestmark = pytest.mark.live

CLIENT_ERRORS = {"bad_request", "not_found", "unknown_task", "invalid_params"}


def same_answer(got: dict, expected: dict, foreign: str, missing: str) -> bool:
    """Equal once the asked-for id is replaced: nothing tells a foreign task from no task."""
    return json.loads(json.dumps(got).replace(foreign, missing)) == expected


async def test_another_owners_task_answers_as_a_missing_one_over_the_socket(visitor, other_visitor):
    task = await visitor.launch("demo.sleepy", seconds=30)
    owner_ws, _ = await subscribed(visitor, task["id"])
    missing = str(uuid.uuid4())
    intruder = await other_visitor.socket()
    for kind in ("subscribe", "cancel", "subscribe"):
        await intruder.send({"type": kind, "task_id": task["id"]})
        foreign_answer = await intruder.recv()
        await intruder.send({"type": kind, "task_id": missing})
        missing_answer = await intruder.recv()
        assert foreign_answer["code"] == "not_found"
        assert same_answer(foreign_answer, missing_answer, task["id"], missing)
    # "Subscribe all" shows only the intruder's own tasks and none of the owner's changes.
    await intruder.send({"type": "subscribe"})
    snapshot = await intruder.expect(lambda m: m["type"] == "snapshot")
    assert snapshot["tasks"] == []
    # The intruder's cancel did nothing; the owner's does, and the intruder sees none of it.
    assert (await visitor.get(f"/api/tasks/{task['id']}/")).json()["cancel_requested"] is False
    assert (await visitor.post(f"/api/tasks/{task['id']}/cancel/")).status_code == 202
    assert (await owner_ws.until_finished(task["id"]))["state"] == "cancelled"
    await round_trip(intruder)
    assert frames_about(intruder, task["id"]) == []
    await intruder.close()
    await owner_ws.close()


async def test_another_owners_task_answers_as_a_missing_one_over_http(visitor, other_visitor):
    task = await visitor.launch("demo.export_csv", rows=50)
    ws, _ = await subscribed(visitor, task["id"])
    final = await ws.until_finished(task["id"])
    assert final["state"] == "succeeded"
    download = final["result"]["download_url"]
    assert (await visitor.get(download)).status_code == 200
    missing = str(uuid.uuid4())
    requests = [
        ("GET", "/api/tasks/{}/"),
        ("GET", "/api/tasks/{}/download/"),
        ("POST", "/api/tasks/{}/cancel/"),
    ]
    for method, path in requests:
        send = other_visitor.get if method == "GET" else other_visitor.post
        foreign = await send(path.format(task["id"]))
        absent = await send(path.format(missing))
        assert foreign.status_code == absent.status_code == 404, (path, foreign.status_code)
        assert foreign.json() == absent.json()
        assert foreign.headers["content-type"] == absent.headers["content-type"]
    assert (await other_visitor.get("/api/tasks/")).json() == {"tasks": []}
    await ws.close()


async def test_a_handshake_from_a_foreign_origin_is_refused(visitor, live):
    for origin in ("http://evil.example", "null", "http://127.0.0.1.evil.example"):
        with pytest.raises(websockets.InvalidStatus) as refused:
            await visitor.socket(origin=origin)
        assert refused.value.response.status_code == 403
    # No Origin at all (a script that forgot it) is refused as well.
    with pytest.raises(websockets.InvalidStatus):
        await websockets.connect(live.ws_url, additional_headers={"Cookie": visitor.cookie_header})
    ws = await visitor.socket()
    await round_trip(ws)
    await ws.close()


async def test_posts_without_the_csrf_token_are_refused(visitor):
    task = await visitor.launch("demo.sleepy", seconds=0)
    forged = await visitor.http.post("/api/tasks/", json={"name": "demo.sleepy", "params": {"seconds": 0}})
    assert forged.status_code == 403
    cancel = await visitor.http.post(f"/api/tasks/{task['id']}/cancel/", json={})
    assert cancel.status_code == 403
    wrong = await visitor.http.post("/api/tasks/", json={"name": "demo.sleepy"}, headers={"X-CSRFToken": "x" * 32})
    assert wrong.status_code == 403
    assert [t["id"] for t in (await visitor.get("/api/tasks/")).json()["tasks"]] == [task["id"]]


def _nested_array(depth: int) -> str:
    return "[" * depth + "]" * depth


MALFORMED: list[tuple[str, str | bytes]] = [
    ("empty text", ""),
    ("whitespace", " \t\n "),
    ("truncated object", '{"type": "ping"'),
    ("not json", "hello server"),
    ("json null", "null"),
    ("json number", "42"),
    ("json string", '"subscribe"'),
    ("json array", "[]"),
    ("array of messages", '[{"type": "ping"}]'),
    ("object without type", "{}"),
    ("type null", '{"type": null}'),
    ("type number", '{"type": 42}'),
    ("type list", '{"type": ["ping"]}'),
    ("type wrong case", '{"type": "PING"}'),
    ("type is a handler name", '{"type": "task_update", "id": "x", "seq": 99, "state": "running", "frame": "{}"}'),
    ("type is a layer event", '{"type": "session.end", "session": "x"}'),
    ("type is a dunder", '{"type": "__init__"}'),
    ("type with zero-width space", '{"type": "pi\\u200bng"}'),
    ("type emoji", '{"type": "\\ud83d\\udca5"}'),
    ("type lone surrogate", '{"type": "\\udc00"}'),
    ("long type", json.dumps({"type": "x" * 50_000})),
    ("task_id number", '{"type": "subscribe", "task_id": 42}'),
    ("task_id object", '{"type": "subscribe", "task_id": {"id": "x"}}'),
    ("task_id bool", '{"type": "cancel", "task_id": true}'),
    ("task_id path", '{"type": "subscribe", "task_id": "../../etc/passwd"}'),
    ("task_id glob", '{"type": "subscribe", "task_id": "*"}'),
    ("task_id long", json.dumps({"type": "subscribe", "task_id": "a" * 10_000})),
    ("task_id NUL", '{"type": "subscribe", "task_id": "\\u0000"}'),
    ("task_id lone surrogate", '{"type": "subscribe", "task_id": "\\ud800"}'),
    ("task_id nil uuid", '{"type": "subscribe", "task_id": "00000000-0000-0000-0000-000000000000"}'),
    ("cancel without task_id", '{"type": "cancel"}'),
    ("cancel null task_id", '{"type": "cancel", "task_id": null}'),
    ("unsubscribe list task_id", '{"type": "unsubscribe", "task_id": []}'),
    ("deeply nested array", _nested_array(30_000)),
    ("deeply nested object", '{"a":' * 9_000 + "1" + "}" * 9_000),
    ("nested params", '{"type": "launch", "name": "demo.sleepy", "params": {"seconds": ' + _nested_array(900) + "}}"),
    ("NaN param", '{"type": "launch", "name": "demo.sleepy", "params": {"seconds": NaN}}'),
    ("Infinity param", '{"type": "launch", "name": "demo.sleepy", "params": {"seconds": -Infinity}}'),
    ("overflowing float", '{"type": "launch", "name": "demo.sleepy", "params": {"seconds": 1e400}}'),
    ("huge integer", '{"type": "ping", "n": ' + "9" * 5_000 + "}"),
    ("params not an object", '{"type": "launch", "name": "demo.sleepy", "params": "seconds=1"}'),
    ("params extra key", '{"type": "launch", "name": "demo.sleepy", "params": {"seconds": 1, "cmd": "id"}}'),
    ("launch name list", '{"type": "launch", "name": ["demo.sleepy"]}'),
    ("launch internal task", '{"type": "launch", "name": "celery.backend_cleanup"}'),
    ("duplicate keys", '{"type": "ping", "type": "nope"}'),
    ("byte order mark", '\ufeff{"type": "ping"}'),
    ("binary garbage", b"\x00\xff\xfe\x01"),
    ("binary json", b'{"type": "ping"}'),
    ("oversize text", '{"type": "ping", "pad": "' + "x" * 70_000 + '"}'),
    ("oversize multibyte text", '{"type": "ping", "pad": "' + "\u00e9" * 40_000 + '"}'),
    ("oversize binary", b"\x00" * 70_000),
]


async def test_malformed_frames_get_an_error_and_the_server_keeps_serving(visitor, other_visitor, live):
    log_start = len(live.output())
    bystander, _ = await subscribed(other_visitor)
    answers = {}
    for name, frame in MALFORMED:
        ws = await visitor.socket()
        try:
            await ws.send(frame)
        except websockets.ConnectionClosed:  # closed before the client finished writing
            pass
        if len(frame.encode() if isinstance(frame, str) else frame) > 64 * 1024:
            answers[name] = await closed_with(ws)
            assert answers[name] == 1009, name
            continue
        answer = await ws.recv()
        assert answer["type"] == "error" and answer["code"] in CLIENT_ERRORS, (name, answer)
        assert len(json.dumps(answer)) < 1000, name  # nothing echoed at length
        answers[name] = answer["code"]
        await round_trip(ws)  # still open after the error
        await ws.close()
    assert len(MALFORMED) >= 30
    # Invalid UTF-8 in a text frame never reaches the app: the WebSocket layer drops the
    # connection (autobahn fails by drop, so the client sees 1006, or 1007 elsewhere).
    ws = await visitor.socket()
    await ws.ws.send(b'{"type": "\xff"}', text=True)
    assert await closed_with(ws) in (1006, 1007)
    # Others are still served: pings, and every change of a new task.
    await round_trip(bystander)
    task = await other_visitor.launch("demo.sleepy", seconds=0.1)
    assert (await bystander.until_finished(task["id"]))["state"] == "succeeded"
    await bystander.close()
    log = live.output()[log_start:]
    assert "Traceback" not in log, log[-4000:]
    assert "Exception inside application" not in log
