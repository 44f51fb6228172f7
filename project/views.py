"""The example site's page: start any launchable task, watch and cancel your tasks."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET


@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    # {% tasklight_client %} in base.html gives a first-time visitor an owner id and a CSRF cookie.
    return render(request, "dashboard.html", {})
