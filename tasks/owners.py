"""Who owns a task: a signed-in user, or else the visitor's Django session (docs/protocol.md).

An owner is named by a key: ``u:<user pk>`` or ``v:<visitor id>``. The visitor id is a
random value stored inside the session, so it survives ``cycle_key()`` and is never
the session key itself (which is a secret and must not end up in Redis channel names).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from tasks import conf

VISITOR_SESSION_KEY = "tasklight_visitor"


@dataclass(frozen=True)
class Owner:
    key: str
    user_id: int | None = None


async def owner_for_request(request: Any, *, create: bool = True) -> Owner | None:
    """The owner of an HTTP request; gives an anonymous visitor an id when ``create``."""
    user = await request.auser()
    if user.is_authenticated:
        return Owner(key=f"u:{user.pk}", user_id=user.pk)
    if not conf.get().ALLOW_ANONYMOUS:
        return None
    visitor = await request.session.aget(VISITOR_SESSION_KEY)
    if not visitor:
        if not create:
            return None
        visitor = secrets.token_hex(16)
        await request.session.aset(VISITOR_SESSION_KEY, visitor)
    return Owner(key=f"v:{visitor}")


async def owner_for_scope(scope: dict[str, Any]) -> Owner | None:
    """The owner of a WebSocket connection (AuthMiddlewareStack has filled the scope)."""
    user = scope.get("user")
    if user is not None and user.is_authenticated:
        return Owner(key=f"u:{user.pk}", user_id=user.pk)
    session = scope.get("session")
    if session is None or not conf.get().ALLOW_ANONYMOUS:
        return None
    visitor = await session.aget(VISITOR_SESSION_KEY)
    return Owner(key=f"v:{visitor}") if visitor else None


def ensure_visitor(request: Any) -> None:
    """Give an anonymous visitor its owner id now (sync: for pages, before a socket opens)."""
    user = getattr(request, "user", None)
    session = getattr(request, "session", None)
    if session is None or (user is not None and user.is_authenticated) or not conf.get().ALLOW_ANONYMOUS:
        return
    if not session.get(VISITOR_SESSION_KEY):
        session[VISITOR_SESSION_KEY] = secrets.token_hex(16)


async def aensure_visitor(request: Any) -> None:
    """``ensure_visitor`` for async views: await it before rendering ``{% tasklight_client %}``."""
    await owner_for_request(request)
