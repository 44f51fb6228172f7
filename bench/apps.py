from __future__ import annotations

from django.apps import AppConfig


class BenchConfig(AppConfig):
    """Installed by bench/settings.py only: registers the bench tasks in every process."""

    name = "bench"
    label = "bench"
    verbose_name = "Tasklight benchmarks"

    def ready(self) -> None:
        from bench import tasks  # noqa: F401
