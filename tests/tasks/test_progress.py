"""The reporter and the sampler, pure: no I/O."""

from __future__ import annotations

import pytest

from tasks.progress import Progress, ProgressSampler, TaskCancelled, reporter


def test_set_and_advance_record_latest_values() -> None:
    p = Progress("t1")
    p.set(5, 10, "five")
    p.advance(2)
    assert (p.current, p.total, p.message) == (7, 10, "five")
    p.set_progress(9, 20, "celery-progress style")
    assert (p.current, p.total, p.message) == (9, 20, "celery-progress style")


def test_a_cancelled_reporter_raises_on_every_kind_of_report() -> None:
    p = Progress("t1")
    p.mark_cancelled()
    for call in (lambda: p.set(1), lambda: p.advance(), lambda: p.set_total(3), lambda: p.set_message("x"), p.check):
        with pytest.raises(TaskCancelled):
            call()


def test_reporter_outside_a_worker_is_detached() -> None:
    detached = reporter(None)
    detached.advance(3)
    assert detached.current == 3 and detached.task_id is None


def test_sampler_publishes_only_changes_and_percent_never_goes_back() -> None:
    p = Progress("t1")
    s = ProgressSampler(p)
    p.set(50, 100)
    first = s.sample()
    assert first is not None and first["progress"]["percent"] == 50.0
    assert s.sample() is None  # nothing new: nothing to publish
    p.set(40, 100, "went back")
    again = s.sample()
    assert again is not None and again["progress"]["percent"] == 50.0
    assert again["progress"]["message"] == "went back"
    assert s.sample(force=True) is not None


def test_sampler_indeterminate_work_has_no_percent_and_no_eta() -> None:
    p = Progress("t1")
    s = ProgressSampler(p)
    p.set(3, None, "thinking")
    out = s.sample()
    assert out is not None
    assert out["progress"] == {"current": 3, "total": None, "percent": None, "message": "thinking"}
    assert out["eta_seconds"] is None


def test_eta_is_unknown_at_first_then_follows_the_smoothed_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr("tasks.progress.time.monotonic", lambda: clock[0])
    p = Progress("t1")
    s = ProgressSampler(p)
    p.set(0, 100)
    assert s.sample()["eta_seconds"] is None  # type: ignore[index]
    etas = []
    for step in range(1, 11):
        clock[0] += 0.1
        p.set(step, 100)  # 10 units a second
        etas.append(s.sample()["eta_seconds"])  # type: ignore[index]
    assert etas[0] is None  # not observed long enough yet
    assert etas[-1] == pytest.approx(9.0, abs=0.5)
    # A burst of speed moves the ETA, but smoothly, not all the way at once.
    clock[0] += 0.1
    p.set(30, 100)
    burst = s.sample()["eta_seconds"]  # type: ignore[index]
    assert 0 < burst < etas[-1]
    assert burst > (100 - 30) / 200  # far from the instantaneous 200/s estimate


def test_an_armed_reporter_wakes_its_publisher_once_then_stays_quiet() -> None:
    woken: list[str | None] = []
    p = Progress("t1")
    p.wake = woken.append
    p.advance()
    assert woken == []  # not armed: the report is only recorded
    p.arm()
    p.advance()
    p.advance()
    p.set(10)
    assert woken == ["t1"]  # one wake for the leading edge, then quiet until re-armed
    assert p.flag is False and p.current == 10


def test_nan_and_infinity_never_reach_a_frame() -> None:
    p = Progress("t1")
    s = ProgressSampler(p)
    p.set(float("nan"), float("inf"), "odd")
    out = s.sample()
    assert out is not None
    assert out["progress"]["current"] == 0 and out["progress"]["total"] is None and out["progress"]["percent"] is None


def test_a_cancel_that_lands_while_the_reporter_disarms_is_not_lost() -> None:
    # The publisher thread marks the task cancelled at the worst moment: between the
    # reporter's last read of ``cancelled`` and its clearing of ``flag``.
    class Racy(Progress):
        __slots__ = ("reads",)

    real = Progress.cancelled

    def read(self: Racy) -> bool:
        value = real.__get__(self)
        self.reads += 1
        if self.reads == 2:  # inside _signal, after the first check
            self.mark_cancelled()
        return value

    Racy.cancelled = property(read, lambda self, v: real.__set__(self, v))  # type: ignore[assignment]
    p = Racy("t1")
    p.reads = 0
    p.wake = lambda task_id: None
    p.arm()
    p.set(1)  # disarms and wakes the publisher; the cancel lands meanwhile
    with pytest.raises(TaskCancelled):
        p.set(2)
