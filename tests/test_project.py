"""The project as a newcomer meets it: settings, `make run`, the compose file, health."""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support import BIN, ROOT, TMP, Daphne, Visitor, free_port, port_open, wait_until


def django_in_subprocess(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "TASKLIGHT_", "REDIS_URL"))}
    base.update({"DJANGO_SETTINGS_MODULE": "project.settings", "DJANGO_ALLOWED_HOSTS": "example.com",
                 "REDIS_URL": "redis://127.0.0.1:1/0", **env})
    return subprocess.run([sys.executable, "-c", f"import django; django.setup(); {code}"], cwd=ROOT, env=base,
                          capture_output=True, text=True, timeout=60)


def test_a_missing_secret_key_is_a_clear_startup_error() -> None:
    result = django_in_subprocess("print('started')")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr and "required" in result.stderr


def test_debug_is_off_unless_asked_for() -> None:
    result = django_in_subprocess("from django.conf import settings; print(settings.DEBUG)", DJANGO_SECRET_KEY="k")
    assert result.stdout.strip() == "False", result.stderr
    on = django_in_subprocess("from django.conf import settings; print(settings.DEBUG)", DJANGO_SECRET_KEY="k",
                              DJANGO_DEBUG="1")
    assert on.stdout.strip() == "True"


def test_the_compose_file_runs_the_whole_stack_without_secrets_in_it() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"web", "worker", "redis", "postgres"} <= set(services)
    assert "daphne" in " ".join(services["web"]["command"] if isinstance(services["web"]["command"], list) else [services["web"]["command"]])
    assert services["worker"]["command"][:3] == ["celery", "-A", "project"]
    env = services["web"]["environment"]
    for name in ("REDIS_URL", "DATABASE_URL", "DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS"):
        assert name in env
    assert env["DJANGO_DEBUG"] == "0"
    assert env["DJANGO_SECRET_KEY"].startswith("${")  # from the environment, never written here
    assert (ROOT / "Dockerfile").exists()


def compose_environment(service: str, **supplied: str) -> dict[str, str]:
    """A service's environment in docker-compose.yml as `docker compose` interpolates it:
    ``${X:-default}`` and ``${X-default}`` take the default, ``${X:?message}`` and ``${X}``
    take what is supplied here (as an operator's .env would)."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    pattern = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")

    def substitute(match: re.Match[str]) -> str:
        name, kind, default = match.group(1), match.group(2), match.group(3)
        if name in supplied:
            return supplied[name]
        assert kind == "-", f"docker-compose.yml needs {name}: supply it in the test"
        return default

    return {key: pattern.sub(substitute, str(value)) for key, value in compose["services"][service]["environment"].items()}


def test_check_deploy_is_clean_with_the_compose_files_settings(tmp_path: Path) -> None:
    strong_key = secrets.token_urlsafe(64)
    env = compose_environment("web", DJANGO_SECRET_KEY=strong_key, POSTGRES_PASSWORD=secrets.token_urlsafe(16))
    assert env["DJANGO_SECRET_KEY"] == strong_key and env["DJANGO_DEBUG"] == "0"
    # Local stand-ins for the compose file's own services (check --deploy connects to neither).
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'deploy.sqlite3'}"
    env["REDIS_URL"] = "redis://127.0.0.1:1/0"
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("DJANGO_", "TASKLIGHT_", "REDIS_URL", "CELERY_", "DATABASE_URL"))}
    base.update(env, DJANGO_SETTINGS_MODULE="project.settings")
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT,
                            env=base, capture_output=True, text=True, timeout=60)
    print(result.stdout, result.stderr)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout, result.stdout + result.stderr
    settings = django_in_subprocess(
        "from django.conf import settings as s; print(s.SECURE_HSTS_SECONDS, s.SECURE_SSL_REDIRECT, "
        "s.SECURE_PROXY_SSL_HEADER, s.SESSION_COOKIE_SECURE, s.SECURE_HSTS_PRELOAD)",
        **{k: v for k, v in env.items() if k.startswith("DJANGO_")},
    )
    assert settings.stdout.split() == ["31536000", "True", "('HTTP_X_FORWARDED_PROTO',", "'https')", "True",
                                       "True"], settings.stderr


def test_https_settings_come_from_the_environment_and_default_off() -> None:
    code = ("from django.conf import settings as s; print(repr((s.SECURE_HSTS_SECONDS, s.SECURE_SSL_REDIRECT, "
            "s.SECURE_PROXY_SSL_HEADER, s.SECURE_HSTS_INCLUDE_SUBDOMAINS)))")
    defaults = django_in_subprocess(code, DJANGO_SECRET_KEY="k")
    assert defaults.stdout.strip() == "(0, False, None, False)", defaults.stderr
    set_ = django_in_subprocess(code, DJANGO_SECRET_KEY="k", DJANGO_SECURE_HSTS_SECONDS="600",
                                DJANGO_SECURE_SSL_REDIRECT="1", DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS="yes",
                                DJANGO_SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO, https")
    assert set_.stdout.strip() == "(600, True, ('HTTP_X_FORWARDED_PROTO', 'https'), True)", set_.stderr
    bad = django_in_subprocess(code, DJANGO_SECRET_KEY="k", DJANGO_SECURE_PROXY_SSL_HEADER="https")
    assert bad.returncode != 0 and "DJANGO_SECURE_PROXY_SSL_HEADER" in bad.stderr


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_healthz_reports_ok_and_names_a_failing_dependency(live: Daphne) -> None:
    ok = httpx.get(f"{live.base_url}/healthz", timeout=10)
    assert ok.status_code == 200
    assert ok.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok", "broker": "ok"}}
    dead_port = free_port()
    broken = Daphne(REDIS_URL=f"redis://127.0.0.1:{dead_port}/0").start()
    try:
        answer = httpx.get(f"{broken.base_url}/healthz", timeout=10)
        assert answer.status_code == 503
        assert answer.json()["failing"] == ["redis", "broker"]  # the broker defaults to REDIS_URL
        assert "Traceback" not in answer.text
    finally:
        broken.stop()
    no_broker = Daphne(CELERY_BROKER_URL=f"redis://127.0.0.1:{dead_port}/0").start()
    try:
        answer = httpx.get(f"{no_broker.base_url}/healthz", timeout=10)
        assert answer.status_code == 503 and answer.json()["failing"] == ["broker"]
    finally:
        no_broker.stop()


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.live
async def test_make_run_serves_the_stack_without_redis_and_stops_everything_on_sigint() -> None:
    port = free_port()
    marker = f"TASKLIGHT_RUN_MARKER={uuid.uuid4().hex}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "TASKLIGHT_", "REDIS_URL", "CELERY_"))}
    workdir = TMP / f"run-{port}"
    workdir.mkdir(parents=True)
    env.update({"PORT": str(port), "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
                "TASKLIGHT_FILES_DIR": str(workdir / "exports"), marker.split("=")[0]: marker.split("=")[1]})
    log = (workdir / "run.log").open("wb")
    proc = subprocess.Popen([str(BIN / "python"), "scripts/run_stack.py"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: b"Tasklight is running" in (workdir / "run.log").read_bytes() or proc.poll() is not None,
                   60, 0.1, "make run to be ready")
        assert proc.poll() is None, (workdir / "run.log").read_text()

        class Stack:
            base_url = f"http://127.0.0.1:{port}"
            ws_url = f"ws://127.0.0.1:{port}/ws/tasks/"

        async with Visitor(Stack()) as visitor:  # type: ignore[arg-type]
            ws = await visitor.socket()
            await ws.send({"type": "subscribe"})
            await ws.expect(lambda m: m["type"] == "snapshot")
            task = await visitor.launch("demo.count_primes", limit=1_000_000)
            final = await ws.until_finished(task["id"], timeout=60)
            assert final["state"] == "succeeded" and final["progress"]["percent"] == 100.0
            await ws.close()
        children = _processes_with(marker)
        assert len(children) >= 4  # supervisor, redis, daphne, worker (and its pool)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    wait_until(lambda: not _processes_with(marker), 10, 0.1, "every process of make run to exit")
    assert not port_open(port)


def test_make_run_stops_with_a_clear_message_when_its_port_is_taken() -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "TASKLIGHT_", "REDIS_URL"))}
        env["PORT"] = str(port)
        result = subprocess.run([str(BIN / "python"), "scripts/run_stack.py"], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert f"port {port} is in use" in result.stderr and "PORT=" in result.stderr
    assert "Tasklight is running" not in result.stdout
