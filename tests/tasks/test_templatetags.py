"""Template tags (tasks/templatetags/tasklight.py): the client's configuration follows where
``tasks.urls`` is mounted, and an anonymous visitor gets an owner id and a CSRF cookie."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpRequest, HttpResponse
from django.template import Context, RequestContext, Template
from django.test import Client, RequestFactory, override_settings

from realtime.routing import websocket_path
from tasks.owners import VISITOR_SESSION_KEY

PREFIXED = "tests.urls_prefixed"

# WhiteNoise says so when collectstatic has not run yet in this test run: not ours to check here.
pytestmark = pytest.mark.filterwarnings("ignore:No directory at:UserWarning")


@pytest.fixture(autouse=True)
def plain_static_files() -> Iterator[None]:
    """``{% static %}`` without the manifest that collectstatic writes."""
    storages = {**settings.STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
    with override_settings(STORAGES=storages):
        yield


def page_request(user: Any = None) -> HttpRequest:
    request = RequestFactory().get("/")
    SessionMiddleware(lambda r: HttpResponse()).process_request(request)
    request.user = user or AnonymousUser()
    return request


def render(source: str, **context: Any) -> str:
    return Template("{% load tasklight %}" + source).render(Context(context))


def client_config(html: str) -> dict[str, Any]:
    found = re.search(r'<script id="tasklight-config" type="application/json">(.*?)</script>', html, re.S)
    assert found, html
    return json.loads(found.group(1))


def test_the_client_gives_an_anonymous_visitor_an_owner_id_and_a_csrf_cookie() -> None:
    request = page_request()
    html = render("{% tasklight_client %}", request=request)
    visitor = request.session[VISITOR_SESSION_KEY]
    assert re.fullmatch(r"[0-9a-f]{32}", visitor)
    assert request.session.modified  # saved by SessionMiddleware with the response
    assert request.META["CSRF_COOKIE_NEEDS_UPDATE"] is True  # CsrfViewMiddleware sends the cookie
    assert 'src="/static/tasklight/tasklight.js"' in html and "notifications.js" in html
    # The next page keeps the same id.
    render("{% tasklight_client %}", request=request)
    assert request.session[VISITOR_SESSION_KEY] == visitor


def test_a_request_context_without_the_request_context_processor_is_enough() -> None:
    request = page_request()
    templates = [{**settings.TEMPLATES[0], "OPTIONS": {"context_processors": []}}]
    with override_settings(TEMPLATES=templates):
        Template("{% load tasklight %}{% tasklight_client %}").render(RequestContext(request))
    assert request.session[VISITOR_SESSION_KEY]
    assert request.META["CSRF_COOKIE_NEEDS_UPDATE"] is True


def test_toasts_can_be_left_out() -> None:
    html = render("{% tasklight_client toasts=False %}", request=page_request())
    assert "tasklight.js" in html and "notifications.js" not in html


def test_without_anonymous_owners_no_visitor_id_is_made() -> None:
    request = page_request()
    with override_settings(TASKLIGHT={**settings.TASKLIGHT, "ALLOW_ANONYMOUS": False}):
        render("{% tasklight_client %}", request=request)
    assert VISITOR_SESSION_KEY not in request.session
    assert request.META["CSRF_COOKIE_NEEDS_UPDATE"] is True


def test_a_signed_in_user_gets_no_visitor_id() -> None:
    class User:
        is_authenticated = True

    request = page_request(user=User())
    render("{% tasklight_client %}", request=request)
    assert VISITOR_SESSION_KEY not in request.session


def test_without_a_request_the_client_still_renders() -> None:
    assert client_config(render("{% tasklight_client %}"))["api"] == "/api/"


def test_the_config_points_at_the_root_mount_of_the_example_site() -> None:
    config = client_config(render("{% tasklight_client %}", request=page_request()))
    assert config["api"] == "/api/" and config["ws"] == "/ws/tasks/"
    assert config["terminal"] == ["succeeded", "failed", "cancelled"]
    assert websocket_path() == "ws/tasks/"


def test_the_config_and_the_socket_follow_a_prefixed_mount() -> None:
    with override_settings(ROOT_URLCONF=PREFIXED):
        config = client_config(render("{% tasklight_client %}", request=page_request()))
        assert config["api"] == "/tasklight/api/" and config["ws"] == "/tasklight/ws/tasks/"
        assert websocket_path() == "tasklight/ws/tasks/"
    assert websocket_path() == "ws/tasks/"


def test_progress_with_cancel() -> None:
    task_id = str(uuid.uuid4())
    assert render("{% tasklight_progress task cancel=True %}", task={"id": task_id}) == (
        f'<task-progress task-id="{task_id}" cancel></task-progress>'
    )


def test_progress_without_cancel_has_no_cancel_attribute() -> None:
    task_id = uuid.uuid4()

    class Run:
        id = task_id

    for task in (Run(), str(task_id), {"id": str(task_id)}):
        assert render("{% tasklight_progress task %}", task=task) == f'<task-progress task-id="{task_id}"></task-progress>'


def test_progress_escapes_the_id() -> None:
    html = render("{% tasklight_progress task cancel=True %}", task='"><script>alert(1)</script>')
    assert "<script>" not in html
    assert html == '<task-progress task-id="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" cancel></task-progress>'


def test_connection_badge_renders() -> None:
    assert render("{% tasklight_connection %}").strip()


# ---- The HTTP API at the same prefix (tasks/views.py) -------------------------------


@override_settings(ROOT_URLCONF=PREFIXED)
def test_a_post_without_the_csrf_token_is_a_json_403_under_a_prefix() -> None:
    response = Client(enforce_csrf_checks=True).post(
        "/tasklight/api/tasks/", {"name": "demo.sleepy", "params": {}}, content_type="application/json"
    )
    assert response.status_code == 403
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "csrf_failed"


@pytest.mark.django_db
@override_settings(ROOT_URLCONF=PREFIXED)
def test_with_the_csrf_token_the_post_reaches_the_api_under_a_prefix() -> None:
    client = Client(enforce_csrf_checks=True)
    token = "k" * 32  # a CSRF secret: 32 letters or digits
    client.cookies["csrftoken"] = token
    response = client.post("/tasklight/api/tasks/", {"name": "nope"}, content_type="application/json",
                           headers={"X-CSRFToken": token})
    assert response.status_code == 400 and response.json()["error"]["code"] == "unknown_task"


@override_settings(ROOT_URLCONF=PREFIXED)
def test_an_unknown_api_path_is_a_json_404_under_a_prefix() -> None:
    for method in ("get", "delete"):
        response = getattr(Client(), method)("/tasklight/api/nope/")
        assert response.status_code == 404
        assert response.json() == {"error": {"code": "not_found", "detail": "no such resource"}}


@override_settings(ROOT_URLCONF=PREFIXED)
def test_the_socket_path_over_http_is_426_under_a_prefix() -> None:
    response = Client().get("/tasklight/ws/tasks/")
    assert response.status_code == 426
    assert response["Upgrade"] == "websocket"
    assert response.json()["error"]["code"] == "upgrade_required"
    assert Client().get("/ws/tasks/").status_code == 404  # not at the root any more


def test_the_config_carries_the_csrf_token_and_header_for_any_csrf_setup() -> None:
    # A host with CSRF_USE_SESSIONS, another cookie name or another header still cancels.
    with override_settings(CSRF_HEADER_NAME="HTTP_X_SHOP_CSRF", CSRF_COOKIE_NAME="shop_csrf"):
        request = page_request()
        config = client_config(render("{% tasklight_client %}", request=request))
    assert config["csrf"]["header"] == "X-SHOP-CSRF"
    assert len(config["csrf"]["token"]) == 64  # a masked token, as {% csrf_token %} writes


@override_settings(ROOT_URLCONF=PREFIXED, DATA_UPLOAD_MAX_NUMBER_FIELDS=2)
def test_an_unreadable_post_is_a_json_400_not_the_hosts_error_page() -> None:
    client = Client(enforce_csrf_checks=True)
    client.cookies["csrftoken"] = "k" * 32  # so that the check reads the form for its token
    response = client.post("/tasklight/api/tasks/", {"a": 1, "b": 2, "c": 3})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"
