"""One loop per Daphne process that keeps every connection honest (docs/realtime.md).

- Resync: the pub/sub layer loses what is published while Redis is away, and a
  terminal state written to the database may never have reached Redis. Every
  ``RESYNC_INTERVAL`` seconds the loop re-reads, in one query and one Redis round
  trip for the whole process, every unfinished task some connection watches, and
  sends each connection whatever is newer than what it has (by ``seq``).
- Sessions: Channels authenticates only at connect. Every ``SESSION_CHECK`` seconds
  (``TASKLIGHT``) the loop closes connections whose session has ended (expiry,
  flush), and those of a signed-in user who was deactivated or deleted, or whose
  session's auth hash no longer matches the user's ``get_session_auth_hash()`` (it
  changes with the password): the sockets of every session that
  ``django.contrib.auth.get_user`` would now refuse over HTTP. One query for the
  sessions and one for the users of every open socket. The session that changed the
  password itself (``update_session_auth_hash``) holds the new hash and stays.
  ``user_logged_out`` closes a session's sockets at once through its group.
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
from django.contrib.auth import HASH_SESSION_KEY, get_user_model
from django.utils import timezone
from django.utils.crypto import constant_time_compare

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
# The user each signed-in socket was authenticated as at connect (its pk).
_identities: weakref.WeakKeyDictionary[TasksConsumer, Any] = weakref.WeakKeyDictionary()
_task: asyncio.Task[None] | None = None


def session_tag(session_key: str) -> str:
    return hashlib.blake2b(session_key.encode(), digest_size=12).hexdigest()


def register(consumer: TasksConsumer) -> None:
    global _task
    _consumers.add(consumer)
    identity = _identity_at_connect(consumer)
    if identity is not None:
        _identities[consumer] = identity
    loop = asyncio.get_running_loop()
    if _task is None or _task.done() or _task.get_loop() is not loop:
        _task = loop.create_task(_run())


def unregister(consumer: TasksConsumer) -> None:
    _consumers.discard(consumer)
    _identities.pop(consumer, None)


def _identity_at_connect(consumer: TasksConsumer) -> Any:
    """The pk of the user a socket was authenticated as (Channels' AuthMiddleware has
    resolved it before connect), or None for an anonymous socket."""
    scope = getattr(consumer, "scope", None) or {}
    user = scope.get("user")
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return user.pk


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
    """Close the sockets whose session has expired or was deleted (any server-side engine),
    and those whose user no longer holds the authority the socket was opened with."""
    consumers = [c for c in list(_consumers) if c.session_key]
    keys = {c.session_key for c in consumers if c.session_key}
    if not keys:
        return
    alive = await _alive_sessions(keys)
    ended = [c for c in consumers if c.session_key not in alive]
    signed_in = {c: _identities[c] for c in consumers if c.session_key in alive and c in _identities}
    if signed_in:
        users = await _users(set(signed_in.values()))
        ended.extend(c for c, pk in signed_in.items() if not _still_signed_in(users.get(pk), alive[c.session_key or ""]))
    for consumer in ended:
        await consumer.close(code=CLOSE_SESSION_ENDED)


async def _users(pks: set[Any]) -> dict[Any, Any]:
    model = get_user_model()
    return {u.pk: u async for u in model._default_manager.filter(pk__in=pks)}


def _still_signed_in(user: Any, session: dict[str, Any]) -> bool:
    """Would ``django.contrib.auth.get_user`` still give this user for this session's data?"""
    if user is None or not getattr(user, "is_active", True):
        return False
    if not hasattr(user, "get_session_auth_hash"):
        return True
    stored = session.get(HASH_SESSION_KEY)
    if not stored:
        return False
    fallbacks = list(getattr(settings, "SECRET_KEY_FALLBACKS", ()))
    # The current hash (it changes with the password), or one made with a fallback key.
    return bool(
        constant_time_compare(stored, user.get_session_auth_hash())
        or any(
            constant_time_compare(stored, user._get_session_auth_hash(secret=key))  # type: ignore[attr-defined]
            for key in fallbacks
        )
    )


async def _alive_sessions(keys: set[str]) -> dict[str, dict[str, Any]]:
    """The sessions among ``keys`` that are still alive, each with its data."""
    store_class = import_module(settings.SESSION_ENGINE).SessionStore
    if settings.SESSION_ENGINE == "django.contrib.sessions.backends.db":
        model = store_class.get_model_class()  # one query for the whole process
        query = model.objects.filter(session_key__in=list(keys), expire_date__gt=timezone.now())
        decoder = store_class()
        return {k: decoder.decode(data) async for k, data in query.values_list("session_key", "session_data")}

    def read(key: str) -> dict[str, Any] | None:
        store = store_class(key)
        return dict(store.load()) if store.exists(key) else None

    found = {k: await sync_to_async(read)(k) for k in keys}
    return {k: data for k, data in found.items() if data is not None}


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
