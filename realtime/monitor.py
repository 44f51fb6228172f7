"""One loop per Daphne process that keeps every connection honest (docs/realtime.md).

- Resync: the pub/sub layer loses what is published while Redis is away, and a
  terminal state written to the database may never have reached Redis. Every
  ``RESYNC_INTERVAL`` seconds the loop re-reads, in one query and one Redis round
  trip for the whole process, every unfinished task some connection watches, and
  sends each connection whatever is newer than what it has (by ``seq``).
- Sessions: Channels authenticates only at connect. Every ``SESSION_CHECK`` seconds
  (``TASKLIGHT``) the loop closes connections whose session has ended (expiry,
  flush); ``user_logged_out`` closes them at once through the session's group.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import weakref
from datetime import UTC, datetime
from importlib import import_module
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

from realtime.transport import CLOSE_SESSION_ENDED
from tasks import conf
from tasks.contracts import SessionEndEvent
from tasks.groups import group_for_session
from tasks.models import TaskRun
from tasks.selectors import objects_for_rows

if TYPE_CHECKING:
    from realtime.consumers import TasksConsumer

logger = logging.getLogger(__name__)

_consumers: weakref.WeakSet[TasksConsumer] = weakref.WeakSet()
_task: asyncio.Task[None] | None = None


def session_tag(session_key: str) -> str:
    return hashlib.blake2b(session_key.encode(), digest_size=12).hexdigest()


def register(consumer: TasksConsumer) -> None:
    global _task
    _consumers.add(consumer)
    loop = asyncio.get_running_loop()
    if _task is None or _task.done() or _task.get_loop() is not loop:
        _task = loop.create_task(_run())


def unregister(consumer: TasksConsumer) -> None:
    _consumers.discard(consumer)


async def _run() -> None:
    resync_every = conf.get().RESYNC_INTERVAL
    session_every = conf.get().SESSION_CHECK
    jobs = [(resync_every, resync_all), (session_every, close_ended_sessions)]
    last = [time.monotonic()] * len(jobs)
    tick = max(0.05, min(resync_every, session_every))
    while _consumers:
        await asyncio.sleep(tick)
        clock = time.monotonic()
        for i, (every, job) in enumerate(jobs):
            if clock - last[i] < every - 0.01:
                continue
            last[i] = clock
            try:
                await job()
            except Exception as exc:  # one failing job must not stop the other
                logger.warning("Tasklight %s failed: %s", job.__name__, exc)


_last_pass: float | None = None


async def resync_all() -> int:
    """Send every connection the newer state of the tasks it watches; how many objects were sent.

    Two reads for the whole process: the unfinished tasks some connection has seen, and
    the rows of "subscribe all" owners changed since the previous pass (a task whose
    every publish was lost is still found).
    """
    global _last_pass
    started = time.time()
    margin = max(2.0, 2 * conf.get().RESYNC_INTERVAL)
    since = (_last_pass if _last_pass is not None else started) - margin
    _last_pass = started

    consumers = [c for c in list(_consumers) if c.unfinished or c.watch_all]
    wanted = {task_id for c in consumers for task_id in c.unfinished}
    all_owners = {c.owner.key for c in consumers if c.watch_all and c.owner is not None}
    if not wanted and not all_owners:
        return 0
    rows: dict[str, Any] = {}
    if wanted:
        rows.update({str(r.id): r async for r in TaskRun.objects.filter(id__in=list(wanted))})
    if all_owners:
        changed = TaskRun.objects.filter(
            owner_key__in=list(all_owners),
            updated_at__gte=datetime.fromtimestamp(since, tz=UTC),
        )
        rows.update({str(r.id): r async for r in changed})
    if not rows:
        return 0
    objects = {obj["id"]: obj for obj in await objects_for_rows(list(rows.values()))}
    owners = {task_id: r.owner_key for task_id, r in rows.items()}
    by_owner: dict[str, list[str]] = {}
    for task_id, owner_key in owners.items():
        by_owner.setdefault(owner_key, []).append(task_id)
    sent = 0
    for consumer in consumers:
        owner = consumer.owner
        if owner is None:
            continue
        candidates = set(consumer.unfinished)
        if consumer.watch_all:
            candidates.update(by_owner.get(owner.key, ()))
        newer = [
            objects[t]
            for t in candidates
            if t in objects and owners.get(t) == owner.key and consumer.watches(t) and consumer._is_new(t, objects[t]["seq"])
        ]
        if newer:
            newer.sort(key=lambda o: o["seq"])
            sent += len(newer)
            await consumer.send_objects(newer)
    return sent


async def close_ended_sessions() -> None:
    """Close the sockets whose session has expired or was deleted (any server-side engine)."""
    consumers = [c for c in list(_consumers) if c.session_key]
    keys = {c.session_key for c in consumers if c.session_key}
    if not keys:
        return
    alive = await _alive_sessions(keys)
    for consumer in consumers:
        if consumer.session_key not in alive:
            await consumer.close(code=CLOSE_SESSION_ENDED)


async def _alive_sessions(keys: set[str]) -> set[str]:
    store_class = import_module(settings.SESSION_ENGINE).SessionStore
    if settings.SESSION_ENGINE == "django.contrib.sessions.backends.db":
        model = store_class.get_model_class()  # one query for the whole process
        query = model.objects.filter(session_key__in=list(keys), expire_date__gt=timezone.now())
        return {k async for k in query.values_list("session_key", flat=True)}

    def exists(key: str) -> bool:
        return bool(store_class().exists(key))

    return {k for k in keys if await sync_to_async(exists)(k)}


def on_logout(sender: Any, request: Any = None, user: Any = None, **_: Any) -> None:
    """Close the sockets of the session that logs out, at once, in every Daphne process."""
    session = getattr(request, "session", None) if request is not None else None
    key = getattr(session, "session_key", None)
    if not key:
        return
    try:
        layer = get_channel_layer(conf.get().CHANNEL_LAYER)
        group = group_for_session(key)
        message: SessionEndEvent = {"type": "session.end", "session": session_tag(key), "group": group}

        async def announce() -> None:
            # Bounded: a Redis that does not answer must not hang the logout request.
            await asyncio.wait_for(layer.group_send(group, dict(message)), 2.0)

        async_to_sync(announce)()
    except Exception as exc:
        logger.warning("Could not announce a logout to open sockets (%s)", exc)
