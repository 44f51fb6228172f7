from __future__ import annotations

from django.contrib import admin

from tasks.models import TaskRun


@admin.register(TaskRun)
class TaskRunAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "state", "owner_key", "user", "created_at", "finished_at")
    list_filter = ("state", "name")
    search_fields = ("id", "name", "owner_key")
    readonly_fields = [f.name for f in TaskRun._meta.fields]
