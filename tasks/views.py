"""The HTTP API of SPEC.md section 4: async views, JSON, session + CSRF, owner-scoped."""

from __future__ import annotations

import json
import logging
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connection
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from tasks import registry, selectors, services
from tasks.demo import export_path
from tasks.models import State
from tasks.owners import owner_for_request

logger = logging.getLogger(__name__)

MAX_BODY = 64 * 1024


def error(code: str, detail: str, status: int) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "detail": detail}}, status=status)


@ensure_csrf_cookie
@require_GET
async def dashboard(request: HttpRequest) -> HttpResponse:
    await owner_for_request(request)  # gives a first-time visitor an owner id
    return await sync_to_async(render)(request, "tasks/dashboard.html", {})


@require_GET
async def launchable(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"tasks": [spec.describe() for spec in registry.all_launchable()]})


@require_http_methods(["GET", "POST"])
async def tasks_collection(request: HttpRequest) -> JsonResponse:
    owner = await owner_for_request(request, create=request.method == "POST")
    if request.method == "GET":
        return JsonResponse({"tasks": await selectors.recent_objects(owner)})
    if len(request.body) > MAX_BODY:
        return error("bad_request", "request body too large", 413)
    try:
        body = json.loads(request.body or b"null", parse_constant=_reject_constant)
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
    except services.BrokerUnavailable:
        return error("unavailable", "the task queue is unavailable; try again shortly", 503)
    return JsonResponse(obj, status=201)


@require_GET
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


@require_POST
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


@require_GET
async def task_download(request: HttpRequest, task_id: str) -> HttpResponse:
    owner = await owner_for_request(request, create=False)
    row = await selectors.get_owned_row(owner, task_id)
    if row is None or row.state != State.SUCCEEDED or not isinstance(row.result, dict) or not row.result.get("download_url"):
        return error("not_found", "no such file", 404)
    path = export_path(str(row.id))
    if not path.exists():
        return error("not_found", "the file is no longer available", 404)
    return FileResponse(path.open("rb"), as_attachment=True, filename=f"{row.name.replace('.', '-')}-{row.id}.csv")


@require_GET
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
    if failing:
        return JsonResponse({"status": "unavailable", "checks": checks, "failing": failing}, status=503)
    return JsonResponse({"status": "ok", "checks": checks})


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON (RFC 8259) and must never reach params or rows.
    raise ValueError(f"{name} is not valid JSON")


def _db_ping() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
