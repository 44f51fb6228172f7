"""The whole life of every Celery task, from Celery's own signals (docs/progress.md).

queued (sent) -> running (prerun) -> retrying (retry) -> succeeded / failed /
cancelled. Each transition is written to the row first, then published with a short
bounded wait. Only tracked tasks are followed: those built on
``tasks.base.TrackedTask``, or every task when ``TASKLIGHT["TRACK_ALL_TASKS"]`` is on
(never Tasklight's own, whose names start with ``tasklight.``).
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from billiard.exceptions import SoftTimeLimitExceeded, Terminated, TimeLimitExceeded, WorkerLostError
from celery import current_app, signals
from django.db import DatabaseError

from tasks import conf, services
from tasks import progress as progress_mod
from tasks.base import ShowToOwner, TrackedTask
from tasks.contracts import ACTIVE_STATES, TERMINAL_STATES, State
from tasks.models import TaskRun
from tasks.objects import iso, next_seq, now, row_fields
from tasks.progress import TaskCancelled
from tasks.publishing import Change
from tasks.worker import watchdog
from tasks.worker.publisher import submit_row, worker_publisher

logger = logging.getLogger(__name__)

INTERNAL_PREFIX = "tasklight."
GENERIC_FAILURE = "The task failed."
GENERIC_RETRY = "The task failed; it will be tried again."
TERMINAL_WAIT = 0.5
START_WAIT = 0.25


def is_tracked(task: Any) -> bool:
    """Does Tasklight follow this task (a task object, or a name in the current app)?"""
    if isinstance(task, str):
        if task.startswith(INTERNAL_PREFIX):
            return False
        task = current_app.tasks.get(task)
        if task is None:  # sent by name, not registered here: only TRACK_ALL_TASKS covers it
            return conf.get().TRACK_ALL_TASKS
    if task is None or str(getattr(task, "name", "")).startswith(INTERNAL_PREFIX):
        return False
    return isinstance(task, TrackedTask) or conf.get().TRACK_ALL_TASKS


def _final_progress(task_id: str) -> dict[str, Any] | None:
    return worker_publisher().final_progress(task_id)


def _finish(task_id: str, to: str, **changes: Any) -> None:
    """Write a terminal (or retrying) state with the last report, and publish it."""
    final = _final_progress(task_id)
    if final:
        changes.setdefault("progress", final["progress"])
    try:
        row = services.transition(task_id, to=to, allowed_from=ACTIVE_STATES, **changes)
    except DatabaseError as exc:
        # The end must not be lost with the database: publish it to the live record
        # (Redis), where snapshots show it and the watchdog writes it to the row later.
        logger.warning("Task %s ended %s but its row could not be written (%s)", task_id, to, exc)
        _publish_without_row(task_id, to, changes)
        return
    if row is not None:
        submit_row(row, {"progress": final["progress"]} if final else None, wait=TERMINAL_WAIT)


def _publish_without_row(task_id: str, to: str, changes: dict[str, Any]) -> None:
    publisher = worker_publisher()
    tracked = publisher.tracked(task_id)
    if tracked is None:
        return  # nothing known here of the task: the watchdog will settle it from the row
    stamp = iso(now())
    patch: dict[str, Any] = {"state": str(to), "updated_at": stamp}
    if to in TERMINAL_STATES:
        patch.update({"finished_at": stamp, "eta_seconds": None})
    for name in ("result", "error", "progress", "attempt"):
        if name in changes:
            patch[name] = changes[name]
    full = {**tracked.base, **patch}
    change = Change(task_id, patch, tracked.owner_key or None, seq_floor=next_seq(int(full.get("seq") or 0)), full=full)
    publisher.submit(change, wait=TERMINAL_WAIT)


def shown_to_owner(task: Any, exc: BaseException | None) -> bool:
    """May the owner read ``str(exc)``? Only for the exceptions the task marks as safe."""
    if exc is None:
        return False
    safe = tuple(getattr(task, "safe_errors", ()) or ()) + (ShowToOwner,)
    return isinstance(exc, safe)


def owner_error(task: Any, exc: BaseException | None, *, generic: str, real: str | None = None) -> dict[str, str]:
    """The error the owner sees: the real message if the task marks it safe, else ``generic``."""
    message = real if real is not None else str(exc)
    return services.error_dict(exc, message=message if shown_to_owner(task, exc) else generic)


def on_sent(sender: str | None = None, headers: dict[str, Any] | None = None, body: Any = None, **_: Any) -> None:
    headers = headers or {}
    if not sender or headers.get("retries") or not is_tracked(str(sender)):
        return
    task_id = headers.get("id")
    if not task_id:
        return
    try:
        services.ensure_row(task_id, str(sender))
    except Exception:
        logger.exception("Tasklight could not record the sending of %s", task_id)


def on_prerun(sender: Any = None, task_id: str | None = None, task: Any = None, **_: Any) -> None:
    if task is None or task_id is None or not is_tracked(task):
        return
    request = task.request
    row, skip = services.start_run(
        task_id,
        task.name,
        attempt=int(request.retries or 0) + 1,
        worker=f"{request.hostname or socket.gethostname()}:{os.getpid()}",
    )
    if skip:
        request.tasklight_skip = True
        return
    if row is None:
        return
    reporter = progress_mod.register(task_id)
    base = row_fields(row)
    worker_publisher().track(task_id, row.owner_key, base, reporter)
    submit_row(row, wait=START_WAIT)


def on_success(sender: Any = None, result: Any = None, **_: Any) -> None:
    if sender is None or not is_tracked(sender):
        return
    _finish(sender.request.id, State.SUCCEEDED, result=services.json_safe(result), error=None, traceback="")


def on_retry(sender: Any = None, request: Any = None, reason: Any = None, **_: Any) -> None:
    if sender is None or request is None or not is_tracked(sender):
        return
    # ``reason`` is Celery's Retry; the exception that caused it is its ``exc``.
    cause = getattr(reason, "exc", None) or reason
    exc = cause if isinstance(cause, BaseException) else None
    attempt = int(request.retries or 0) + 1
    error = owner_error(sender, exc, generic=GENERIC_RETRY, real=str(cause))
    _finish(
        request.id,
        State.RETRYING,
        # With countdown=0 the next attempt may have started before this signal.
        attempt_is=attempt,
        error=error,
        # Staff read the real message (task_detail adds the traceback field for them).
        traceback=f"{error['type']}: {cause}"[:20000],
    )


def on_failure(
    sender: Any = None, task_id: str | None = None, exception: BaseException | None = None, einfo: Any = None, **_: Any
) -> None:
    if sender is None or task_id is None or not is_tracked(sender):
        return
    time_limit = None
    try:
        row = TaskRun.objects.filter(id=task_id).only("cancel_requested", "time_limit").first()
        cancel_requested = bool(row and row.cancel_requested)
        time_limit = row.time_limit if row is not None else None
    except DatabaseError:  # _finish publishes without the row; what this process knows will do
        reporter = progress_mod.running_reporter(task_id)
        cancel_requested = bool(reporter and reporter.cancelled)
    if isinstance(exception, TaskCancelled) or (
        cancel_requested and isinstance(exception, (WorkerLostError, Terminated))
    ):
        _finish(task_id, State.CANCELLED)
        return
    if isinstance(exception, WorkerLostError):
        error = services.error_dict(
            exception, type_name="WorkerLost", message="The worker running this task was lost."
        )
    elif isinstance(exception, (SoftTimeLimitExceeded, TimeLimitExceeded)):
        limit = f" of {time_limit:g} s" if time_limit else ""
        error = services.error_dict(
            exception, type_name="TimedOut", message=f"The task ran past its time limit{limit} and was stopped."
        )
    else:
        error = owner_error(sender, exception, generic=GENERIC_FAILURE)
    tb = str(getattr(einfo, "traceback", "") or "")[:20000] or f"{type(exception).__name__}: {exception}"[:20000]
    _finish(task_id, State.FAILED, error=error, traceback=tb)


def on_revoked(sender: Any = None, request: Any = None, terminated: bool = False, expired: bool = False, **_: Any) -> None:
    name = getattr(sender, "name", None)
    task_id = getattr(request, "id", None)
    if task_id is None or not is_tracked(sender if sender is not None else name):
        return
    if expired:
        _finish(task_id, State.FAILED, error={"type": "Expired", "message": "The task expired before it ran."})
    else:
        _finish(task_id, State.CANCELLED)


def on_postrun(sender: Any = None, task_id: str | None = None, **_: Any) -> None:
    if task_id is None:
        return
    worker_publisher().untrack(task_id)
    progress_mod.unregister(task_id)


def on_worker_ready(sender: Any = None, **_: Any) -> None:
    watchdog.start_watchdog()


def on_worker_shutdown(sender: Any = None, **_: Any) -> None:
    watchdog.stop_watchdog()


def connect() -> None:
    """Connect the handlers to Celery's signals, once per process (called from AppConfig.ready)."""
    signals.after_task_publish.connect(on_sent, dispatch_uid="tasklight.on_sent")
    signals.task_prerun.connect(on_prerun, dispatch_uid="tasklight.on_prerun")
    signals.task_success.connect(on_success, dispatch_uid="tasklight.on_success")
    signals.task_retry.connect(on_retry, dispatch_uid="tasklight.on_retry")
    signals.task_failure.connect(on_failure, dispatch_uid="tasklight.on_failure")
    signals.task_revoked.connect(on_revoked, dispatch_uid="tasklight.on_revoked")
    signals.task_postrun.connect(on_postrun, dispatch_uid="tasklight.on_postrun")
    signals.worker_ready.connect(on_worker_ready, dispatch_uid="tasklight.on_worker_ready")
    signals.worker_shutdown.connect(on_worker_shutdown, dispatch_uid="tasklight.on_worker_shutdown")
