"""System checks (tasks/checks.py): ``manage.py check`` names every misconfiguration."""

from __future__ import annotations

import subprocess
import sys
from io import StringIO
from typing import Any

import pytest
from django.conf import settings
from django.core.checks import CheckMessage, run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from tests.support import ROOT, subprocess_env

IN_MEMORY = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
NO_HOSTS = {"default": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer", "CONFIG": {}}}


def tasklight_messages() -> list[CheckMessage]:
    return [m for m in run_checks() if str(m.id).startswith("tasklight.")]


def ids(**overrides: Any) -> list[str]:
    with override_settings(**overrides):
        return sorted(str(m.id) for m in tasklight_messages())


def tasklight(**values: Any) -> dict[str, Any]:
    """The tests' TASKLIGHT with some values changed."""
    return {**settings.TASKLIGHT, **values}


def test_the_test_configuration_is_clean() -> None:
    assert tasklight_messages() == []
    call_command("check", stdout=StringIO(), stderr=StringIO())  # raises SystemCheckError on any error


def test_no_channel_layer_is_e001() -> None:
    assert ids(CHANNEL_LAYERS={}) == ["tasklight.E001"]
    assert ids(TASKLIGHT=tasklight(CHANNEL_LAYER="elsewhere")) == ["tasklight.E001"]
    assert ids(CHANNEL_LAYERS=None) == ["tasklight.E001"]  # not even a dict: reported, not a crash


def test_an_in_memory_layer_is_e002() -> None:
    with override_settings(CHANNEL_LAYERS=IN_MEMORY):
        [message] = tasklight_messages()
    assert message.id == "tasklight.E002" and message.is_serious()
    assert "in-memory" in message.msg and "'default'" in message.msg


def test_signed_cookie_sessions_are_e003() -> None:
    assert ids(SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies") == ["tasklight.E003"]
    assert ids(SESSION_ENGINE="django.contrib.sessions.backends.cached_db") == []


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("PUBLISH_INTERVAL", 0, "must be between 0.01 and 60, not 0"),
        ("RECENT_LIMIT", "x", "must be a whole number, not 'x'"),
        ("RECENT_LIMIT", 2.5, "must be a whole number, not 2.5"),
        ("HEARTBEAT_TIMEOUT", True, "must be a number, not True"),
        ("LIVE_TTL", float("nan"), "must be a number, not nan"),
        ("LIVE_TTL", float("inf"), "must be a number, not inf"),
        ("FILES_TTL", -1, "must be at least 0, not -1"),
        ("ALLOW_ANONYMOUS", "yes", "must be True or False, not 'yes'"),
        ("REDIS_PREFIX", "", "must be a non-empty string, not ''"),
        ("LAUNCHABLE_MODULES", "tasks", "must be a list of module names, not 'tasks'"),
        ("LAUNCHABLE_MODULES", None, "must be a list of module names, not None"),
        ("REDIS_URL", "localhost:6379", "must be a redis:// URL or None, not 'localhost:6379'"),
        ("FILES_DIR", 3, "must be a path or None, not 3"),
    ],
)
def test_a_bad_value_is_e004_naming_the_key(key: str, value: Any, says: str) -> None:
    with override_settings(TASKLIGHT=tasklight(**{key: value})):
        [message] = tasklight_messages()
    assert message.id == "tasklight.E004"
    assert message.msg == f"TASKLIGHT[{key!r}] {says}."


def test_every_bad_value_is_listed() -> None:
    found = ids(TASKLIGHT=tasklight(PUBLISH_INTERVAL=0, RECENT_LIMIT="x", KILL_AFTER=10_000))
    assert found == ["tasklight.E004"] * 3


def test_no_redis_url_is_e005() -> None:
    without_url = {k: v for k, v in settings.TASKLIGHT.items() if k != "REDIS_URL"}
    assert ids(TASKLIGHT=without_url, CHANNEL_LAYERS=NO_HOSTS) == ["tasklight.E005"]
    # An in-memory layer has no host either: both problems are named.
    assert ids(TASKLIGHT=without_url, CHANNEL_LAYERS=IN_MEMORY) == ["tasklight.E002", "tasklight.E005"]
    # A bare string is not a list of hosts (channels_redis refuses it too), not "r" as a URL.
    one_string = {"default": {**NO_HOSTS["default"], "CONFIG": {"hosts": "redis://127.0.0.1:6379/0"}}}
    assert ids(TASKLIGHT=without_url, CHANNEL_LAYERS=one_string) == ["tasklight.E005"]


@pytest.mark.parametrize(
    "host", ["redis://127.0.0.1:6379/0", ("127.0.0.1", 6379), {"address": "redis://127.0.0.1:6379/0"}]
)
def test_the_layers_redis_host_in_any_form_channels_redis_takes_is_a_redis_url(host: Any) -> None:
    without_url = {k: v for k, v in settings.TASKLIGHT.items() if k != "REDIS_URL"}
    layers = {"default": {**NO_HOSTS["default"], "CONFIG": {"hosts": [host]}}}
    assert ids(TASKLIGHT=without_url, CHANNEL_LAYERS=layers) == []


def test_tasklight_not_a_dict_is_e006_alone() -> None:
    with override_settings(TASKLIGHT=["REDIS_URL"]):
        [message] = tasklight_messages()
    assert message.id == "tasklight.E006" and "must be a dict" in message.msg


def test_an_unknown_key_is_w001() -> None:
    with override_settings(TASKLIGHT=tasklight(PUBLISH_INTERVALL=0.5)):
        [message] = tasklight_messages()
    assert message.id == "tasklight.W001" and not message.is_serious()
    assert message.msg == "TASKLIGHT['PUBLISH_INTERVALL'] is not a Tasklight setting."


def test_a_host_package_named_realtime_is_e007(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from tasks import checks

    hidden = SimpleNamespace(name="realtime", label="realtime", path="/srv/shop/realtime")
    monkeypatch.setattr(checks.apps, "get_app_configs", lambda: [hidden])
    [message] = [m for m in checks.check_settings() if m.id == "tasklight.E007"]
    assert "/srv/shop/realtime" in message.msg and "is not Tasklight's" in message.msg
    monkeypatch.undo()
    assert "tasklight.E007" not in [m.id for m in checks.check_settings()]


def test_call_command_check_fails_on_an_error_and_names_it() -> None:
    with override_settings(CHANNEL_LAYERS=IN_MEMORY), pytest.raises(SystemCheckError) as failure:
        call_command("check", stdout=StringIO(), stderr=StringIO())
    assert "tasklight.E002" in str(failure.value)
    # A warning alone is reported but does not fail the check.
    out = StringIO()
    with override_settings(TASKLIGHT=tasklight(RECENT_LIMT=20)):
        call_command("check", stdout=out, stderr=out)
    assert "tasklight.W001" in out.getvalue()


def manage_check(settings_module: str) -> subprocess.CompletedProcess[str]:
    env = subprocess_env(DJANGO_SETTINGS_MODULE=settings_module)
    return subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)


def test_manage_py_check_reports_an_in_memory_layer_and_exits_non_zero() -> None:
    result = manage_check("tests.settings_inmemory")
    assert result.returncode != 0, result.stdout + result.stderr
    assert "?: (tasklight.E002) The channel layer 'default' is in-memory" in result.stderr
    assert "HINT: Use channels_redis.pubsub.RedisPubSubChannelLayer" in result.stderr
    assert "Traceback" not in result.stderr


def test_manage_py_check_reports_a_bad_value_and_a_typo_and_exits_non_zero() -> None:
    result = manage_check("tests.settings_bad_tasklight")
    assert result.returncode != 0, result.stdout + result.stderr
    assert "?: (tasklight.E004) TASKLIGHT['PUBLISH_INTERVAL'] must be between 0.01 and 60, not 0." in result.stderr
    assert "?: (tasklight.W001) TASKLIGHT['RECENT_LIMT'] is not a Tasklight setting." in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_session_or_auth_middleware_is_e008() -> None:
    from django.core.checks import run_checks

    middleware = [m for m in settings.MIDDLEWARE if "AuthenticationMiddleware" not in m]
    with override_settings(MIDDLEWARE=middleware):
        ids = [m.id for m in run_checks() if m.id.startswith("tasklight.")]
    assert ids == ["tasklight.E008"]


def test_unmounted_urls_are_e009() -> None:
    from django.core.checks import run_checks

    with override_settings(ROOT_URLCONF="tests.urls_without_tasklight"):
        ids = [m.id for m in run_checks(tags=["urls"]) if m.id.startswith("tasklight.")]
    assert ids == ["tasklight.E009"]
