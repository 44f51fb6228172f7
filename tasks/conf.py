"""Tasklight's settings: one ``TASKLIGHT`` dict, a default for every key (docs/integration.md).

Read once into a typed object (``get()``) and read again when a test changes the
setting. Wrong values are reported by ``manage.py check`` (tasks/checks.py); at run
time ``get()`` raises ``ImproperlyConfigured`` naming the key, never ``KeyError``.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

# Every key a host may set, with its default. Seconds unless the name says otherwise.
DEFAULTS: dict[str, Any] = {
    # Redis for Tasklight's live records, cancel flags and heartbeats. None: the first
    # host of the channel layer below.
    "REDIS_URL": None,
    # Every Redis key and pub/sub channel Tasklight makes starts with this.
    "REDIS_PREFIX": "tasklight",
    # The alias in CHANNEL_LAYERS that carries updates (a Redis layer, never in-memory).
    "CHANNEL_LAYER": "default",
    # Track every Celery task (True), or only those built on tasks.base.TrackedTask.
    "TRACK_ALL_TASKS": False,
    # Modules of installed apps that are imported to find @launchable tasks.
    "LAUNCHABLE_MODULES": ("tasks", "launchables"),
    # May visitors who are not signed in own, start and watch tasks (by their session)?
    "ALLOW_ANONYMOUS": True,
    # Seconds between two publishes of one task's progress (about 10 a second).
    "PUBLISH_INTERVAL": 0.1,
    # A running task whose heartbeat is older than this is "worker lost".
    "HEARTBEAT_TIMEOUT": 20.0,
    # A cancel that the task has not honoured after this many seconds is enforced.
    "CANCEL_GRACE": 10.0,
    # Seconds between SIGTERM and SIGKILL when a cancel is enforced.
    "KILL_AFTER": 3.0,
    # How often the worker-side watchdog looks for lost workers and overdue cancels.
    "WATCHDOG_INTERVAL": 1.0,
    # Consumers re-read what they watch this often while a watched task is unfinished.
    "RESYNC_INTERVAL": 5.0,
    # Open sockets whose session has expired or been flushed are closed this often.
    "SESSION_CHECK": 15.0,
    # Live records in Redis expire this long after their last change.
    "LIVE_TTL": 24 * 3600.0,
    # Where tasks write files for their owner to download (tasks.files). None: a
    # "tasklight" folder in MEDIA_ROOT (or in the system's temporary folder).
    "FILES_DIR": None,
    # Files written by tasks are deleted by `manage.py tasklight_purge` after this long.
    "FILES_TTL": 24 * 3600.0,
    # Finished runs older than this many days are deleted by `manage.py tasklight_purge`.
    "RETENTION_DAYS": 30,
    # Unfinished tasks one owner may have at once; the next launch answers 429.
    "MAX_ACTIVE_PER_OWNER": 10,
    # Unfinished tasks all anonymous owners of one client address may have at once (a
    # new session costs nothing; signed-in users are counted per user only). None: five
    # times MAX_ACTIVE_PER_OWNER (several people may share an address). Behind a proxy the
    # server must take the address from a trusted header (daphne --proxy-headers).
    "MAX_ACTIVE_PER_ADDRESS": None,
    # Seconds after which a launched run is stopped (Celery's hard time limit; the soft
    # one comes a margin before) and ends failed, TimedOut; @launchable(time_limit=...) overrides.
    "LAUNCH_TIME_LIMIT": 3600.0,
    # How many of an owner's tasks a snapshot or the list API returns.
    "RECENT_LIMIT": 50,
    # Origins (scheme://host[:port]) whose pages may open the WebSocket, besides
    # CSRF_TRUSTED_ORIGINS. None: the socket's own origin only (its Host header, which
    # must be in ALLOWED_HOSTS, with the connection's scheme): see realtime/security.py.
    "ALLOWED_ORIGINS": None,
    # Bytes a socket may have waiting to be written to a client that does not read;
    # beyond it the socket is closed (4008). Enforced under Daphne (realtime/transport.py).
    "MAX_SOCKET_BUFFER": 1024 * 1024,
    # Open sockets per session and per client address, in each Daphne process; the next
    # one is closed at once (4029).
    "MAX_SOCKETS_PER_SESSION": 32,
    "MAX_SOCKETS_PER_ADDRESS": 256,
}

# (lowest, highest) accepted for each number; None: no bound on that side.
RANGES: dict[str, tuple[float | None, float | None]] = {
    "PUBLISH_INTERVAL": (0.01, 60),
    "HEARTBEAT_TIMEOUT": (3, 3600),
    "CANCEL_GRACE": (0, 3600),
    "KILL_AFTER": (0.1, 600),
    "WATCHDOG_INTERVAL": (0.05, 600),
    "RESYNC_INTERVAL": (0.1, 3600),
    "SESSION_CHECK": (0.1, 3600),
    "LIVE_TTL": (60, None),
    "FILES_TTL": (0, None),
    "RETENTION_DAYS": (0, None),
    "MAX_ACTIVE_PER_OWNER": (1, 100_000),
    "LAUNCH_TIME_LIMIT": (1, 7 * 86400),
    "RECENT_LIMIT": (1, 1000),
    "MAX_SOCKET_BUFFER": (64 * 1024, None),
    "MAX_SOCKETS_PER_SESSION": (1, 100_000),
    "MAX_SOCKETS_PER_ADDRESS": (1, 1_000_000),
}
INTEGERS = frozenset({
    "MAX_ACTIVE_PER_OWNER", "RECENT_LIMIT", "RETENTION_DAYS", "MAX_SOCKET_BUFFER", "MAX_SOCKETS_PER_SESSION",
    "MAX_SOCKETS_PER_ADDRESS",
})
# What redis.Redis.from_url accepts.
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


@dataclass(frozen=True)
class TasklightSettings:
    REDIS_URL: str
    REDIS_PREFIX: str
    CHANNEL_LAYER: str
    TRACK_ALL_TASKS: bool
    LAUNCHABLE_MODULES: tuple[str, ...]
    ALLOW_ANONYMOUS: bool
    PUBLISH_INTERVAL: float
    HEARTBEAT_TIMEOUT: float
    CANCEL_GRACE: float
    KILL_AFTER: float
    WATCHDOG_INTERVAL: float
    RESYNC_INTERVAL: float
    SESSION_CHECK: float
    LIVE_TTL: float
    FILES_DIR: Path
    FILES_TTL: float
    RETENTION_DAYS: int
    MAX_ACTIVE_PER_OWNER: int
    MAX_ACTIVE_PER_ADDRESS: int
    LAUNCH_TIME_LIMIT: float
    RECENT_LIMIT: int
    ALLOWED_ORIGINS: tuple[str, ...] | None
    MAX_SOCKET_BUFFER: int
    MAX_SOCKETS_PER_SESSION: int
    MAX_SOCKETS_PER_ADDRESS: int


def user_settings() -> dict[str, Any]:
    """The host's ``TASKLIGHT`` dict (empty when it has none)."""
    value = getattr(settings, "TASKLIGHT", None)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ImproperlyConfigured("settings.TASKLIGHT must be a dict (see docs/integration.md).")
    return value


def problems() -> list[tuple[str, str]]:
    """(key, what is wrong) for each value that is out of range or of the wrong type."""
    found: list[tuple[str, str]] = []
    values = {**DEFAULTS, **user_settings()}
    for key, (low, high) in RANGES.items():
        value = values[key]
        kind = "a whole number" if key in INTEGERS else "a number"
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or (key in INTEGERS and not isinstance(value, int))
            or not math.isfinite(value)  # NaN passes every comparison; infinity overflows int()
        ):
            found.append((key, f"must be {kind}, not {value!r}"))
        elif (low is not None and value < low) or (high is not None and value > high):
            bounds = f"at least {low}" if high is None else f"between {low} and {high}"
            found.append((key, f"must be {bounds}, not {value!r}"))
    for key in ("TRACK_ALL_TASKS", "ALLOW_ANONYMOUS"):
        if not isinstance(values[key], bool):
            found.append((key, f"must be True or False, not {values[key]!r}"))
    for key in ("REDIS_PREFIX", "CHANNEL_LAYER"):
        if not isinstance(values[key], str) or not values[key]:
            found.append((key, f"must be a non-empty string, not {values[key]!r}"))
    modules = values["LAUNCHABLE_MODULES"]
    if not isinstance(modules, (list, tuple)) or not all(isinstance(m, str) for m in modules):
        found.append(("LAUNCHABLE_MODULES", f"must be a list of module names, not {modules!r}"))
    origins = values["ALLOWED_ORIGINS"]
    if origins is not None:
        if not isinstance(origins, (list, tuple)):
            found.append(("ALLOWED_ORIGINS", f"must be a list of origins or None, not {origins!r}"))
        else:
            found.extend(("ALLOWED_ORIGINS", what) for what in map(_origin_problem, origins) if what)
    url = values["REDIS_URL"]
    if url not in (None, "") and not (isinstance(url, str) and url.startswith(REDIS_SCHEMES)):
        found.append(("REDIS_URL", f"must be a redis:// URL or None, not {url!r}"))
    if values["FILES_DIR"] is not None and not isinstance(values["FILES_DIR"], (str, os.PathLike)):
        found.append(("FILES_DIR", f"must be a path or None, not {values['FILES_DIR']!r}"))
    per_address = values["MAX_ACTIVE_PER_ADDRESS"]
    if per_address is not None and (
        isinstance(per_address, bool) or not isinstance(per_address, int) or not 1 <= per_address <= 1_000_000
    ):
        found.append(("MAX_ACTIVE_PER_ADDRESS", f"must be a whole number between 1 and 1000000 or None, not {per_address!r}"))
    # Heartbeats are refreshed once a second or once a publish interval, whichever is
    # longer: a timeout under three of those would call live tasks lost.
    interval, timeout = values["PUBLISH_INTERVAL"], values["HEARTBEAT_TIMEOUT"]
    if not any(k in (key for key, _ in found) for k in ("PUBLISH_INTERVAL", "HEARTBEAT_TIMEOUT")):
        if timeout < 3 * max(1.0, interval):
            least = 3 * max(1.0, interval)
            found.append(("HEARTBEAT_TIMEOUT", f"must be at least 3 x max(1, PUBLISH_INTERVAL) = {least:g}, not {timeout!r}"))
    return found


def _origin_problem(value: Any) -> str | None:
    """What is wrong with one origin (``scheme://host[:port]``, http or https, no path)."""
    ok = False
    if isinstance(value, str):
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
            ok = (
                parts.scheme in ("http", "https") and bool(parts.hostname) and parts.path in ("", "/")
                and not parts.query and not parts.fragment and parts.username is None
            )
        except ValueError:
            ok = False
    if not ok:
        return f"must be a list of origins such as 'https://tasks.example.com', not one of {value!r}"
    return None


def channel_layer(alias: Any) -> dict[str, Any] | None:
    """The ``CHANNEL_LAYERS`` entry named ``alias``, if there is one."""
    layers = getattr(settings, "CHANNEL_LAYERS", None)
    if not isinstance(layers, dict) or not isinstance(alias, str):
        return None
    layer = layers.get(alias)
    return layer if isinstance(layer, dict) else None


def layer_redis_url(alias: str) -> str | None:
    """The Redis URL of a channel layer's first host, in any form channels_redis accepts."""
    config = (channel_layer(alias) or {}).get("CONFIG") or {}
    hosts = config.get("hosts") if isinstance(config, dict) else None
    if not isinstance(hosts, (list, tuple)) or not hosts:  # a bare string is refused by channels_redis too
        return None
    first = hosts[0]
    if isinstance(first, str):
        return first
    if isinstance(first, (tuple, list)) and len(first) >= 2:  # ("127.0.0.1", 6379), as Channels' docs show
        return f"redis://{first[0]}:{first[1]}"
    if isinstance(first, dict) and isinstance(first.get("address"), str):
        return str(first["address"])
    return None


def _load() -> TasklightSettings:
    bad = problems()
    if bad:
        key, what = bad[0]
        raise ImproperlyConfigured(f"TASKLIGHT['{key}'] {what} (manage.py check lists every problem).")
    values = {**DEFAULTS, **{k: v for k, v in user_settings().items() if k in DEFAULTS}}
    redis_url = values["REDIS_URL"] or layer_redis_url(values["CHANNEL_LAYER"])
    if not redis_url:
        raise ImproperlyConfigured(
            "Tasklight needs Redis: set TASKLIGHT['REDIS_URL'], or give the channel layer "
            f"{values['CHANNEL_LAYER']!r} a redis:// host (tasklight.E005)."
        )
    values["REDIS_URL"] = redis_url
    values["LAUNCHABLE_MODULES"] = tuple(values["LAUNCHABLE_MODULES"])
    if values["ALLOWED_ORIGINS"] is not None:
        values["ALLOWED_ORIGINS"] = tuple(values["ALLOWED_ORIGINS"])
    values["FILES_DIR"] = Path(values["FILES_DIR"]) if values["FILES_DIR"] else default_files_dir()
    for key in RANGES:
        values[key] = int(values[key]) if key in INTEGERS else float(values[key])
    if values["MAX_ACTIVE_PER_ADDRESS"] is None:
        values["MAX_ACTIVE_PER_ADDRESS"] = 5 * values["MAX_ACTIVE_PER_OWNER"]
    names = {f.name for f in fields(TasklightSettings)}
    return TasklightSettings(**{k: v for k, v in values.items() if k in names})


def default_files_dir() -> Path:
    media = getattr(settings, "MEDIA_ROOT", "")
    return Path(media) / "tasklight" if media else Path(tempfile.gettempdir()) / "tasklight-files"


# Owned by this module: the settings read once per process, with the TASKLIGHT object
# they were read from; reset when a test changes them.
_cached: tuple[Any, TasklightSettings] | None = None


def get() -> TasklightSettings:
    """Tasklight's settings, every key filled in."""
    global _cached
    # Also read again when TASKLIGHT itself was replaced or deleted without the
    # setting_changed signal (pytest-django's ``del settings.TASKLIGHT`` sends none).
    source = getattr(settings, "TASKLIGHT", None)
    if _cached is None or _cached[0] is not source:
        _cached = (source, _load())
    return _cached[1]


def reset() -> None:
    global _cached
    _cached = None


@receiver(setting_changed, dispatch_uid="tasklight.conf.reset")
def _on_setting_changed(setting: str = "", **_: Any) -> None:
    if setting in ("TASKLIGHT", "CHANNEL_LAYERS", "MEDIA_ROOT"):
        reset()
