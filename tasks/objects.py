"""The task object (docs/protocol.md), built here and nowhere else.

The row (database) is the authority on state, owner, result and error; the live
record in Redis (tasks/live.py) adds the latest progress and ETA of a running
task and carries the newest ``seq``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, cast

from tasks.contracts import TERMINAL_STATES, TaskObject
from tasks.models import TaskRun


def iso(dt: datetime | None) -> str | None:
    """ISO 8601 in UTC with milliseconds and a Z, or None."""
    if dt is None:
        return None
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now() -> datetime:
    return datetime.now(UTC)


def next_seq(previous: int) -> int:
    """A seq above ``previous`` and at least the current time in microseconds.

    Time-based so that a seq stays increasing even after Redis lost its counters.
    """
    return max(previous + 1, time.time_ns() // 1000)


def row_fields(row: TaskRun) -> dict[str, Any]:
    """The row's part of the task object (everything but live progress and ETA)."""
    return {
        "id": str(row.id),
        "name": row.name,
        "label": row.label,
        "state": row.state,
        "cancel_requested": row.cancel_requested,
        "attempt": row.attempt,
        "created_at": iso(row.created_at),
        "started_at": iso(row.started_at),
        "finished_at": iso(row.finished_at),
        "updated_at": iso(row.updated_at),
        "result": row.result,
        "error": row.error,
        "time_limit": row.time_limit,
    }


def change_fields(row: TaskRun, only: tuple[str, ...] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(patch, full) for publishing a change of the row.

    The patch carries only what the writer owns: a state change never carries
    ``cancel_requested`` (only a cancel request changes it, and an older copy must not
    undo a newer request); ``only`` narrows it further. ``full`` is written instead when
    Redis has no live record of the task any more.
    """
    full = row_fields(row)
    if row.progress and row.state in TERMINAL_STATES:
        full["progress"] = row.progress
    if row.state in TERMINAL_STATES:
        full["eta_seconds"] = None  # no ETA once finished, in every copy of the object
    if only is not None:
        patch = {name: full[name] for name in only}
    else:
        patch = {k: v for k, v in full.items() if k != "cancel_requested"}
    if "state" in patch and row.state in TERMINAL_STATES:
        patch["eta_seconds"] = None
    return patch, full


def row_disagrees(row: TaskRun, live: dict[str, Any] | None) -> bool:
    """True when the live record and the row differ in what the row owns (state, cancel)."""
    if not live:
        return False
    if "state" in live and live["state"] != row.state:
        return True
    return "cancel_requested" in live and bool(live["cancel_requested"]) != row.cancel_requested


def task_object(row: TaskRun, live: dict[str, Any] | None = None) -> TaskObject:
    """The full task object: the row, with the live record's progress when it is newer."""
    obj = row_fields(row)
    obj["progress"] = row.progress or empty_progress()
    obj["eta_seconds"] = None
    obj["seq"] = row.seq
    if live:
        live_seq = int(live.get("seq") or 0)
        if live.get("progress") and (row.state not in TERMINAL_STATES or not row.progress):
            obj["progress"] = live["progress"]
        if row.state not in TERMINAL_STATES:
            obj["eta_seconds"] = live.get("eta_seconds")
            if live.get("updated_at") and live["updated_at"] > (obj["updated_at"] or ""):
                obj["updated_at"] = live["updated_at"]
        if row.state not in TERMINAL_STATES and live.get("state") in TERMINAL_STATES:
            # The worker published the end but could not write the row (database away);
            # the watchdog will write it. A terminal state is final: show it now.
            for name in ("state", "result", "error", "finished_at", "cancel_requested", "progress"):
                if name in live:
                    obj[name] = live[name]
        # A row ahead of its live record (that change not published yet) must rank above it.
        obj["seq"] = max(row.seq, live_seq + 1 if row_disagrees(row, live) else live_seq)
    if obj["state"] in TERMINAL_STATES:
        obj["eta_seconds"] = None
    return cast(TaskObject, obj)


def empty_progress() -> dict[str, Any]:
    return {"current": 0, "total": None, "percent": None, "message": ""}
