"""The example site's Celery app, as any Django project has one.

Tasklight makes no Celery app and replaces no task class: the demo tasks opt in to
tracking with ``base=TrackedTask`` (docs/integration.md).
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

app = Celery("project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
