"""The base class of a tracked task: progress and cancellation (docs/integration.md).

Built on Celery's Django task class, so ``delay_on_commit`` and
``apply_async_on_commit`` stay. A host opts in per task::

    @shared_task(bind=True, base=TrackedTask)     # or @tracked_task()
    def export(self, rows): ...
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from celery.contrib.django.task import DjangoTask

from tasks.progress import Progress, TaskCancelled, reporter


class ShowToOwner(Exception):  # noqa: N818 (a marker, not an error name)
    """An exception whose message is written for the task's owner to read.

    Raise it (or a subclass) from a task, or list other classes in the task's
    ``safe_errors``, for ``error.message`` to carry ``str(exc)``. Any other exception
    is shown to the owner as "The task failed." (its type name stays); staff see the
    real message and traceback in the task's detail (docs/progress.md).
    """


class TrackedTask(DjangoTask):
    # A cancel is an expected outcome: Celery logs it at INFO, without a traceback.
    throws = (TaskCancelled,)
    # Exceptions whose message the owner may read (see ShowToOwner).
    safe_errors: tuple[type[BaseException], ...] = (ShowToOwner,)

    @property
    def progress(self) -> Progress:
        """This run's progress reporter (see tasks/progress.py)."""
        return reporter(self)

    def on_cancel(self, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Hook: undo partial work after a cooperative cancel (the task then ends cancelled)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        if request.called_directly or request.id is None:
            return super().__call__(*args, **kwargs)
        # task_prerun found the run cancelled (or finished) before it started: the body
        # never runs, even if the revoke message was lost or this worker started later.
        if getattr(request, "tasklight_skip", False):
            raise TaskCancelled(request.id)
        try:
            # The worker's tracer has pushed the request already; call the body directly.
            return self.run(*args, **kwargs)
        except TaskCancelled:
            self.on_cancel(request.id, args, kwargs)
            raise


def tracked_task(*args: Any, **options: Any) -> Any:
    """``shared_task`` with ``bind=True`` and ``base=TrackedTask``: ``@tracked_task()``."""
    options.setdefault("bind", True)
    options.setdefault("base", TrackedTask)
    return shared_task(*args, **options)
