"""Writes to task runs: every state transition, launch and cancel (docs/progress.md).

The row is written first (the durable record), then the change is published through
``tasks.publishing.publish``. Transitions are conditional: a terminal state never
changes. ``start_task`` / ``astart_task`` are the public way for a host's own views to
launch a launchable task for the person making the request.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, TypeVar

from asgiref.sync import SyncToAsync, async_to_sync, sync_to_async
from celery import current_app
from django.db import transaction
from django.http import HttpRequest

from tasks import conf, live, registry, selectors
from tasks.contracts import (
    ACTIVE_STATES,
    TERMINAL_STATES,
    AlreadyFinished,
    NotAllowed,
    NotFound,
    State,
    TaskObject,
    TooManyActive,
    Unavailable,
)
from tasks.models import TaskRun
from tasks.objects import next_seq, now, task_object
from tasks.owners import Owner, owner_for_request
from tasks.publishing import Change, publish

logger = logging.getLogger(__name__)

RESULT_LIMIT = 32 * 1024
T = TypeVar("T")
# The soft time limit comes this long (at most a quarter of the hard one) before the hard one.
SOFT_LIMIT_MARGIN = 10.0
# Advisory-lock classes on PostgreSQL: launches of one owner, then of one client address.
LOCK_OWNER, LOCK_ADDRESS = 0x544C0001, 0x544C0002
# The client address of the WebSocket connection running in this context (set at connect).
_connection_address: ContextVar[str | None] = ContextVar("tasklight_connection_address", default=None)


def json_safe(value: Any) -> Any:
    """A JSON version of a task's result, bounded in size."""
    try:
        # No NaN or Infinity: they are not JSON, and PostgreSQL's jsonb refuses them.
        text = json.dumps(value, default=str, allow_nan=False)
    except (TypeError, ValueError):
        text = json.dumps(repr(value))
    if len(text) > RESULT_LIMIT:
        return {"truncated": True, "preview": text[:1000]}
    return json.loads(text)


def loads_strict(data: str | bytes) -> Any:
    """JSON from a client: NaN and Infinity are not JSON (RFC 8259) and never reach params or rows."""
    return json.loads(data, parse_constant=_reject_constant)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# ---- transitions (sync: called from Celery signal handlers and the watchdog) ----------
def transition(
    task_id: str, *, to: str, allowed_from: frozenset[str], attempt_is: int | None = None, **changes: Any
) -> TaskRun | None:
    """Move a run to ``to`` if it is in ``allowed_from`` (and on attempt ``attempt_is``)."""
    with transaction.atomic():
        row = TaskRun.objects.select_for_update().filter(id=task_id).first()
        if row is None or row.state not in allowed_from:
            return None
        if attempt_is is not None and row.attempt != attempt_is:
            return None  # a later attempt has started already
        moment = now()
        row.state = to
        for name, value in changes.items():
            setattr(row, name, value)
        if to in TERMINAL_STATES and row.finished_at is None:
            row.finished_at = moment
        row.updated_at = moment
        row.seq = next_seq(row.seq)
        row.save()
        return row


def ensure_row(task_id: str, name: str, *, owner_key: str = "", params: Any = None) -> TaskRun:
    """The run's row, created (owner-less, queued) for tasks sent outside Tasklight."""
    row = TaskRun.objects.filter(id=task_id).first()
    if row is not None:
        return row
    moment = now()
    row, _ = TaskRun.objects.get_or_create(
        id=task_id,
        defaults={
            "name": name,
            "label": name,
            "owner_key": owner_key,
            "params": params if isinstance(params, dict) else {},
            "created_at": moment,
            "updated_at": moment,
            "seq": next_seq(0),
        },
    )
    return row


def start_run(task_id: str, name: str, *, attempt: int, worker: str) -> tuple[TaskRun | None, bool]:
    """Mark a run ``running``; (row, skip). ``skip`` means the body must not run."""
    ensure_row(task_id, name)
    row = transition(
        task_id,
        to=State.RUNNING,
        allowed_from=frozenset({State.QUEUED, State.RETRYING, State.RUNNING}),
        attempt=attempt,
        worker=worker[:200],
        error=None,
    )
    if row is None:
        return TaskRun.objects.filter(id=task_id).first(), True
    if row.started_at is None:
        row.started_at = row.updated_at
        row.save(update_fields=["started_at"])
    if row.cancel_requested:
        return row, True
    return row, False


def error_dict(exc: BaseException | None, *, type_name: str | None = None, message: str | None = None) -> dict[str, str]:
    return {
        "type": type_name or (type(exc).__name__ if exc is not None else "Error"),
        "message": (message if message is not None else str(exc))[:1000],
    }


# ---- launch and cancel (async: called from the HTTP API and the consumer) -------------
def request_address(request: Any) -> str | None:
    """The client address of an HTTP request (ASGI: the scope's client; behind a proxy,
    the server must set it from a trusted header, e.g. ``daphne --proxy-headers``)."""
    meta = getattr(request, "META", None) or {}
    return str(meta.get("REMOTE_ADDR") or "") or None


def remember_client(scope: dict[str, Any]) -> None:
    """Note a WebSocket connection's client address for its launches (called at connect)."""
    client = scope.get("client")
    _connection_address.set(str(client[0]) if client else None)


async def astart_task(request: HttpRequest, name: str, params: dict[str, Any] | None = None) -> TaskObject:
    """Launch a launchable task for the person making ``request``; its task object.

    For a host's own async views. Raises a ``tasks.contracts.TasklightError``
    (``UnknownTask``, ``InvalidParams``, ``TooManyActive``, ``NotAllowed``, ``Unavailable``).
    """
    owner = await owner_for_request(request)
    if owner is None:
        raise NotAllowed()
    return await launch(owner=owner, name=name, params=params or {}, address=request_address(request))


def start_task(request: HttpRequest, name: str, params: dict[str, Any] | None = None) -> TaskObject:
    """``astart_task`` for a host's ordinary (sync) views.

    Inside a transaction (``atomic()``, ``ATOMIC_REQUESTS``) the run is created in it and
    sent to Celery, and shown to watchers, only once it commits: a rolled-back view
    starts nothing, as with Celery's ``delay_on_commit``.
    """
    if not transaction.get_connection().in_atomic_block:
        return _from_sync(astart_task, request, name, params)
    row = _from_sync(_create_for_request, request, name, params)
    transaction.on_commit(lambda: _from_sync(_publish_and_send, row), robust=True)
    return task_object(row)


def _from_sync(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``async_to_sync(fn)(*args)``, without leaving a Redis connection behind.

    Under ASGI a sync view's call runs on the server's own loop, whose client stays. Under
    WSGI each call gets an event loop of its own, gone afterwards: its client is closed
    with it. (asgiref marks the threads it runs sync code in for an outer loop.)
    """
    main_loop = getattr(SyncToAsync.threadlocal, "main_event_loop", None)  # may be left from an older call
    outer_loop = main_loop is not None and main_loop.is_running()

    async def call() -> T:
        try:
            return await fn(*args)
        finally:
            if not outer_loop:
                await live.close_client()

    return async_to_sync(call)()


async def _create_for_request(request: HttpRequest, name: str, params: dict[str, Any] | None) -> TaskRun:
    owner = await owner_for_request(request)
    if owner is None:
        raise NotAllowed()
    return await _create_run(owner=owner, name=name, params=params or {}, address=request_address(request))


async def launch(*, owner: Owner, name: Any, params: Any, address: str | None = None) -> TaskObject:
    """Validate, create the run, send it to Celery, publish ``queued``; the task object.

    ``address``: the client's address (an anonymous owner's launches are also limited
    per address); by default the address of the WebSocket connection calling.
    """
    run = await _create_run(owner=owner, name=name, params=params, address=address or _connection_address.get())
    return await _publish_and_send(run)


async def _create_run(*, owner: Owner, name: Any, params: Any, address: str | None = None) -> TaskRun:
    spec = registry.get(name)
    clean = spec.validate(params)
    return await sync_to_async(_insert_within_limits)(owner, spec, clean, address)


def _insert_within_limits(owner: Owner, spec: registry.Launchable, clean: dict[str, Any], address: str | None) -> TaskRun:
    """Create the run unless it takes its owner (or an anonymous owner's address) past a limit.

    Atomic, never check-then-insert: the launch holds a lock from before it counts until
    it commits. PostgreSQL: transaction-scoped advisory locks on the owner (and address),
    always in that order; the count runs after the lock is granted, so under READ
    COMMITTED (Django's default) it sees every run committed by the previous holder.
    SQLite: the insert comes first and takes the database's write lock, which serialises
    every writer until commit; the count then sees all committed runs and this one.
    Counting rows (rather than keeping a counter) means no state change elsewhere can make
    the limit drift.
    """
    settings = conf.get()
    anonymous = owner.user_id is None
    address = (address or "")[:64] if anonymous else ""
    time_limit = spec.time_limit or settings.LAUNCH_TIME_LIMIT
    with transaction.atomic():
        connection = transaction.get_connection()
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [LOCK_OWNER, owner.key])
                if address:
                    cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [LOCK_ADDRESS, address])
        moment = now()
        row = TaskRun.objects.create(
            name=spec.name,
            label=spec.make_label(clean)[:300],
            owner_key=owner.key,
            user_id=owner.user_id,
            params=clean,
            client_address=address,
            time_limit=time_limit,
            created_at=moment,
            updated_at=moment,
            seq=next_seq(0),
        )
        active = TaskRun.objects.filter(state__in=ACTIVE_STATES)
        if active.filter(owner_key=owner.key).count() > settings.MAX_ACTIVE_PER_OWNER:
            raise TooManyActive(settings.MAX_ACTIVE_PER_OWNER)  # rolls the insert back
        if address and active.filter(client_address=address).count() > settings.MAX_ACTIVE_PER_ADDRESS:
            raise TooManyActive(
                settings.MAX_ACTIVE_PER_ADDRESS,
                detail="too many unfinished tasks from your network; sign in, or wait for one to end",
            )
    return row


async def _publish_and_send(row: TaskRun) -> TaskObject:
    """Publish ``queued``, then send the run to Celery; a broker that refuses fails the run."""
    # Published before it is sent, so "queued" can never arrive after the worker's "running".
    queued = await publish_row(row)
    try:
        await sync_to_async(_send_to_broker, thread_sensitive=False)(row)
    except Exception as exc:
        logger.warning("Could not send %s to the broker: %s", row.id, exc)
        failed = await sync_to_async(transition)(
            str(row.id),
            to=State.FAILED,
            allowed_from=ACTIVE_STATES,
            error=error_dict(exc, type_name="BrokerUnavailable", message="The task queue is unavailable; try again."),
        )
        obj = task_object(failed or row)
        await publish_row(failed or row)
        raise Unavailable(task=obj) from exc
    return queued or task_object(row)


def time_limits(hard: float | None) -> dict[str, float]:
    """Celery's ``time_limit`` and ``soft_time_limit`` for a hard limit in seconds."""
    if not hard:
        return {}
    return {"time_limit": hard, "soft_time_limit": hard - min(SOFT_LIMIT_MARGIN, hard / 4)}


def _send_to_broker(row: TaskRun) -> None:
    current_app.tasks[row.name].apply_async(kwargs=row.params, task_id=str(row.id), **time_limits(row.time_limit))


async def publish_row(row: TaskRun, only: tuple[str, ...] | None = None, *, cancel: bool = False) -> TaskObject | None:
    """Publish a change of the row from an async caller; the published object, or None."""
    change = Change.of_row(row, only)
    change.cancel = cancel
    try:
        return await publish(change)
    except Exception as exc:
        # The row holds the truth; watchers catch up by resync when Redis is back.
        logger.warning("Could not publish %s (%s)", row.id, exc)
        return None


async def request_cancel(*, owner: Owner, task_id: str) -> TaskObject:
    """Record a cancel request for one of the owner's runs; the task object.

    Queued or retrying: cancelled at once, revoked, and checked again before its body
    runs. Running: ``cancel_requested`` is recorded; the worker's reporter raises at its
    next report, and the watchdog stops it after the grace period if it does not.
    """
    row = await selectors.get_owned_row(owner, task_id)
    if row is None:
        raise NotFound()
    updated, finished = await sync_to_async(_record_cancel)(str(row.id))
    if updated is None:
        raise AlreadyFinished(task=await selectors.object_for_row(finished or row))
    running = updated.state == State.RUNNING
    if not running:
        await sync_to_async(_revoke, thread_sensitive=False)(str(updated.id))
    changed: tuple[str, ...] = ("cancel_requested", "updated_at")
    if updated.state == State.CANCELLED:
        changed += ("state", "finished_at", "error")
    # Running: the publish raises the cancel flag that the worker hears (or polls).
    published = await publish_row(updated, only=changed, cancel=running)
    return published or await selectors.object_for_row(updated)


def _record_cancel(task_id: str) -> tuple[TaskRun | None, TaskRun | None]:
    with transaction.atomic():
        row = TaskRun.objects.select_for_update().filter(id=task_id).first()
        if row is None or row.state in TERMINAL_STATES:
            return None, row
        moment = now()
        if not row.cancel_requested:
            row.cancel_requested = True
            row.cancel_requested_at = moment
        if row.state in (State.QUEUED, State.RETRYING):
            row.state = State.CANCELLED
            row.finished_at = moment
            row.error = None
        row.updated_at = moment
        row.seq = next_seq(row.seq)
        row.save()
        return row, row


def _revoke(task_id: str) -> None:
    try:
        current_app.control.revoke(task_id)
    except Exception as exc:  # The prerun check still stops it.
        logger.warning("Could not broadcast revoke for %s (%s)", task_id, exc)
