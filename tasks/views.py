"""The HTTP API (docs/protocol.md): async views, JSON, session + CSRF, owner-scoped.

Every answer of the API is JSON, errors included, whatever the host's own error
pages and CSRF failure view are: ``api`` checks CSRF itself and maps every
``TasklightError`` one way.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from celery import current_app
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import DatabaseError, connection
from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.http.request import RawPostDataException
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt

from tasks import files, live, registry, selectors, services
from tasks.contracts import BadRequest, NotAllowed, NotFound, State, TasklightError
from tasks.owners import owner_for_request

logger = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def error(code: str, detail: str, status: int) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "detail": detail}}, status=status)


def error_response(exc: TasklightError) -> JsonResponse:
    """The one mapping of a TasklightError to an HTTP answer."""
    return JsonResponse({"error": exc.body()}, status=exc.status)


class _CsrfCheck(CsrfViewMiddleware):
    """Django's own CSRF check, answering with the reason instead of the host's failure page."""

    def _reject(self, request: HttpRequest, reason: str) -> Any:
        return reason


def _csrf_failure(request: HttpRequest) -> str | None:
    check = _CsrfCheck(lambda _request: HttpResponse())
    check.process_request(request)
    reason = check.process_view(request, None, (), {})  # type: ignore[arg-type]
    return reason if isinstance(reason, str) else None


def api(*methods: str) -> Callable[[Callable[..., Awaitable[HttpResponseBase]]], Any]:
    """An API view: JSON errors for a wrong method, CSRF, a body too big, a database away."""

    def decorate(view: Callable[..., Awaitable[HttpResponseBase]]) -> Any:
        @csrf_exempt  # checked below, so that a failure is answered in the API's own shape
        @functools.wraps(view)
        async def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if request.method not in methods:
                response = error("method_not_allowed", f"use {' or '.join(methods)}", 405)
                response["Allow"] = ", ".join(methods)
                return response
            try:
                if request.method not in SAFE_METHODS and await sync_to_async(_csrf_failure)(request) is not None:
                    return error(
                        "csrf_failed", "CSRF token missing or incorrect: send the page's CSRF token in the CSRF header", 403
                    )
                return await view(request, *args, **kwargs)
            except TasklightError as exc:
                return error_response(exc)
            except RequestDataTooBig:
                return error("bad_request", "request body too large", 413)
            except RawPostDataException:  # a form body, already read as request.POST
                return error("bad_request", "body must be JSON (Content-Type: application/json)", 400)
            except SuspiciousOperation:  # too many fields, a malformed body
                return error("bad_request", "the request could not be read", 400)
            except DatabaseError:
                logger.warning("Database unavailable for %s", request.path, exc_info=True)
                return error("unavailable", "the database is unavailable; try again shortly", 503)
            except Exception:
                logger.exception("Tasklight API error on %s", request.path)
                return error("internal", "something went wrong on our side", 500)

        return wrapped

    return decorate


@api("GET")
async def launchable(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"tasks": [spec.describe() for spec in registry.all_launchable()]})


@api("GET", "POST")
async def tasks_collection(request: HttpRequest) -> JsonResponse:
    owner = await owner_for_request(request, create=request.method == "POST")
    if request.method == "GET":
        return JsonResponse({"tasks": await selectors.recent_objects(owner)})
    if (request.content_type or "").startswith("multipart/"):  # the CSRF check has read it as a form
        raise BadRequest("body must be JSON (Content-Type: application/json)")
    if len(request.body) > MAX_BODY:
        return error("bad_request", "request body too large", 413)
    try:
        body = services.loads_strict(request.body or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadRequest("body must be JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    if owner is None:
        raise NotAllowed()
    obj = await services.launch(
        owner=owner, name=body.get("name"), params=body.get("params"), address=services.request_address(request)
    )
    return JsonResponse(obj, status=201)


@api("GET")
async def task_detail(request: HttpRequest, task_id: str) -> JsonResponse:
    owner = await owner_for_request(request, create=False)
    row = await selectors.get_owned_row(owner, task_id)
    if row is None:
        raise NotFound()
    obj: dict[str, Any] = dict(await selectors.object_for_row(row))
    user = await request.auser()
    if user.is_staff and row.traceback:
        obj["traceback"] = row.traceback
    return JsonResponse(obj)


@api("POST")
async def task_cancel(request: HttpRequest, task_id: str) -> JsonResponse:
    owner = await owner_for_request(request, create=False)
    if owner is None:
        raise NotFound()
    return JsonResponse(await services.request_cancel(owner=owner, task_id=task_id), status=202)


@api("GET")
async def task_download(request: HttpRequest, task_id: str) -> HttpResponseBase:
    owner = await owner_for_request(request, create=False)
    row = await selectors.get_owned_row(owner, task_id)
    if row is None or row.state != State.SUCCEEDED or not isinstance(row.result, dict) or not row.result.get("download_url"):
        raise NotFound("no such file")
    path = files.find(str(row.id))
    if path is None:
        raise NotFound("the file is no longer available")
    filename = f"{row.name.replace('.', '-')}-{row.id}{path.suffix}"
    return FileResponse(path.open("rb"), as_attachment=True, filename=filename)


@api("GET", "POST", "PUT", "PATCH", "DELETE")
async def api_not_found(request: HttpRequest, rest: str = "") -> JsonResponse:
    raise NotFound("no such resource")


@api("GET")
async def websocket_only(request: HttpRequest) -> JsonResponse:
    """The WebSocket's own path, asked over plain HTTP."""
    response = error("upgrade_required", "this is Tasklight's WebSocket: connect with a WebSocket client", 426)
    response["Upgrade"] = "websocket"
    return response


@api("GET")
async def healthz(request: HttpRequest) -> JsonResponse:
    checks: dict[str, Any] = {}
    failing = []
    probes: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("database", sync_to_async(_db_ping)),
        ("redis", lambda: live.get_client().ping()),
        ("broker", sync_to_async(_broker_ping, thread_sensitive=False)),
    ]
    for name, probe in probes:
        try:
            await probe()
            checks[name] = "ok"
        except Exception:
            checks[name] = "unreachable"
            failing.append(name)
    if failing:
        return JsonResponse({"status": "unavailable", "checks": checks, "failing": failing}, status=503)
    return JsonResponse({"status": "ok", "checks": checks})


def _broker_ping() -> None:
    with current_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)


def _db_ping() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
