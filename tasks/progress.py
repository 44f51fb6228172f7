"""The progress API that task code calls (docs/progress.md).

Reporting is an in-memory write: ``Progress.advance()`` / ``set()`` store the latest
values and check a local cancel flag, nothing more. The worker's publisher thread
(tasks/worker/publisher.py) samples those values about ten times a second, turns them into
the ``progress`` object and ETA of the task object, and sends them on.

    @shared_task(bind=True, base=TrackedTask)   # from tasks.base import TrackedTask
    def import_rows(self, path):
        progress = self.progress            # or tasks.progress.reporter(self)
        rows = load(path)
        progress.set_total(len(rows))
        for row in rows:
            save(row)
            progress.advance(message=f"row {row.id}")
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from celery import current_task

_KEEP: Any = object()


class TaskCancelled(Exception):
    """Raised inside a task whose cancellation was requested; the task ends ``cancelled``."""


class Progress:
    """Latest progress of one running task, as reported by the task's own code."""

    __slots__ = ("task_id", "current", "total", "message", "cancelled", "armed", "flag", "wake", "__weakref__")

    def __init__(self, task_id: str | None = None, total: float | None = None) -> None:
        self.task_id = task_id
        self.current: float = 0
        self.total: float | None = total
        self.message: str = ""
        # Set by the publisher thread when the task's cancel flag is seen in Redis.
        self.cancelled = False
        # Set by the publisher when it has been idle long enough that the next report
        # should be published at once (leading edge of the throttle), not at a tick.
        self.armed = False
        # ``cancelled or armed``: the one attribute the hot path reads.
        self.flag = False
        self.wake: Any = None

    def mark_cancelled(self) -> None:
        self.cancelled = True
        self.flag = True

    def arm(self) -> None:
        self.armed = True
        self.flag = True

    def _signal(self) -> None:
        """The slow path of a report: raise on cancel, or wake the publisher."""
        if self.cancelled:
            raise TaskCancelled(self.task_id)
        if self.armed:
            self.armed = False
            # Clear the flag first, then look at ``cancelled`` again: the publisher sets
            # ``cancelled`` before ``flag``, so a cancel made meanwhile is never lost.
            self.flag = False
            if self.cancelled:
                self.flag = True
            wake = self.wake
            if wake is not None:
                wake(self.task_id)

    def set(self, current: float, total: float | None = _KEEP, message: str | None = None) -> None:
        """Record ``current`` (and optionally ``total`` and ``message``)."""
        # ``total`` first: a sampler reading in between then errs low, never at 100 %.
        if total is not _KEEP:
            self.total = total
        self.current = current
        if message is not None:
            self.message = message
        if self.flag:
            self._signal()

    def advance(self, step: float = 1, message: str | None = None) -> None:
        """Add ``step`` to ``current``."""
        self.current += step
        if message is not None:
            self.message = message
        if self.flag:
            self._signal()

    def set_total(self, total: float | None) -> None:
        """Set the amount of work; ``None`` for indeterminate work."""
        self.total = total
        if self.flag:
            self._signal()

    def set_message(self, message: str) -> None:
        self.message = message
        if self.flag:
            self._signal()

    def set_progress(self, current: float, total: float | None, description: str | None = None) -> None:
        """celery-progress's ``ProgressRecorder.set_progress``, for easy migration."""
        self.set(current, total, description)

    def check(self) -> None:
        """Raise ``TaskCancelled`` if cancellation was requested (for loops that don't report)."""
        if self.cancelled:
            raise TaskCancelled(self.task_id)


# Reporters of the tasks running in this process, by task id (filled at task_prerun).
_reporters: dict[str, Progress] = {}
_reporters_lock = threading.Lock()


def reporter(task: Any = None) -> Progress:
    """The ``Progress`` of the given (or current) task; a detached one outside a worker."""
    if task is None:
        task = current_task
    task_id = getattr(getattr(task, "request", None), "id", None) if task is not None else None
    if task_id is None:
        return Progress()
    found = _reporters.get(task_id)
    if found is None:
        with _reporters_lock:
            found = _reporters.setdefault(task_id, Progress(task_id))
    return found


def register(task_id: str) -> Progress:
    with _reporters_lock:
        found = _reporters.get(task_id)
        if found is None:
            found = _reporters[task_id] = Progress(task_id)
        return found


def running_reporter(task_id: str) -> Progress | None:
    """The reporter of a task running in this process, if any."""
    return _reporters.get(task_id)


def unregister(task_id: str) -> None:
    with _reporters_lock:
        _reporters.pop(task_id, None)


def _number(value: Any) -> float | None:
    """A finite number, or None: NaN and Infinity are not JSON and would break every frame."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None


class ProgressSampler:
    """Turns a reporter's raw values into the published ``progress`` and ``eta_seconds``.

    Lives in the publisher thread. ``percent`` never goes backwards; the ETA comes from
    an exponentially smoothed rate and is ``None`` until the rate is known.
    """

    SMOOTHING = 0.3  # weight of the newest rate sample
    MIN_OBSERVATION = 0.3  # seconds of observation before an ETA is shown

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.last: tuple[Any, Any, str] | None = None
        self.percent_floor = 0.0
        self.rate: float | None = None
        self.rate_time = time.monotonic()
        self.rate_current: float | None = None
        self.observed = 0.0
        self.eta: float | None = None

    def sample(self, force: bool = False) -> dict[str, Any] | None:
        """The fields to publish if the values changed since the last sample (or ``force``)."""
        p = self.progress
        values = (p.current, p.total, p.message)
        if values == self.last and not force:
            return None
        self.last = values
        current, total, message = _number(values[0]) or 0, _number(values[1]), values[2]
        percent: float | None = None
        if total:
            try:
                percent = round(min(100.0, max(0.0, current * 100.0 / total)), 1)
            except (TypeError, ValueError):
                percent = None
            if percent is not None:
                percent = max(percent, self.percent_floor)
                self.percent_floor = percent
        self._update_eta(current, total)
        return {
            "progress": {
                "current": current,
                "total": total,
                "percent": percent,
                "message": str(message)[:500],
            },
            "eta_seconds": self.eta,
        }

    def _update_eta(self, current: Any, total: Any) -> None:
        now = time.monotonic()
        if not isinstance(current, (int, float)) or not isinstance(total, (int, float)) or not total:
            self.eta = None
            return
        if self.rate_current is None:
            self.rate_current, self.rate_time = current, now
            return
        elapsed = now - self.rate_time
        if elapsed <= 0:
            return
        instant = (current - self.rate_current) / elapsed
        self.rate = instant if self.rate is None else (
            self.SMOOTHING * instant + (1 - self.SMOOTHING) * self.rate
        )
        self.observed += elapsed
        self.rate_current, self.rate_time = current, now
        if self.rate and self.rate > 0 and self.observed >= self.MIN_OBSERVATION:
            self.eta = round(max(0.0, (total - current) / self.rate), 1)
        else:
            self.eta = None
