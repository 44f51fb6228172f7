"""The HTTP API against the live Daphne."""

from __future__ import annotations

import uuid

import pytest
from asgiref.sync import sync_to_async

from tasks.models import TaskRun
from tests.support import Daphne, Visitor, free_port

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


async def test_launchable_lists_each_task_with_its_json_schema(visitor):
    body = (await visitor.get("/api/launchable/")).json()
    by_name = {t["name"]: t for t in body["tasks"]}
    assert set(by_name) == {"demo.count_primes", "demo.export_csv", "demo.flaky", "demo.sleepy", "demo.stubborn"}
    limit = by_name["demo.count_primes"]["params"]["properties"]["limit"]
    assert limit["type"] == "integer" and limit["default"] == 2_000_000
    assert by_name["demo.count_primes"]["label"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"name": "demo.tight_loop", "params": {}}, "unknown_task"),  # a real task, but not launchable
        ({"name": "celery.chord_unlock", "params": {}}, "unknown_task"),
        ({"name": "nope"}, "unknown_task"),
        ({"params": {}}, "unknown_task"),
        ({"name": "demo.count_primes", "params": {"limit": "lots"}}, "invalid_params"),
        ({"name": "demo.count_primes", "params": {"limit": 10, "extra": 1}}, "invalid_params"),
        ({"name": "demo.count_primes", "params": [1, 2]}, "invalid_params"),
        ({"name": "demo.sleepy", "params": {"seconds": -1}}, "invalid_params"),
    ],
)
async def test_launch_rejects_what_is_not_launchable_or_not_valid(visitor, body, code):
    response = await visitor.post("/api/tasks/", body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert (await visitor.get("/api/tasks/")).json()["tasks"] == []


async def test_launch_rejects_malformed_bodies_without_a_traceback(visitor):
    for raw in (b"{", b"[]", b"null", b"\xff\xfe", b'{"name": "demo.sleepy", "params": {"seconds": NaN}}',
                b"[" * 50_000):
        response = await visitor.http.post("/api/tasks/", content=raw, headers={**visitor.csrf(), "Content-Type": "application/json"})
        assert response.status_code == 400, raw
        assert response.json()["error"]["code"] == "bad_request"
        assert "Traceback" not in response.text


async def test_the_list_is_newest_first_and_only_mine(visitor, other_visitor):
    a = await visitor.launch("demo.sleepy", seconds=0)
    b = await visitor.launch("demo.sleepy", seconds=0)
    theirs = await other_visitor.launch("demo.sleepy", seconds=0)
    mine = (await visitor.get("/api/tasks/")).json()["tasks"]
    assert [t["id"] for t in mine] == [b["id"], a["id"]]
    assert theirs["id"] not in {t["id"] for t in mine}
    detail = await visitor.get(f"/api/tasks/{a['id']}/")
    assert detail.status_code == 200 and detail.json()["id"] == a["id"]
    for wrong in (theirs["id"], str(uuid.uuid4()), "not-a-uuid", "1"):
        response = await visitor.get(f"/api/tasks/{wrong}/")
        assert response.status_code == 404 and response.json() == {"error": {"code": "not_found", "detail": "no such task"}}


async def test_the_task_object_has_every_field_of_the_spec(visitor):
    task = await visitor.launch("demo.count_primes", limit=10_000)
    for field in ("id", "name", "label", "state", "cancel_requested", "progress", "eta_seconds", "seq", "created_at",
                  "started_at", "finished_at", "updated_at", "result", "error"):
        assert field in task, field
    assert task["label"] == "Count primes below 10,000"
    assert task["created_at"].endswith("Z") and len(task["created_at"]) == len("2026-11-24T10:00:00.000Z")
    assert set(task["progress"]) == {"current", "total", "percent", "message"}


async def test_post_without_the_csrf_token_is_refused(visitor):
    response = await visitor.http.post("/api/tasks/", json={"name": "demo.sleepy", "params": {}})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "csrf_failed"
    assert (await visitor.get("/api/tasks/")).json()["tasks"] == []


async def test_a_broker_that_is_down_gives_503_and_a_failed_run_never_a_queued_one(live):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    broken = await sync_to_async(lambda: Daphne(CELERY_BROKER_URL=dead).start())()
    try:
        async with Visitor(broken) as visitor:
            response = await visitor.post("/api/tasks/", {"name": "demo.sleepy", "params": {"seconds": 1}})
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "unavailable"
            listed = (await visitor.get("/api/tasks/")).json()["tasks"]
            assert len(listed) == 1 and listed[0]["state"] == "failed"
            row = await TaskRun.objects.aget(id=listed[0]["id"])
            assert row.state == "failed" and row.error["type"] == "BrokerUnavailable"
    finally:
        await sync_to_async(broken.stop)()


async def test_every_api_error_has_the_json_error_shape(visitor):
    wrong_method = await visitor.http.delete("/api/tasks/", headers=visitor.csrf())
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["code"] == "method_not_allowed"
    assert "GET" in wrong_method.headers["allow"]
    unknown = await visitor.get("/api/nothing-here/")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    huge = await visitor.http.post("/api/tasks/", content=b" " * (3 * 1024 * 1024),
                                   headers={**visitor.csrf(), "Content-Type": "application/json"})
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "bad_request"


async def test_an_owner_cannot_start_more_than_the_allowed_number_of_unfinished_tasks(live):
    capped = await sync_to_async(lambda: Daphne(TASKLIGHT_MAX_ACTIVE_PER_OWNER="2").start())()
    try:
        async with Visitor(capped) as visitor:
            first = await visitor.launch("demo.sleepy", seconds=30)
            second = await visitor.launch("demo.sleepy", seconds=30)
            third = await visitor.post("/api/tasks/", {"name": "demo.sleepy", "params": {"seconds": 1}})
            assert third.status_code == 429 and third.json()["error"]["code"] == "rate_limited"
            ws = await visitor.socket()
            await ws.send({"type": "launch", "name": "demo.sleepy", "params": {}})
            refused = await ws.expect(lambda m: m["type"] == "error")
            assert refused["code"] == "rate_limited"
            await ws.close()
            for task in (first, second):
                assert (await visitor.post(f"/api/tasks/{task['id']}/cancel/")).status_code == 202
            assert len((await visitor.get("/api/tasks/")).json()["tasks"]) == 2
    finally:
        await sync_to_async(capped.stop)()


async def test_a_multipart_post_with_a_valid_token_is_answered_with_a_json_400(visitor):
    """Issue 12, finding 6: the CSRF check had read the form, and request.body raised (500)."""
    token = visitor.http.cookies.get("csrftoken")
    for files in ({"csrfmiddlewaretoken": (None, token), "name": (None, "demo.sleepy")},
                  {"file": ("a.json", b'{"name": "demo.sleepy"}', "application/json")}):
        response = await visitor.http.post("/api/tasks/", files=files, headers=visitor.csrf())
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "bad_request"
    assert (await visitor.get("/api/tasks/")).json()["tasks"] == []
