"""Tasklight's settings (tasks/conf.py): a default for every key, a clear error for a bad value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.test import override_settings

from tasks import conf


def without(*keys: str) -> dict[str, Any]:
    return {k: v for k, v in django_settings.TASKLIGHT.items() if k not in keys}


def test_without_tasklight_every_key_has_its_default_and_redis_comes_from_the_layer(settings: Any) -> None:
    assert conf.get().REDIS_PREFIX == django_settings.TASKLIGHT["REDIS_PREFIX"]  # read (and cached) first
    del settings.TASKLIGHT
    assert not hasattr(django_settings, "TASKLIGHT")
    got = conf.get()
    for key, default in conf.DEFAULTS.items():
        if key in ("REDIS_URL", "FILES_DIR", "LAUNCHABLE_MODULES", "MAX_ACTIVE_PER_ADDRESS"):
            continue
        assert getattr(got, key) == default, key
    assert got.MAX_ACTIVE_PER_ADDRESS == 5 * got.MAX_ACTIVE_PER_OWNER  # None: five people's worth
    assert got.LAUNCHABLE_MODULES == ("tasks", "launchables")
    assert got.REDIS_URL == django_settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]
    assert got.FILES_DIR == conf.default_files_dir()
    assert conf.user_settings() == {} and conf.problems() == []


def test_the_settings_are_read_again_when_tasklight_is_deleted_and_restored() -> None:
    ours = conf.get()
    with override_settings():
        del django_settings.TASKLIGHT  # as pytest-django's ``del settings.TASKLIGHT``: no setting_changed
        assert conf.get().REDIS_PREFIX == "tasklight"
    assert conf.get().REDIS_PREFIX == ours.REDIS_PREFIX != "tasklight"  # the tests' own prefix again


def test_setting_changed_resets_the_cache() -> None:
    first = conf.get()
    assert conf.get() is first  # read once
    with override_settings(TASKLIGHT={**django_settings.TASKLIGHT, "RECENT_LIMIT": 7}):
        assert conf.get().RECENT_LIMIT == 7
    assert conf.get().RECENT_LIMIT == first.RECENT_LIMIT
    setting_changed.send(sender=None, setting="TASKLIGHT", value=django_settings.TASKLIGHT, enter=True)
    assert conf._cached is None
    with override_settings(USE_TZ=True):
        settled = conf.get()
        assert conf.get() is settled  # another setting leaves it alone


def test_the_channel_layer_and_media_root_are_followed_too() -> None:
    layers = {"default": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                          "CONFIG": {"hosts": ["redis://127.0.0.1:6390/3"]}}}
    with override_settings(TASKLIGHT=without("REDIS_URL", "FILES_DIR")):
        before = conf.get()
        with override_settings(CHANNEL_LAYERS=layers, MEDIA_ROOT="/srv/media"):
            assert conf.get().REDIS_URL == "redis://127.0.0.1:6390/3"
            assert conf.get().FILES_DIR == Path("/srv/media/tasklight")
        assert conf.get().REDIS_URL == before.REDIS_URL


def test_values_are_given_their_types() -> None:
    with override_settings(TASKLIGHT={**django_settings.TASKLIGHT, "PUBLISH_INTERVAL": 1, "LAUNCHABLE_MODULES": ["jobs"],
                                      "FILES_DIR": "/tmp/x"}):
        got = conf.get()
    assert got.PUBLISH_INTERVAL == 1.0 and isinstance(got.PUBLISH_INTERVAL, float)
    assert got.LAUNCHABLE_MODULES == ("jobs",)
    assert got.FILES_DIR == Path("/tmp/x")
    assert isinstance(got.RECENT_LIMIT, int)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("PUBLISH_INTERVAL", 0),
        ("RECENT_LIMIT", "x"),
        ("LIVE_TTL", float("nan")),
        ("LAUNCHABLE_MODULES", None),
        ("LAUNCHABLE_MODULES", 3),
        ("FILES_DIR", 3),
        ("REDIS_URL", 6379),
        ("TRACK_ALL_TASKS", "no"),
    ],
)
def test_a_bad_value_raises_improperly_configured_naming_the_key(key: str, value: Any) -> None:
    with override_settings(TASKLIGHT={**django_settings.TASKLIGHT, key: value}):
        with pytest.raises(ImproperlyConfigured) as failure:
            conf.get()
    assert f"TASKLIGHT['{key}']" in str(failure.value)


def test_tasklight_not_a_dict_raises_improperly_configured() -> None:
    with override_settings(TASKLIGHT=[("REDIS_URL", "redis://x")]), pytest.raises(ImproperlyConfigured, match="must be a dict"):
        conf.get()


def test_no_redis_url_anywhere_raises_improperly_configured() -> None:
    layers = {"default": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer", "CONFIG": {}}}
    with override_settings(TASKLIGHT=without("REDIS_URL"), CHANNEL_LAYERS=layers):
        with pytest.raises(ImproperlyConfigured, match="tasklight.E005"):
            conf.get()


def test_an_empty_redis_url_means_the_layers() -> None:
    with override_settings(TASKLIGHT={**django_settings.TASKLIGHT, "REDIS_URL": ""}):
        assert conf.problems() == []
        assert conf.get().REDIS_URL == django_settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]


def test_a_channels_style_host_tuple_gives_the_redis_url() -> None:
    layers = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [("redis.internal", 6380)]}}}
    with override_settings(TASKLIGHT=without("REDIS_URL"), CHANNEL_LAYERS=layers):
        assert conf.get().REDIS_URL == "redis://redis.internal:6380"


def test_a_heartbeat_timeout_shorter_than_three_refreshes_is_refused(settings) -> None:
    from tasks import conf

    settings.TASKLIGHT = {**settings.TASKLIGHT, "PUBLISH_INTERVAL": 5, "HEARTBEAT_TIMEOUT": 10}
    assert ("HEARTBEAT_TIMEOUT", "must be at least 3 x max(1, PUBLISH_INTERVAL) = 15, not 10") in conf.problems()
    settings.TASKLIGHT = {**settings.TASKLIGHT, "PUBLISH_INTERVAL": 0.1, "HEARTBEAT_TIMEOUT": 3}
    assert conf.problems() == []


def test_group_names_carry_the_sites_prefix(settings) -> None:
    from tasks.groups import group_for_owner, group_for_session, group_for_task

    names = (group_for_owner("u:1"), group_for_task("t"), group_for_session("s"))
    settings.TASKLIGHT = {**settings.TASKLIGHT, "REDIS_PREFIX": "another-site"}
    other = (group_for_owner("u:1"), group_for_task("t"), group_for_session("s"))
    assert all(a != b for a, b in zip(names, other))  # two sites on one Redis never share a group
