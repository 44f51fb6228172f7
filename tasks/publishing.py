"""The one way an update leaves for browsers: ``publish(change)`` (docs/realtime.md).

Like Zulip's ``send_event``: services, the worker's lifecycle handlers, its publisher
thread and the watchdog describe what changed as a ``Change``; ``publish()`` raises the
task's cancel flag when the change is a cancel request, merges the change into the
task's live record (tasks/live.py, which gives it its ``seq``), encodes the ``task``
frame once and sends it to the task's group and the owner's group on the channel
layer. Sync code in a worker hands changes to its publisher thread
(tasks/worker/publisher.py), which calls this same function.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, cast

from channels.layers import get_channel_layer

from tasks import conf, live
from tasks.contracts import TaskObject, TaskUpdateEvent
from tasks.groups import group_for_owner, group_for_task
from tasks.models import TaskRun
from tasks.objects import change_fields, empty_progress

SEND_TIMEOUT = 1.0


@dataclass
class Change:
    """One change of one task: a patch of the task object, and how to write it."""

    task_id: str
    fields: dict[str, Any]
    owner_key: str | None
    # The new seq is at least this (the row's seq, so the live record never lags it).
    seq_floor: int = 0
    # Written instead of the patch when Redis has no live record of the task any more.
    full: dict[str, Any] | None = None
    # A cancel request: raise the running task's cancel flag and announce it to workers.
    cancel: bool = False

    @classmethod
    def of_row(cls, row: TaskRun, only: tuple[str, ...] | None = None, **extra_fields: Any) -> Change:
        """The change a row's new state makes (``only``: just these fields of it)."""
        patch, full = change_fields(row, only)
        patch.update(extra_fields)
        return cls(str(row.id), patch, row.owner_key or None, seq_floor=row.seq, full=full)

    def merged_with(self, newer: Change) -> Change:
        """This change and a newer one of the same task, as one (the newer wins)."""
        full = {**(self.full or {}), **(newer.full or {})} if (self.full or newer.full) else None
        return Change(
            self.task_id,
            {**self.fields, **newer.fields},
            newer.owner_key or self.owner_key,
            seq_floor=max(self.seq_floor, newer.seq_floor),
            full=full,
            cancel=self.cancel or newer.cancel,
        )


def task_frame(record: dict[str, Any]) -> tuple[TaskObject, str]:
    """The task object held by a live record, and its ``task`` frame encoded once."""
    obj = {k: v for k, v in record.items() if not k.startswith("_")}
    obj.setdefault("progress", empty_progress())
    obj.setdefault("eta_seconds", None)
    return cast(TaskObject, obj), json.dumps({"type": "task", "task": obj}, separators=(",", ":"))


async def _send_to_watchers(owner_key: str | None, obj: TaskObject, frame: str) -> None:
    layer = get_channel_layer(conf.get().CHANNEL_LAYER)
    if layer is None:
        raise RuntimeError("Tasklight's channel layer is not configured (manage.py check: tasklight.E001).")
    groups = [group_for_task(obj["id"])]
    if owner_key:
        groups.append(group_for_owner(owner_key))
    for group in groups:
        # The group travels in the message: each process's hub fans out by it.
        event: TaskUpdateEvent = {
            "type": "task.update", "group": group, "id": obj["id"], "seq": obj["seq"], "state": obj["state"], "frame": frame,
        }
        await asyncio.wait_for(layer.group_send(group, dict(event)), SEND_TIMEOUT)


async def publish(change: Change) -> TaskObject | None:
    """Record a change of a task and push it to its watchers; the new object, or None.

    None means the task was already terminal in Redis and the change was dropped.
    Raises when Redis or the layer is away: the caller keeps the change or relies on
    the row (watchers resync from it).
    """
    if change.cancel:
        await live.set_cancel_flag(change.task_id)
    result = await live.merge(
        change.task_id, change.fields, owner_key=change.owner_key, seq_floor=change.seq_floor,
        require_existing=change.full is not None,
    )
    if result.status == "missing" and change.full is not None:
        result = await live.merge(
            change.task_id, {**change.full, **change.fields}, owner_key=change.owner_key, seq_floor=change.seq_floor
        )
    if result.status != "ok" or result.record is None:
        return None
    obj, frame = task_frame(result.record)
    await _send_to_watchers(change.owner_key, obj, frame)
    return obj
