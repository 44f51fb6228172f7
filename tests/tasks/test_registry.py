from __future__ import annotations

import pytest

from tasks import registry
from tasks.services import json_safe


def test_every_demo_task_is_launchable_with_a_schema() -> None:
    names = {spec.name for spec in registry.all_launchable()}
    assert names == {"demo.count_primes", "demo.export_csv", "demo.flaky", "demo.sleepy", "demo.stubborn"}
    for spec in registry.all_launchable():
        described = spec.describe()
        assert described["params"]["type"] == "object"
        assert described["params"]["additionalProperties"] is False


def test_validation_fills_defaults_and_rejects_bad_params() -> None:
    spec = registry.get("demo.count_primes")
    assert spec.validate({}) == {"limit": 2_000_000}
    assert spec.validate(None) == {"limit": 2_000_000}
    for bad in ({"limit": "many"}, {"limit": 1}, {"limit": 10**12}, {"other": 1}, [1], "x", {"limit": 2.5}):
        with pytest.raises(registry.InvalidParams):
            spec.validate(bad)


def test_integral_floats_become_integers_for_integer_params() -> None:
    assert registry.get("demo.count_primes").validate({"limit": 2000.0}) == {"limit": 2000}
    assert type(registry.get("demo.count_primes").validate({"limit": 2000.0})["limit"]) is int


def test_only_registered_names_are_accepted() -> None:
    for name in ("demo.tight_loop", "celery.backend_cleanup", "", None, 42, "x" * 5000):
        with pytest.raises(registry.UnknownTask):
            registry.get(name)


def test_labels_describe_the_params() -> None:
    assert registry.get("demo.count_primes").make_label({"limit": 2_000_000}) == "Count primes below 2,000,000"


def test_results_are_made_json_safe_and_bounded() -> None:
    import datetime

    assert json_safe({"when": datetime.date(2026, 1, 2)}) == {"when": "2026-01-02"}
    assert json_safe({"n": 1, "s": [1, 2]}) == {"n": 1, "s": [1, 2]}
    assert json_safe({"ratio": float("nan")}) == "{'ratio': nan}"  # never NaN in JSON
    big = json_safe("x" * 100_000)
    assert big["truncated"] is True
