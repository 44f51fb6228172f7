"""`make bench`: start a private stack, run every scenario, print one table, write JSON.

    .venv/bin/python bench/run.py            # full run, writes bench/results/latest.json
    .venv/bin/python bench/run.py --tiny     # every scenario at toy size (tests/bench)

Method and the meaning of each figure: docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import scenarios  # noqa: E402
from bench.stack import Daphne, Stack, Worker  # noqa: E402

SCENARIOS = ("memory", "latency", "throughput", "cost", "cancel")


def machine() -> dict[str, Any]:
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    redis_v = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.strip()
    packages = ["Django", "channels", "channels-redis", "daphne", "celery", "kombu", "redis", "celery-progress",
                "websockets", "httpx"]
    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(mem_kb / 2**20, 1),
        "kernel": platform.release(), "python": platform.python_version(), "redis_server": redis_v,
        "versions": {p: version(p) for p in packages},
    }


def run(sizes: scenarios.Sizes, only: tuple[str, ...], log: Any) -> dict[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results: dict[str, Any] = {"machine": machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                               "sizes": {k: v for k, v in vars(sizes).items() if k != "extra"}}
    timings: dict[str, float] = {}
    with Stack() as stack:
        tl = Daphne(stack, "daphne-tasklight").start()
        cp = Daphne(stack, "daphne-baseline").start()
        worker = Worker(stack, concurrency=max(4, sizes.throughput_tasks)).start()
        results["setup"] = {"grace_s": stack.cancel_grace, "worker_concurrency": max(4, sizes.throughput_tasks),
                            "publish_interval_s": 0.1, "poll_interval_s": 0.5}

        def step(name: str, fn: Any, *args: Any) -> Any:
            log(f"  {name} ...")
            started = time.monotonic()
            value = fn(*args)
            timings[name] = round(time.monotonic() - started, 1)
            log(f"  {name}: {timings[name]} s")
            return value

        if "memory" in only:
            results["memory"] = step("memory", scenarios.idle_memory, stack, tl, sizes)
        if "latency" in only:
            results["latency"] = {
                str(n): step(f"latency {n}", scenarios.latency, stack, tl, cp, worker, sizes, n)
                for n in sizes.latency_clients
            }
        if "throughput" in only:
            results["throughput"] = step("throughput", scenarios.throughput, stack, tl, worker, sizes)
        if "cost" in only:
            results["cost"] = step("cost", scenarios.report_cost, stack, tl, sizes)
        if "cancel" in only:
            results["cancel"] = step("cancel", scenarios.cancel, stack, tl, sizes)
        for proc in (tl, cp, worker):
            if not proc.alive():
                raise RuntimeError(f"{proc.name} died:\n{proc.output()[-3000:]}")
    results["seconds"] = timings
    return results


def ratio(a: Any, b: Any) -> str:
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or not a or not b:
        return ""
    r = b / a
    return f"{r:.1f}x" if r >= 1 else f"1/{1 / r:.1f}x"


def fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        text = f"{value:,.1f}" if abs(value) >= 10 else f"{value:,.3g}"
    else:
        text = f"{value:,}" if isinstance(value, int) else str(value)
    return f"{text}{unit}"


def table(results: dict[str, Any]) -> str:
    """One table: figure, Tasklight, celery-progress, and how many times better Tasklight is."""
    rows: list[tuple[str, str, str, str]] = []

    def add(label: str, tl: Any, cp: Any, unit: str = "", lower_better: bool = True) -> None:
        r = ratio(tl, cp) if lower_better else ratio(cp, tl)
        rows.append((label, fmt(tl, unit), fmt(cp, unit), r))

    for n, lat in results.get("latency", {}).items():
        t, b = lat["tasklight"], lat["baseline"]
        for p in ("p50", "p99", "max"):
            add(f"latency report->client {p}, {n} clients", t[f"{p}_ms"], b[f"{p}_ms"], " ms")
        add(f"terminal state delivered, {n} clients p99", t["terminal_p99_ms"], b["terminal_p99_ms"], " ms")
        add(f"updates delivered / missing, {n} clients", f"{t['delivered_updates']:,} / {t['missing_updates']:,}",
            f"{b['delivered_updates']:,} / {b['missing_updates']:,}", lower_better=False)
        add(f"terminal states lost, {n} clients", t["terminal_missing"], b["terminal_missing"])
        add(f"server CPU per 1k delivered updates, {n} cl.", t["server_cpu_ms_per_1k_updates"],
            b["server_cpu_ms_per_1k_updates"], " ms")
        add(f"server CPU s (whole task), {n} clients", t["server_cpu_s"], b["server_cpu_s"], " s")
    tp = results.get("throughput")
    if tp:
        add("frames/s, one Daphne, delivery p99 < 100 ms", tp["max_frames_per_s_p99_under_100ms"], None,
            lower_better=False)
        for s in tp["steps"]:
            add(f"  {s['clients']} clients x {s['tasks']} tasks: fps / p99 / lost",
                f"{fmt(s['frames_per_s'])} / {fmt(s['delivery_p99_ms'])} ms / {s['terminal_missing']}", None)
    cost = results.get("cost")
    if cost:
        add("one progress report in a loop (advance)", cost["tasklight"]["advance_us"],
            cost["baseline"]["set_progress_us"], " us")
        add("one progress report in a loop (set)", cost["tasklight"]["set_us"],
            cost["baseline"]["set_progress_us"], " us")
    cancel = results.get("cancel")
    if cancel:
        t, b = cancel["tasklight"], cancel["baseline"]
        add("cancel, cooperative: request->client sees it p50", t["cooperative_p50_ms"],
            b["revoke_terminate_p50_ms"], " ms")
        add("cancel, cooperative: request->task stopped p50", t["cooperative_stopped_p50_ms"], None, " ms")
        add(f"cancel, stubborn (grace {t['grace_s']:g} s) p50 total", t["stubborn_p50_ms"], None, " ms")
        add("cancel, stubborn p50 minus grace", t["stubborn_minus_grace_p50_ms"], None, " ms")
    mem = results.get("memory")
    if mem:
        add(f"memory per idle WebSocket ({mem['connections']} sockets)", mem["kb_per_connection"], None, " KiB")
    width = [max(len(r[i]) for r in rows + [("figure", "Tasklight", "celery-progress", "ratio")]) for i in range(4)]
    head = ("figure", "Tasklight", "celery-progress", "ratio")
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, width)), "  ".join("-" * w for w in width)]
    for r in rows:
        lines.append("  ".join([r[0].ljust(width[0]), r[1].rjust(width[1]), r[2].rjust(width[2]), r[3].rjust(width[3])]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="every scenario at toy size (smoke test)")
    parser.add_argument("--only", default=",".join(SCENARIOS), help=f"comma-separated subset of {SCENARIOS}")
    parser.add_argument("--out", default=None, help="JSON output (default bench/results/latest.json, "
                                                     "tiny: bench/results/tiny.json)")
    args = parser.parse_args(argv)
    sizes = scenarios.TINY if args.tiny else scenarios.Sizes()
    only = tuple(s.strip() for s in args.only.split(",") if s.strip())
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / ("tiny.json" if args.tiny else "latest.json")
    started = time.monotonic()
    print(f"Tasklight bench ({'tiny' if args.tiny else 'full'}): {', '.join(only)}", file=sys.stderr)
    results = run(sizes, only, lambda m: print(m, file=sys.stderr, flush=True))
    results["total_seconds"] = round(time.monotonic() - started, 1)
    results["table"] = table(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(results["table"])
    print(f"\n{results['total_seconds']} s; figures in {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
