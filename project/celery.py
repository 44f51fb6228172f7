"""The Celery app: configured from Django settings, tasks autodiscovered.

Every task of this app is a ``tasks.base.TrackedTask`` (``task_cls``), so Tasklight
tracks the whole life of every task, Tasklight-aware or not. See docs/progress.md.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

app = Celery("tasklight", task_cls="tasks.base:TrackedTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.autodiscover_tasks(related_name="demo")
