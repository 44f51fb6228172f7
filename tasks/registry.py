"""The tasks a client may start, with a JSON Schema for each one's params.

No other task name is ever accepted from a client. ``@launchable`` tasks are found in
the modules ``TASKLIGHT["LAUNCHABLE_MODULES"]`` names (``tasks`` and ``launchables``)
of every installed app, imported on the first look-up in each process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.utils.module_loading import autodiscover_modules
from jsonschema import Draft202012Validator

from tasks import conf
from tasks.contracts import InvalidParams, UnknownTask


@dataclass(frozen=True)
class Launchable:
    name: str
    label: str
    schema: dict[str, Any]
    make_label: Callable[[dict[str, Any]], str]
    # Hard time limit in seconds; None: TASKLIGHT["LAUNCH_TIME_LIMIT"].
    time_limit: float | None = None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "params": self.schema}

    def validate(self, params: Any) -> dict[str, Any]:
        """The params with schema defaults filled in, or InvalidParams saying what is wrong."""
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise InvalidParams("params must be a JSON object")
        validator = Draft202012Validator(self.schema)
        errors = sorted(validator.iter_errors(params), key=lambda e: list(e.absolute_path))
        if errors:
            first = errors[0]
            where = "/".join(str(p) for p in first.absolute_path) or "params"
            raise InvalidParams(f"{where}: {first.message}"[:300])
        filled = dict(params)
        for key, spec in self.schema.get("properties", {}).items():
            # JSON Schema counts 2000.0 as an integer; the task must get an int.
            if spec.get("type") == "integer" and isinstance(filled.get(key), float):
                filled[key] = int(filled[key])
        for key, spec in self.schema.get("properties", {}).items():
            if key not in filled and "default" in spec:
                filled[key] = spec["default"]
        return filled


# Owned by this module: launchables by task name, filled by @launchable as modules load.
_registry: dict[str, Launchable] = {}
_discovered = False
_discover_lock = threading.Lock()


def discover() -> None:
    """Import the launchable modules of every installed app, once per process.

    A module that fails to import raises here, and the next look-up tries again.
    """
    global _discovered
    if _discovered:
        return
    with _discover_lock:
        if not _discovered:
            autodiscover_modules(*conf.get().LAUNCHABLE_MODULES)
            _discovered = True


def launchable(
    *,
    label: str,
    params: dict[str, Any],
    make_label: Callable[[dict[str, Any]], str] | None = None,
    time_limit: float | None = None,
) -> Callable[[Any], Any]:
    """Class decorator for a Celery task: let clients start it, with these params.

    ``time_limit``: seconds after which a launched run is stopped (Celery's hard limit;
    the soft one, which raises ``SoftTimeLimitExceeded`` in the task, comes a margin
    before); the run ends ``failed`` with error type ``TimedOut``. Default:
    ``TASKLIGHT["LAUNCH_TIME_LIMIT"]``.
    """
    Draft202012Validator.check_schema(params)
    if time_limit is not None and (isinstance(time_limit, bool) or not 0 < time_limit <= 7 * 86400):
        raise ValueError(f"time_limit must be a number of seconds up to a week, not {time_limit!r}")
    schema = {"type": "object", "additionalProperties": False, **params}

    def register(task: Any) -> Any:
        _registry[task.name] = Launchable(
            name=task.name,
            label=label,
            schema=schema,
            make_label=make_label or (lambda _p: label),
            time_limit=float(time_limit) if time_limit is not None else None,
        )
        return task

    return register


def get(name: Any) -> Launchable:
    discover()
    if not isinstance(name, str) or name not in _registry:
        raise UnknownTask()
    return _registry[name]


def all_launchable() -> list[Launchable]:
    discover()
    return list(_registry.values())


__all__ = ["InvalidParams", "Launchable", "UnknownTask", "all_launchable", "get", "launchable"]
