"""The bench scenarios (docs/performance.md). Each returns plain figures for both systems.

Tasklight is driven as a browser drives it (HTTP API + WebSocket); the baseline as the
celery-progress page drives it (a task started with Celery, an HTTP endpoint polled
every 500 ms). Sizes come from a ``Sizes`` object so the smoke test can run them tiny.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from bench.stack import ROOT, Daphne, Stack, Worker, cpu_seconds, rss_bytes

TERMINAL = ("succeeded", "failed", "cancelled")


@dataclass
class Sizes:
    latency_clients: tuple[int, ...] = (100, 1000)
    reports: int = 40
    interval: float = 0.137  # incommensurate with 100 ms sampling and 500 ms polling
    throughput_clients: tuple[int, ...] = (10, 25, 50, 100, 200, 300, 400, 550, 700)
    throughput_tasks: int = 4
    throughput_reports: int = 80
    idle_clients: int = 1000
    tight_n: int = 200_000
    cp_tight_n: int = 2_000
    cancel_repeats: int = 5
    stubborn_repeats: int = 2
    client_procs: int = 2
    extra: dict[str, Any] = field(default_factory=dict)


TINY = Sizes(latency_clients=(5,), reports=8, throughput_clients=(5, 10), throughput_tasks=2,
             throughput_reports=16, idle_clients=20, tight_n=20_000, cp_tight_n=200, cancel_repeats=1,
             stubborn_repeats=1, client_procs=1)


# ---- helpers ---------------------------------------------------------------------------
def pct(values: list[float], p: float) -> float | None:
    """The ``p``-th percentile (nearest rank) of ``values``, None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(p / 100.0 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000.0, 1)


def lat_figures(values: list[float], prefix: str = "") -> dict[str, Any]:
    return {f"{prefix}p50_ms": ms(pct(values, 50)), f"{prefix}p99_ms": ms(pct(values, 99)),
            f"{prefix}max_ms": ms(max(values) if values else None), f"{prefix}samples": len(values)}


class Visitor:
    """A browser's HTTP side: session and CSRF cookies from ``GET /``, then the API."""

    def __init__(self, daphne: Daphne) -> None:
        self.daphne = daphne
        self.http = httpx.Client(base_url=daphne.base_url, timeout=30)
        response = self.http.get("/")
        response.raise_for_status()

    @property
    def cookie(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.http.cookies.jar)

    def launch(self, name: str, **params: Any) -> dict[str, Any]:
        response = self.http.post("/api/tasks/", json={"name": name, "params": params},
                                  headers={"X-CSRFToken": self.http.cookies.get("csrftoken", "")})
        if response.status_code != 201:
            raise RuntimeError(f"launch {name}: {response.status_code} {response.text[:300]}")
        return response.json()

    def cancel(self, task_id: str) -> httpx.Response:
        return self.http.post(f"/api/tasks/{task_id}/cancel/", json={},
                              headers={"X-CSRFToken": self.http.cookies.get("csrftoken", "")})

    def wait_finished(self, task_id: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            obj = self.http.get(f"/api/tasks/{task_id}/").json()
            if obj["state"] in TERMINAL:
                return obj
            time.sleep(0.05)
        raise RuntimeError(f"task {task_id} did not finish within {timeout}s")

    def close(self) -> None:
        self.http.close()


class Clients:
    """Load-client processes (bench/clients.py) sharing ``conns`` connections."""

    def __init__(self, stack: Stack, cfg: dict[str, Any], conns: int, procs: int) -> None:
        self.stack = stack
        self.procs: list[subprocess.Popen[str]] = []
        self.outs: list[str] = []
        split = [conns // procs + (1 if i < conns % procs else 0) for i in range(procs)]
        for n in split:
            if n == 0:
                continue
            out = str(stack.tmp / f"clients-{uuid.uuid4().hex[:8]}.json")
            self.outs.append(out)
            log = (stack.tmp / f"clients-{uuid.uuid4().hex[:6]}.log").open("wb")
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "bench.clients", json.dumps({**cfg, "conns": n, "out": out})],
                cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True,
                env={**os.environ, "PYTHONPATH": str(ROOT)}))
        for proc in self.procs:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if line != "ready":
                self.kill()
                raise RuntimeError(f"load clients failed to connect (see logs in {stack.tmp})")

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.terminate()
                proc.wait(10)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        self.wait(15)

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)

    def results(self) -> dict[str, Any]:
        """Figures of every process merged per task, plus request and error counts."""
        merged: dict[str, dict[str, Any]] = {}
        total = {"requests": 0, "errors": [], "error_count": 0}
        for out in self.outs:
            with open(out) as handle:
                data = json.load(handle)
            total["requests"] += data["requests"]
            total["error_count"] += data["error_count"]
            total["errors"] += data["errors"]
            for task_id, fig in data["figures"].items():
                into = merged.setdefault(task_id, {"report_lat": [], "frame_lat": [], "terminal_lat": [],
                                                   "frames": 0, "stale": 0, "terminal": 0, "covered": 0,
                                                   "total": 0, "first": 0.0, "last": 0.0})
                for key in ("report_lat", "frame_lat", "terminal_lat"):
                    into[key] += fig[key]
                for key in ("frames", "stale", "terminal", "covered"):
                    into[key] += fig[key]
                into["total"] = max(into["total"], fig["total"])
                if fig["first"]:
                    into["first"] = min(into["first"] or fig["first"], fig["first"])
                into["last"] = max(into["last"], fig["last"])
        total["tasks"] = merged
        return total


def celery_app(stack: Stack) -> Any:
    """A plain Celery client for the baseline: same broker, the result backend it reads."""
    from celery import Celery

    app = Celery("bench-driver", broker=stack.redis_url, backend=stack.result_url)
    app.conf.update(task_serializer="json", accept_content=["json"], result_serializer="json",
                    broker_connection_retry_on_startup=True)
    return app


def worker_cpu(worker: Worker) -> float:
    total = cpu_seconds(worker.pid)
    for pid in worker.pool_pids():
        try:
            total += cpu_seconds(pid)
        except FileNotFoundError:
            pass
    return total


class Meter:
    """CPU seconds of the server, the worker and Redis over one measured window."""

    def __init__(self, stack: Stack, server: Daphne, worker: Worker) -> None:
        self.parts = {"server": lambda: cpu_seconds(server.pid), "worker": lambda: worker_cpu(worker),
                      "redis": lambda: cpu_seconds(stack.redis_pid())}
        self.start = {k: f() for k, f in self.parts.items()}

    def stop(self) -> dict[str, float]:
        return {f"{k}_cpu_s": round(f() - self.start[k], 3) for k, f in self.parts.items()}


def summarize(task: dict[str, Any], conns: int, reports: int, cpu: dict[str, float]) -> dict[str, Any]:
    figures = lat_figures(task["report_lat"])
    figures.update(lat_figures(task["frame_lat"], "delivery_"))
    figures.update(lat_figures(task["terminal_lat"], "terminal_"))
    delivered = task["frames"]
    figures.update({
        "clients": conns,
        "delivered_updates": delivered,
        "missing_updates": conns * reports - task["covered"],
        "terminal_missing": conns - task["terminal"],
        **cpu,
        "server_cpu_ms_per_1k_updates": round(cpu["server_cpu_s"] * 1e6 / delivered, 1) if delivered else None,
    })
    return figures


# ---- scenarios ---------------------------------------------------------------------------
def latency(stack: Stack, tl: Daphne, cp: Daphne, worker: Worker, sizes: Sizes, conns: int) -> dict[str, Any]:
    """End-to-end latency with ``conns`` watching clients, and server CPU per update."""
    reports, interval = sizes.reports, sizes.interval
    timeout = reports * interval + 30 + conns / 20
    procs = min(sizes.client_procs, conns)

    visitor = Visitor(tl)
    clients = Clients(stack, {"mode": "ws", "url": tl.ws_url, "cookie": visitor.cookie, "origin": tl.base_url,
                              "expect": 1, "timeout": timeout}, conns, procs)
    meter = Meter(stack, tl, worker)
    task = visitor.launch("bench.ticker", reports=reports, interval=interval)
    clients.wait(timeout)
    cpu = meter.stop()
    visitor.close()
    res = clients.results()
    tasklight = summarize(res["tasks"].get(task["id"], _empty()), conns, reports, cpu)
    tasklight["client_errors"] = res["error_count"]

    task_id = str(uuid.uuid4())
    clients = Clients(stack, {"mode": "poll", "port": cp.port, "task_id": task_id, "reports": reports,
                              "interval": 0.5, "timeout": timeout}, conns, procs)
    meter = Meter(stack, cp, worker)
    app = celery_app(stack)
    app.send_task("tasklight.bench.cp_ticker", kwargs={"reports": reports, "interval": interval},
                  task_id=task_id, queue=stack.queue)
    clients.wait(timeout)
    cpu = meter.stop()
    app.close()
    res = clients.results()
    baseline = summarize(res["tasks"].get(task_id, _empty()), conns, reports, cpu)
    baseline["requests"] = res["requests"]
    baseline["server_cpu_ms_per_1k_requests"] = (
        round(cpu["server_cpu_s"] * 1e6 / res["requests"], 1) if res["requests"] else None)
    baseline["client_errors"] = res["error_count"]
    return {"tasklight": tasklight, "baseline": baseline}


def _empty() -> dict[str, Any]:
    return {"report_lat": [], "frame_lat": [], "terminal_lat": [], "frames": 0, "stale": 0, "terminal": 0,
            "covered": 0, "total": 0, "first": 0.0, "last": 0.0}


def throughput(stack: Stack, tl: Daphne, worker: Worker, sizes: Sizes) -> dict[str, Any]:
    """Step the number of watchers up until delivery p99 passes 100 ms, then one step more."""
    tasks_n, reports, interval = sizes.throughput_tasks, sizes.throughput_reports, 0.05
    steps: list[dict[str, Any]] = []
    over = 0
    for conns in sizes.throughput_clients:
        timeout = reports * interval + 40 + conns / 20
        visitor = Visitor(tl)
        clients = Clients(stack, {"mode": "ws", "url": tl.ws_url, "cookie": visitor.cookie, "origin": tl.base_url,
                                  "expect": tasks_n, "timeout": timeout}, conns, min(sizes.client_procs, conns))
        meter = Meter(stack, tl, worker)
        ids = [visitor.launch("bench.ticker", reports=reports, interval=interval)["id"] for _ in range(tasks_n)]
        clients.wait(timeout)
        cpu = meter.stop()
        visitor.close()
        res = clients.results()
        figs = [res["tasks"].get(i, _empty()) for i in ids]
        frames = sum(f["frames"] for f in figs)
        first = min((f["first"] for f in figs if f["first"]), default=0.0)
        last = max((f["last"] for f in figs), default=0.0)
        frame_lat = [x for f in figs for x in f["frame_lat"]]
        report_lat = [x for f in figs for x in f["report_lat"]]
        step = {
            "clients": conns,
            "tasks": tasks_n,
            "frames": frames,
            "frames_per_s": round(frames / (last - first), 0) if last > first else None,
            **lat_figures(frame_lat, "delivery_"),
            **lat_figures(report_lat, "report_"),
            "terminal_missing": conns * tasks_n - sum(f["terminal"] for f in figs),
            "missing_updates": conns * tasks_n * reports - sum(f["covered"] for f in figs),
            "client_errors": res["error_count"],
            **cpu,
        }
        steps.append(step)
        if (step["delivery_p99_ms"] or 1e9) >= 100.0:
            over += 1
            if over >= 2:
                break
    good = [s for s in steps if s["delivery_p99_ms"] is not None and s["delivery_p99_ms"] < 100.0
            and s["frames_per_s"]]
    best = max(good, key=lambda s: s["frames_per_s"]) if good else None
    return {"steps": steps, "max_frames_per_s_p99_under_100ms": best["frames_per_s"] if best else None,
            "at_clients": best["clients"] if best else None,
            "terminal_missing_total": sum(s["terminal_missing"] for s in steps)}


def report_cost(stack: Stack, tl: Daphne, sizes: Sizes) -> dict[str, Any]:
    """Microseconds one progress report costs inside a task's loop (empty loop subtracted)."""
    visitor = Visitor(tl)
    task = visitor.launch("bench.tight", n=sizes.tight_n)
    done = visitor.wait_finished(task["id"])
    visitor.close()
    r = done["result"]
    app = celery_app(stack)
    cp = app.send_task("tasklight.bench.cp_tight", kwargs={"n": sizes.cp_tight_n}, queue=stack.queue).get(timeout=120)
    app.close()
    tl_set = r["set_us"] - r["empty_us"]
    return {
        "tasklight": {"advance_us": round(r["advance_us"] - r["empty_us"], 3), "set_us": round(tl_set, 3),
                      "calls": r["n"], "state": done["state"]},
        "baseline": {"set_progress_us": round(cp["set_us"] - cp["empty_us"], 1), "calls": cp["n"]},
    }


def idle_memory(stack: Stack, tl: Daphne, sizes: Sizes) -> dict[str, Any]:
    """RSS of a Daphne process before and after ``idle_clients`` subscribed, idle sockets."""
    visitor = Visitor(tl)
    time.sleep(0.5)
    before = rss_bytes(tl.pid)
    n = sizes.idle_clients
    clients = Clients(stack, {"mode": "idle", "url": tl.ws_url, "cookie": visitor.cookie, "origin": tl.base_url,
                              "timeout": 300}, n, min(sizes.client_procs, n))
    time.sleep(1.5)
    after = rss_bytes(tl.pid)
    clients.stop()
    visitor.close()
    return {"connections": n, "rss_before_mb": round(before / 2**20, 1), "rss_after_mb": round(after / 2**20, 1),
            "kb_per_connection": round((after - before) / n / 1024, 1)}


def _iso(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


async def _watch_until(ws: Any, held: dict[str, dict[str, Any]], task_id: str, pred: Any, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        obj = held.get(task_id)
        if obj is not None and pred(obj):
            return obj
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError(f"task {task_id}: no matching state within {timeout}s; last {obj}")
        message = json.loads(await asyncio.wait_for(ws.recv(), left))
        for o in message.get("tasks", [message.get("task")] if message.get("task") else []):
            if o["id"] not in held or o["seq"] > held[o["id"]]["seq"]:
                held[o["id"]] = o


async def _cancel_tasklight(tl: Daphne, sizes: Sizes, grace: float) -> dict[str, Any]:
    import websockets

    visitor = Visitor(tl)
    ws = await websockets.connect(tl.ws_url, additional_headers={"Cookie": visitor.cookie, "Origin": tl.base_url})
    await ws.send('{"type":"subscribe"}')
    held: dict[str, dict[str, Any]] = {}
    coop_seen: list[float] = []
    coop_stopped: list[float] = []
    stubborn: list[float] = []
    try:
        for _ in range(sizes.cancel_repeats):
            task = await asyncio.to_thread(visitor.launch, "bench.spin", seconds=60)
            await _watch_until(ws, held, task["id"], lambda o: o["state"] == "running"
                               and (o["progress"]["current"] or 0) > 0, 30)
            sent = time.time()
            await asyncio.to_thread(visitor.cancel, task["id"])
            final = await _watch_until(ws, held, task["id"], lambda o: o["state"] in TERMINAL, 30)
            coop_seen.append(time.time() - sent)
            coop_stopped.append(_iso(final["finished_at"]) - sent)
            assert final["state"] == "cancelled", final
        for _ in range(sizes.stubborn_repeats):
            task = await asyncio.to_thread(visitor.launch, "demo.stubborn", seconds=120)
            await _watch_until(ws, held, task["id"], lambda o: o["state"] == "running", 30)
            await asyncio.sleep(0.3)
            sent = time.time()
            await asyncio.to_thread(visitor.cancel, task["id"])
            final = await _watch_until(ws, held, task["id"], lambda o: o["state"] in TERMINAL, grace + 30)
            stubborn.append(time.time() - sent)
            assert final["state"] == "cancelled", final
    finally:
        await ws.close()
        visitor.close()
    return {
        "cooperative_p50_ms": ms(statistics.median(coop_seen)), "cooperative_max_ms": ms(max(coop_seen)),
        "cooperative_stopped_p50_ms": ms(statistics.median(coop_stopped)),
        "stubborn_p50_ms": ms(statistics.median(stubborn)), "stubborn_max_ms": ms(max(stubborn)),
        "stubborn_minus_grace_p50_ms": ms(statistics.median(stubborn) - grace),
        "grace_s": grace, "repeats": len(coop_seen), "stubborn_repeats": len(stubborn),
    }


def cancel(stack: Stack, tl: Daphne, sizes: Sizes) -> dict[str, Any]:
    """Cancel latency: Tasklight's cooperative and enforced cancels; Celery's terminate as baseline."""
    tasklight = asyncio.run(_cancel_tasklight(tl, sizes, stack.cancel_grace))
    # celery-progress has no cancel; what its users call is Celery's revoke(terminate=True).
    app = celery_app(stack)
    times: list[float] = []
    for _ in range(sizes.cancel_repeats):
        result = app.send_task("tasklight.bench.cp_spin", kwargs={"seconds": 60}, queue=stack.queue)
        deadline = time.monotonic() + 30
        while result.state != "PROGRESS" and time.monotonic() < deadline:
            time.sleep(0.01)
        sent = time.time()
        result.revoke(terminate=True)
        while result.state != "REVOKED" and time.monotonic() < deadline + 30:
            time.sleep(0.005)
        times.append(time.time() - sent)
        result.forget()
    app.close()
    baseline = {"revoke_terminate_p50_ms": ms(statistics.median(times)), "revoke_terminate_max_ms": ms(max(times))}
    return {"tasklight": tasklight, "baseline": baseline}
