"""The WebSocket route, at the same prefix as Tasklight's HTTP URLs (docs/integration.md).

In the host's ``asgi.py``::

    from realtime.routing import websocket_application, websocket_urlpatterns
    ... websocket_application(AuthMiddlewareStack(URLRouter(websocket_urlpatterns())))

The path is ``reverse("tasklight:websocket")``: mount ``tasks.urls`` at ``tasklight/``
and the socket is ``/tasklight/ws/tasks/``, as the client (``{% tasklight_client %}``)
expects. ``websocket_application`` checks the handshake's Origin exactly and refuses
unknown paths cleanly (realtime/security.py).
"""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern, path, reverse

from realtime.consumers import TasksConsumer
from realtime.security import CloseUnknownPaths, OriginValidator
from realtime.transport import allow_protocol_close_codes
from tasks import conf


def websocket_path() -> str:
    """The socket's path without its leading slash, e.g. ``tasklight/ws/tasks/``."""
    return reverse("tasklight:websocket").lstrip("/")


def websocket_urlpatterns() -> list[URLPattern]:
    """Tasklight's WebSocket route, for the host's ``URLRouter``.

    Only the ASGI entry point builds it, so Daphne's WebSocket protocol is adjusted
    there (realtime/transport.py), never in a worker or a management command.
    """
    allow_protocol_close_codes(conf.get().MAX_SOCKET_BUFFER)
    return [path(websocket_path(), TasksConsumer.as_asgi())]


def websocket_application(inner: Any) -> Any:
    """The host's WebSocket stack, guarded: Origin checked exactly, unknown paths refused (403)."""
    return OriginValidator(CloseUnknownPaths(inner))
