"""A task whose end was published but whose row could not be written (database away)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest

from tasks import live
from tasks.models import TaskRun
from tasks.objects import iso, next_seq, now, task_object
from tasks.worker.watchdog import Watchdog


def make_row(**extra: object) -> TaskRun:
    moment = now() - timedelta(minutes=5)
    return TaskRun(
        id=uuid.uuid4(), name="demo.count_primes", label="x", owner_key="v:abc", created_at=moment,
        started_at=moment, updated_at=moment, state="running", seq=next_seq(0), **extra,
    )


def test_a_terminal_live_record_beats_a_row_left_running() -> None:
    row = make_row()
    record = {"seq": row.seq + 10, "state": "succeeded", "result": {"primes": 25}, "error": None,
              "finished_at": "2026-11-25T00:00:00.000Z", "progress": {"current": 5, "total": 5, "percent": 100.0, "message": ""}}
    obj = task_object(row, record)
    assert obj["state"] == "succeeded" and obj["result"] == {"primes": 25}
    assert obj["progress"]["percent"] == 100.0 and obj["eta_seconds"] is None
    assert obj["seq"] > row.seq


@pytest.mark.django_db(transaction=True)
def test_the_watchdog_writes_a_published_end_to_the_row_instead_of_calling_the_worker_lost() -> None:
    row = make_row()
    row.save()
    fields = {"id": str(row.id), "state": "succeeded", "result": {"primes": 25}, "error": None,
              "progress": {"current": 5, "total": 5, "percent": 100.0, "message": "done"}}
    asyncio.run(live.merge(str(row.id), fields, owner_key=row.owner_key))
    Watchdog().mark_lost(str(row.id))
    row.refresh_from_db()
    assert row.state == "succeeded"
    assert row.result == {"primes": 25} and row.progress["message"] == "done"


@pytest.mark.django_db(transaction=True)
def test_a_published_retry_is_written_to_the_row_instead_of_calling_the_worker_lost() -> None:
    row = make_row()
    row.save()
    fields = {"id": str(row.id), "state": "retrying", "error": {"type": "ConnectionError", "message": "again"},
              "updated_at": iso(now())}
    asyncio.run(live.merge(str(row.id), fields, owner_key=row.owner_key))
    Watchdog().mark_lost(str(row.id))
    row.refresh_from_db()
    assert row.state == "retrying" and row.error["type"] == "ConnectionError"


@pytest.mark.django_db(transaction=True)
def test_a_retry_older_than_the_rows_last_write_does_not_hide_a_lost_worker() -> None:
    row = make_row()
    fields = {"id": str(row.id), "state": "retrying", "updated_at": iso(row.updated_at - timedelta(seconds=1))}
    row.save()
    asyncio.run(live.merge(str(row.id), fields, owner_key=row.owner_key))
    Watchdog().mark_lost(str(row.id))
    row.refresh_from_db()
    assert row.state == "failed" and row.error["type"] == "WorkerLost"


@pytest.mark.django_db(transaction=True)
def test_without_a_published_end_a_silent_task_is_worker_lost() -> None:
    row = make_row()
    row.save()
    Watchdog().mark_lost(str(row.id))
    row.refresh_from_db()
    assert row.state == "failed" and row.error["type"] == "WorkerLost"
