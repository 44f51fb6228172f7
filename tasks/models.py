"""The task-run row: the durable record of every tracked Celery task (docs/progress.md)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from tasks.contracts import ACTIVE_STATES, TERMINAL_STATES, State

__all__ = ["ACTIVE_STATES", "TERMINAL_STATES", "State", "TaskRun"]


class TaskRun(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200, db_index=True)
    label = models.CharField(max_length=300, blank=True)
    # "u:<user pk>" for a signed-in user, "v:<visitor id>" for an anonymous session,
    # "" for a task sent by code outside any request (visible only in the admin).
    owner_key = models.CharField(max_length=80, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    params = models.JSONField(default=dict, blank=True)
    # The client address of an anonymous launch, for TASKLIGHT["MAX_ACTIVE_PER_ADDRESS"].
    client_address = models.CharField(max_length=64, blank=True)
    # Seconds after which Celery stops the run (hard limit; the soft one comes a margin before).
    time_limit = models.FloatField(null=True, blank=True)

    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    cancel_requested = models.BooleanField(default=False)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    # Set by the watchdog when it had to stop a task that ignored its cancel.
    terminate_signal = models.CharField(max_length=10, blank=True)
    terminate_sent_at = models.DateTimeField(null=True, blank=True)

    attempt = models.PositiveIntegerField(default=0)
    progress = models.JSONField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    traceback = models.TextField(blank=True)
    worker = models.CharField(max_length=200, blank=True)

    seq = models.BigIntegerField(default=0)
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "tasklight_taskrun"
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["owner_key", "-created_at"], name="tasklight_run_owner_recent"),
            models.Index(fields=["state"], name="tasklight_run_state"),
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.id} ({self.state})"

