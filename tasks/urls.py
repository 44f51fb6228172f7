"""Tasklight's HTTP URLs, namespace ``tasklight``: mount them at any prefix.

    path("tasklight/", include("tasks.urls"))

The WebSocket is served at the same prefix (``ws/tasks/``, see realtime/routing.py).
"""

from __future__ import annotations

from django.urls import path, re_path

from tasks import views

app_name = "tasklight"

urlpatterns = [
    path("api/launchable/", views.launchable, name="launchable"),
    path("api/tasks/", views.tasks_collection, name="tasks"),
    path("api/tasks/<str:task_id>/", views.task_detail, name="task-detail"),
    path("api/tasks/<str:task_id>/cancel/", views.task_cancel, name="task-cancel"),
    path("api/tasks/<str:task_id>/download/", views.task_download, name="task-download"),
    path("ws/tasks/", views.websocket_only, name="websocket"),
    path("healthz", views.healthz, name="healthz"),
    re_path(r"^api/(?P<rest>.*)$", views.api_not_found),
]
