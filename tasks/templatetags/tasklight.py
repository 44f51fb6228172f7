"""Template tags: ``{% load tasklight %}`` (docs/integration.md).

- ``{% tasklight_client %}`` in the page's ``<head>``: the client's script and styles and
  its configuration (where Tasklight's HTTP API and WebSocket are mounted). It also gives
  an anonymous visitor an owner id and a CSRF cookie before the socket opens.
  ``{% tasklight_client toasts=False %}`` leaves out the end-of-task notices.
- ``{% tasklight_progress task %}``: a live bar for one task (a task object or an id);
  ``{% tasklight_progress task cancel=True %}`` adds a Cancel button.
- ``{% tasklight_connection %}``: the live / reconnecting / offline badge.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.conf import settings
from django.core.exceptions import SynchronousOnlyOperation
from django.middleware.csrf import get_token
from django.urls import reverse
from django.utils.html import format_html

from tasks.contracts import TERMINAL_NAMES
from tasks.owners import ensure_visitor

register = template.Library()


def client_config() -> dict[str, Any]:
    """What the browser client needs to know: its URLs, wherever ``tasks.urls`` is mounted."""
    launchable = reverse("tasklight:launchable")
    return {
        "api": launchable[: -len("launchable/")],
        "ws": reverse("tasklight:websocket"),
        "terminal": list(TERMINAL_NAMES),
    }


@register.inclusion_tag("tasklight/client.html", takes_context=True)
def tasklight_client(context: template.Context, toasts: bool = True) -> dict[str, Any]:
    # RequestContext has the request even without the "request" context processor.
    request = context.get("request") or getattr(context, "request", None)
    config = client_config()
    if request is not None:
        try:
            ensure_visitor(request)
        except SynchronousOnlyOperation:
            # Rendered inside an async view whose session is not loaded yet: that view
            # awaits tasks.owners.aensure_visitor(request) first (docs/integration.md).
            pass
        # The token Cancel and launch send back, whatever the host's CSRF settings are.
        config["csrf"] = {"token": get_token(request), "header": _header_name(settings.CSRF_HEADER_NAME)}
    return {"config": config, "toasts": toasts}


def _header_name(meta_key: str) -> str:
    """``HTTP_X_CSRFTOKEN`` (Django's META form) -> ``X-CSRFTOKEN`` (what fetch() sends)."""
    return meta_key.removeprefix("HTTP_").replace("_", "-")


@register.simple_tag
def tasklight_progress(task: Any, cancel: bool = False) -> str:
    task_id = task.get("id") if isinstance(task, dict) else getattr(task, "id", task)
    if cancel:
        return format_html('<task-progress task-id="{}" cancel></task-progress>', str(task_id))
    return format_html('<task-progress task-id="{}"></task-progress>', str(task_id))


@register.inclusion_tag("tasklight/connection.html")
def tasklight_connection() -> dict[str, Any]:
    return {}
