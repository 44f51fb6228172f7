"""docs/integration.md, followed literally by a brand-new Django + Celery project.

In a temporary folder: ``django-admin startproject project`` (a settings package named
``project``, like the example site's, to prove the two never meet), ``startapp shop``,
then every file block of the guide written where it says. Tasklight comes from a wheel
built from this checkout, installed with ``pip install --no-deps --target`` and first on
PYTHONPATH; the third-party packages come from the test venv (through a path file, so the
checkout's own editable install of Tasklight is not on the host's path). Then, on this
run's Redis (its own database number and prefixes): ``check``, ``migrate``,
``collectstatic``, a prefork Celery worker of the host's own Celery app, Daphne, and
headless Chromium pressing the guide's buttons. The guide's ``celery`` and ``daphne``
commands run as ``python -m celery`` / ``python -m daphne`` with the host's interpreter
(the test venv's scripts would bring its editable Tasklight back).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
import uuid
import zipfile
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS
from tests.support import ROOT, RUN_ID, TMP, LiveProcess, free_port, port_open, redis_server, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.live]

GUIDE = ROOT / "docs" / "integration.md"
# A fenced block of the guide, and the first line that names its file: "# path",
# "# path (add)" (appended to the file) or "{# path #}" (a template).
FENCE = re.compile(r"^```[\w-]*\n(.*?)^```", re.S | re.M)
FILE_LINE = re.compile(r"^(?:# |\{# )(?P<path>[\w/.-]+\.(?:py|html))(?P<add> \(add\))?(?: #\})?$")
GUIDE_FILES = {
    "project/__init__.py", "project/celery.py", "project/settings.py", "project/urls.py", "project/asgi.py",
    "shop/tasks.py", "shop/views.py", "shop/templates/shop/export.html",
}
ROWS = 500  # what the guide's view asks for; at 20 ms a row, 10 s: time to cancel mid-way

# What this test adds to the guide's files, and nothing more: its own hosts, Redis
# prefixes, files folder and a short grace; a probe task and view that report which
# Celery app and which copy of Tasklight each process runs.
SETTINGS_OVERRIDES = """
# ---- added by tests/integration/test_host_project.py, not part of the guide ----
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = "{prefix}:layer:"
TASKLIGHT.update({{"REDIS_PREFIX": "{prefix}", "FILES_DIR": BASE_DIR / "files", "CANCEL_GRACE": 5}})
"""
PROBE_TASK = """

# ---- added by tests/integration/test_host_project.py, not part of the guide ----
def loaded_tasklight():
    import sys

    return sorted({m.__file__ for n, m in list(sys.modules.items()) if n.split(".")[0] in ("tasks", "realtime") and getattr(m, "__file__", None)})


@shared_task(bind=True, base=TrackedTask, name="shop.probe")
def probe(self, out):
    import json
    import pathlib
    import sys

    import celery

    self.progress.set(1, 1)
    partial = pathlib.Path(out + ".partial")  # renamed when whole: the test waits for the name
    partial.write_text(json.dumps({
        "task_id": self.request.id,
        "app": celery.current_app.main,
        "host_app": celery.current_app._get_current_object() is sys.modules["project.celery"].app,
        "project": sys.modules["project"].__file__,
        "tasklight": loaded_tasklight(),
    }))
    partial.replace(out)
"""
PROBE_VIEW = """

# ---- added by tests/integration/test_host_project.py, not part of the guide ----
def probe(request):
    import sys

    import celery
    from django.db import connection, transaction
    from django.http import JsonResponse

    from shop.tasks import export_orders, loaded_tasklight
    from shop.tasks import probe as probe_task

    with transaction.atomic():
        probe_task.delay_on_commit(request.GET["out"])
        deferred = len(connection.run_on_commit)  # sent only after the commit
    return JsonResponse({
        "app": celery.current_app.main,
        "host_app": celery.current_app._get_current_object() is sys.modules["project.celery"].app,
        "project": sys.modules["project"].__file__,
        "tasklight": loaded_tasklight(),
        "deferred": deferred,
        "tracked_on_commit": callable(getattr(export_orders, "delay_on_commit", None)),
    })
"""
PROBE_URL = """

# ---- added by tests/integration/test_host_project.py, not part of the guide ----
urlpatterns += [path("probe/", views.probe)]
"""
INMEMORY_SETTINGS = """from project.settings import *  # noqa

CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
"""


def guide_blocks() -> list[tuple[str, bool, str]]:
    """(path, append, code) for every block of the guide whose first line names a file."""
    blocks = []
    for match in FENCE.finditer(GUIDE.read_text()):
        code = match.group(1)
        named = FILE_LINE.match(code.split("\n", 1)[0])
        if named:
            blocks.append((named["path"], bool(named["add"]), code))
    return blocks


def build_wheel(work: Path) -> Path:
    """A wheel of this checkout (tracked and new files, as they are now), built in a copy of it
    so that the build leaves nothing in the checkout."""
    source = work / "checkout"
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True)
    if listed.returncode == 0:
        for name in filter(None, listed.stdout.decode().split("\0")):
            path = ROOT / name
            if path.is_file():
                (source / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, source / name)
    else:  # not a git checkout (an unpacked archive): everything but what builds and runs make
        shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
            ".git", ".venv*", "var", "build", "dist", "staticfiles", "__pycache__", "*.egg-info", ".*_cache"))
    dist = work / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(source)], check=True)
    (wheel,) = dist.glob("tasklight-*.whl")
    return wheel


def check_wheel(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    dist_info = {t for t in tops if t.endswith(".dist-info")}
    assert tops - dist_info == {"tasks", "realtime"}, sorted(tops)
    assert len(dist_info) == 1
    # Every template and static file of the app, and its migrations.
    for folder in ("tasks/templates", "tasks/static", "tasks/migrations"):
        wanted = {p.relative_to(ROOT).as_posix() for p in (ROOT / folder).rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts}
        assert wanted and wanted <= set(names), sorted(wanted - set(names))
    assert "tasks/templates/tasklight/client.html" in names
    assert "tasks/static/tasklight/tasklight.js" in names


def host_python(work: Path) -> Path:
    """A venv without Tasklight whose third-party packages are the test venv's."""
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    # A plain path line: the test venv's own .pth files (its editable Tasklight) are not run.
    Path(site, "test-venv-packages.pth").write_text("\n".join(sorted(ours)) + "\n")
    return python


class HostProcess(LiveProcess):
    """A process of the host project, run in the host's folder (never in this checkout)."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], cwd: Path) -> None:
        super().__init__(name, cmd, env)
        self.cwd = cwd

    def start(self) -> HostProcess:
        TMP.mkdir(parents=True, exist_ok=True)
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(self.cmd, cwd=self.cwd, env=self.env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        LiveProcess.running.append(self)
        return self


def host_env(site: Path, redis_url: str) -> dict[str, str]:
    """The environment of a host process: nothing of this run's own Django settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DJANGO_", "TASKLIGHT_", "CELERY_", "DATABASE_", "PYTHON", "VIRTUAL_ENV"))}
    env.update({"PYTHONPATH": str(site), "PYTHONUNBUFFERED": "1", "REDIS_URL": redis_url})
    return env


def test_a_new_project_follows_the_guide(tmp_path: Path) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"no Chromium at {CHROMIUM}: run `make browser`", pytrace=False)
    blocks = guide_blocks()
    assert {path for path, _, _ in blocks} == GUIDE_FILES

    # ---- Tasklight from a wheel of this checkout --------------------------------------
    wheel = build_wheel(tmp_path)
    check_wheel(wheel)
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)], check=True)
    python = host_python(tmp_path)
    host = tmp_path / "host"
    host.mkdir()
    redis_url = re.sub(r"/\d+$", "/5", redis_server().url)  # the main run uses database 0
    assert redis_url != redis_server().url
    prefix = f"tlhost{RUN_ID}"
    env = host_env(site, redis_url)

    def manage(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(python), "manage.py", *args], cwd=host, env=env, capture_output=True, text=True,
                              check=check, timeout=60)

    # ---- the project, the app, and the guide's files ----------------------------------
    # In the temporary folder: run here, this checkout's own `project` would be importable.
    subprocess.run([str(python), "-m", "django", "startproject", "project", str(host)], cwd=tmp_path, env=env, check=True)
    manage("startapp", "shop")
    for path, append, code in blocks:
        target = host / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if append:
            with target.open("a") as out:
                out.write("\n\n" + code)
        else:
            target.write_text(code)
    with (host / "project" / "settings.py").open("a") as out:
        out.write(SETTINGS_OVERRIDES.format(prefix=prefix))
    for name, extra in (("shop/tasks.py", PROBE_TASK), ("shop/views.py", PROBE_VIEW), ("project/urls.py", PROBE_URL)):
        with (host / name).open("a") as out:
            out.write(extra)
    (host / "project" / "settings_inmemory.py").write_text(INMEMORY_SETTINGS)

    # ---- system checks, migrate, collectstatic ----------------------------------------
    clean = manage("check")
    assert "System check identified no issues (0 silenced)." in clean.stdout, clean.stdout + clean.stderr
    broken = manage("check", "--settings", "project.settings_inmemory", check=False)
    assert broken.returncode != 0
    assert "tasklight.E002" in broken.stderr, broken.stdout + broken.stderr
    migrated = manage("migrate", "--noinput")
    assert "Applying tasklight.0001_initial... OK" in migrated.stdout, migrated.stdout
    with closing(sqlite3.connect(host / "db.sqlite3")) as db:
        assert db.execute("SELECT name FROM sqlite_master WHERE name = 'tasklight_taskrun'").fetchone()
    manage("collectstatic", "--noinput", "-v", "0")
    assert (host / "staticfiles" / "tasklight" / "tasklight.js").is_file()

    # ---- the host's worker and Daphne -------------------------------------------------
    port = free_port()
    worker = HostProcess(
        "host-worker",
        [str(python), "-m", "celery", "-A", "project", "worker", "-P", "prefork", "-c", "1", "-l", "info",
         "-n", f"host{RUN_ID}@tasklight-test", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        env, host,
    ).start()
    daphne = HostProcess(
        "host-daphne", [str(python), "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "project.asgi:application"],
        env, host,
    ).start()
    try:
        wait_until(lambda: " ready." in worker.output() or not worker.alive(), 60, 0.05, "the host's worker")
        assert worker.alive(), worker.output()
        wait_until(lambda: port_open(port) or not daphne.alive(), 30, 0.05, "the host's Daphne")
        assert daphne.alive(), daphne.output()
        drive_the_browser(f"http://127.0.0.1:{port}", host, site, worker)
        purge = manage("tasklight_purge", "--dry-run")
        assert "Would delete 0 runs" in purge.stdout, purge.stdout
    except BaseException:
        print("---- host worker ----\n" + worker.output()[-5000:])
        print("---- host daphne ----\n" + daphne.output()[-5000:])
        raise
    finally:
        daphne.stop()
        worker.stop()
    check_name_collisions(host, python, env, manage)


def check_name_collisions(host: Path, python: Path, env: dict[str, str], manage: Any) -> None:
    """A project package named ``tasks`` or ``realtime`` shadows Tasklight's: what the guide says happens."""
    (host / "tasks").mkdir()
    (host / "tasks" / "__init__.py").write_text("")
    shadowed = manage("check", check=False)
    assert shadowed.returncode != 0
    assert f"('tasks' is {host / 'tasks' / '__init__.py'}: a package of this project hides Tasklight's; rename it)" in shadowed.stderr, shadowed.stderr
    shutil.rmtree(host / "tasks")
    (host / "realtime").mkdir()
    (host / "realtime" / "__init__.py").write_text("")
    hidden = manage("check", check=False)
    assert hidden.returncode != 0 and "tasklight.E007" in hidden.stderr and "is not Tasklight's" in hidden.stderr, hidden.stderr
    asgi = subprocess.run([str(python), "-c", "import project.asgi"], cwd=host, env=env, capture_output=True, text=True)
    assert "ModuleNotFoundError: No module named 'realtime.routing'" in asgi.stderr, asgi.stderr
    shutil.rmtree(host / "realtime")


def drive_the_browser(base_url: str, host: Path, site: Path, worker: HostProcess) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(base_url=base_url)
            context.set_default_timeout(TIMEOUT_MS)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda m: print(f"[console {m.type}] {m.text}"))

            # The guide's page: press the button, the view starts the task with start_task.
            page.goto("/export/")
            expect(page.locator("#tl-connection")).to_have_attribute("data-state", "live")
            page.get_by_role("button", name="Export orders").click()
            bar = page.locator("task-progress")
            expect(bar).to_have_attribute("data-state", "running")
            first = page.wait_for_function("() => document.querySelector('task-progress progress').value || false")
            page.wait_for_function("(first) => document.querySelector('task-progress progress').value > first",
                                   arg=first.json_value())  # it moves
            task_id = bar.get_attribute("task-id")
            assert task_id
            expect(page.locator("#tl-connection")).to_have_attribute("data-state", "live")

            # Cancel mid-way: the task stops in the worker and ends cancelled.
            bar.get_by_role("button", name="Cancel").click()
            expect(bar).to_have_attribute("data-state", "cancelled")
            expect(page.locator(f'.tl-toast[data-task-id="{task_id}"][data-state="cancelled"]')).to_be_visible()
            task = page.request.get(f"/tasklight/api/tasks/{task_id}/").json()
            assert task["state"] == "cancelled" and task["cancel_requested"], task
            assert 0 < task["progress"]["current"] < ROWS, task
            assert task["label"] == f"Export {ROWS} orders"
            wait_until(lambda: f"shop.export_orders[{task_id}] raised expected: TaskCancelled" in worker.output(), 10,
                       what="the worker to log the cancel")
            assert not list((host / "files").glob(f"{task_id}.*")), "on_cancel did not remove the partial file"

            # Only the host's task is launchable; the example site's demo tasks are not there.
            launchable = page.request.get("/tasklight/api/launchable/").json()
            assert [t["name"] for t in launchable["tasks"]] == ["shop.export_orders"], launchable
            csrf = next(c["value"] for c in context.cookies() if c["name"] == "csrftoken")
            refused = page.request.post("/tasklight/api/tasks/", data={"name": "demo.count_primes", "params": {}},
                                        headers={"X-CSRFToken": csrf})
            assert refused.status == 400 and refused.json()["error"]["code"] == "unknown_task", refused.text()

            # The host's Celery app is the current app in Django and in the worker, both run
            # the wheel's Tasklight, and delay_on_commit on a TrackedTask runs after the commit.
            out = host / f"probe-{uuid.uuid4().hex[:6]}.json"
            web = page.request.get(f"/probe/?out={out}").json()
            wait_until(out.exists, 20, what="the probe task to run in the worker")
            ran = json.loads(out.read_text())
            assert web["deferred"] == 1 and web["tracked_on_commit"], web
            for seen in (web, ran):
                assert seen["app"] == "project" and seen["host_app"], seen
                assert Path(seen["project"]).is_relative_to(host), seen
                assert seen["tasklight"] and all(Path(f).is_relative_to(site) for f in seen["tasklight"]), seen
            with closing(sqlite3.connect(host / "db.sqlite3")) as db:  # SQLite keeps a UUID as 32 hex digits
                row = wait_until(lambda: db.execute(
                    "SELECT state, owner_key FROM tasklight_taskrun WHERE id = ? AND state = 'succeeded'",
                    (uuid.UUID(ran["task_id"]).hex,)).fetchone(), 10, what="the probe's run to be recorded")
            assert row == ("succeeded", "")  # tracked, owned by nobody (not started by a person)
            assert not errors, errors
            context.close()
        finally:
            browser.close()
