"""A socket lives no longer than its session: logout closes it at once, expiry and flush soon (4001)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async

from tests.realtime.conftest import closed_with, round_trip, subscribed
from tests.support import Daphne, Visitor

pytestmark = pytest.mark.live

SESSION_ENDED = 4001
QUICK_CHECK = 0.5


async def make_user() -> tuple[str, str]:
    from django.contrib.auth import get_user_model

    name, password = f"u{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    await sync_to_async(get_user_model().objects.create_user)(username=name, password=password)
    return name, password


async def log_in(visitor: Visitor, username: str, password: str) -> None:
    token = visitor.http.cookies.get("csrftoken")
    response = await visitor.http.post(
        "/accounts/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": token},
        headers={"X-CSRFToken": token},
    )
    assert response.status_code == 302, response.text[:500]


async def test_logging_out_closes_that_sessions_sockets_at_once(live, visitor, other_visitor):
    username, password = await make_user()
    await log_in(visitor, username, password)
    await log_in(other_visitor, username, password)  # the same user in another browser
    watching_all, _ = await subscribed(visitor)
    task = await visitor.launch("demo.sleepy", seconds=0)
    watching_one, _ = await subscribed(visitor, task["id"])
    idle = await visitor.socket()
    await round_trip(idle)
    elsewhere, _ = await subscribed(other_visitor)

    started = time.monotonic()
    response = await visitor.post("/accounts/logout/")
    assert response.status_code == 302
    for ws in (watching_all, watching_one, idle):
        assert await closed_with(ws, 5) == SESSION_ENDED
    # Through the logout signal, not the periodic session check (15 s by default).
    assert time.monotonic() - started < 5
    await round_trip(elsewhere)  # the user's other session is untouched
    await elsewhere.close()


@pytest.fixture(scope="module")
def quick_daphne(django_db_setup: None) -> Iterator[Daphne]:
    """A Daphne of its own that checks sessions every half second."""
    daphne = Daphne(TASKLIGHT_SESSION_CHECK=str(QUICK_CHECK)).start()
    yield daphne
    daphne.stop()


@pytest.fixture
async def quick(transactional_db: None, worker: object, quick_daphne: Daphne) -> AsyncIterator[Daphne]:
    yield quick_daphne


async def test_an_expired_or_flushed_session_closes_its_sockets_within_the_check_interval(quick):
    from django.contrib.sessions.models import Session
    from django.utils import timezone

    async with Visitor(quick) as expiring, Visitor(quick) as flushed, Visitor(quick) as signed, \
            Visitor(quick) as staying:
        await log_in(signed, *(await make_user()))
        sockets = {}
        for name, v in (("expiring", expiring), ("flushed", flushed), ("signed", signed), ("staying", staying)):
            sockets[name], _ = await subscribed(v)

        started = time.monotonic()
        await Session.objects.filter(session_key=expiring.http.cookies["sessionid"]).aupdate(
            expire_date=timezone.now() - timedelta(seconds=1)
        )
        for v in (flushed, signed):
            await Session.objects.filter(session_key=v.http.cookies["sessionid"]).adelete()
        for name in ("expiring", "flushed", "signed"):
            assert await closed_with(sockets[name], 10) == SESSION_ENDED, name
        # Within a few check intervals, well before the default of 15 s.
        assert time.monotonic() - started < 10 * QUICK_CHECK + 2
        await round_trip(sockets["staying"])
        await sockets["staying"].close()


async def test_a_password_change_or_deactivation_closes_the_users_sockets_within_the_check_interval(quick):
    """Finding 4 of issue 12: a socket outlived the session's authority (Django's session auth hash)."""
    from django.contrib.auth import HASH_SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore

    users = get_user_model()
    async with Visitor(quick) as changed, Visitor(quick) as deactivated, Visitor(quick) as staying, \
            Visitor(quick) as changer, Visitor(quick) as changer_elsewhere:
        names = {}
        for name, v in (("changed", changed), ("deactivated", deactivated), ("staying", staying), ("changer", changer)):
            names[name] = await make_user()
            await log_in(v, *names[name])
        await log_in(changer_elsewhere, *names["changer"])  # the same user in another browser
        sockets = {}
        for name, v in (("changed", changed), ("deactivated", deactivated), ("staying", staying),
                        ("changer", changer), ("changer_elsewhere", changer_elsewhere)):
            sockets[name], _ = await subscribed(v)
            await round_trip(sockets[name])

        def change_password() -> None:
            user = users.objects.get(username=names["changed"][0])
            user.set_password(uuid.uuid4().hex)  # every session of this user is logged out over HTTP
            user.save()
            users.objects.filter(username=names["deactivated"][0]).update(is_active=False)
            # As Django's PasswordChangeView: the new password, and update_session_auth_hash
            # keeps the session that changed it signed in (its other sessions are not).
            user = users.objects.get(username=names["changer"][0])
            user.set_password(uuid.uuid4().hex)
            user.save()
            session = SessionStore(changer.http.cookies["sessionid"])
            session[HASH_SESSION_KEY] = user.get_session_auth_hash()
            session.save()

        started = time.monotonic()
        await sync_to_async(change_password)()
        for name in ("changed", "deactivated", "changer_elsewhere"):
            assert await closed_with(sockets[name], 10) == SESSION_ENDED, name
        assert time.monotonic() - started < 10 * QUICK_CHECK + 2
        for name in ("staying", "changer"):
            await round_trip(sockets[name])
            await sockets[name].close()
