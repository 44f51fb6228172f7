"""Settings of the test run: the project's own, in an environment of this run's own."""

from tests.support import ensure_test_environment

ensure_test_environment()

from project.settings import *  # noqa: E402,F401,F403
