"""A URLconf that forgot Tasklight's URLs (tests/tasks/test_checks.py)."""

urlpatterns: list[object] = []
