from __future__ import annotations

from django.apps import AppConfig


class TasksConfig(AppConfig):
    name = "tasks"
    verbose_name = "Tasklight tasks"

    def ready(self) -> None:
        # Register the lifecycle signal handlers and the demo tasks in every process.
        from tasks import demo, lifecycle  # noqa: F401
