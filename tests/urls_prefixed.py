"""A host's URLs with Tasklight mounted under a prefix: ``/tasklight/api/...``, ``/tasklight/ws/tasks/``."""

from django.urls import include, path

urlpatterns = [
    path("tasklight/", include("tasks.urls")),
]
