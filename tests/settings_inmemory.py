"""A misconfigured host for ``manage.py check``: an in-memory channel layer (tasklight.E002)."""

from tests.settings import *  # noqa: F401,F403

CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
