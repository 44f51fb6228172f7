"""`make run`: migrate, then Daphne, a Celery worker and (without REDIS_URL) a private
Redis, all in the foreground. SIGINT or SIGTERM stops every process it started."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
children: list[subprocess.Popen[bytes]] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redis_server  # type: ignore[import-not-found]
    except ImportError:
        print("No redis-server on PATH: installing the one bundled by the 'redis-server' package...")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "redis-server==6.0.9"], check=True)
        import redis_server  # type: ignore[import-not-found]
    return str(redis_server.REDIS_SERVER_PATH)


def port_in_use(port: int) -> bool:
    """Whether something already listens on (or holds) the port Daphne is to bind."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        pass
    with socket.socket() as s:
        # As Twisted does for Daphne, so a closed socket in TIME_WAIT does not count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def port_taken_message(port: int) -> str:
    return (f"port {port} is in use (another `make run`, or some other server?); "
            f"set PORT=... to a free port, e.g. `PORT={port + 1 if port < 65535 else 8001} make run`.")


def wait_for_port(port: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    # Each child leads its own process group, so the whole tree can be stopped at once.
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
    children.append(proc)
    return proc


def stop_all(*_: object) -> None:
    for proc in children:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 6
    for proc in children:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for proc in children:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass


def main() -> int:
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    env.setdefault("DJANGO_DEBUG", "1")
    env.setdefault("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
    env.setdefault("PYTHONUNBUFFERED", "1")
    if not env.get("DJANGO_SECRET_KEY"):
        secret_file = ROOT / ".tasklight-secret"
        if not secret_file.exists():
            secret_file.write_text(secrets.token_urlsafe(50))
            secret_file.chmod(0o600)
        env["DJANGO_SECRET_KEY"] = secret_file.read_text().strip()
    port = int(env.get("PORT") or 8000)
    # Checked before anything starts, and again just before Daphne: otherwise the wait
    # below would take whatever else listens there for Daphne.
    if port_in_use(port):
        print(port_taken_message(port), file=sys.stderr)
        return 1

    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        if not env.get("REDIS_URL"):
            redis_port = free_port()
            start(
                [redis_binary(), "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--loglevel", "warning"],
                env,
            )
            if not wait_for_port(redis_port, 10):
                print("The private Redis did not start.", file=sys.stderr)
                return 1
            env["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
            print(f"Private Redis for this run on port {redis_port}.")
        subprocess.run([str(BIN / "python"), "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
        start([str(BIN / "celery"), "-A", "project", "worker", "-P", "prefork", "-c", "2", "-l", "info",
               "--without-gossip", "--without-mingle"], env)
        if port_in_use(port):
            print(port_taken_message(port), file=sys.stderr)
            return 1
        start([str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port),
               # The consumer closes frames over 64 KiB with 1009; the transport drops beyond 256 KiB.
               "--websocket-max-message-size", "262144", "--websocket-max-frame-size", "262144",
               "asgi:application"], env)
        if wait_for_port(port, 60):
            print(f"\n  Tasklight is running: open http://127.0.0.1:{port}/  (Ctrl-C stops everything)\n", flush=True)
        while all(p.poll() is None for p in children):
            time.sleep(0.5)
        print("A process of the stack exited; stopping the rest.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nStopping Tasklight...", flush=True)
        return 0
    finally:
        stop_all()


if __name__ == "__main__":
    sys.exit(main())
