"""Bench-only tasks: the same work reported through Tasklight and through celery-progress.

Loaded only under bench/settings.py. The Tasklight tasks are launchable (started over
the HTTP API, as a browser would); the baseline tasks are named ``tasklight.bench.*``
so that Tasklight's lifecycle signals leave them alone (names with the ``tasklight.``
prefix are not tracked, tasks/worker/lifecycle.py): the baseline pays only for its own
reporting. Baseline tasks keep their results (``ignore_result=False``) because the
celery-progress page reads the final state from the result backend.

Ticker message format, read by bench/clients.py: ``"<t0> <interval> <t>"`` where report
``i`` was scheduled at ``t0 + i * interval`` and this report was made at ``t`` (epoch s).
"""

from __future__ import annotations

import time
from typing import Any

from celery import shared_task
from celery_progress.backend import ProgressRecorder

from tasks.base import tracked_task
from tasks.registry import launchable


def _schedule(reports: int, interval: float, report: Any) -> dict[str, float]:
    """Report ``reports`` times on a fixed schedule; the most the loop fell behind it."""
    t0 = time.time()
    lag = 0.0
    for i in range(1, reports + 1):
        target = t0 + i * interval
        delay = target - time.time()
        if delay > 0:
            time.sleep(delay)
        now = time.time()
        lag = max(lag, now - target)
        report(i, f"{t0!r} {interval!r} {now!r}")
    return {"t0": t0, "interval": interval, "last": time.time(), "max_lag": lag}


_TICKER_PARAMS = {
    "properties": {
        "reports": {"type": "integer", "minimum": 1, "maximum": 100_000, "default": 40},
        "interval": {"type": "number", "minimum": 0.001, "maximum": 10, "default": 0.137},
    },
}


@launchable(label="Bench ticker", params=_TICKER_PARAMS)
@tracked_task(name="bench.ticker")
def ticker(self: Any, reports: int = 40, interval: float = 0.137) -> dict[str, float]:
    """Reports progress ``reports`` times, every ``interval`` seconds (Tasklight)."""
    progress = self.progress
    progress.set(0, reports, "")
    return _schedule(reports, interval, lambda i, msg: progress.set(i, reports, msg))


@shared_task(bind=True, name="tasklight.bench.cp_ticker", ignore_result=False)
def cp_ticker(self: Any, reports: int = 40, interval: float = 0.137) -> dict[str, float]:
    """The same reports through celery-progress (``ProgressRecorder.set_progress``)."""
    recorder = ProgressRecorder(self)
    return _schedule(reports, interval, lambda i, msg: recorder.set_progress(i, reports, msg))


def _per_call_us(n: int, loop: Any) -> float:
    started = time.perf_counter()
    loop(n)
    return (time.perf_counter() - started) / n * 1e6


@launchable(
    label="Bench tight loop",
    params={"properties": {"n": {"type": "integer", "minimum": 1, "maximum": 10_000_000, "default": 200_000}}},
)
@tracked_task(name="bench.tight")
def tight(self: Any, n: int = 200_000) -> dict[str, float]:
    """Microseconds per report call in a task's loop: empty loop, advance(), set()."""
    progress = self.progress
    progress.set(0, n, "")

    def empty(k: int) -> None:
        for _ in range(k):
            pass

    def advance(k: int) -> None:
        for _ in range(k):
            progress.advance()

    def set_(k: int) -> None:
        for i in range(k):
            progress.set(i, n, "step")

    return {"empty_us": _per_call_us(n, empty), "advance_us": _per_call_us(n, advance),
            "set_us": _per_call_us(n, set_), "n": n}


@shared_task(bind=True, name="tasklight.bench.cp_tight", ignore_result=False)
def cp_tight(self: Any, n: int = 2_000) -> dict[str, float]:
    """Microseconds per ``ProgressRecorder.set_progress`` call in a task's loop."""
    recorder = ProgressRecorder(self)

    def empty(k: int) -> None:
        for _ in range(k):
            pass

    def set_(k: int) -> None:
        for i in range(k):
            recorder.set_progress(i, n, "step")

    return {"empty_us": _per_call_us(n, empty), "set_us": _per_call_us(n, set_), "n": n}


@launchable(
    label="Bench spin",
    params={"properties": {"seconds": {"type": "number", "minimum": 0, "maximum": 600, "default": 30}}},
)
@tracked_task(name="bench.spin")
def spin(self: Any, seconds: float = 30) -> dict[str, float]:
    """CPU work in a loop that reports after every small step (cooperative cancel)."""
    progress = self.progress
    progress.set(0, None, "spinning")
    deadline = time.monotonic() + seconds
    steps = 0
    while time.monotonic() < deadline:
        sum(range(200))
        steps += 1
        progress.advance()
    return {"steps": steps}


@shared_task(bind=True, name="tasklight.bench.cp_spin", ignore_result=False)
def cp_spin(self: Any, seconds: float = 30) -> dict[str, float]:
    """The baseline's spin: reports through celery-progress every 1,000 steps."""
    recorder = ProgressRecorder(self)
    deadline = time.monotonic() + seconds
    steps = 0
    while time.monotonic() < deadline:
        sum(range(200))
        steps += 1
        if steps % 1000 == 0:
            recorder.set_progress(steps, 0, "spinning")
    return {"steps": steps}
