"""A load-client process: many browser-like watchers in one asyncio loop.

    python -m bench.clients '<json config>'

Modes:
- ``ws``: WebSocket clients of Tasklight (session cookie, Origin), each subscribed to
  all of the owner's tasks; every frame is parsed, the newest object per task is kept
  by ``seq``, and updates are checked against what the bench task reported.
- ``poll``: the celery-progress page: GET ``/celery-progress/<id>/``, then wait 500 ms
  after each answer (what celery_progress.js does), until the task is complete.
- ``idle``: WebSocket clients that subscribe and then only sit there (memory figure).

Latency of report ``i`` = the moment a client first holds report ``i`` or a newer one,
minus the moment the task made report ``i`` (bench/tasks.py puts the schedule and the
report time in the progress message; all processes share one clock). Prints ``ready``
once every connection is open, writes its figures to ``out`` and prints ``done``.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sys
import time
from datetime import datetime
from typing import Any

TERMINAL = ("succeeded", "failed", "cancelled")
CONNECT_AT_ONCE = 32


class TaskFigures:
    """What all connections of this process saw of one task."""

    def __init__(self) -> None:
        self.report_lat: list[float] = []  # per report per connection (see module doc)
        self.frame_lat: list[float] = []  # per delivered update: receive - its updated_at / report time
        self.terminal_lat: list[float] = []  # terminal state: receive - finished_at / task end
        self.frames = 0  # delivered updates that carried news
        self.stale = 0  # frames dropped because a newer seq was already held
        self.terminal = 0  # connections that got the terminal state
        self.covered = 0  # sum over connections of the highest report held
        self.total = 0
        self.first = 0.0
        self.last = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in vars(self)}


class Held:
    __slots__ = ("seq", "covered", "terminal")

    def __init__(self) -> None:
        self.seq = -1
        self.covered = 0
        self.terminal = False


def parse_report(message: Any) -> tuple[float, float, float] | None:
    try:
        t0, interval, t = (float(x) for x in str(message).split())
        return t0, interval, t
    except ValueError:
        return None


def cover(fig: TaskFigures, held: Held, current: Any, message: Any, now: float) -> None:
    """Record the latency of every report up to ``current`` that this connection lacked."""
    if not isinstance(current, (int, float)) or current <= held.covered:
        return
    report = parse_report(message)
    if report is None:
        return
    t0, interval, t = report
    cur = int(current)
    for i in range(held.covered + 1, cur + 1):
        fig.report_lat.append(now - (t if i == cur else t0 + i * interval))
    held.covered = cur


def iso_epoch(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.fromisoformat(value).timestamp()


class Run:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.figures: dict[str, TaskFigures] = {}
        self.stop = asyncio.Event()
        self.done_conns = 0
        self.requests = 0
        self.errors: list[str] = []

    def fig(self, task_id: str) -> TaskFigures:
        found = self.figures.get(task_id)
        if found is None:
            found = self.figures[task_id] = TaskFigures()
        return found

    def connection_done(self) -> None:
        self.done_conns += 1
        if self.done_conns >= self.cfg["conns"]:
            self.stop.set()

    # ---- Tasklight: WebSocket -------------------------------------------------------
    async def ws_open(self, gate: asyncio.Semaphore) -> Any:
        import websockets

        async with gate:
            ws = await websockets.connect(
                self.cfg["url"], additional_headers={"Cookie": self.cfg["cookie"], "Origin": self.cfg["origin"]},
                max_size=None, ping_interval=None, open_timeout=60)
            await ws.send('{"type":"subscribe"}')
            first = json.loads(await ws.recv())
            if first.get("type") != "snapshot":
                raise RuntimeError(f"expected a snapshot, got {first}")
            return ws, first

    async def ws_watch(self, ws: Any, snapshot: dict[str, Any]) -> None:
        held: dict[str, Held] = {}
        for obj in snapshot["tasks"]:  # earlier tasks of this owner: not watched
            h = held[obj["id"]] = Held()
            h.seq, h.terminal = obj["seq"], True
        finished = 0
        expect = self.cfg.get("expect", 1)
        try:
            async for raw in ws:
                now = time.time()
                message = json.loads(raw)
                if message.get("type") != "task":
                    continue
                obj = message["task"]
                task_id = obj["id"]
                h = held.get(task_id)
                if h is None:
                    h = held[task_id] = Held()
                fig = self.fig(task_id)
                if obj["seq"] <= h.seq:
                    fig.stale += 1
                    continue
                h.seq = obj["seq"]
                fig.frames += 1
                fig.first = fig.first or now
                fig.last = now
                updated = iso_epoch(obj.get("updated_at"))
                if updated is not None:
                    fig.frame_lat.append(now - updated)
                progress = obj.get("progress") or {}
                if progress.get("total"):
                    fig.total = int(progress["total"])
                before = h.covered
                cover(fig, h, progress.get("current"), progress.get("message"), now)
                fig.covered += h.covered - before
                if obj["state"] in TERMINAL and not h.terminal:
                    h.terminal = True
                    fig.terminal += 1
                    end = iso_epoch(obj.get("finished_at"))
                    if end is not None:
                        fig.terminal_lat.append(now - end)
                    finished += 1
                    if finished >= expect:
                        break
        except Exception as exc:  # a dropped connection is a finding, not a crash
            self.errors.append(f"{type(exc).__name__}: {exc}"[:200])
        self.connection_done()

    # ---- baseline: celery-progress polling ----------------------------------------------
    async def poll_open(self, gate: asyncio.Semaphore) -> tuple[Any, Any]:
        async with gate:
            return await asyncio.open_connection("127.0.0.1", self.cfg["port"])

    async def get(self, reader: Any, writer: Any, path: str) -> Any:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.cfg['port']}\r\nAccept: */*\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        body = await reader.readexactly(length)
        self.requests += 1
        return json.loads(body)

    async def poll_watch(self, conn: tuple[Any, Any], task_id: str) -> None:
        reader, writer = conn
        interval = self.cfg.get("interval", 0.5)
        reports = self.cfg["reports"]
        fig = self.fig(task_id)
        fig.total = reports
        h = Held()
        path = f"/celery-progress/{task_id}/"
        deadline = time.monotonic() + self.cfg["timeout"]
        await asyncio.sleep(random.random() * interval)  # browsers open the page at random moments
        try:
            while time.monotonic() < deadline:
                info = await self.get(reader, writer, path)
                now = time.time()
                if info.get("complete"):
                    result = info.get("result") if isinstance(info.get("result"), dict) else {}
                    if info.get("success") and "t0" in result:
                        msg = f"{result['t0']!r} {result['interval']!r} {result['last']!r}"
                        before = h.covered
                        cover(fig, h, reports, msg, now)
                        fig.covered += h.covered - before
                        fig.terminal_lat.append(now - result["last"])
                    fig.terminal += 1
                    fig.frames += 1
                    break
                progress = info.get("progress") or {}
                current = progress.get("current") or 0
                if info.get("state") == "PROGRESS" and current > h.covered:
                    report = parse_report(progress.get("description"))
                    fig.frames += 1
                    fig.first = fig.first or now
                    fig.last = now
                    if report is not None:
                        fig.frame_lat.append(now - report[2])
                    before = h.covered
                    cover(fig, h, current, progress.get("description"), now)
                    fig.covered += h.covered - before
                await asyncio.sleep(interval)
        except Exception as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}"[:200])
        writer.close()
        self.connection_done()

    # ---- the run --------------------------------------------------------------------------
    async def main(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop.set)
        gate = asyncio.Semaphore(CONNECT_AT_ONCE)
        mode = self.cfg["mode"]
        n = self.cfg["conns"]
        if mode in ("ws", "idle"):
            opened = await asyncio.gather(*(self.ws_open(gate) for _ in range(n)))
        else:
            opened = await asyncio.gather(*(self.poll_open(gate) for _ in range(n)))
        print("ready", flush=True)
        if mode == "ws":
            watchers = [asyncio.ensure_future(self.ws_watch(ws, snap)) for ws, snap in opened]
        elif mode == "poll":
            task_id = self.cfg["task_id"]
            watchers = [asyncio.ensure_future(self.poll_watch(conn, task_id)) for conn in opened]
        else:
            watchers = []
        try:
            await asyncio.wait_for(self.stop.wait(), self.cfg["timeout"])
        except TimeoutError:
            self.errors.append("timeout")
        for w in watchers:
            w.cancel()
        if mode in ("ws", "idle"):
            await asyncio.gather(*(ws.close() for ws, _ in opened), return_exceptions=True)
        out = {"figures": {k: v.as_dict() for k, v in self.figures.items()}, "requests": self.requests,
               "done_conns": self.done_conns, "errors": self.errors[:20], "error_count": len(self.errors)}
        with open(self.cfg["out"], "w") as handle:
            json.dump(out, handle)
        print("done", flush=True)


if __name__ == "__main__":
    asyncio.run(Run(json.loads(sys.argv[1])).main())
