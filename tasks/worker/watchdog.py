"""The watchdog: no task stays ``running`` forever, and every cancel takes effect.

A thread in each worker's main process (started on ``worker_ready``), so it keeps
working while every pool process is busy. Each pass, idempotent across workers:

- a running task whose heartbeat key (refreshed each second by the publisher of the
  process running it) is missing on two looks at least ``HEARTBEAT_TIMEOUT`` apart is
  marked failed, "worker lost" (a worker killed with SIGKILL, OOM, power loss);
- a running task whose cancel was requested more than ``CANCEL_GRACE`` seconds ago is
  stopped with Celery's own ``revoke(terminate=True)``: SIGTERM, then SIGKILL after
  ``KILL_AFTER`` seconds. See docs/cancellation.md.

Old runs and their files are not the watchdog's: ``manage.py tasklight_purge`` does that.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

import redis
from celery import current_app
from django.db import close_old_connections

from tasks import conf, live, services
from tasks.contracts import TERMINAL_STATES, State
from tasks.models import TaskRun
from tasks.objects import iso, now
from tasks.worker.publisher import submit_row

logger = logging.getLogger(__name__)

_thread: threading.Thread | None = None
_stop = threading.Event()


class Watchdog:
    def __init__(self) -> None:
        settings = conf.get()
        self.interval = settings.WATCHDOG_INTERVAL
        self.heartbeat_timeout = settings.HEARTBEAT_TIMEOUT
        self.grace = settings.CANCEL_GRACE
        self.kill_after = settings.KILL_AFTER
        self.redis = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=2)
        # task id -> monotonic time its heartbeat was first seen missing
        self.missing_since: dict[str, float] = {}

    def run_once(self) -> None:
        close_old_connections()
        # Each phase on its own: Redis away must not stop cancels going through the broker.
        for phase in (self.find_lost, self.enforce_cancels, self.refresh_cancel_flags):
            try:
                phase()
            except Exception as exc:
                logger.warning("Tasklight watchdog: %s failed (%s)", phase.__name__, exc)

    def refresh_cancel_flags(self) -> None:
        """Set again the Redis flag of every running task whose cancel is recorded.

        The cancel service sets it once; if Redis was away at that moment the worker
        would only hear of the cancel through the hard stop. Idempotent and cheap.
        """
        ids = [str(i) for i in TaskRun.objects.filter(state=State.RUNNING, cancel_requested=True)
               .values_list("id", flat=True)[:500]]
        if not ids:
            return
        live.refresh_cancel_flags(self.redis, ids)

    def find_lost(self) -> None:
        started_before = now() - timedelta(seconds=self.heartbeat_timeout)
        rows = list(
            TaskRun.objects.filter(state=State.RUNNING, started_at__lt=started_before).values_list("id", flat=True)[:500]
        )
        ids = [str(i) for i in rows]
        if not ids:
            self.missing_since.clear()
            return
        beats = self.redis.mget([live.heartbeat_key(i) for i in ids])
        clock = time.monotonic()
        seen = set()
        for task_id, beat in zip(ids, beats):
            if beat is not None:
                continue
            seen.add(task_id)
            first = self.missing_since.setdefault(task_id, clock)
            # Two looks apart: a Redis restart empties the keys, the publishers refill them.
            if clock - first >= min(self.heartbeat_timeout, 10.0):
                self.mark_lost(task_id)
        self.missing_since = {k: v for k, v in self.missing_since.items() if k in seen}

    def mark_lost(self, task_id: str) -> None:
        row = TaskRun.objects.filter(id=task_id).first()
        if row is None:
            return
        if self.adopt_published_end(row):
            return
        to = State.CANCELLED if row.cancel_requested else State.FAILED
        error = None if to == State.CANCELLED else {
            "type": "WorkerLost",
            "message": "The worker running this task stopped responding (killed or lost).",
        }
        updated = services.transition(task_id, to=to, allowed_from=frozenset({State.RUNNING}), error=error)
        if updated is not None:
            logger.warning("Task %s: worker lost, marked %s", task_id, to)
            submit_row(updated, wait=0.5)

    def adopt_published_end(self, row: TaskRun) -> bool:
        """Write to the row a state change that was published but never written.

        A worker whose database was away when its task ended (or went to retry)
        publishes the change to the live record only (tasks/worker/lifecycle.py); its heartbeat
        then stops, and here the row catches up instead of calling the worker lost.
        """
        raw = self.redis.hgetall(live.live_key(str(row.id)))
        record = live.decode_record(raw) if raw else {}
        state = record.get("state")
        if state == "retrying" and str(record.get("updated_at") or "") > (iso(row.updated_at) or ""):
            pass  # the retry happened after the row's last write: adopt it too
        elif state not in TERMINAL_STATES:
            return False
        changes = {name: record[name] for name in ("result", "error", "progress") if name in record}
        updated = services.transition(str(row.id), to=state, allowed_from=frozenset({State.RUNNING}), **changes)
        if updated is not None:
            logger.warning("Task %s: wrote its published end (%s) to the row", row.id, state)
            submit_row(updated, wait=0.5)
        return True

    def enforce_cancels(self) -> None:
        moment = now()
        overdue = TaskRun.objects.filter(
            state=State.RUNNING,
            cancel_requested=True,
            cancel_requested_at__lt=moment - timedelta(seconds=self.grace),
        )
        for row in overdue[:100]:
            if row.terminate_signal == "":
                self.terminate(row, "SIGTERM")
            elif row.terminate_signal == "SIGTERM" and row.terminate_sent_at and (
                row.terminate_sent_at < moment - timedelta(seconds=self.kill_after)
            ):
                self.terminate(row, "SIGKILL")
            elif row.terminate_signal == "SIGKILL" and row.terminate_sent_at and (
                row.terminate_sent_at < moment - timedelta(seconds=2 * self.kill_after)
            ):
                self.give_up(row)

    def terminate(self, row: TaskRun, signal_name: str) -> None:
        updated = TaskRun.objects.filter(id=row.id, state=State.RUNNING, terminate_signal=row.terminate_signal).update(
            terminate_signal=signal_name, terminate_sent_at=now()
        )
        if not updated:
            return  # another worker's watchdog got there first
        logger.warning("Task %s ignored its cancel for %.0fs: revoke(terminate=True, %s)", row.id, self.grace, signal_name)
        try:
            current_app.control.revoke(str(row.id), terminate=True, signal=signal_name)
        except Exception:
            # Not sent (broker away): undo the claim so the next pass sends it again.
            TaskRun.objects.filter(id=row.id, terminate_signal=signal_name).update(
                terminate_signal=row.terminate_signal, terminate_sent_at=row.terminate_sent_at
            )
            raise


    def give_up(self, row: TaskRun) -> None:
        """The pool could not stop it (threads, solo): say so in the task's state."""
        updated = services.transition(
            str(row.id),
            to=State.RUNNING,
            allowed_from=frozenset({State.RUNNING}),
            terminate_signal="GAVE_UP",
            error={
                "type": "CannotStop",
                "message": "This worker's pool cannot stop a running task; it will end on its own.",
            },
        )
        if updated is not None:
            logger.warning("Task %s could not be stopped by its pool; left running", row.id)
            submit_row(updated, wait=0.5)


def _loop() -> None:
    dog = Watchdog()
    while not _stop.wait(dog.interval):
        try:
            dog.run_once()
        except Exception as exc:  # Redis or the database away: try again next pass.
            logger.warning("Tasklight watchdog pass failed: %s", exc)


def start_watchdog() -> None:
    global _thread
    if _thread is not None and _thread.is_alive():
        return
    _stop.clear()
    _thread = threading.Thread(target=_loop, name="tasklight-watchdog", daemon=True)
    _thread.start()


def stop_watchdog() -> None:
    _stop.set()
