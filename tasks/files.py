"""Files a task writes for its owner to download (``result["download_url"]``).

A task writes its file to ``output_path(task_id, suffix)`` and returns
``download_url(task_id)`` in its result; the download view serves it to the task's
owner only, and ``manage.py tasklight_purge`` deletes it after ``FILES_TTL``.
"""

from __future__ import annotations

import re
from pathlib import Path

from django.urls import reverse

from tasks import conf

_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,10}$")


def files_dir() -> Path:
    return conf.get().FILES_DIR


def output_path(task_id: str, suffix: str = ".bin") -> Path:
    """Where the task ``task_id`` writes its file (the folder is created)."""
    if not _SUFFIX.match(suffix):
        raise ValueError(f"suffix must look like '.csv', not {suffix!r}")
    folder = files_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{task_id}{suffix}"


def find(task_id: str) -> Path | None:
    """The file a task wrote, if it is still there."""
    folder = files_dir()
    if not folder.is_dir():
        return None
    for path in folder.glob(f"{task_id}.*"):
        if path.is_file():
            return path
    return None


def paths(task_id: str) -> list[Path]:
    """The files the task ``task_id`` wrote that are still there."""
    folder = files_dir()
    if not folder.is_dir():
        return []
    return [path for path in folder.glob(f"{task_id}.*") if path.is_file()]


def delete(task_id: str) -> int:
    """Delete the task's file; how many were deleted."""
    count = 0
    for path in paths(task_id):
        path.unlink(missing_ok=True)
        count += 1
    return count


def download_url(task_id: str) -> str:
    """The owner-only URL of the task's file, wherever Tasklight's URLs are mounted."""
    return reverse("tasklight:task-download", args=[task_id])
