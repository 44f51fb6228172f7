"""The processes of one bench run: a private Redis, a migrated temp SQLite database,
Daphne servers and Celery workers, all started here and all stopped at the end.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its reaped children (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # fields[11..14] are utime, stime, cutime, cstime (stat fields 14-17).
    return sum(int(x) for x in fields[11:15]) / CLK_TCK


def rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


class Proc:
    """One child process in its own process group, logging to a file."""

    def __init__(self, stack: Stack, name: str, cmd: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.cmd = cmd
        self.env = env
        self.log_path = stack.tmp / f"{name}-{uuid.uuid4().hex[:6]}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.stack = stack

    def start(self) -> Proc:
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.stack.procs.append(self)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(5)
        if self in self.stack.procs:
            self.stack.procs.remove(self)


class Daphne(Proc):
    def __init__(self, stack: Stack, name: str = "daphne") -> None:
        self.port = free_port()
        # -v 0: no access log, for Tasklight and the baseline alike.
        super().__init__(stack, name, [str(BIN / "daphne"), "-v", "0", "-b", "127.0.0.1", "-p", str(self.port),
                                       "--websocket-max-message-size", "65536", "asgi:application"], stack.env())

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/tasks/"

    def start(self) -> Daphne:
        super().start()
        wait_until(lambda: port_open(self.port) or not self.alive(), 30, "Daphne to listen")
        if not self.alive():
            raise RuntimeError(f"Daphne did not start:\n{self.output()[-3000:]}")
        return self


class Worker(Proc):
    def __init__(self, stack: Stack, concurrency: int = 4, **env: str) -> None:
        self.hostname = f"bench{uuid.uuid4().hex[:6]}@tasklight"
        super().__init__(stack, "worker", [str(BIN / "celery"), "-A", "project", "worker", "-P", "prefork",
                                           "-c", str(concurrency), "-n", self.hostname, "-l", "warning",
                                           "--without-gossip", "--without-mingle", "--without-heartbeat"],
                         stack.env(**env))

    def start(self) -> Worker:
        super().start()
        # With -l warning the banner is quiet; ready means the pool children exist.
        wait_until(lambda: self.pool_pids() or not self.alive(), 60, "the worker's pool", 0.05)
        if not self.alive():
            raise RuntimeError(f"the worker did not start:\n{self.output()[-3000:]}")
        time.sleep(0.5)
        return self

    def pool_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.pid)], capture_output=True, text=True).stdout
        return sorted(int(p) for p in out.split())


class Stack:
    """Environment and processes of one bench run."""

    def __init__(self, *, cancel_grace: float = 1.0, kill_after: float = 1.0, watchdog_interval: float = 0.2) -> None:
        self.run_id = uuid.uuid4().hex[:8]
        self.tmp = Path(tempfile.mkdtemp(prefix=f"tasklight-bench-{self.run_id}-"))
        self.procs: list[Proc] = []
        self.redis: subprocess.Popen[bytes] | None = None
        self.redis_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.result_url = f"redis://127.0.0.1:{self.redis_port}/1"
        self.queue = f"tlbench{self.run_id}"
        self.cancel_grace = cancel_grace
        self.base_env = {
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "DJANGO_SECRET_KEY": "bench-only-" + secrets.token_hex(16),
            "DJANGO_DEBUG": "0",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "REDIS_URL": self.redis_url,
            "BENCH_RESULT_BACKEND": self.result_url,
            "DATABASE_URL": f"sqlite:///{self.tmp / 'bench.sqlite3'}",
            "TASKLIGHT_REDIS_PREFIX": f"tlbench{self.run_id}",
            "TASKLIGHT_MAX_ACTIVE_PER_OWNER": "10000",
            "CELERY_TASK_DEFAULT_QUEUE": self.queue,
            "DJANGO_STATIC_ROOT": str(self.tmp / "static"),
            "TASKLIGHT_FILES_DIR": str(self.tmp / "exports"),
            "TASKLIGHT_CANCEL_GRACE": str(cancel_grace),
            "TASKLIGHT_KILL_AFTER": str(kill_after),
            "TASKLIGHT_WATCHDOG_INTERVAL": str(watchdog_interval),
            "TASKLIGHT_LOG_LEVEL": "WARNING",
        }

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "TASKLIGHT_", "CELERY_"))}
        env.pop("DATABASE_URL", None)
        env.pop("REDIS_URL", None)
        env.update(self.base_env)
        env.update(extra)
        return env

    def start(self) -> Stack:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.redis = subprocess.Popen(
            [binary, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--loglevel", "warning", "--maxclients", "20000"],
            stdout=subprocess.DEVNULL, start_new_session=True)
        wait_until(lambda: port_open(self.redis_port), 10, "redis-server to listen")
        for args in (["migrate", "--noinput", "-v", "0"], ["collectstatic", "--noinput", "-v", "0"]):
            subprocess.run([str(BIN / "python"), "manage.py", *args], cwd=ROOT, env=self.env(), check=True)
        return self

    def redis_pid(self) -> int:
        assert self.redis is not None
        return self.redis.pid

    def stop(self) -> None:
        for proc in reversed(list(self.procs)):
            proc.stop()
        if self.redis is not None and self.redis.poll() is None:
            self.redis.terminate()
            try:
                self.redis.wait(10)
            except subprocess.TimeoutExpired:
                self.redis.kill()
                self.redis.wait(5)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> Stack:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
