"""Every contract that crosses a process boundary, typed, in one place (docs/protocol.md).

The states of a run are listed here once: the model's choices, the Lua merge script
(tasks/live.py) and the browser client (tested against this list) all follow it.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

from django.db import models


class State(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATES: frozenset[str] = frozenset({State.SUCCEEDED, State.FAILED, State.CANCELLED})
ACTIVE_STATES: frozenset[str] = frozenset({State.QUEUED, State.RUNNING, State.RETRYING})
# Plain strings, in a fixed order, for the Lua script and the client.
TERMINAL_NAMES: tuple[str, ...] = tuple(str(s) for s in (State.SUCCEEDED, State.FAILED, State.CANCELLED))


class ProgressDict(TypedDict):
    current: float
    total: float | None
    percent: float | None
    message: str


class ErrorDict(TypedDict):
    type: str
    message: str


class TaskObject(TypedDict):
    """The task object: every API answer and every WebSocket message about a task."""

    id: str
    name: str
    label: str
    state: str
    cancel_requested: bool
    progress: ProgressDict
    eta_seconds: float | None
    seq: int
    attempt: int
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    updated_at: str | None
    result: Any
    error: ErrorDict | None
    # Seconds after which the run is stopped and ends failed, TimedOut (None: no limit).
    time_limit: float | None
    traceback: NotRequired[str]


class TaskUpdateEvent(TypedDict):
    """Layer event ``task.update``: one change, its frame encoded once for every watcher."""

    type: Literal["task.update"]
    group: str
    id: str
    seq: int
    state: str
    frame: str


class SessionEndEvent(TypedDict):
    """Layer event ``session.end``: close every socket of a session that logged out."""

    type: Literal["session.end"]
    group: str
    session: str


class ErrorBody(TypedDict):
    code: str
    detail: str


class TasklightError(Exception):
    """A request that cannot be served: the HTTP API and the socket each map it one way."""

    code = "internal"
    status = 500
    detail = "something went wrong on our side"

    def __init__(self, detail: str | None = None, *, task: TaskObject | None = None) -> None:
        super().__init__(detail or self.detail)
        if detail is not None:
            self.detail = detail
        self.task = task  # the task's current object, where the client should see it

    def body(self) -> ErrorBody:
        return {"code": self.code, "detail": self.detail}


class BadRequest(TasklightError):
    code, status, detail = "bad_request", 400, "the request is not valid"


class NotFound(TasklightError):
    code, status, detail = "not_found", 404, "no such task"


class UnknownTask(TasklightError):
    code, status, detail = "unknown_task", 400, "no launchable task has that name"


class InvalidParams(TasklightError):
    code, status, detail = "invalid_params", 400, "the parameters are not valid"


class AlreadyFinished(TasklightError):
    code, status, detail = "already_finished", 409, "the task has already finished"


class TooManyActive(TasklightError):
    code, status = "rate_limited", 429

    def __init__(self, limit: int, detail: str | None = None) -> None:
        super().__init__(detail or f"you already have {limit} unfinished tasks; wait for one to end")
        self.limit = limit


class NotAllowed(TasklightError):
    code, status, detail = "forbidden", 403, "sign in to start tasks"


class Unavailable(TasklightError):
    code, status, detail = "unavailable", 503, "the task queue is unavailable; try again shortly"
