"""The WebSocket handshake's guards: the exact origin check and unknown paths (docs/protocol.md).

A browser sends the page's origin with every WebSocket handshake, and cookies go along
whatever the page: a socket that accepted any page of the same *host* would let a page
on another port or scheme act with the visitor's session (cross-site WebSocket
hijacking), a CSRF bypass for what the HTTP API refuses. So the Origin must equal,
exactly by (scheme, host, port), one of:

- ``TASKLIGHT["ALLOWED_ORIGINS"]``, when set (e.g. ``["https://tasks.example.com"]``);
  when it is ``None`` (the default), the socket's own origin: the request's ``Host``
  (which must be in ``ALLOWED_HOSTS``) with the scheme of the connection (``wss`` or a
  ``SECURE_PROXY_SSL_HEADER`` that says https: ``https``; otherwise ``http``);
- and any origin of ``CSRF_TRUSTED_ORIGINS`` (``https://*.example.com`` included, as
  Django's CSRF check reads it): the origins the HTTP API already trusts.

A missing Origin, ``Origin: null`` and any other scheme than http(s) are refused. A
refused handshake gets HTTP 403 before the upgrade.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

from tasks import conf

logger = logging.getLogger(__name__)

DEFAULT_PORTS = {"http": 80, "https": 443}
Origin = tuple[str, str, int]


def parse_origin(value: str) -> Origin | None:
    """``(scheme, host, port)`` of an origin, ``None`` unless it is a plain http(s) origin."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower().rstrip(".")
    if scheme not in DEFAULT_PORTS or not host or parts.username is not None or parts.password is not None:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    return scheme, host, port if port is not None else DEFAULT_PORTS[scheme]


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key == name:
            try:
                return bytes(value).decode("latin-1")
            except (TypeError, ValueError):
                return None
    return None


def _secure(scope: dict[str, Any]) -> bool:
    if scope.get("scheme") == "wss":
        return True
    proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy:
        name, expected = proxy
        wanted = name.lower().removeprefix("http_").replace("_", "-").encode("latin-1")
        got = _header(scope, wanted)
        if got is not None and got.split(",", 1)[0].strip() == expected:
            return True
    return False


def _same_origin(scope: dict[str, Any]) -> Origin | None:
    host = _header(scope, b"host")
    if not host:
        return None
    domain, port = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return None
    scheme = "https" if _secure(scope) else "http"
    return parse_origin(f"{scheme}://{host}")


def _trusted(origin: Origin) -> bool:
    """Is ``origin`` one of CSRF_TRUSTED_ORIGINS (exactly, or under a ``*.`` wildcard)?"""
    scheme, host, port = origin
    for entry in getattr(settings, "CSRF_TRUSTED_ORIGINS", ()) or ():
        if not isinstance(entry, str):
            continue
        wildcard = "://*." in entry
        allowed = parse_origin(entry.replace("://*.", "://", 1) if wildcard else entry)
        if allowed is None or allowed[0] != scheme or allowed[2] != port:
            continue
        if allowed[1] == host or (wildcard and host.endswith("." + allowed[1])):
            return True
    return False


def origin_allowed(scope: dict[str, Any]) -> bool:
    """Does the handshake's Origin equal an allowed origin (scheme, host and port)?"""
    raw = _header(scope, b"origin")
    origin = parse_origin(raw) if raw else None
    if origin is None:
        return False
    configured = conf.get().ALLOWED_ORIGINS
    if configured is None:
        if origin == _same_origin(scope):
            return True
    elif origin in {parse_origin(o) for o in configured}:
        return True
    return _trusted(origin)


class OriginValidator:
    """ASGI middleware for the ``websocket`` protocol: refuse (403) a handshake from another origin."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope.get("type") == "websocket" and not origin_allowed(scope):
            logger.info("WebSocket refused: Origin %r is not allowed for %s", _header(scope, b"origin"), scope.get("path"))
            denier = WebsocketDenier()
            return await denier(scope, receive, send)
        return await self.application(scope, receive, send)


class CloseUnknownPaths:
    """Refuse (403) a handshake to a path no WebSocket route serves, without a traceback.

    Channels' ``URLRouter`` raises ``ValueError("No route found for path ...")``, which
    the server logs as an application error; this answers such a handshake like a
    refused one instead.
    """

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        try:
            return await self.application(scope, receive, send)
        except ValueError as exc:
            if scope.get("type") != "websocket" or not str(exc).startswith("No route found for path"):
                raise
            logger.info("WebSocket refused: no route for %r", scope.get("path"))
            return await WebsocketDenier()(scope, receive, send)
