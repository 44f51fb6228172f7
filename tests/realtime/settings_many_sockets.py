"""The test run's settings, with room for hundreds of sockets of one session from one address."""

from tests.settings import *  # noqa: F403

TASKLIGHT = {**TASKLIGHT, "MAX_SOCKETS_PER_SESSION": 10_000, "MAX_SOCKETS_PER_ADDRESS": 10_000}  # noqa: F405
