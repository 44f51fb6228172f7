"""The HTTP API of SPEC.md section 4: async views, JSON, session + CSRF, owner-scoped."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, connection
from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.shortcuts import render
from django.views.csrf import csrf_failure as default_csrf_failure
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET
from django.views.defaults import page_not_found as default_page_not_found
from django.views.defaults import server_error as default_server_error

from tasks import registry, selectors, services
from tasks.demo import export_path
from tasks.models import State
from tasks.owners import owner_for_request

logger = logging.getLogger(__name__)

MAX_BODY = 64 * 1024


def error(code: str, detail: str, status: int) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "detail": detail}}, status=status)


def api(*methods: str) -> Callable[[Callable[..., Awaitable[HttpResponseBase]]], Any]:
    """An API view: JSON errors for a wrong method, a body too big, or a database away."""

    def decorate(view: Callable[..., Awaitable[HttpResponseBase]]) -> Any:
        @functools.wraps(view)
        async def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if request.method not in methods:
                response = error("method_not_allowed", f"use {' or '.join(methods)}", 405)
                response["Allow"] = ", ".join(methods)
                return response
            try:
                return await view(request, *args, **kwargs)
            except RequestDataTooBig:
                return error("bad_request", "request body too large", 413)
            except DatabaseError:
                logger.warning("Database unavailable for %s", request.path, exc_info=True)
                return error("unavailable", "the database is unavailable; try again shortly", 503)

        return wrapped

    return decorate


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF_FAILURE_VIEW: the API answers in its own error shape; pages as Django does."""
    if request.path.startswith("/api/"):
        return error("csrf_failed", "CSRF token missing or incorrect: send the csrftoken cookie's value as X-CSRFToken", 403)
    return default_csrf_failure(request, reason=reason)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        return error("not_found", "no such resource", 404)
    return default_page_not_found(request, exception)  # type: ignore[arg-type]


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/api/"):
        return error("internal", "something went wrong on our side", 500)
    return default_server_error(request)


@ensure_csrf_cookie
@require_GET
async def dashboard(request: HttpRequest) -> HttpResponse:
    await owner_for_request(request)  # gives a first-time visitor an owner id
    return await sync_to_async(render)(request, "tasks/dashboard.html", {})


@api("GET")
async def launchable(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"tasks": [spec.describe() for spec in registry.all_launchable()]})


@api("GET", "POST")
async def tasks_collection(request: HttpRequest) -> JsonResponse:
    owner = await owner_for_request(request, create=request.method == "POST")
    if request.method == "GET":
        return JsonResponse({"tasks": await selectors.recent_objects(owner)})
    if len(request.body) > MAX_BODY:
        return error("bad_request", "request body too large", 413)
    try:
        body = services.loads_strict(request.body or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError):
        return error("bad_request", "body must be JSON", 400)
    if not isinstance(body, dict):
        return error("bad_request", "body must be a JSON object", 400)
    try:
        obj = await services.launch(owner=owner, name=body.get("name"), params=body.get("params"))  # type: ignore[arg-type]
    except registry.UnknownTask:
        return error("unknown_task", "no launchable task has that name", 400)
    except registry.InvalidParams as exc:
        return error("invalid_params", str(exc), 400)
    except services.TooManyActive as exc:
        return error("rate_limited", f"you already have {exc.args[0]} unfinished tasks; wait for one to end", 429)
    except services.BrokerUnavailable:
        return error("unavailable", "the task queue is unavailable; try again shortly", 503)
    return JsonResponse(obj, status=201)


@api("GET")
async def task_detail(request: HttpRequest, task_id: str) -> JsonResponse:
    owner = await owner_for_request(request, create=False)
    row = await selectors.get_owned_row(owner, task_id)
    if row is None:
        return error("not_found", "no such task", 404)
    obj = await selectors.object_for_row(row)
    user = await request.auser()
    if user.is_staff and row.traceback:
        obj["traceback"] = row.traceback
    return JsonResponse(obj)


@api("POST")
async def task_cancel(request: HttpRequest, task_id: str) -> JsonResponse:
    owner = await owner_for_request(request, create=False)
    if owner is None:
        return error("not_found", "no such task", 404)
    try:
        obj = await services.request_cancel(owner=owner, task_id=task_id)
    except services.NotFound:
        return error("not_found", "no such task", 404)
    except services.AlreadyFinished:
        return error("already_finished", "the task has already finished", 409)
    return JsonResponse(obj, status=202)


@api("GET")
async def task_download(request: HttpRequest, task_id: str) -> HttpResponseBase:
    owner = await owner_for_request(request, create=False)
    row = await selectors.get_owned_row(owner, task_id)
    if row is None or row.state != State.SUCCEEDED or not isinstance(row.result, dict) or not row.result.get("download_url"):
        return error("not_found", "no such file", 404)
    path = export_path(str(row.id))
    if not path.exists():
        return error("not_found", "the file is no longer available", 404)
    return FileResponse(path.open("rb"), as_attachment=True, filename=f"{row.name.replace('.', '-')}-{row.id}.csv")


@api("GET")
async def healthz(request: HttpRequest) -> JsonResponse:
    checks: dict[str, Any] = {}
    failing = []
    try:
        await sync_to_async(_db_ping)()
        checks["database"] = "ok"
    except Exception:
        checks["database"] = "unreachable"
        failing.append("database")
    try:
        from realtime.live import get_client

        await get_client().ping()
        checks["redis"] = "ok"
    except Exception:
        checks["redis"] = "unreachable"
        failing.append("redis")
    try:
        await sync_to_async(_broker_ping, thread_sensitive=False)()
        checks["broker"] = "ok"
    except Exception:
        checks["broker"] = "unreachable"
        failing.append("broker")
    if failing:
        return JsonResponse({"status": "unavailable", "checks": checks, "failing": failing}, status=503)
    return JsonResponse({"status": "ok", "checks": checks})


def _broker_ping() -> None:
    from celery import current_app

    with current_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)


def _db_ping() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
