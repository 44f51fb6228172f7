"""Real services for the tests: a private Redis, a Celery worker, Daphne, and clients.

Every test run gets its own Redis server (on a free port, so a test may stop and
restart it), its own key prefix, queue name and database; everything it starts is
stopped at the end.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
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
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RUN_ID = uuid.uuid4().hex[:8]
TMP = Path(tempfile.gettempdir()) / f"tasklight-test-{RUN_ID}"
TERMINAL = ("succeeded", "failed", "cancelled")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class RedisServer:
    """A redis-server of this test run, which tests may stop and start again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--loglevel", "warning", "--maxclients", "20000"],
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_until(lambda: port_open(self.port), 10, what="redis-server to listen")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        wait_until(lambda: not port_open(self.port), 10, what="redis-server to stop")


_redis: RedisServer | None = None


def ensure_test_environment() -> None:
    """Set the environment of this run (once, in the pytest process) and start its Redis."""
    global _redis
    if os.environ.get("TASKLIGHT_TEST_RUN"):
        return
    TMP.mkdir(parents=True, exist_ok=True)
    _redis = RedisServer()
    _redis.start()
    atexit.register(_cleanup)
    os.environ.update(
        {
            "TASKLIGHT_TEST_RUN": RUN_ID,
            "DJANGO_SECRET_KEY": "tests-only-" + uuid.uuid4().hex,
            "DJANGO_DEBUG": "0",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
            "REDIS_URL": _redis.url,
            "TASKLIGHT_REDIS_PREFIX": f"tltest{RUN_ID}",
            "CELERY_TASK_DEFAULT_QUEUE": f"tltest{RUN_ID}",
            "TASKLIGHT_FILES_DIR": str(TMP / "exports"),
            "DJANGO_STATIC_ROOT": str(TMP / "static"),
            "TASKLIGHT_CANCEL_GRACE": "2",
            "TASKLIGHT_KILL_AFTER": "2",
            "TASKLIGHT_HEARTBEAT_TIMEOUT": "4",
            "TASKLIGHT_WATCHDOG_INTERVAL": "0.5",
            "TASKLIGHT_RESYNC_INTERVAL": "1",
            "TASKLIGHT_MAX_ACTIVE_PER_OWNER": "1000",
        }
    )
    db_url = os.environ.get("DATABASE_URL", "")
    if db_url.startswith("postgres"):
        os.environ["DJANGO_TEST_DB_NAME"] = f"test_tasklight_{RUN_ID}"
    else:
        os.environ["DJANGO_TEST_DB_NAME"] = str(TMP / "test.sqlite3")
        os.environ["DATABASE_URL"] = f"sqlite:///{TMP / 'main.sqlite3'}"


def redis_server() -> RedisServer:
    assert _redis is not None
    return _redis


def _cleanup() -> None:
    for proc in list(LiveProcess.running):
        proc.stop()
    publisher = sys.modules.get("tasks.worker.publisher")
    if publisher is not None and getattr(publisher, "_publisher", None) is not None:
        publisher._publisher.stop()  # the tests' own, before its Redis goes away
    if _redis is not None:
        _redis.stop()
    shutil.rmtree(TMP, ignore_errors=True)


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a server or worker that shares this run's test database."""
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "project.settings"
    env["PYTHONUNBUFFERED"] = "1"
    test_name = env["DJANGO_TEST_DB_NAME"]
    if env["DATABASE_URL"].startswith("postgres"):
        parts = urlparse(env["DATABASE_URL"])
        env["DATABASE_URL"] = urlunparse(parts._replace(path="/" + test_name))
    else:
        env["DATABASE_URL"] = f"sqlite:///{test_name}"
    env.update(extra)
    return env


class LiveProcess:
    running: list[LiveProcess] = []

    def __init__(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.cmd = cmd
        self.env = env
        self.log_path = TMP / f"{name}-{uuid.uuid4().hex[:6]}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> LiveProcess:
        TMP.mkdir(parents=True, exist_ok=True)
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.cmd, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        LiveProcess.running.append(self)
        return self

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Kill the whole process group at once (a worker lost, a server crash)."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            self.proc.wait(15)
        if self in LiveProcess.running:
            LiveProcess.running.remove(self)

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(8)
            except subprocess.TimeoutExpired:
                pass
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(5)
        if self in LiveProcess.running:
            LiveProcess.running.remove(self)


class Worker(LiveProcess):
    def __init__(self, concurrency: int = 2, pool: str = "prefork", **env: str) -> None:
        self.hostname = f"w{uuid.uuid4().hex[:6]}@tasklight-test"
        super().__init__(
            "worker",
            [str(BIN / "celery"), "-A", "project", "worker", "-P", pool, "-c", str(concurrency), "-n", self.hostname,
             "-l", "info", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            subprocess_env(**env),
        )

    def start(self) -> Worker:
        super().start()
        wait_until(lambda: " ready." in self.output() or not self.alive(), 60, 0.05, "the worker to be ready")
        assert self.alive(), self.output()
        return self

    def pool_pids(self) -> list[int]:
        """Pids of the prefork pool's processes (children of the worker's main process)."""
        assert self.proc is not None
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return sorted(int(p) for p in out.split())


class Daphne(LiveProcess):
    def __init__(self, port: int | None = None, **env: str) -> None:
        self.port = port or free_port()
        super().__init__(
            "daphne",
            [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(self.port), "--websocket-max-message-size", "262144",
             "--websocket-max-frame-size", "262144", "asgi:application"],
            subprocess_env(**env),
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/tasks/"

    def start(self) -> Daphne:
        if not (TMP / "static" / "staticfiles.json").exists():
            subprocess.run([str(BIN / "python"), "manage.py", "collectstatic", "--noinput", "-v", "0"],
                           cwd=ROOT, env=self.env, check=True)
        super().start()
        wait_until(lambda: port_open(self.port) or not self.alive(), 30, 0.05, "Daphne to listen")
        assert self.alive(), self.output()
        return self


class Visitor:
    """A browser-like client: a session cookie, the CSRF token, HTTP and WebSockets."""

    def __init__(self, daphne: Daphne) -> None:
        import httpx

        self.daphne = daphne
        self.http = httpx.AsyncClient(base_url=daphne.base_url, timeout=10)

    async def __aenter__(self) -> Visitor:
        response = await self.http.get("/")
        assert response.status_code == 200, response.text
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    @property
    def cookie_header(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.http.cookies.jar)

    def csrf(self) -> dict[str, str]:
        return {"X-CSRFToken": self.http.cookies.get("csrftoken", "")}

    async def launch(self, name: str, **params: Any) -> dict[str, Any]:
        response = await self.http.post("/api/tasks/", json={"name": name, "params": params}, headers=self.csrf())
        assert response.status_code == 201, response.text
        return response.json()

    async def post(self, path: str, body: Any = None) -> Any:
        return await self.http.post(path, json=body if body is not None else {}, headers=self.csrf())

    async def get(self, path: str) -> Any:
        return await self.http.get(path)

    async def owner_key(self) -> str:
        """This visitor's owner key (tests start non-launchable tasks for it directly)."""
        from asgiref.sync import sync_to_async

        probe = await self.launch("demo.sleepy", seconds=0)
        return await sync_to_async(owner_of)(probe["id"])

    async def watch_all(self) -> Socket:
        """A socket subscribed to all of this visitor's tasks, its snapshot read."""
        ws = await self.socket()
        await ws.send({"type": "subscribe"})
        await ws.expect(lambda m: m["type"] == "snapshot")
        return ws

    async def socket(self, origin: str | None = None) -> Socket:
        import websockets

        ws = await websockets.connect(
            self.daphne.ws_url,
            additional_headers={"Cookie": self.cookie_header, "Origin": origin or self.daphne.base_url},
            max_size=None,
        )
        return Socket(ws)


class Socket:
    """A WebSocket connection that keeps the newest task object per id, like a browser."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.tasks: dict[str, dict[str, Any]] = {}
        self.messages: list[dict[str, Any]] = []

    async def send(self, message: Any) -> None:
        await self.ws.send(message if isinstance(message, (str, bytes)) else json.dumps(message))

    async def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        message = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self.messages.append(message)
        if message.get("type") == "snapshot":
            for task in message["tasks"]:
                self._keep(task)
        elif message.get("type") == "task":
            self._keep(message["task"])
        return message

    def _keep(self, task: dict[str, Any]) -> None:
        known = self.tasks.get(task["id"])
        if known is None or task["seq"] > known["seq"]:
            self.tasks[task["id"]] = task

    async def expect(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
        """Read messages until one satisfies ``predicate``; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching message within {timeout}s; last: {self.messages[-3:]}")
            message = await self.recv(left)
            if predicate(message):
                return message

    async def until_task(self, task_id: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20.0) -> dict[str, Any]:
        def match(m: dict[str, Any]) -> bool:
            t = self.tasks.get(task_id)
            return t is not None and predicate(t)

        if match({}):
            return self.tasks[task_id]
        await self.expect(match, timeout)
        return self.tasks[task_id]

    async def until_finished(self, task_id: str, timeout: float = 30.0) -> dict[str, Any]:
        return await self.until_task(task_id, lambda t: t["state"] in TERMINAL, timeout)

    async def close(self) -> None:
        await self.ws.close()


def owner_of(task_id: str) -> str:
    """The owner key of a run (tests read it to start tasks for a visitor directly)."""
    from tasks.models import TaskRun

    return TaskRun.objects.get(id=task_id).owner_key


def send_owned_task(name: str, owner_key: str, *, queue: str | None = None, countdown: float | None = None, **kwargs: Any) -> str:
    """Create a run owned by ``owner_key`` and send it to Celery, as launch does, but for any
    task, queue or countdown (test-only: clients can start only launchable tasks)."""
    from celery import current_app

    from tasks.models import TaskRun
    from tasks.objects import next_seq, now

    task_id = str(uuid.uuid4())
    moment = now()
    TaskRun.objects.create(
        id=task_id, name=name, label=name, owner_key=owner_key, params=kwargs, created_at=moment,
        updated_at=moment, seq=next_seq(0),
    )
    options: dict[str, Any] = {"task_id": task_id, "kwargs": kwargs}
    if queue:
        options["queue"] = queue
    if countdown:
        options["countdown"] = countdown
    current_app.send_task(name, **options)
    return task_id
