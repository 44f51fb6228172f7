"""URLs of the example site: its dashboard, and Tasklight's URLs as any host mounts them.

The example site mounts Tasklight at the root, so its API is ``/api/...`` and its
socket ``/ws/tasks/``; a host usually picks a prefix such as ``tasklight/``.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from project import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("admin/", admin.site.urls),
    # Minimal sign-in for people with accounts; logging out closes their open sockets.
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(
            template_name="admin/login.html", next_page="/", extra_context={"site_header": "Tasklight", "title": "Log in"}
        ),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(next_page="/"), name="logout"),
    path("", include("tasks.urls")),
]
