"""`make bench`: Tasklight against the celery-progress polling baseline (docs/performance.md)."""
