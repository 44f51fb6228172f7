"""Tasklight's task app (label ``tasklight``): runs, progress, cancellation, the HTTP API."""

from __future__ import annotations

from django.apps import AppConfig


class TasklightConfig(AppConfig):
    name = "tasks"
    label = "tasklight"
    verbose_name = "Tasklight"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Only signals and checks: no Celery app is made, no task class replaced, no task imported.
        from tasks import checks  # noqa: F401  (registers the system checks)
        from tasks.worker import lifecycle

        lifecycle.connect()
