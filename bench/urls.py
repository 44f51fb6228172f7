from __future__ import annotations

from django.urls import include, path

urlpatterns = [
    path("celery-progress/", include("celery_progress.urls")),
    path("", include("project.urls")),
]
