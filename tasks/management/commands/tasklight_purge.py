"""``manage.py tasklight_purge``: delete old finished runs, their live records and files.

Run it once a day (cron, a systemd timer, or Celery beat calling
``django.core.management.call_command("tasklight_purge")``), as Django's own
``clearsessions``. See docs/integration.md, "Housekeeping".
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tasks import conf, files, live
from tasks.contracts import TERMINAL_STATES
from tasks.models import TaskRun
from tasks.objects import now

BATCH = 500


class Command(BaseCommand):
    help = "Delete finished task runs older than TASKLIGHT['RETENTION_DAYS'], with their live records and files."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=float, default=None,
                            help="keep finished runs younger than this many days (default: RETENTION_DAYS)")
        parser.add_argument("--dry-run", action="store_true", help="say what would be deleted, delete nothing")

    def handle(self, *args: Any, days: float | None = None, dry_run: bool = False, **options: Any) -> None:
        settings = conf.get()
        days = float(settings.RETENTION_DAYS if days is None else days)
        if not math.isfinite(days) or days < 0:
            raise CommandError("--days must be a number, 0 or more")
        try:
            cutoff = now() - timedelta(days=days)
        except OverflowError:  # further back than dates go: no run is that old
            cutoff = datetime.min.replace(tzinfo=UTC)
        old = TaskRun.objects.filter(state__in=TERMINAL_STATES, finished_at__lt=cutoff)
        ids = [str(i) for i in old.values_list("id", flat=True)]
        stale = self.old_files(settings.FILES_TTL, dry_run)
        if dry_run:
            # The old runs' own files go with their run, however young they are.
            doomed = stale.union(*(files.paths(task_id) for task_id in ids))
            self.stdout.write(f"Would delete {len(ids)} runs and {len(doomed)} files.")
            return
        files_removed = len(stale)
        client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
        records = 0
        try:
            for start in range(0, len(ids), BATCH):
                batch = ids[start:start + BATCH]
                records += live.delete_records(client, batch)
                for task_id in batch:
                    files_removed += files.delete(task_id)
                TaskRun.objects.filter(id__in=batch).delete()
        except redis.RedisError as exc:
            raise CommandError(f"Redis is unreachable ({exc}); nothing more was deleted. Run it again later.") from exc
        finally:
            client.close()
        self.stdout.write(f"Deleted {len(ids)} runs, {records} live records and {files_removed} files.")

    def old_files(self, ttl: float, dry_run: bool) -> set[Path]:
        """Files older than FILES_TTL, whoever wrote them: those deleted (or that would be)."""
        folder = files.files_dir()
        if not folder.is_dir():
            return set()
        cutoff = time.time() - ttl
        found: set[Path] = set()
        for path in folder.iterdir():
            try:
                if path.is_file() and path.stat().st_mtime < cutoff:
                    if not dry_run:
                        path.unlink()
                    found.add(path)
            except FileNotFoundError:
                continue  # taken by a concurrent purge
        return found
