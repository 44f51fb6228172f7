"""The shape of the installable apps: one direction between them, no cycle-dodging imports,
one list of states, and nothing of the example site inside them."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

from tasks import live
from tasks.contracts import TERMINAL_NAMES, State

ROOT = Path(__file__).resolve().parent.parent


def modules(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "migrations" not in p.parts)


def imported_names(path: Path) -> list[tuple[str, int, bool]]:
    """(module, line, at function level) for every import in a file."""
    tree = ast.parse(path.read_text())
    found = []
    function_lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    function_lines.add(inner.lineno)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, node.lineno in function_lines) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno, node.lineno in function_lines))
    return found


def offenders(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in modules(package)
        for name, line, _ in imported_names(path)
        if name.split(".")[0] in forbidden
    ]


def test_tasks_never_imports_realtime() -> None:
    assert offenders("tasks", ("realtime",)) == []


def test_the_apps_never_import_the_example_site_or_the_tests() -> None:
    assert offenders("tasks", ("project", "tests", "bench")) == []
    assert offenders("realtime", ("project", "tests", "bench")) == []


def test_the_direction_check_catches_an_import_the_other_way(tmp_path, monkeypatch) -> None:
    # The check itself must fail on a tasks -> realtime import, at module or function level.
    bad = tmp_path / "tasks"
    bad.mkdir()
    (bad / "leak.py").write_text("def f():\n    from realtime import consumers\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert offenders("tasks", ("realtime",)) == ["tasks/leak.py:2 imports realtime"]


@pytest.mark.parametrize("package", ["tasks", "realtime"])
def test_function_level_imports_are_only_in_ready(package: str) -> None:
    # A function-level import is for AppConfig.ready() (models are loaded by then) or an
    # optional dependency (said on its line), never to dodge a cycle between our modules.
    found = []
    for path in modules(package):
        text = path.read_text()
        lines = text.splitlines()
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name != "ready":
                for inner in ast.walk(node):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)) and "optional dependency" not in lines[inner.lineno - 1]:
                        found.append(f"{path.relative_to(ROOT)}:{inner.lineno} in {node.name}()")
    assert found == []


def test_one_list_of_states_for_python_lua_and_the_client() -> None:
    assert set(TERMINAL_NAMES) == {State.SUCCEEDED, State.FAILED, State.CANCELLED}
    for name in TERMINAL_NAMES:
        assert f"'\"{name}\"'" in live.MERGE_SCRIPT
    client = (ROOT / "tasks" / "static" / "tasklight" / "tasklight.js").read_text()
    fallback = re.search(r'CONFIG\.terminal \|\| \[([^\]]*)\]', client)
    assert fallback, "the client's fallback list of terminal states"
    assert re.findall(r'"(\w+)"', fallback.group(1)) == list(TERMINAL_NAMES)


def test_the_client_config_names_the_terminal_states(rf) -> None:
    from tasks.templatetags.tasklight import client_config

    assert client_config()["terminal"] == list(TERMINAL_NAMES)
