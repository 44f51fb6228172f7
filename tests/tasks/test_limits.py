"""What one visitor may take of the workers (issue 12, finding 5), and what a failure tells its
owner (finding 6): atomic per-owner and per-address limits, signed-in-only launches, time
limits that end a run ``TimedOut``, and error messages shown only when the task marks them safe."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from billiard.exceptions import TimeLimitExceeded
from celery import current_app, signals
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.db import connections
from django.test import Client

from tasks import registry, services
from tasks.base import ShowToOwner
from tasks.contracts import TooManyActive
from tasks.models import TaskRun
from tasks.objects import next_seq, now
from tasks.owners import Owner
from tasks.worker import lifecycle
from tests.support import wait_until

pytestmark = [
    pytest.mark.django_db(transaction=True),
    # WhiteNoise says so when collectstatic has not run yet in this test run: not ours to check here.
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),
]


def limits(settings: Any, **values: Any) -> None:
    settings.TASKLIGHT = {**django_settings.TASKLIGHT, **values}


def visitor() -> Owner:
    return Owner(key=f"v:{uuid.uuid4().hex}")


def create(owner: Owner, address: str | None = None) -> TaskRun:
    kwargs: dict[str, Any] = {"address": address} if address else {}
    return async_to_sync(services._create_run)(owner=owner, name="demo.sleepy", params={"seconds": 0}, **kwargs)


def test_concurrent_launches_never_take_an_owner_past_the_limit(settings: Any) -> None:
    """The old check-then-insert let 28 of 30 concurrent launches through a limit of 10."""
    limits(settings, MAX_ACTIVE_PER_OWNER=10)
    owner = visitor()
    start = threading.Barrier(30)

    def one(_: int) -> bool:
        start.wait()
        try:
            create(owner)
            return True
        except TooManyActive:
            return False
        finally:
            connections.close_all()

    with ThreadPoolExecutor(30) as pool:
        accepted = list(pool.map(one, range(30)))
    assert accepted.count(True) == 10
    assert TaskRun.objects.filter(owner_key=owner.key).count() == 10
    # A finished run frees its place.
    TaskRun.objects.filter(owner_key=owner.key).update(state="succeeded")
    create(owner)


def test_anonymous_owners_of_one_address_share_a_limit_and_signed_in_users_do_not(settings: Any) -> None:
    limits(settings, MAX_ACTIVE_PER_OWNER=10, MAX_ACTIVE_PER_ADDRESS=3)
    first, second = visitor(), visitor()
    create(first, "203.0.113.9")
    create(first, "203.0.113.9")
    create(second, "203.0.113.9")  # a fresh session costs nothing: it shares the address's limit
    with pytest.raises(TooManyActive) as refused:
        create(second, "203.0.113.9")
    assert refused.value.status == 429 and "network" in refused.value.detail
    create(second, "198.51.100.7")  # another address
    user = get_user_model().objects.create_user(username=f"u{uuid.uuid4().hex[:8]}", password="x")
    signed_in = Owner(key=f"u:{user.pk}", user_id=user.pk)
    for _ in range(4):
        create(signed_in, "203.0.113.9")  # counted per user only
    row = TaskRun.objects.filter(owner_key=signed_in.key).first()
    assert row is not None and row.client_address == ""
    assert TaskRun.objects.filter(client_address="203.0.113.9").count() == 3


def test_anonymous_launches_are_refused_when_only_signed_in_users_may_launch(settings: Any) -> None:
    limits(settings, ALLOW_ANONYMOUS=False)
    client = Client()
    response = client.post("/api/tasks/", {"name": "demo.sleepy", "params": {}}, content_type="application/json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
    assert not TaskRun.objects.exists()
    user = get_user_model().objects.create_user(username=f"u{uuid.uuid4().hex[:8]}", password="x")
    client.force_login(user)
    spec = registry.get("demo.sleepy")
    assert spec.time_limit  # the demo sets one; the launch below must not run long in any case
    response = client.post("/api/tasks/", {"name": "demo.sleepy", "params": {"seconds": 0}},
                           content_type="application/json")
    assert response.status_code == 201, response.content


@pytest.fixture
def published() -> Iterator[list[dict[str, Any]]]:
    """The headers of every task message this process sends."""
    sent: list[dict[str, Any]] = []

    def on_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
        sent.append(dict(headers or {}))

    signals.before_task_publish.connect(on_publish, weak=False, dispatch_uid="test-limits-published")
    yield sent
    signals.before_task_publish.disconnect(dispatch_uid="test-limits-published")


def test_every_launch_carries_a_hard_and_a_soft_time_limit(settings: Any, published: list[dict[str, Any]]) -> None:
    limits(settings, LAUNCH_TIME_LIMIT=40.0)
    owner = visitor()
    sleepy = async_to_sync(services.launch)(owner=owner, name="demo.sleepy", params={"seconds": 0})
    assert sleepy["time_limit"] == 90.0  # @launchable(time_limit=90) in the demo
    spec = registry.get("demo.sleepy")
    registry._registry[spec.name] = dataclasses.replace(spec, time_limit=None)
    try:
        default = async_to_sync(services.launch)(owner=owner, name="demo.sleepy", params={"seconds": 0})
    finally:
        registry._registry[spec.name] = spec
    assert default["time_limit"] == 40.0
    by_id = {h["id"]: h for h in published}
    assert list(by_id[sleepy["id"]]["timelimit"]) == [90.0, 80.0]  # (hard, soft): soft comes 10 s before
    assert list(by_id[default["id"]]["timelimit"]) == [40.0, 30.0]
    assert TaskRun.objects.get(id=default["id"]).time_limit == 40.0


def test_the_demo_maxima_are_what_a_public_demo_can_afford() -> None:
    def maximum(name: str, param: str) -> float:
        return float(registry.get(name).schema["properties"][param]["maximum"])

    assert maximum("demo.sleepy", "seconds") <= 60
    assert maximum("demo.stubborn", "seconds") <= 120
    assert maximum("demo.export_csv", "rows") <= 200_000
    for spec in registry.all_launchable():
        assert spec.time_limit and spec.time_limit <= 300, spec.name


async def test_a_task_past_its_time_limit_ends_failed_timed_out(worker: Any) -> None:
    """Celery's soft limit raises inside the task; the run ends failed, TimedOut, at about the limit."""
    spec = registry.get("demo.stubborn")
    registry._registry[spec.name] = dataclasses.replace(spec, time_limit=2.0)
    try:
        task = await services.launch(owner=visitor(), name="demo.stubborn", params={"seconds": 60})
    finally:
        registry._registry[spec.name] = spec
    assert task["time_limit"] == 2.0

    def finished() -> TaskRun | None:
        row = TaskRun.objects.get(id=task["id"])
        return row if row.state in ("succeeded", "failed", "cancelled") else None

    row = await sync_to_async(wait_until)(finished, 30, 0.1, "the run to end")
    assert row.state == "failed", (row.state, row.error)
    assert row.error["type"] == "TimedOut" and "time limit of 2 s" in row.error["message"]
    assert (row.finished_at - row.started_at).total_seconds() < 10


def running_row(owner_key: str = "", time_limit: float | None = None) -> TaskRun:
    moment = now()
    return TaskRun.objects.create(
        name="demo.sleepy", label="x", owner_key=owner_key, state="running", created_at=moment, started_at=moment,
        updated_at=moment, seq=next_seq(0), attempt=1, time_limit=time_limit,
    )


def test_a_hard_time_limit_ends_the_run_timed_out_too() -> None:
    row = running_row(time_limit=5)
    sleepy = current_app.tasks["demo.sleepy"]
    lifecycle.on_failure(sender=sleepy, task_id=str(row.id), exception=TimeLimitExceeded(5.0))
    row.refresh_from_db()
    assert row.state == "failed" and row.error["type"] == "TimedOut" and "5 s" in row.error["message"]


class Secretive(Exception):
    pass


def test_an_exception_not_marked_safe_shows_its_owner_a_generic_message_and_staff_the_real_one() -> None:
    registry.get("demo.sleepy")  # the demo tasks are registered with Celery
    sleepy = current_app.tasks["demo.sleepy"]
    user = get_user_model().objects.create_user(username=f"u{uuid.uuid4().hex[:8]}", password="x")
    hidden, shown = running_row(f"u:{user.pk}"), running_row(f"u:{user.pk}")
    lifecycle.on_failure(sender=sleepy, task_id=str(hidden.id), exception=Secretive("dsn=postgres://admin:hunter2@db"))
    lifecycle.on_failure(sender=sleepy, task_id=str(shown.id), exception=ShowToOwner("the file has no header row"))
    hidden.refresh_from_db()
    shown.refresh_from_db()
    assert hidden.state == "failed" and hidden.error == {"type": "Secretive", "message": "The task failed."}
    assert "hunter2" in hidden.traceback  # kept for staff
    assert shown.error == {"type": "ShowToOwner", "message": "the file has no header row"}

    client = Client()
    client.force_login(user)
    owner_view = client.get(f"/api/tasks/{hidden.id}/").json()
    assert owner_view["error"]["message"] == "The task failed." and "hunter2" not in str(owner_view)
    get_user_model().objects.filter(pk=user.pk).update(is_staff=True)
    staff_view = client.get(f"/api/tasks/{hidden.id}/").json()
    assert "hunter2" in staff_view["traceback"]


def test_a_retry_shows_a_safe_reason_or_a_generic_one() -> None:
    sleepy = current_app.tasks["demo.sleepy"]
    for exc, message in ((Secretive("token=abc"), lifecycle.GENERIC_RETRY), (ShowToOwner("busy; trying again"), "busy; trying again")):
        row = running_row()
        request = type("Request", (), {"id": str(row.id), "retries": 0})()
        reason = type("Retry", (Exception,), {})()
        reason.exc = exc  # type: ignore[attr-defined]
        lifecycle.on_retry(sender=sleepy, request=request, reason=reason)
        row.refresh_from_db()
        assert row.state == "retrying" and row.error == {"type": type(exc).__name__, "message": message}
        assert str(exc) in row.traceback
