"""``manage.py tasklight_purge`` against this run's Redis: old finished runs go, with their
live records and files; everything else stays."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from tasks import conf, files, live
from tasks.models import TaskRun
from tasks.objects import next_seq, now
from tests.support import free_port

pytestmark = pytest.mark.django_db

DAY = 24 * 3600


@pytest.fixture
def files_dir(tmp_path: Path) -> Iterator[Path]:
    """A files folder of this test's own (a live worker's exports never get in the way)."""
    with override_settings(TASKLIGHT={**settings.TASKLIGHT, "FILES_DIR": tmp_path / "files"}):
        yield tmp_path / "files"


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(conf.get().REDIS_URL)
    yield c
    c.close()


def run(state: str, *, age_days: float | None, created_days: float = 60) -> TaskRun:
    """A run created ``created_days`` ago, finished ``age_days`` ago (None: not finished)."""
    created = now() - timedelta(days=created_days)
    return TaskRun.objects.create(
        id=uuid.uuid4(), name="demo.sleepy", label="x", owner_key="v:abc", state=state, created_at=created,
        updated_at=created, finished_at=None if age_days is None else now() - timedelta(days=age_days),
        seq=next_seq(0),
    )


def give_live_keys(client: redis.Redis, row: TaskRun) -> list[str]:
    task_id = str(row.id)
    client.hset(live.live_key(task_id), mapping={"seq": "1", "state": f'"{row.state}"'})
    client.set(live.cancel_key(task_id), b"1")
    client.set(live.heartbeat_key(task_id), b"1")
    return [live.live_key(task_id), live.cancel_key(task_id), live.heartbeat_key(task_id)]


def give_file(row: TaskRun, age: float = 0) -> Path:
    path = files.output_path(str(row.id), ".csv")
    path.write_text("a,b\n")
    if age:
        os.utime(path, (time.time() - age, time.time() - age))
    return path


def purge(*args: str) -> str:
    out = StringIO()
    call_command("tasklight_purge", *args, stdout=out)
    return out.getvalue()


def test_old_finished_runs_go_with_their_live_keys_and_files(files_dir: Path, client: redis.Redis) -> None:
    old = [run(state, age_days=10) for state in ("succeeded", "failed", "cancelled")]
    recent = run("succeeded", age_days=2)
    unfinished = [run(state, age_days=None, created_days=400) for state in ("queued", "running", "retrying")]
    old_keys = [key for row in old for key in give_live_keys(client, row)]
    kept_keys = [key for row in [recent, *unfinished] for key in give_live_keys(client, row)]
    old_files = [give_file(row) for row in old]
    kept_files = [give_file(row) for row in [recent, *unfinished]]

    said = purge("--days", "7")

    assert said == "Deleted 3 runs, 3 live records and 3 files.\n"
    assert set(TaskRun.objects.values_list("id", flat=True)) == {recent.id, *(r.id for r in unfinished)}
    assert client.exists(*old_keys) == 0
    assert client.exists(*kept_keys) == len(kept_keys)
    assert not any(p.exists() for p in old_files)
    assert all(p.exists() for p in kept_files)


def test_the_default_is_retention_days(files_dir: Path) -> None:
    kept = run("succeeded", age_days=20)
    gone = run("failed", age_days=40)
    assert purge() == "Deleted 1 runs, 0 live records and 0 files.\n"  # RETENTION_DAYS: 30
    assert list(TaskRun.objects.values_list("id", flat=True)) == [kept.id]
    assert not TaskRun.objects.filter(id=gone.id).exists()
    with override_settings(TASKLIGHT={**settings.TASKLIGHT, "FILES_DIR": files_dir, "RETENTION_DAYS": 10}):
        purge()
    assert not TaskRun.objects.exists()


def test_files_older_than_files_ttl_go_whoever_wrote_them(files_dir: Path) -> None:
    unfinished = run("running", age_days=None)
    stale = give_file(unfinished, age=DAY + 60)
    fresh = give_file(run("succeeded", age_days=1), age=DAY - 60)
    stray = files_dir / "left-behind.txt"
    stray.write_text("x")
    os.utime(stray, (time.time() - 2 * DAY, time.time() - 2 * DAY))

    assert purge() == "Deleted 0 runs, 0 live records and 2 files.\n"
    assert not stale.exists() and not stray.exists()
    assert fresh.exists()
    assert TaskRun.objects.count() == 2


def test_dry_run_deletes_nothing_and_says_what_it_would(files_dir: Path, client: redis.Redis) -> None:
    old = [run("succeeded", age_days=40), run("cancelled", age_days=31)]
    keep = run("running", age_days=None)
    keys = [key for row in old for key in give_live_keys(client, row)]
    own_files = [give_file(old[0]), give_file(old[1], age=2 * DAY)]  # a young and a stale file of old runs
    stale = give_file(keep, age=2 * DAY)

    assert purge("--dry-run") == "Would delete 2 runs and 3 files.\n"  # each file counted once
    assert TaskRun.objects.count() == 3
    assert client.exists(*keys) == len(keys)
    assert all(p.exists() for p in [*own_files, stale])
    # What it said is what it then does.
    assert purge() == "Deleted 2 runs, 2 live records and 3 files.\n"
    assert not any(p.exists() for p in [*own_files, stale])


def test_redis_down_is_a_command_error_and_no_row_is_deleted(files_dir: Path) -> None:
    old = run("succeeded", age_days=40)
    old_file = give_file(old)
    away = {**settings.TASKLIGHT, "FILES_DIR": files_dir, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    started = time.monotonic()
    with override_settings(TASKLIGHT=away), pytest.raises(CommandError, match="Redis is unreachable"):
        purge()
    assert time.monotonic() - started < 10
    assert TaskRun.objects.filter(id=old.id).exists()
    assert old_file.exists()


def test_nothing_to_delete_needs_no_redis(files_dir: Path) -> None:
    run("succeeded", age_days=1)
    away = {**settings.TASKLIGHT, "FILES_DIR": files_dir, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    with override_settings(TASKLIGHT=away):
        assert purge() == "Deleted 0 runs, 0 live records and 0 files.\n"


@pytest.mark.parametrize("days", ["-1", "nan", "inf"])
def test_a_bad_days_value_is_a_command_error(files_dir: Path, days: Any) -> None:
    run("succeeded", age_days=40)
    with pytest.raises(CommandError):
        purge("--days", days)
    assert TaskRun.objects.count() == 1


def test_days_beyond_the_calendar_deletes_nothing_and_zero_deletes_every_finished_run(files_dir: Path) -> None:
    run("succeeded", age_days=40)
    unfinished = run("running", age_days=None)
    assert purge("--days", "1e6") == "Deleted 0 runs, 0 live records and 0 files.\n"
    assert purge("--days", "0") == "Deleted 1 runs, 0 live records and 0 files.\n"
    assert list(TaskRun.objects.values_list("id", flat=True)) == [unfinished.id]
