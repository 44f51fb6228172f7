from __future__ import annotations

from django.urls import path

from tasks import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("api/launchable/", views.launchable, name="launchable"),
    path("api/tasks/", views.tasks_collection, name="tasks"),
    path("api/tasks/<str:task_id>/", views.task_detail, name="task-detail"),
    path("api/tasks/<str:task_id>/cancel/", views.task_cancel, name="task-cancel"),
    path("api/tasks/<str:task_id>/download/", views.task_download, name="task-download"),
    path("healthz", views.healthz, name="healthz"),
]
