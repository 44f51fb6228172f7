"""Cancelling works in every state, from any process, with a real prefork worker."""

from __future__ import annotations

import uuid

import pytest
from asgiref.sync import sync_to_async

from tasks import files
from tasks.models import TaskRun
from tests.support import Daphne, Visitor, Worker, send_owned_task, wait_until

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


async def cancel(visitor, task_id):
    return await visitor.post(f"/api/tasks/{task_id}/cancel/")


async def test_a_queued_task_is_cancelled_at_once_and_its_body_never_runs_even_without_the_revoke(visitor):
    queue = f"later-{uuid.uuid4().hex[:6]}"
    owner = await visitor.owner_key()
    ws = await visitor.watch_all()
    # No worker consumes this queue yet: the revoke broadcast reaches nobody.
    task_id = await sync_to_async(send_owned_task)("demo.export_csv", owner, queue=queue, rows=50)
    response = await cancel(visitor, task_id)
    assert response.status_code == 202
    assert response.json()["state"] == "cancelled" and response.json()["cancel_requested"] is True
    pushed = await ws.until_finished(task_id)
    assert pushed["state"] == "cancelled"
    late = await sync_to_async(lambda: Worker(concurrency=1, CELERY_TASK_DEFAULT_QUEUE=queue).start())()
    try:
        # The worker that starts later takes the message and must skip the body.
        await sync_to_async(wait_until)(lambda: task_id in late.output() and "TaskCancelled" in late.output(), 30,
                                        0.05, "the late worker to receive and skip the task")
        assert files.find(task_id) is None
        row = await TaskRun.objects.aget(id=task_id)
        assert row.state == "cancelled" and row.started_at is None
    finally:
        await sync_to_async(late.stop)()
    await ws.close()


async def test_a_cooperative_task_stops_at_its_next_report_and_cleans_up(visitor):
    ws = await visitor.watch_all()
    # More rows than a client may ask for (the demo's maximum is 200,000): a long task.
    owner = await visitor.owner_key()
    task = {"id": await sync_to_async(send_owned_task)("demo.export_csv", owner, rows=5_000_000)}
    await ws.until_task(task["id"], lambda t: t["state"] == "running" and (t["progress"]["current"] or 0) > 0)
    assert files.find(task["id"]) is not None
    response = await cancel(visitor, task["id"])
    assert response.status_code == 202 and response.json()["cancel_requested"] is True
    # Every watcher sees "cancel requested" before the end.
    await ws.until_task(task["id"], lambda t: t["cancel_requested"])
    final = await ws.until_finished(task["id"])
    assert final["state"] == "cancelled"
    row = await TaskRun.objects.aget(id=task["id"])
    assert row.terminate_signal == ""  # stopped by itself: the watchdog never had to act
    assert files.find(task["id"]) is None  # on_cancel removed the partial file
    await ws.close()


async def test_a_stubborn_task_is_stopped_after_the_grace_period_and_its_process_replaced(visitor):
    queue = f"stub-{uuid.uuid4().hex[:6]}"
    solo = await sync_to_async(lambda: Worker(concurrency=1, CELERY_TASK_DEFAULT_QUEUE=queue).start())()
    try:
        owner = await visitor.owner_key()
        ws = await visitor.watch_all()
        pool_before = await sync_to_async(lambda: wait_until(solo.pool_pids, 10, what="the pool process"))()
        task_id = await sync_to_async(send_owned_task)("demo.stubborn", owner, queue=queue, seconds=120)
        await ws.until_task(task_id, lambda t: t["state"] == "running", timeout=30)
        assert (await cancel(visitor, task_id)).status_code == 202
        final = await ws.until_finished(task_id, timeout=30)
        assert final["state"] == "cancelled"
        row = await TaskRun.objects.aget(id=task_id)
        assert row.terminate_signal in ("SIGTERM", "SIGKILL")
        pool_after = await sync_to_async(
            lambda: wait_until(lambda: (p := solo.pool_pids()) and p != pool_before and p, 20, what="a new pool process")
        )()
        assert set(pool_after).isdisjoint(pool_before)
        assert solo.alive()
        # The next task on that worker is unharmed.
        next_id = await sync_to_async(send_owned_task)("demo.count_primes", owner, queue=queue, limit=20_000)
        done = await ws.until_finished(next_id, timeout=30)
        assert done["state"] == "succeeded" and done["result"]["primes"] == 2262
        await ws.close()
    finally:
        await sync_to_async(solo.stop)()


async def test_a_retrying_task_cancels_like_a_queued_one(visitor):
    ws = await visitor.watch_all()
    task = await visitor.launch("demo.flaky", fail_times=3, retry_delay=3)
    await ws.until_task(task["id"], lambda t: t["state"] == "retrying")
    response = await cancel(visitor, task["id"])
    assert response.status_code == 202 and response.json()["state"] == "cancelled"
    # The retry message still reaches the worker after its countdown; it must not run.
    await sync_to_async(wait_until)(
        lambda: TaskRun.objects.filter(id=task["id"]).values_list("state", flat=True).first() == "cancelled", 5
    )
    row = await TaskRun.objects.aget(id=task["id"])
    assert row.state == "cancelled" and row.attempt == 1
    await ws.close()


async def test_cancelling_a_finished_task_is_409_and_twice_is_harmless(visitor):
    ws = await visitor.watch_all()
    running = await visitor.launch("demo.sleepy", seconds=30)
    await ws.until_task(running["id"], lambda t: t["state"] == "running")
    one = await cancel(visitor, running["id"])
    two = await cancel(visitor, running["id"])
    assert one.status_code == 202 and two.status_code in (202, 409)
    final = await ws.until_finished(running["id"])
    assert final["state"] == "cancelled"
    again = await cancel(visitor, running["id"])
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_finished"
    done = await visitor.launch("demo.count_primes", limit=1000)
    await ws.until_finished(done["id"])
    late = await cancel(visitor, done["id"])
    assert late.status_code == 409
    assert (await TaskRun.objects.aget(id=done["id"])).state == "succeeded"
    await ws.close()


async def test_cancelling_someone_elses_task_is_not_found(visitor, other_visitor):
    task = await visitor.launch("demo.sleepy", seconds=2)
    theirs = await cancel(other_visitor, task["id"])
    missing = await cancel(other_visitor, str(uuid.uuid4()))
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json() == missing.json()
    row = await TaskRun.objects.aget(id=task["id"])
    assert row.cancel_requested is False


async def test_a_cancel_sent_to_another_daphne_stops_the_task(visitor, live):
    other = await sync_to_async(lambda: Daphne().start())()
    try:
        ws = await visitor.watch_all()
        task = await visitor.launch("demo.sleepy", seconds=30)
        await ws.until_task(task["id"], lambda t: t["state"] == "running")
        async with Visitor(other) as second_door:
            second_door.http.cookies = visitor.http.cookies  # the same visitor, another server
            response = await second_door.post(f"/api/tasks/{task['id']}/cancel/")
            assert response.status_code == 202
        final = await ws.until_finished(task["id"])
        assert final["state"] == "cancelled"
        await ws.close()
    finally:
        await sync_to_async(other.stop)()


async def test_cancel_over_the_websocket_answers_with_the_task(visitor):
    ws = await visitor.watch_all()
    task = await visitor.launch("demo.sleepy", seconds=30)
    await ws.until_task(task["id"], lambda t: t["state"] == "running")
    await ws.send({"type": "cancel", "task_id": task["id"]})
    await ws.until_task(task["id"], lambda t: t["cancel_requested"])
    final = await ws.until_finished(task["id"])
    assert final["state"] == "cancelled"
    await ws.send({"type": "cancel", "task_id": task["id"]})
    err = await ws.expect(lambda m: m["type"] == "error")
    assert err["code"] == "already_finished"
    await ws.close()


async def test_where_the_pool_cannot_stop_a_task_its_state_says_so(visitor):
    queue = f"threads-{uuid.uuid4().hex[:6]}"
    threads = await sync_to_async(lambda: Worker(concurrency=1, pool="threads", CELERY_TASK_DEFAULT_QUEUE=queue).start())()
    try:
        owner = await visitor.owner_key()
        ws = await visitor.watch_all()
        task_id = await sync_to_async(send_owned_task)("demo.stubborn", owner, queue=queue, seconds=60)
        await ws.until_task(task_id, lambda t: t["state"] == "running", timeout=30)
        assert (await cancel(visitor, task_id)).status_code == 202
        told = await ws.until_task(task_id, lambda t: (t["error"] or {}).get("type") == "CannotStop", timeout=30)
        assert told["state"] == "running" and told["cancel_requested"] is True
        assert "cannot stop" in told["error"]["message"]
        await ws.close()
    finally:
        await sync_to_async(threads.kill)()  # it would wait for the task to end


async def test_a_task_waiting_for_its_eta_cancels_like_a_queued_one(visitor, worker):
    owner = await visitor.owner_key()
    ws = await visitor.watch_all()
    task_id = await sync_to_async(send_owned_task)("demo.export_csv", owner, countdown=2, rows=50)
    # The worker holds an ETA task in memory until its time comes.
    await sync_to_async(wait_until)(lambda: task_id in worker.output(), 10, 0.05, "the worker to receive the ETA task")
    response = await cancel(visitor, task_id)
    assert response.status_code == 202 and response.json()["state"] == "cancelled"
    await sync_to_async(wait_until)(
        lambda: any(task_id in line and ("revoked" in line.lower() or "TaskCancelled" in line)
                    for line in worker.output().splitlines()), 15, 0.05, "the worker to drop the task at its ETA")
    assert files.find(task_id) is None
    row = await TaskRun.objects.aget(id=task_id)
    assert row.state == "cancelled" and row.started_at is None
    await ws.close()
