"""Which Celery tasks Tasklight follows (tasks/worker/lifecycle.py ``is_tracked``), and the
base class a host opts in with (tasks/base.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from celery import current_app, shared_task
from celery.contrib.django.task import DjangoTask
from django.conf import settings
from django.test import override_settings

from tasks.base import TrackedTask, tracked_task
from tasks.worker.lifecycle import is_tracked


@shared_task(name="tests.tracking.plain")
def plain() -> None:
    """A host's ordinary task."""


@tracked_task(name="tests.tracking.tracked")
def tracked(self: Any) -> None:
    """A host's task that opted in."""


@shared_task(bind=True, base=TrackedTask, name="tests.tracking.tracked_by_base")
def tracked_by_base(self: Any) -> None:
    """Opted in with ``base=TrackedTask``."""


@tracked_task(name="tasklight.tests.internal")
def internal(self: Any) -> None:
    """Named as Tasklight's own tasks are."""


@pytest.fixture
def track_all() -> Iterator[None]:
    with override_settings(TASKLIGHT={**settings.TASKLIGHT, "TRACK_ALL_TASKS": True}):
        yield


def registered(name: str) -> Any:
    return current_app.tasks[name]


def test_a_tracked_task_is_tracked_and_a_plain_one_is_not() -> None:
    for name in ("tests.tracking.tracked", "tests.tracking.tracked_by_base"):
        assert is_tracked(registered(name)), name
        assert is_tracked(name), name
    assert is_tracked(tracked)  # the proxy shared_task returns, too
    assert not is_tracked(registered("tests.tracking.plain"))
    assert not is_tracked("tests.tracking.plain")
    assert not is_tracked(plain)


def test_the_demo_tasks_are_tracked_and_celerys_own_are_not() -> None:
    import project.demo.tasks  # noqa: F401  (registered where their module is imported)

    assert is_tracked("demo.count_primes")
    assert not is_tracked("celery.backend_cleanup")


def test_track_all_tasks_tracks_plain_tasks(track_all: None) -> None:
    assert is_tracked(registered("tests.tracking.plain"))
    assert is_tracked("tests.tracking.plain")
    assert is_tracked("tests.tracking.tracked")


def test_names_starting_tasklight_are_never_tracked(track_all: None) -> None:
    assert not is_tracked(registered("tasklight.tests.internal"))
    assert not is_tracked("tasklight.tests.internal")
    assert not is_tracked("tasklight.not_registered")


def test_an_unregistered_name_only_with_track_all() -> None:
    assert not is_tracked("elsewhere.sent_by_name")
    with override_settings(TASKLIGHT={**settings.TASKLIGHT, "TRACK_ALL_TASKS": True}):
        assert is_tracked("elsewhere.sent_by_name")


def test_nothing_is_not_tracked(track_all: None) -> None:
    assert not is_tracked(None)


def test_tracked_task_is_celerys_django_task() -> None:
    assert issubclass(TrackedTask, DjangoTask)
    task = registered("tests.tracking.tracked")
    assert isinstance(task, TrackedTask)
    assert callable(task.delay_on_commit) and callable(task.apply_async_on_commit)


@pytest.mark.django_db
def test_delay_on_commit_waits_for_the_commit(django_capture_on_commit_callbacks: Any) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        registered("tests.tracking.tracked").delay_on_commit()
    assert len(callbacks) == 1  # nothing sent before the transaction commits
