from __future__ import annotations

from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The example site's demo tasks (project/demo/tasks.py); not part of the installable apps."""

    name = "project.demo"
    label = "demo"
    verbose_name = "Tasklight demo tasks"
