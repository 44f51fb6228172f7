"""The worker-side publisher against the test run's real Redis (no worker needed)."""

from __future__ import annotations

import gc
import uuid

import redis

from tasks import live
from tasks.progress import Progress
from tasks.worker.publisher import WorkerPublisher
from tests.support import redis_server, wait_until


def test_a_cancel_announced_on_redis_reaches_the_reporter_even_after_garbage_collection() -> None:
    client = redis.Redis.from_url(redis_server().url)
    listeners = client.pubsub_numsub(live.cancel_channel())[0][1]  # other publishers of this process
    publisher = WorkerPublisher()
    task_id = str(uuid.uuid4())
    progress = Progress(task_id)
    publisher.track(task_id, "v:test", {"id": task_id, "state": "running"}, progress)
    try:
        wait_until(lambda: client.pubsub_numsub(live.cancel_channel())[0][1] > listeners, 5, what="the cancel listener")
        gc.collect()  # the loop holds its tasks weakly: the publisher must hold them itself
        client.publish(live.cancel_channel(), task_id.encode())
        wait_until(lambda: progress.cancelled, 5, 0.005, "the reporter to see its cancel")
        assert progress.flag is True
    finally:
        publisher.untrack(task_id)
        publisher.stop()
        client.close()


def test_an_armed_reporter_is_published_at_once_then_coalesced() -> None:
    publisher = WorkerPublisher()
    task_id = str(uuid.uuid4())
    progress = Progress(task_id)
    base = {"id": task_id, "name": "t", "label": "t", "state": "running", "cancel_requested": False, "seq": 1}
    publisher.track(task_id, "v:test", base, progress)
    client = redis.Redis.from_url(redis_server().url)
    try:
        progress.set(1, 100)  # armed at track(): this report wakes the publisher
        wait_until(lambda: publisher.published >= 1, 2, 0.002, "the leading-edge publish")
        for i in range(2, 100_001):
            progress.set(i)
        wait_until(lambda: client.hget(live.live_key(task_id), "progress") and b'"current":100000' in client.hget(
            live.live_key(task_id), "progress"), 3, 0.01, "the trailing edge to carry the last report")
        assert publisher.published <= 5  # a hundred thousand reports, a handful of publishes
    finally:
        publisher.untrack(task_id)
        publisher.stop()
        client.close()
