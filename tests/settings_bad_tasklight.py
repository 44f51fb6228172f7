"""A misconfigured host for ``manage.py check``: a value out of range (tasklight.E004) and a
misspelt key (tasklight.W001)."""

from tests.settings import *  # noqa: F401,F403
from tests.settings import TASKLIGHT

TASKLIGHT = {**TASKLIGHT, "PUBLISH_INTERVAL": 0, "RECENT_LIMT": 20}
