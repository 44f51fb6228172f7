"""Reads of task runs, always scoped to one owner: selectors, not services."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from tasks import conf, live
from tasks.contracts import TaskObject
from tasks.models import TaskRun
from tasks.objects import row_disagrees, task_object
from tasks.owners import Owner

logger = logging.getLogger(__name__)


def parse_task_id(value: Any) -> str | None:
    """The canonical form of a task id, or None when it is not a UUID."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


async def get_owned_row(owner: Owner | None, task_id: Any) -> TaskRun | None:
    """The run if it exists and belongs to ``owner``; None otherwise (indistinguishably)."""
    canonical = parse_task_id(task_id)
    if owner is None or canonical is None:
        return None
    return await TaskRun.objects.filter(id=canonical, owner_key=owner.key).afirst()


async def live_records(rows: list[TaskRun]) -> dict[str, dict[str, Any]]:
    """Live records of the rows; empty when Redis is away (the rows suffice).

    Finished rows too: their terminal frame was published with a ``seq`` above the
    row's, and a snapshot must never be older than a frame a client already has.
    """
    ids = [str(r.id) for r in rows]
    if not ids:
        return {}
    try:
        return await live.read_many(ids)
    except Exception as exc:
        logger.warning("Snapshot without live progress: Redis unreachable (%s)", exc)
        return {}


async def objects_for_rows(rows: list[TaskRun]) -> list[TaskObject]:
    records = await live_records(rows)
    # A row read before a change and its live record read after it would pair the old
    # state with the new seq (and the real frame of that seq would then be dropped as
    # old news). Every writer writes the row before Redis, so a row read again now is
    # at least as new as the record: re-read the rows that disagree with theirs.
    stale = [str(r.id) for r in rows if row_disagrees(r, records.get(str(r.id)))]
    if stale:
        fresh = {str(r.id): r async for r in TaskRun.objects.filter(id__in=stale)}
        rows = [fresh.get(str(r.id), r) for r in rows]
    return [task_object(r, records.get(str(r.id))) for r in rows]


async def object_for_row(row: TaskRun) -> TaskObject:
    return (await objects_for_rows([row]))[0]


async def recent_rows(owner: Owner | None, limit: int | None = None) -> list[TaskRun]:
    if owner is None:
        return []
    limit = limit or conf.get().RECENT_LIMIT
    return [r async for r in TaskRun.objects.filter(owner_key=owner.key).order_by("-created_at")[:limit]]


async def recent_objects(owner: Owner | None) -> list[TaskObject]:
    """The owner's recent tasks, newest first, as task objects."""
    return await objects_for_rows(await recent_rows(owner))
