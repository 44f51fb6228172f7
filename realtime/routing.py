from __future__ import annotations

from django.urls import path

from realtime.consumers import TasksConsumer

websocket_urlpatterns = [path("ws/tasks/", TasksConsumer.as_asgi())]
