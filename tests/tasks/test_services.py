"""Public services for a host's views: ``start_task`` inside and outside a transaction."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from celery import signals
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory

from tasks.models import TaskRun
from tasks.services import start_task

pytestmark = pytest.mark.django_db(transaction=True)


class Rollback(Exception):
    pass


@pytest.fixture
def sent() -> Iterator[list[str]]:
    """Ids of the tasks this process hands to the broker."""
    ids: list[str] = []

    def on_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
        ids.append((headers or {}).get("id", ""))

    signals.after_task_publish.connect(on_publish, weak=False, dispatch_uid="test-sent")
    yield ids
    signals.after_task_publish.disconnect(dispatch_uid="test-sent")


def visitor_request() -> HttpRequest:
    request = RequestFactory().post("/")
    SessionMiddleware(lambda r: HttpResponse()).process_request(request)
    AuthenticationMiddleware(lambda r: HttpResponse()).process_request(request)
    return request


def test_a_rolled_back_view_starts_nothing(sent: list[str]) -> None:
    with pytest.raises(Rollback), transaction.atomic():
        task = start_task(visitor_request(), "demo.sleepy", {"seconds": 0})
        assert task["state"] == "queued"
        assert sent == []  # not before the commit
        raise Rollback
    assert sent == []
    assert not TaskRun.objects.filter(id=task["id"]).exists()


def test_inside_a_transaction_the_task_is_sent_once_it_commits(sent: list[str]) -> None:
    with transaction.atomic():
        task = start_task(visitor_request(), "demo.sleepy", {"seconds": 0})
        assert sent == []
    assert sent == [task["id"]]
    assert TaskRun.objects.filter(id=task["id"], owner_key__startswith="v:").exists()


def test_outside_a_transaction_the_task_is_sent_at_once(sent: list[str]) -> None:
    task = start_task(visitor_request(), "demo.sleepy", {"seconds": 0})
    assert sent == [task["id"]]


def test_a_call_from_a_plain_thread_leaves_no_redis_client_behind(sent: list[str]) -> None:
    # A WSGI view: each call runs on an event loop of its own, which is gone afterwards.
    from tasks import live

    before = {id(client) for client in live._clients.values()}
    start_task(visitor_request(), "demo.sleepy", {"seconds": 0})
    assert {id(client) for client in live._clients.values()} <= before
