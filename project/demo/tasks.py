"""Demo tasks of the example site, each a real piece of work that shows one behaviour.

Written as any host writes its own: ``@tracked_task()`` (Celery's ``shared_task`` on
Tasklight's ``TrackedTask``) and ``@launchable`` for the ones the dashboard may start.
The maxima and time limits are what a public demo can afford: every visitor may start
these, and each holds a worker slot while it runs.
"""

from __future__ import annotations

import csv
import math
import random
import time
from typing import Any

from tasks import files
from tasks.base import ShowToOwner, tracked_task
from tasks.registry import launchable


@launchable(
    label="Count primes",
    params={
        "properties": {
            "limit": {"type": "integer", "minimum": 2, "maximum": 50_000_000, "default": 2_000_000,
                      "title": "Count primes below"},
        },
    },
    make_label=lambda p: f"Count primes below {p['limit']:,}",
    time_limit=120,
)
@tracked_task(name="demo.count_primes")
def count_primes(self: Any, limit: int = 2_000_000) -> dict[str, int]:
    """CPU work in chunks: trial division by the primes up to sqrt(limit), chunk by chunk."""
    progress = self.progress
    chunk_size = 10_000
    chunks = max(1, math.ceil(limit / chunk_size))
    progress.set(0, chunks, "finding small primes")
    root = math.isqrt(max(limit - 1, 1))
    small = bytearray([1]) * (root + 1)
    for i in range(2, math.isqrt(root) + 1):
        if small[i]:
            small[i * i :: i] = bytearray(len(small[i * i :: i]))
    divisors = [i for i in range(2, root + 1) if small[i]]
    count = 0
    for chunk in range(chunks):
        for n in range(max(2, chunk * chunk_size), min(limit, (chunk + 1) * chunk_size)):
            for d in divisors:
                if d * d > n:
                    count += 1
                    break
                if n % d == 0:
                    break
            else:
                count += 1
        progress.set(chunk + 1, message=f"chunk {chunk + 1} of {chunks}")
    return {"limit": limit, "primes": count}


def _delete_export(self: Any, task_id: str, args: Any, kwargs: Any) -> None:
    files.delete(task_id)


@launchable(
    label="Export CSV",
    params={
        "properties": {
            "rows": {"type": "integer", "minimum": 1, "maximum": 200_000, "default": 200_000,
                     "title": "Rows"},
        },
    },
    make_label=lambda p: f"Export {p['rows']:,} rows to CSV",
    time_limit=120,
)
@tracked_task(name="demo.export_csv", on_cancel=_delete_export)
def export_csv(self: Any, rows: int = 200_000) -> dict[str, Any]:
    """Writes a CSV of generated rows; the download is served to its owner only."""
    progress = self.progress
    progress.set(0, rows, "writing rows")
    path = files.output_path(self.request.id, ".csv")
    rng = random.Random(rows)
    try:
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "name", "amount", "created"])
            for i in range(1, rows + 1):
                writer.writerow([i, f"customer-{rng.randrange(10_000):04d}", f"{rng.random() * 1000:.2f}", 1_700_000_000 + i])
                if i % 1000 == 0 or i == rows:
                    progress.set(i, message=f"{i:,} of {rows:,} rows")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return {"rows": rows, "bytes": path.stat().st_size, "download_url": files.download_url(self.request.id)}


class SimulatedFailure(ShowToOwner, ConnectionError):
    """The flaky task's failure: its message is written for the owner (shown on the dashboard)."""


@launchable(
    label="Flaky task",
    params={
        "properties": {
            "fail_times": {"type": "integer", "minimum": 0, "maximum": 5, "default": 2,
                           "title": "Failures before success"},
            "retry_delay": {"type": "number", "minimum": 0, "maximum": 60, "default": 1,
                            "title": "Seconds between attempts"},
        },
    },
    make_label=lambda p: f"Flaky task (fails {p['fail_times']} times)",
    time_limit=60,
)
@tracked_task(name="demo.flaky", max_retries=3)
def flaky(self: Any, fail_times: int = 2, retry_delay: float = 1.0) -> dict[str, int]:
    """Fails ``fail_times`` times, retrying after ``retry_delay`` seconds, then succeeds.

    With more than 3 failures it runs out of retries and fails for good.
    """
    attempt = self.request.retries + 1
    progress = self.progress
    progress.set(0, 3, f"attempt {attempt}")
    for step in range(3):
        time.sleep(0.05)
        progress.set(step + 1, message=f"attempt {attempt}, step {step + 1} of 3")
    if self.request.retries < fail_times:
        raise self.retry(exc=SimulatedFailure(f"simulated failure {attempt} of {fail_times}"), countdown=retry_delay)
    return {"attempts": attempt}


@launchable(
    label="Sleepy task",
    params={
        "properties": {
            "seconds": {"type": "number", "minimum": 0, "maximum": 60, "default": 5, "title": "Seconds"},
        },
    },
    make_label=lambda p: f"Sleep for {p['seconds']:g} s (indeterminate)",
    time_limit=90,
)
@tracked_task(name="demo.sleepy")
def sleepy(self: Any, seconds: float = 5) -> dict[str, float]:
    """Indeterminate work: no total, only messages."""
    progress = self.progress
    progress.set(0, None, "waiting")
    deadline = time.monotonic() + seconds
    phases = ["warming up", "thinking", "still thinking", "almost there"]
    step = 0
    while time.monotonic() < deadline:
        time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        step += 1
        progress.set(step, None, phases[min(len(phases) - 1, step * len(phases) // max(1, int(seconds * 10)))])
    return {"slept": seconds}


@launchable(
    label="Stubborn task",
    params={
        "properties": {
            "seconds": {"type": "number", "minimum": 0, "maximum": 120, "default": 60, "title": "Seconds"},
        },
    },
    make_label=lambda p: f"Stubborn sleep for {p['seconds']:g} s (never checks for cancel)",
    time_limit=150,
)
@tracked_task(name="demo.stubborn")
def stubborn(self: Any, seconds: float = 60) -> dict[str, float]:
    """Sleeps in one long call and never reports: only a hard stop can cancel it."""
    time.sleep(seconds)
    return {"slept": seconds}


@tracked_task(name="demo.tight_loop")
def tight_loop(self: Any, reports: int = 1_000_000) -> dict[str, int]:
    """Not launchable: calls the reporter ``reports`` times in a tight loop (tests, bench)."""
    progress = self.progress
    progress.set(0, reports, "looping")
    for i in range(1, reports + 1):
        progress.set(i)
    progress.set_message("done")
    return {"reports": reports}
