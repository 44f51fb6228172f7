"""The WebSocket route, at the same prefix as Tasklight's HTTP URLs (docs/integration.md).

In the host's ``asgi.py``::

    from realtime.routing import websocket_urlpatterns
    ... URLRouter(websocket_urlpatterns())

The path is ``reverse("tasklight:websocket")``: mount ``tasks.urls`` at ``tasklight/``
and the socket is ``/tasklight/ws/tasks/``, as the client (``{% tasklight_client %}``)
expects.
"""

from __future__ import annotations

from django.urls import URLPattern, path, reverse

from realtime.consumers import TasksConsumer
from realtime.transport import allow_protocol_close_codes


def websocket_path() -> str:
    """The socket's path without its leading slash, e.g. ``tasklight/ws/tasks/``."""
    return reverse("tasklight:websocket").lstrip("/")


def websocket_urlpatterns() -> list[URLPattern]:
    """Tasklight's WebSocket route, for the host's ``URLRouter``.

    Only the ASGI entry point builds it, so Daphne's close codes are adjusted there
    (realtime/transport.py), never in a worker or a management command.
    """
    allow_protocol_close_codes()
    return [path(websocket_path(), TasksConsumer.as_asgi())]
