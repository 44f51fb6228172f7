"""The one reader of configuration: every setting comes from the environment."""

from __future__ import annotations

import os

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None, *, required: bool = False) -> str:
    """Return the variable, its default, or stop start-up naming it when required."""
    value = os.environ.get(name)
    if value is None or value == "":
        if required:
            raise ImproperlyConfigured(
                f"The environment variable {name} is required but not set. "
                f"Set it (for example in your process manager) and start again."
            )
        return default if default is not None else ""
    return value


def env_bool(name: str, default: bool = False) -> bool:
    """Parse a boolean variable; anything unrecognised is a start-up error."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false).")


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number.") from exc


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number.") from exc


def env_header_pair(name: str) -> tuple[str, str] | None:
    """A "HEADER,value" pair such as "HTTP_X_FORWARDED_PROTO,https" (SECURE_PROXY_SSL_HEADER)."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return None
    parts = [part.strip() for part in raw.split(",")]
    if len(parts) != 2 or not all(parts) or not parts[0].startswith("HTTP_"):
        raise ImproperlyConfigured(
            f"{name}={raw!r} is not a header and a value such as \"HTTP_X_FORWARDED_PROTO,https\"."
        )
    return parts[0], parts[1]
