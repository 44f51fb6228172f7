"""System checks: ``manage.py check`` names every misconfiguration (docs/integration.md).

| id | problem |
| --- | --- |
| tasklight.E001 | no channel layer under ``TASKLIGHT["CHANNEL_LAYER"]`` |
| tasklight.E002 | that layer is in-memory: it cannot reach a worker process |
| tasklight.E003 | a session engine whose sessions cannot be checked or ended (signed cookies) |
| tasklight.E004 | a ``TASKLIGHT`` value out of range or of the wrong type |
| tasklight.E005 | no Redis URL: neither ``TASKLIGHT["REDIS_URL"]`` nor a redis host in the layer |
| tasklight.E006 | ``TASKLIGHT`` is not a dict |
| tasklight.E007 | the installed app ``realtime`` is not Tasklight's (a host package of that name hides it) |
| tasklight.E008 | ``SessionMiddleware`` or ``AuthenticationMiddleware`` missing: owners cannot be known |
| tasklight.E009 | ``tasks.urls`` is not mounted (namespace ``tasklight``) |
| tasklight.W001 | an unknown ``TASKLIGHT`` key (a typo?) |
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.urls import NoReverseMatch, reverse

from tasks import conf

IN_MEMORY_LAYERS = ("channels.layers.InMemoryChannelLayer",)
UNSUPPORTED_SESSION_ENGINES = ("django.contrib.sessions.backends.signed_cookies",)
HINT = "See docs/integration.md, 'Settings'."
REALTIME_LABEL = "tasklight_realtime"


@checks.register(checks.Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    try:
        user = conf.user_settings()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), hint=HINT, id="tasklight.E006")]
    found: list[checks.CheckMessage] = []
    for key in sorted(set(user) - set(conf.DEFAULTS)):
        found.append(checks.Warning(f"TASKLIGHT[{key!r}] is not a Tasklight setting.", hint=HINT, id="tasklight.W001"))
    for key, what in conf.problems():
        found.append(checks.Error(f"TASKLIGHT[{key!r}] {what}.", hint=HINT, id="tasklight.E004"))
    alias = user.get("CHANNEL_LAYER", conf.DEFAULTS["CHANNEL_LAYER"])
    layer = conf.channel_layer(alias)
    if not layer:
        found.append(checks.Error(
            f"Tasklight needs a channel layer, and CHANNEL_LAYERS has none named {alias!r}.",
            hint="Add a Redis layer, e.g. CHANNEL_LAYERS = {'default': {'BACKEND': "
                 "'channels_redis.pubsub.RedisPubSubChannelLayer', 'CONFIG': {'hosts': ['redis://...']}}}.",
            id="tasklight.E001",
        ))
    elif layer.get("BACKEND") in IN_MEMORY_LAYERS:
        found.append(checks.Error(
            f"The channel layer {alias!r} is in-memory: updates from Celery workers never reach the browser.",
            hint="Use channels_redis.pubsub.RedisPubSubChannelLayer (or RedisChannelLayer).",
            id="tasklight.E002",
        ))
    if not user.get("REDIS_URL") and not conf.layer_redis_url(alias if isinstance(alias, str) else ""):
        found.append(checks.Error(
            "Tasklight has no Redis URL for its live records and cancel flags.",
            hint="Set TASKLIGHT['REDIS_URL'], or give the channel layer a 'redis://' host.",
            id="tasklight.E005",
        ))
    engine = getattr(settings, "SESSION_ENGINE", "")
    if engine in UNSUPPORTED_SESSION_ENGINES:
        found.append(checks.Error(
            f"SESSION_ENGINE {engine!r} is not supported: a session in a cookie cannot be ended, so "
            "sockets would outlive logouts, and anonymous owners could not be told apart safely.",
            hint="Use the db, cached_db, cache or file session engine.",
            id="tasklight.E003",
        ))
    for config in apps.get_app_configs():
        if config.name == "realtime" and config.label != REALTIME_LABEL:
            found.append(checks.Error(
                f"The installed app 'realtime' ({config.path}) is not Tasklight's: a package of this project "
                "named 'realtime' hides Tasklight's, and the WebSocket route will not import.",
                hint="Rename your package; Tasklight's top-level names are 'tasks' and 'realtime' (docs/integration.md).",
                id="tasklight.E007",
            ))
    return found


REQUIRED_MIDDLEWARE = (
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
)


@checks.register(checks.Tags.security)
def check_middleware(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    middleware = list(getattr(settings, "MIDDLEWARE", []) or [])
    return [
        checks.Error(
            f"Tasklight needs {name} in MIDDLEWARE: a task's owner is the signed-in user or the visitor's session.",
            hint="Keep Django's default middleware (docs/integration.md).",
            id="tasklight.E008",
        )
        for name in REQUIRED_MIDDLEWARE
        if name not in middleware
    ]


@checks.register(checks.Tags.urls)
def check_urls(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    try:
        reverse("tasklight:launchable")
    except NoReverseMatch:
        return [checks.Error(
            "Tasklight's URLs are not mounted: the client, the template tags and the WebSocket route need them.",
            hint='Add path("tasklight/", include("tasks.urls")) to your ROOT_URLCONF.',
            id="tasklight.E009",
        )]
    return []
