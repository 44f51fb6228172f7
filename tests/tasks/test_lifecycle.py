"""Every state of a task's life, with a real worker, a real Redis and a live Daphne."""

from __future__ import annotations

import asyncio
import signal
import uuid

import pytest
from asgiref.sync import sync_to_async

from tasks.models import TaskRun
from tests.support import Worker, redis_server, send_owned_task, wait_until

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def states(ws, task_id):
    seen = []
    for m in ws.messages:
        task = m.get("task") if m.get("type") == "task" else None
        if task and task["id"] == task_id and (not seen or seen[-1] != task["state"]):
            seen.append(task["state"])
    return seen


async def test_a_task_goes_queued_running_succeeded_with_rising_percent_and_an_eta(visitor):
    ws = await visitor.watch_all()
    task = await visitor.launch("demo.count_primes", limit=4_000_000)
    final = await ws.until_finished(task["id"])
    assert states(ws, task["id"]) == ["queued", "running", "succeeded"]
    assert final["result"] == {"limit": 4_000_000, "primes": 283146}
    assert final["progress"]["percent"] == 100.0 and final["finished_at"] and final["started_at"]
    updates = [m["task"] for m in ws.messages if m.get("type") == "task" and m["task"]["id"] == task["id"]]
    seqs = [u["seq"] for u in updates]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert any(u["eta_seconds"] is not None and u["eta_seconds"] >= 0 for u in updates), "no ETA was ever shown"
    row = await TaskRun.objects.aget(id=task["id"])
    assert row.state == "succeeded" and row.result == final["result"] and row.attempt == 1
    await ws.close()


async def test_retries_are_shown_with_their_attempt_and_reason_then_success(visitor):
    ws = await visitor.watch_all()
    task = await visitor.launch("demo.flaky", fail_times=2, retry_delay=0.2)
    final = await ws.until_finished(task["id"])
    assert final["state"] == "succeeded" and final["result"] == {"attempts": 3}
    retrying = [m["task"] for m in ws.messages if m.get("type") == "task" and m["task"]["state"] == "retrying"]
    assert {r["attempt"] for r in retrying} == {1, 2}
    assert retrying[0]["error"]["type"] == "SimulatedFailure"  # the demo marks it safe to show
    assert "simulated failure" in retrying[0]["error"]["message"]
    assert final["error"] is None and final["attempt"] == 3
    await ws.close()


async def test_a_failure_carries_type_and_message_but_no_traceback(visitor):
    ws = await visitor.watch_all()
    task = await visitor.launch("demo.flaky", fail_times=5, retry_delay=0)
    final = await ws.until_finished(task["id"])
    assert final["state"] == "failed"
    assert final["error"]["type"] == "SimulatedFailure"
    assert "traceback" not in final and "Traceback" not in str(final)
    detail = (await visitor.get(f"/api/tasks/{task['id']}/")).json()
    assert detail["state"] == "failed" and "traceback" not in detail
    row = await TaskRun.objects.aget(id=task["id"])
    assert "Traceback" in row.traceback  # kept for staff, in the admin
    await ws.close()


async def test_indeterminate_work_has_messages_but_no_total(visitor):
    ws = await visitor.watch_all()
    task = await visitor.launch("demo.sleepy", seconds=1)
    running = await ws.until_task(task["id"], lambda t: t["state"] == "running" and t["progress"]["message"])
    assert running["progress"]["total"] is None and running["progress"]["percent"] is None
    final = await ws.until_finished(task["id"])
    assert final["state"] == "succeeded"
    await ws.close()


async def test_a_million_reports_give_a_bounded_stream_ending_on_the_last_values(visitor):
    owner = await visitor.owner_key()
    ws = await visitor.watch_all()
    task_id = await sync_to_async(send_owned_task)("demo.tight_loop", owner, reports=1_000_000)
    final = await ws.until_finished(task_id, timeout=60)
    assert final["state"] == "succeeded"
    assert final["progress"]["current"] == 1_000_000 and final["progress"]["percent"] == 100.0
    assert final["progress"]["message"] == "done"
    updates = [m for m in ws.messages if m.get("type") == "task" and m["task"]["id"] == task_id]
    row = await TaskRun.objects.aget(id=task_id)
    duration = (row.finished_at - row.started_at).total_seconds()
    # About ten a second, plus the state changes: never anywhere near a million.
    assert len(updates) <= duration * 10 * 1.5 + 6, (len(updates), duration)
    await ws.close()


async def test_the_download_link_serves_the_csv_to_its_owner(visitor):
    ws = await visitor.watch_all()
    task = await visitor.launch("demo.export_csv", rows=2500)
    final = await ws.until_finished(task["id"])
    assert final["state"] == "succeeded"
    response = await visitor.get(final["result"]["download_url"])
    assert response.status_code == 200
    lines = response.text.strip().splitlines()
    assert lines[0] == "id,name,amount,created" and len(lines) == 2501
    await ws.close()


async def test_a_task_keeps_running_and_finishes_while_redis_is_stopped_and_restarted(visitor):
    redis = redis_server()
    ws = await visitor.watch_all()
    task = await visitor.launch("demo.sleepy", seconds=4)
    await ws.until_task(task["id"], lambda t: t["state"] == "running")
    await sync_to_async(redis.stop)()
    try:
        # The task carries on without Redis: its row says running, nothing has failed.
        row = await TaskRun.objects.aget(id=task["id"])
        assert row.state == "running"
        await asyncio.sleep(1.0)  # the outage itself: a length of time, not a synchronisation
    finally:
        await sync_to_async(redis.start)()
    row = await sync_to_async(wait_until)(
        lambda: TaskRun.objects.filter(id=task["id"], state="succeeded").first(), 30, 0.1, "the task to finish"
    )
    assert row.result == {"slept": 4}
    # A watcher that stayed connected is brought up to date (live, or by resync).
    ws2 = await visitor.socket()
    await ws2.send({"type": "subscribe", "task_id": task["id"]})
    snap = await ws2.expect(lambda m: m["type"] == "snapshot")
    assert snap["tasks"][0]["state"] == "succeeded"
    final = await ws.until_finished(task["id"], timeout=30)
    assert final["state"] == "succeeded"
    await ws.close()
    await ws2.close()


async def test_a_pool_process_killed_mid_task_marks_the_task_failed_worker_lost(visitor, worker):
    ws = await visitor.watch_all()
    task = await visitor.launch("demo.stubborn", seconds=60)
    running = await ws.until_task(task["id"], lambda t: t["state"] == "running")
    row = await TaskRun.objects.aget(id=task["id"])
    pid = int(row.worker.rsplit(":", 1)[1])
    import os

    os.kill(pid, signal.SIGKILL)
    final = await ws.until_finished(task["id"], timeout=60)
    assert running["state"] == "running"
    assert final["state"] == "failed" and final["error"]["type"] == "WorkerLost"
    await ws.close()


async def test_a_worker_killed_whole_leaves_no_task_running_forever(visitor):
    queue = "lost-" + visitor.daphne.ws_url[-6:].strip("/") + str(id(visitor))
    doomed = await sync_to_async(lambda: Worker(concurrency=1, CELERY_TASK_DEFAULT_QUEUE=queue).start())()
    try:
        owner = await visitor.owner_key()
        ws = await visitor.watch_all()
        task_id = await sync_to_async(send_owned_task)("demo.stubborn", owner, queue=queue, seconds=120)
        await ws.until_task(task_id, lambda t: t["state"] == "running", timeout=30)
        await sync_to_async(doomed.kill)(signal.SIGKILL)
        # The session worker's watchdog sees the heartbeat stop (4 s in tests, 20 s default).
        final = await ws.until_finished(task_id, timeout=60)
        assert final["state"] == "failed" and final["error"]["type"] == "WorkerLost"
        await ws.close()
    finally:
        await sync_to_async(doomed.stop)()


async def test_a_task_sent_by_plain_celery_code_is_tracked_too(visitor):
    from celery import current_app

    task_id = str(uuid.uuid4())
    await sync_to_async(current_app.send_task)("demo.count_primes", kwargs={"limit": 5000}, task_id=task_id)
    row = await sync_to_async(wait_until)(
        lambda: TaskRun.objects.filter(id=task_id, state="succeeded").first(), 20, 0.05, "the untracked task to finish"
    )
    assert row.owner_key == "" and row.result == {"limit": 5000, "primes": 669}
    assert row.started_at is not None and row.progress["percent"] == 100.0
    # Owner-less: nobody's API shows it.
    assert task_id not in {t["id"] for t in (await visitor.get("/api/tasks/")).json()["tasks"]}
    assert (await visitor.get(f"/api/tasks/{task_id}/")).status_code == 404
