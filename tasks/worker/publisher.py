"""The worker side of publishing (docs/realtime.md, docs/progress.md).

In a worker process, ``worker_publisher()`` is one background thread with its own
event loop and Redis connection, which hands every change to
``tasks.publishing.publish``. Task code only writes into ``Progress`` objects; the
thread samples them every ``PUBLISH_INTERVAL`` (coalescing), refreshes heartbeats, and
reads cancel flags in the same round trips. State changes from Celery's signals are
handed to it with a short bounded wait; if Redis is away they are kept and retried,
and the task carries on regardless.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from tasks import conf, live
from tasks.models import TaskRun
from tasks.objects import iso, now
from tasks.progress import Progress, ProgressSampler
from tasks.publishing import Change, publish

logger = logging.getLogger(__name__)

@dataclass
class _Tracked:
    task_id: str
    owner_key: str
    base: dict[str, Any]
    progress: Progress
    sampler: ProgressSampler = field(init=False)
    last_publish: float = 0.0
    busy: bool = False  # a publish of this task is under way, or one is scheduled

    def __post_init__(self) -> None:
        self.sampler = ProgressSampler(self.progress)

    def dirty(self) -> bool:
        p = self.progress
        return (p.current, p.total, p.message) != self.sampler.last


class WorkerPublisher:
    """One per worker process: a thread with a loop that publishes coalesced changes."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        settings = conf.get()
        self.interval = settings.PUBLISH_INTERVAL
        self.heartbeat_ttl_ms = int(settings.HEARTBEAT_TIMEOUT * 1000)
        self._tracked: dict[str, _Tracked] = {}
        # State changes that could not be written yet (Redis away), newest merged in.
        self._pending: dict[str, Change] = {}
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._last_heartbeat = 0.0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._change_locks: dict[str, asyncio.Lock] = {}
        self._down_since: float | None = None
        self.published = 0  # progress updates sent, for tests and benchmarks
        self._thread = threading.Thread(target=self._run, name="tasklight-publisher", daemon=True)
        self._thread.start()
        self._ready.wait(5)

    def stop(self) -> None:
        """Stop the thread (tests; a worker process simply exits)."""

        async def shutdown() -> None:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop)
        self._thread.join(5)

    # ---- called from task threads -------------------------------------------------
    def track(self, task_id: str, owner_key: str, base: dict[str, Any], progress: Progress) -> None:
        with self._lock:
            self._tracked[task_id] = _Tracked(task_id, owner_key, base, progress)
        progress.wake = self._wake
        progress.arm()  # the first report is published at once

    def _wake(self, task_id: str) -> None:
        """Called by a reporter (task thread) when an armed task reports: publish now."""
        self._loop.call_soon_threadsafe(self._on_report, task_id)

    def untrack(self, task_id: str) -> None:
        with self._lock:
            self._tracked.pop(task_id, None)

    def tracked(self, task_id: str) -> _Tracked | None:
        with self._lock:
            return self._tracked.get(task_id)

    def final_progress(self, task_id: str) -> dict[str, Any] | None:
        """The last report of a tracked task, as published fields (for a state change)."""
        with self._lock:
            tracked = self._tracked.get(task_id)
        if tracked is None:
            return None
        return tracked.sampler.sample(force=True)

    def submit(self, change: Change, *, wait: float = 0.5) -> bool:
        """Publish a state change now; wait at most ``wait`` seconds. True once it is out.

        While Redis is known to be away the caller does not wait at all: the change is
        kept and retried by the ticker.
        """
        with self._lock:
            tracked = self._tracked.get(change.task_id)
            if tracked is not None and change.full is not None:
                tracked.base.update({k: v for k, v in change.full.items() if k not in ("progress", "eta_seconds")})
        future = asyncio.run_coroutine_threadsafe(self._publish_change(change), self._loop)
        try:
            return bool(future.result(timeout=0.005 if self._down_since is not None else wait))
        except FutureTimeout:
            return False

    # ---- the publisher thread -------------------------------------------------------
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(self._ready.set)
        self._spawn(self._ticker())
        self._spawn(self._listen_for_cancels())
        self._loop.run_forever()

    def _spawn(self, coro: Any) -> None:
        # The loop keeps only weak references to tasks: hold them until they are done.
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _listen_for_cancels(self) -> None:
        """Hear cancel requests as they are made; the ticker's flag poll is the safety net."""
        # A client of its own: a subscriber waits on its socket, so no read timeout.
        client = aioredis.Redis.from_url(
            conf.get().REDIS_URL, socket_connect_timeout=0.5, health_check_interval=15, socket_keepalive=True
        )
        while True:
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(live.cancel_channel())
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    tracked = self._tracked.get(message["data"].decode(errors="replace"))
                    if tracked is not None and not tracked.progress.cancelled:
                        tracked.progress.mark_cancelled()
                        tracked.base["cancel_requested"] = True
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: listen again once it is back
                self._note_down(exc)
                await asyncio.sleep(0.5)
            finally:
                try:
                    await pubsub.aclose()
                except Exception:
                    pass

    async def _publish_change(self, change: Change) -> bool:
        # One state change of a task at a time, in order: an older one must never land last.
        task_id = change.task_id
        lock = self._change_locks.setdefault(task_id, asyncio.Lock())
        async with lock:
            pending = self._pending.pop(task_id, None)
            if pending is not None:
                change = pending.merged_with(change)
            try:
                await publish(change)
            except Exception as exc:  # Redis away: keep it, the ticker retries.
                self._pending[task_id] = change
                self._note_down(exc)
                return False
            if task_id not in self._pending and task_id not in self._tracked:
                self._change_locks.pop(task_id, None)
            return True

    async def _ticker(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self._tick()
                if self._down_since is not None:
                    logger.info("Tasklight publisher: Redis reachable again.")
                    self._down_since = None
            except Exception as exc:
                self._note_down(exc)
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(0.005, self.interval - elapsed))

    def _note_down(self, exc: BaseException) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            logger.warning("Tasklight publisher cannot reach Redis (%s); retrying.", exc)

    async def _tick(self) -> None:
        for task_id in list(self._pending):
            entry = self._pending.pop(task_id, None)
            if entry is None:
                continue  # a newer change of that task took it along meanwhile
            if not await self._publish_change(entry):
                raise ConnectionError("Redis still unreachable")  # keeps the "down" state honest
        with self._lock:
            tracked = list(self._tracked.values())
        if not tracked:
            return
        client = live.get_client()
        ids = [t.task_id for t in tracked]
        now = time.monotonic()
        async with client.pipeline(transaction=False) as pipe:
            pipe.mget([live.cancel_key(i) for i in ids])
            if now - self._last_heartbeat >= 1.0:
                for i in ids:
                    pipe.set(live.heartbeat_key(i), b"1", px=self.heartbeat_ttl_ms)
                self._last_heartbeat = now
            replies = await pipe.execute()
        for t, flag in zip(tracked, replies[0]):
            if flag is not None and not t.progress.flag:
                t.progress.mark_cancelled()
                t.base["cancel_requested"] = True
        # Safety net: a change that neither edge of the throttle picked up.
        for t in tracked:
            if not t.busy and t.dirty() and now - t.last_publish >= 2 * self.interval:
                self._schedule_flush(t)

    # ---- the throttle: leading edge on the first report, trailing edge each interval ----
    def _on_report(self, task_id: str) -> None:
        tracked = self._tracked.get(task_id)
        if tracked is not None and not tracked.busy:
            self._schedule_flush(tracked)

    def _schedule_flush(self, t: _Tracked) -> None:
        t.busy = True
        self._spawn(self._flush(t))

    async def _flush(self, t: _Tracked) -> None:
        """Publish a task's latest values, then wait one interval before the next."""
        try:
            fields = t.sampler.sample()
            if fields is not None:
                fields["updated_at"] = iso(now())
                try:
                    await publish(Change(t.task_id, fields, t.owner_key or None, full=t.base))
                    self.published += 1
                except Exception as exc:
                    t.sampler.last = None  # not out: the next interval tries again
                    self._note_down(exc)
            t.last_publish = time.monotonic()
        finally:
            self._loop.call_later(self.interval, self._after_interval, t)

    def _after_interval(self, t: _Tracked) -> None:
        if self._tracked.get(t.task_id) is not t:
            return  # finished: its state change carried the last values
        if t.dirty():
            self._spawn(self._flush(t))  # trailing edge: reports came meanwhile
            return
        t.busy = False
        t.progress.arm()
        if t.dirty():  # a report slipped in between the check and arming
            t.progress.armed = False
            t.progress.flag = t.progress.cancelled
            self._schedule_flush(t)


def submit_row(row: TaskRun, progress_fields: dict[str, Any] | None = None, *, wait: float) -> None:
    """Hand a row's new state to this process's publisher (bounded wait, never raises)."""
    try:
        worker_publisher().submit(Change.of_row(row, **(progress_fields or {})), wait=wait)
    except Exception:
        logger.exception("Tasklight could not hand %s to its publisher", row.id)


# Owned by this module: the process's one publisher (tests stop it with ``stop()``).
_publisher: WorkerPublisher | None = None
_publisher_lock = threading.Lock()


def worker_publisher() -> WorkerPublisher:
    """This process's publisher, started on first use (and again after a fork)."""
    global _publisher
    current = _publisher
    if current is not None and current.pid == os.getpid():
        return current
    with _publisher_lock:
        if _publisher is None or _publisher.pid != os.getpid():
            _publisher = WorkerPublisher()
        return _publisher
