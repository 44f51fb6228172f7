"""Typed access to Tasklight's settings (``settings.TASKLIGHT``, read from the environment)."""

from __future__ import annotations

from typing import Any

from django.conf import settings


def tasklight(name: str) -> Any:
    """One Tasklight setting by name (see project/settings.py for each one's meaning)."""
    return settings.TASKLIGHT[name]
