"""Settings of the example site, read from the environment only (project/env.py, README.md).

Tasklight is added here exactly as docs/integration.md shows any host: two apps, a
channel layer, a ``TASKLIGHT`` dict (every key has a default), its URLs and socket.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dj_database_url

from project.env import env_bool, env_float, env_header_pair, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DJANGO_DEBUG", False)
# Outside `make run` (which sets DJANGO_DEBUG=1 and its own key) a missing key stops start-up.
SECRET_KEY = env_str("DJANGO_SECRET_KEY", required=True)
ALLOWED_HOSTS = env_list(
    "DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else []
)
if not ALLOWED_HOSTS:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        "The environment variable DJANGO_ALLOWED_HOSTS is required when DEBUG is off "
        "(a comma-separated list of host names this site answers to)."
    )
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "tasks",
    "realtime",
    # The demo tasks: an app of the example site, not part of the installable apps.
    "project.demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "project.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
ASGI_APPLICATION = "asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

_default_db = f"sqlite:///{BASE_DIR / 'var' / 'tasklight.sqlite3'}"
if not env_str("DATABASE_URL"):
    (BASE_DIR / "var").mkdir(exist_ok=True)
DATABASES = {"default": dj_database_url.parse(env_str("DATABASE_URL", _default_db), conn_max_age=0)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Daphne, the worker and its watchdog write at once: WAL plus IMMEDIATE avoids "locked".
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
# Tests give each run a database of its own (tests/settings.py).
if env_str("DJANGO_TEST_DB_NAME"):
    DATABASES["default"]["TEST"] = {"NAME": env_str("DJANGO_TEST_DB_NAME")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("DJANGO_STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "project.storage.StaticStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = DEBUG

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# HTTPS, set by the deployment (docker-compose.yml sets all of them; docs/security.md).
# Behind a TLS-terminating proxy, DJANGO_SECURE_PROXY_SSL_HEADER names the header it sets
# ("HTTP_X_FORWARDED_PROTO,https"); only set it when the proxy always sets or strips it.
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", False)
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", False)
# A load balancer probes /healthz over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_PROXY_SSL_HEADER = env_header_pair("DJANGO_SECURE_PROXY_SSL_HEADER")
# The page passes it: no inline script or style (project/csp.py).
CONTENT_SECURITY_POLICY = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "connect-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'none'"],
    "frame-ancestors": ["'none'"],
    "form-action": ["'self'"],
}

# ---- Redis, channel layer, Celery -------------------------------------------------
REDIS_URL = env_str("REDIS_URL", required=True)
# Every Redis key and pub/sub channel of Tasklight starts with this prefix, so that two
# deployments (or two test runs) can share one Redis server.
TASKLIGHT_REDIS_PREFIX = env_str("TASKLIGHT_REDIS_PREFIX", "tasklight")

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {
            "hosts": [REDIS_URL],
            "prefix": f"{TASKLIGHT_REDIS_PREFIX}:layer:",
        },
    }
}

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_TASK_DEFAULT_QUEUE", "tasklight")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 2, "socket_timeout": 5}
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_SEND_TASK_EVENTS = False
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]

# ---- Tasklight ----------------------------------------------------------------------
# Every key has a default (docs/integration.md); the example site reads each from the
# environment variable TASKLIGHT_<KEY> when it is set.
TASKLIGHT: dict[str, Any] = {
    "REDIS_URL": REDIS_URL,
    "REDIS_PREFIX": TASKLIGHT_REDIS_PREFIX,
    "FILES_DIR": Path(env_str("TASKLIGHT_FILES_DIR", str(BASE_DIR / "var" / "files"))),
}
for _key in ("PUBLISH_INTERVAL", "HEARTBEAT_TIMEOUT", "CANCEL_GRACE", "KILL_AFTER", "WATCHDOG_INTERVAL",
             "RESYNC_INTERVAL", "SESSION_CHECK", "LIVE_TTL", "FILES_TTL", "LAUNCH_TIME_LIMIT"):
    if env_str(f"TASKLIGHT_{_key}"):
        TASKLIGHT[_key] = env_float(f"TASKLIGHT_{_key}", 0.0)
for _key in ("MAX_ACTIVE_PER_OWNER", "MAX_ACTIVE_PER_ADDRESS", "RECENT_LIMIT", "RETENTION_DAYS", "MAX_SOCKET_BUFFER",
             "MAX_SOCKETS_PER_SESSION", "MAX_SOCKETS_PER_ADDRESS"):
    if env_str(f"TASKLIGHT_{_key}"):
        TASKLIGHT[_key] = int(env_float(f"TASKLIGHT_{_key}", 0.0))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("TASKLIGHT_LOG_LEVEL", "INFO")},
    "loggers": {"daphne": {"level": "WARNING"}, "django.channels.server": {"level": "WARNING"}},
}
