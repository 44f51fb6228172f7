"""Tasklight's delivery app (label ``tasklight_realtime``): the WebSocket and its hub."""

from __future__ import annotations

from django.apps import AppConfig


class TasklightRealtimeConfig(AppConfig):
    name = "realtime"
    label = "tasklight_realtime"
    verbose_name = "Tasklight realtime"

    def ready(self) -> None:
        from importlib.util import find_spec

        from django.apps import apps
        from django.core.exceptions import ImproperlyConfigured

        if "tasklight" not in {config.label for config in apps.get_app_configs()}:
            spec = find_spec("tasks")
            found = f" ('tasks' is {spec.origin}: a package of this project hides Tasklight's; rename it)" if spec else ""
            raise ImproperlyConfigured(f"Tasklight's 'realtime' app needs Tasklight's 'tasks' app in INSTALLED_APPS{found}.")
        from django.contrib.auth.signals import user_logged_out

        from realtime import monitor

        user_logged_out.connect(monitor.on_logout, dispatch_uid="tasklight.on_logout")
