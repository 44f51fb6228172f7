"""One loop per Daphne process that keeps every connection honest.

- Resync: the pub/sub layer loses what is published while Redis is away, and a
  terminal state written to the database may never have reached Redis. Every
  ``RESYNC_INTERVAL`` seconds the loop re-reads, in one query and one Redis round
  trip for the whole process, every unfinished task some connection watches, and
  sends each connection whatever is newer than what it has (by ``seq``).
- Sessions: Channels authenticates only at connect. Every ``SESSION_CHECK`` seconds
  the loop closes connections whose session has ended (logout, expiry, flush);
  ``user_logged_out`` closes them at once through the owner's group.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import weakref
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver

if TYPE_CHECKING:
    from realtime.consumers import TasksConsumer

logger = logging.getLogger(__name__)

SESSION_CHECK = 15.0

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
    interval = float(settings.TASKLIGHT["RESYNC_INTERVAL"])
    last_session_check = time.monotonic()
    while _consumers:
        await asyncio.sleep(interval)
        try:
            await resync_all()
            if time.monotonic() - last_session_check >= SESSION_CHECK:
                last_session_check = time.monotonic()
                await close_ended_sessions()
        except Exception as exc:
            logger.warning("Tasklight resync pass failed: %s", exc)


async def resync_all() -> int:
    """Send every connection the newer state of the unfinished tasks it watches."""
    from tasks.models import TaskRun
    from tasks.selectors import objects_for_rows

    consumers = [c for c in list(_consumers) if c.unfinished]
    wanted = {task_id for c in consumers for task_id in c.unfinished}
    if not wanted:
        return 0
    rows = [r async for r in TaskRun.objects.filter(id__in=list(wanted))]
    objects = {obj["id"]: obj for obj in await objects_for_rows(rows)}
    owners = {str(r.id): r.owner_key for r in rows}
    sent = 0
    for consumer in consumers:
        owner = consumer.owner
        fresh = [
            objects[t]
            for t in list(consumer.unfinished)
            if t in objects and owner is not None and owners.get(t) == owner.key
        ]
        newer = [o for o in fresh if consumer._is_new(o["id"], o["seq"])]
        if newer:
            sent += len(newer)
            await consumer.send_objects(newer)
    return sent


async def close_ended_sessions() -> None:
    from django.contrib.sessions.models import Session
    from django.utils import timezone

    from realtime.consumers import CLOSE_SESSION_ENDED

    if settings.SESSION_ENGINE != "django.contrib.sessions.backends.db":
        return
    consumers = [c for c in list(_consumers) if c.session_key]
    keys = {c.session_key for c in consumers}
    if not keys:
        return
    alive = {
        k
        async for k in Session.objects.filter(session_key__in=list(keys), expire_date__gt=timezone.now()).values_list(
            "session_key", flat=True
        )
    }
    for consumer in consumers:
        if consumer.session_key not in alive:
            await consumer.close(code=CLOSE_SESSION_ENDED)


@receiver(user_logged_out)
def on_logout(sender: Any, request: Any = None, user: Any = None, **_: Any) -> None:
    """Close the sockets of the session that logs out, at once, in every Daphne process."""
    if user is None or request is None or not getattr(request, "session", None):
        return
    key = request.session.session_key
    if not key:
        return
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from realtime.groups import group_for_owner

    try:
        layer = get_channel_layer()
        async_to_sync(layer.group_send)(group_for_owner(f"u:{user.pk}"), {"type": "session.end", "session": session_tag(key)})
    except Exception as exc:
        logger.warning("Could not announce a logout to open sockets (%s)", exc)
