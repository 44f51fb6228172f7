"""``/ws/tasks/``: the WebSocket protocol (docs/protocol.md).

Thin: authenticate (at connect), authorize every task id against the owner, validate
each frame, delegate to tasks/ selectors and services, and turn layer events into
frames. Ordering: the consumer remembers the highest ``seq`` it sent per task and
drops anything older, so a snapshot and the live stream together never go backwards.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer

from realtime import monitor
from realtime.fanout import hub
from realtime.transport import CLOSE_POLICY, CLOSE_SESSION_ENDED, CLOSE_TOO_BIG, CLOSE_TOO_MANY
from tasks import conf, selectors, services
from tasks.contracts import TERMINAL_STATES, AlreadyFinished, NotAllowed, NotFound, TasklightError, TaskObject
from tasks.groups import group_for_owner, group_for_session, group_for_task
from tasks.owners import Owner, owner_for_scope

logger = logging.getLogger(__name__)

MAX_FRAME = 64 * 1024
RATE = 20.0  # messages per second, sustained
BURST = 40.0  # messages allowed at once
STRIKES = 20  # rate-limited messages in a row before the connection is closed
SUBSCRIBE_COST = 5.0  # tokens a subscribe takes
TERMINAL = frozenset(str(s) for s in TERMINAL_STATES)

# Owned by this module: open sockets of this process per session key and per client
# address (TASKLIGHT["MAX_SOCKETS_PER_SESSION"] and ["MAX_SOCKETS_PER_ADDRESS"]).
_open_per_session: dict[str, int] = {}
_open_per_address: dict[str, int] = {}


def _count(table: dict[str, int], key: str | None, step: int) -> int:
    if not key:
        return 0
    value = table.get(key, 0) + step
    if value > 0:
        table[key] = value
    else:
        table.pop(key, None)
    return value


class TasksConsumer(AsyncWebsocketConsumer):
    owner: Owner | None
    session_key: str | None
    # No channel of its own: updates reach a connection through its process's hub
    # (realtime/fanout.py), so a per-socket layer subscription in Redis would only cost
    # memory. get_channel_layer() answers None for an alias that is not configured, and
    # Channels then gives the consumer no channel (channels/consumer.py).
    channel_layer_alias = "tasklight.none"
    # True once a close has begun (by the server or the client): no frame is handled or
    # sent after it, and the connection has left its groups and the monitor.
    closing = False
    _counted: tuple[str | None, str | None] | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # Whatever ended the consumer (a disconnect, an exception, a cancelled task),
            # it leaves the hub's groups and the monitor.
            self.closing = True
            await self._leave_everything()

    async def connect(self) -> None:
        # State first: disconnect() runs even when the rest of connect() fails.
        self.owner = None
        self.session_key = None
        self.session_group: str | None = None
        self.watch_all = False
        self.watched: set[str] = set()
        self.seqs: dict[str, int] = {}
        self.unfinished: set[str] = set()
        self.tokens = BURST
        self.tokens_at = time.monotonic()
        self.strikes = 0
        # Events that arrive while a snapshot is being read and sent wait here (see watch()).
        self.held: list[tuple[str, Any]] | None = None
        self.owner = await owner_for_scope(self.scope)
        # Read after owner_for_scope has loaded the session: a stale cookie gives None.
        self.session_key = getattr(self.scope.get("session"), "session_key", None)
        services.remember_client(self.scope)  # an anonymous owner's launches count per address too
        settings = conf.get()
        client = self.scope.get("client")
        address = str(client[0]) if client else None
        self._counted = (self.session_key, address)
        per_session = _count(_open_per_session, self.session_key, 1)
        per_address = _count(_open_per_address, address, 1)
        await self.accept()
        if per_session > settings.MAX_SOCKETS_PER_SESSION or per_address > settings.MAX_SOCKETS_PER_ADDRESS:
            logger.info("Closing a WebSocket: too many open sockets for its session or address %s", address)
            await self.close(code=CLOSE_TOO_MANY)
            return
        monitor.register(self)
        if self.session_key:
            # Logout closes every socket of the session at once, whatever it watches.
            try:
                await hub().join(group_for_session(self.session_key), self)
                self.session_group = group_for_session(self.session_key)
            except Exception as exc:  # the monitor's session check still closes it
                logger.warning("Could not join the session group (%s)", exc)

    async def disconnect(self, code: int) -> None:
        self.closing = True
        await self._leave_everything()

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        """Close once; from then on nothing is handled or sent, and every group is left."""
        if self.closing:
            return
        self.closing = True
        try:
            await super().close(code=code, reason=reason)
        except Exception as exc:  # the transport is gone already
            logger.debug("Could not send a close frame (%s)", exc)
        await self._leave_everything()

    async def send(self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False) -> None:
        if self.closing:
            return
        try:
            await super().send(text_data=text_data, bytes_data=bytes_data, close=close)
        except Exception as exc:  # e.g. "Attempt to send on a closed protocol"
            logger.debug("Could not send on a WebSocket, closing it (%s)", exc)
            self.closing = True
            await self._leave_everything()

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        if self.closing:
            return  # frames queued before the close are not handled
        await super().websocket_receive(message)

    async def _leave_everything(self) -> None:
        """Leave the monitor and every hub group; safe to call more than once."""
        monitor.unregister(self)
        counted, self._counted = self._counted, None
        if counted is not None:
            _count(_open_per_session, counted[0], -1)
            _count(_open_per_address, counted[1], -1)
        groups = [group_for_task(task_id) for task_id in getattr(self, "watched", ())]
        if getattr(self, "watch_all", False) and self.owner is not None:
            groups.append(group_for_owner(self.owner.key))
        if getattr(self, "session_group", None):
            groups.append(self.session_group)  # type: ignore[arg-type]
        fanout = hub()
        for group in groups:
            try:
                await fanout.leave(group, self)
            except Exception as exc:  # Redis away: the subscription dies with the process's connection
                logger.info("Could not leave %s (%s)", group, exc)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels closes stale database connections (a hop to the sync thread) before
        # every handler; only WebSocket events (client frames) can touch the database here.
        if message["type"].startswith("websocket."):
            await super().dispatch(message)
            return
        handler = getattr(self, message["type"].replace(".", "_"), None)
        if handler is None:
            await super().dispatch(message)  # raises for an unknown type, as Channels does
            return
        await handler(message)

    # ---- client frames ----------------------------------------------------------------
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is not None:
            size = len(text_data)
            if size * 4 > MAX_FRAME:  # the limit is in bytes; count them only when it matters
                size = len(text_data.encode("utf-8", "surrogatepass"))
        else:
            size = len(bytes_data or b"")
        if size > MAX_FRAME:
            await self.close(code=CLOSE_TOO_BIG)
            return
        if not self._take_token(1.0):
            await self._rate_limited()
            return
        if text_data is None:
            await self.send_error("bad_request", "binary frames are not supported; send JSON text")
            return
        try:
            message = services.loads_strict(text_data)
        except (ValueError, RecursionError):
            await self.send_error("bad_request", "frame is not valid JSON")
            return
        if not isinstance(message, dict):
            await self.send_error("bad_request", "frame must be a JSON object")
            return
        kind = message.get("type")
        handler = self.HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None:
            await self.send_error("bad_request", "unknown message type", echo=_short(kind))
            return
        # A subscribe answers with up to RECENT_LIMIT objects: it costs more than a ping
        # (the parsed type decides, however the frame spells it).
        if kind == "subscribe" and not self._take_token(SUBSCRIBE_COST - 1.0):
            await self._rate_limited()
            return
        try:
            await handler(self, message)
        except TasklightError as exc:
            await self.send_failure(exc)
        except Exception:
            logger.warning("Could not serve a %s request", kind, exc_info=True)
            await self.send_error("unavailable", "the request could not be served now; try again")

    async def _rate_limited(self) -> None:
        self.strikes += 1
        if self.strikes > STRIKES:
            await self.close(code=CLOSE_POLICY)
        else:
            await self.send_error("rate_limited", "too many messages; slow down")

    def _take_token(self, cost: float = 1.0) -> bool:
        clock = time.monotonic()
        self.tokens = min(BURST, self.tokens + (clock - self.tokens_at) * RATE)
        self.tokens_at = clock
        if self.tokens >= BURST:
            self.strikes = 0  # a client that calmed down starts afresh
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False

    async def on_subscribe(self, message: dict[str, Any]) -> None:
        if "task_id" not in message or message["task_id"] is None:
            await self.subscribe_all()
            return
        task_id = selectors.parse_task_id(message["task_id"])
        if task_id is None:
            await self.send_error("bad_request", "task_id must be a task id (UUID)")
            return
        row = await selectors.get_owned_row(self.owner, task_id)
        if row is None:
            await self.send_error("not_found", "no such task", task_id=task_id)
            return
        newly = task_id not in self.watched
        self.watched.add(task_id)

        async def read() -> list[TaskObject]:
            found = await selectors.get_owned_row(self.owner, task_id)
            return await selectors.objects_for_rows([found]) if found else []

        try:
            await self.watch(group_for_task(task_id), read)
        except Exception:
            if newly:
                self.watched.discard(task_id)
                await hub().leave(group_for_task(task_id), self)
            raise

    async def subscribe_all(self) -> None:
        owner = self.owner
        was = self.watch_all
        self.watch_all = owner is not None
        try:
            await self.watch(group_for_owner(owner.key) if owner else None, lambda: selectors.recent_objects(owner))
        except Exception:
            self.watch_all = was
            if not was and owner is not None:
                await hub().leave(group_for_owner(owner.key), self)
            raise

    async def watch(self, group: str | None, read: Any) -> None:
        """Join ``group``, then read and send the snapshot; the two are atomic together.

        Updates delivered between the join and the snapshot are held, then released
        through the seq filter: older ones are dropped, newer ones follow the snapshot.
        """
        if self.closing:
            return  # closed while the request was read: join nothing
        self.held = [] if self.held is None else self.held
        try:
            if group is not None:
                await hub().join(group, self)
            await self.send_snapshot(await read())
        finally:
            held, self.held = self.held or [], None
            for kind, item in held:
                if kind == "event":
                    await self.deliver(item)
                else:
                    await self.send_objects(item)

    async def on_unsubscribe(self, message: dict[str, Any]) -> None:
        if message.get("task_id") is None:
            was, self.watch_all = self.watch_all, False
            if was and self.owner is not None:
                await hub().leave(group_for_owner(self.owner.key), self)
            return
        task_id = selectors.parse_task_id(message["task_id"])
        if task_id is None:
            await self.send_error("bad_request", "task_id must be a task id (UUID)")
            return
        if task_id in self.watched:
            self.watched.discard(task_id)
            await hub().leave(group_for_task(task_id), self)
        if not self.watch_all:
            self.unfinished.discard(task_id)

    async def on_cancel(self, message: dict[str, Any]) -> None:
        task_id = selectors.parse_task_id(message.get("task_id"))
        if task_id is None:
            await self.send_error("bad_request", "task_id must be a task id (UUID)")
            return
        if self.owner is None:
            await self.send_error("not_found", "no such task", task_id=task_id)
            return
        try:
            obj = await services.request_cancel(owner=self.owner, task_id=task_id)
        except (NotFound, AlreadyFinished) as exc:
            await self.send_failure(exc, task_id=task_id)
            return
        await self.send_objects([obj])

    async def on_launch(self, message: dict[str, Any]) -> None:
        if self.owner is None:
            if not conf.get().ALLOW_ANONYMOUS:
                raise NotAllowed()  # as the HTTP API answers: 403 forbidden there, "forbidden" here
            await self.send_error("bad_request", "no session: load the page first")
            return
        obj = await services.launch(owner=self.owner, name=message.get("name"), params=message.get("params"))
        await self.send_objects([obj])

    async def on_ping(self, message: dict[str, Any]) -> None:
        await self.send(text_data='{"type":"pong"}')

    HANDLERS = {
        "subscribe": on_subscribe,
        "unsubscribe": on_unsubscribe,
        "cancel": on_cancel,
        "launch": on_launch,
        "ping": on_ping,
    }

    # ---- frames to the client --------------------------------------------------------
    async def send_failure(self, exc: TasklightError, **extra: Any) -> None:
        """The one mapping of a TasklightError to the socket: an error frame (and the task)."""
        await self.send_error(exc.code, exc.detail, **extra)
        if exc.task is not None:
            await self.send_objects([exc.task])

    async def send_error(self, code: str, detail: str, **extra: Any) -> None:
        await self.send(text_data=json.dumps({"type": "error", "code": code, "detail": detail, **extra}))

    async def send_snapshot(self, objects: Sequence[TaskObject]) -> None:
        # Never an object older than one this connection already sent (a snapshot read
        # while Redis is away knows only the rows): per-task seq order holds throughout.
        objects = [o for o in objects if o["seq"] >= self.seqs.get(o["id"], -1)]
        for obj in objects:
            if self._is_new(obj["id"], obj["seq"]):
                self._remember(obj["id"], obj["seq"], obj["state"])
        await self.send(text_data=json.dumps({"type": "snapshot", "tasks": objects}, separators=(",", ":")))

    async def send_objects(self, objects: Sequence[TaskObject]) -> None:
        """Send each object that is newer than what this connection has already had."""
        if self.held is not None:
            self.held.append(("objects", objects))
            return
        for obj in objects:
            if self._is_new(obj["id"], obj["seq"]):
                self._remember(obj["id"], obj["seq"], obj["state"])
                await self.send(text_data=json.dumps({"type": "task", "task": obj}, separators=(",", ":")))

    def watches(self, task_id: str) -> bool:
        return self.watch_all or task_id in self.watched

    def _is_new(self, task_id: str, seq: int) -> bool:
        return seq > self.seqs.get(task_id, -1)

    def _remember(self, task_id: str, seq: int, state: str) -> None:
        self.seqs[task_id] = seq
        if state in TERMINAL:
            self.unfinished.discard(task_id)
        else:
            self.unfinished.add(task_id)

    # ---- channel-layer events, delivered by this process's hub (realtime/fanout.py) ------
    async def deliver(self, event: dict[str, Any]) -> None:
        if self.held is not None:
            self.held.append(("event", event))
            return
        kind = event.get("type")
        if kind == "task.update":
            await self.task_update(event)
        elif kind == "session.end":
            await self.session_end(event)

    async def task_update(self, event: dict[str, Any]) -> None:
        """A task changed: forward the pre-encoded frame if it is news to this client."""
        task_id = event["id"]
        if not self.watches(task_id) or not self._is_new(task_id, event["seq"]):
            return
        self._remember(task_id, event["seq"], event["state"])
        if self.closing:
            return
        await self.base_send({"type": "websocket.send", "text": event["frame"]})

    async def session_end(self, event: dict[str, Any]) -> None:
        if self.session_key and event.get("session") == monitor.session_tag(self.session_key):
            await self.close(code=CLOSE_SESSION_ENDED)


def _short(value: Any) -> Any:
    if isinstance(value, str):
        return value[:50]
    return None
