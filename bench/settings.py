"""Settings of a bench run: the project's own, plus the celery-progress baseline.

Nothing here changes how Tasklight behaves; it only adds the baseline's app, its URLs
and the Redis result backend that ``ProgressRecorder.set_progress`` writes to (its own
Redis database number, set by bench/stack.py), and the bench tasks.
"""

from project.env import env_str
from project.settings import *  # noqa: F401,F403
from project.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "celery_progress", "bench.apps.BenchConfig"]
ROOT_URLCONF = "bench.urls"
CELERY_RESULT_BACKEND = env_str("BENCH_RESULT_BACKEND", required=True)

# The bench opens up to 1,000 sockets from one session and one address: lift the
# per-session and per-address socket caps (the other limits stay as the site has them).
from project.settings import TASKLIGHT  # noqa: E402

TASKLIGHT = {**TASKLIGHT, "MAX_SOCKETS_PER_SESSION": 100_000, "MAX_SOCKETS_PER_ADDRESS": 100_000,
             "MAX_ACTIVE_PER_ADDRESS": 100_000}
