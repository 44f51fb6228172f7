from __future__ import annotations

from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    name = "realtime"
    verbose_name = "Tasklight realtime"

    def ready(self) -> None:
        from realtime import monitor  # noqa: F401  (connects the logout signal)
        from realtime.transport import allow_protocol_close_codes

        allow_protocol_close_codes()
