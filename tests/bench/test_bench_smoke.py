"""`make bench` cannot rot: every scenario runs at toy size against a real stack.

Figures are measured, never asserted: this checks that each scenario produced its
figures and that no client lost a terminal state.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.run import SCENARIOS

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "tiny.json"
    done = subprocess.run([sys.executable, "bench/run.py", "--tiny", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(out.read_text())


def test_every_scenario_reports_its_figures(tiny: dict) -> None:
    for name in SCENARIOS:
        assert name in tiny, name
    assert tiny["machine"]["versions"]["celery-progress"]
    assert "latency report->client p99" in tiny["table"]


def test_latency_figures_for_both_systems_lose_no_terminal_state(tiny: dict) -> None:
    for run in tiny["latency"].values():
        for system in ("tasklight", "baseline"):
            figures = run[system]
            assert figures["samples"] > 0 and figures["p99_ms"] is not None, (system, figures)
            assert figures["terminal_missing"] == 0, (system, figures)
            assert figures["missing_updates"] == 0, (system, figures)
            assert figures["server_cpu_ms_per_1k_updates"] is not None, (system, figures)


def test_throughput_steps_deliver_every_terminal_state(tiny: dict) -> None:
    steps = tiny["throughput"]["steps"]
    assert steps and all(s["frames_per_s"] for s in steps), steps
    assert tiny["throughput"]["terminal_missing_total"] == 0


def test_report_cost_cancel_and_memory_are_measured(tiny: dict) -> None:
    assert tiny["cost"]["tasklight"]["advance_us"] is not None
    assert tiny["cost"]["baseline"]["set_progress_us"] is not None
    cancel = tiny["cancel"]
    assert cancel["tasklight"]["cooperative_p50_ms"] is not None
    assert cancel["tasklight"]["stubborn_p50_ms"] is not None
    assert cancel["baseline"]["revoke_terminate_p50_ms"] is not None
    assert tiny["memory"]["kb_per_connection"] is not None
