"""Let the consumer close a socket with the protocol close codes 1008 and 1009 under Daphne.

Autobahn (Daphne's WebSocket engine) accepts only 1000 and 3000-4999 in ``sendClose``:
the rule browsers apply to *applications*. RFC 6455 (7.4.1) lets a server endpoint send
1008 (policy violation) and 1009 (message too big), which is what docs/protocol.md
promises. Without this, ``close(code=1009)`` raises inside Daphne, which logs a
traceback and the client sees 1011 or an abnormal closure instead.
"""

from __future__ import annotations

from typing import Any

CLOSE_POLICY = 1008  # a client that keeps breaking the rate limit
CLOSE_TOO_BIG = 1009  # a frame over the size limit
CLOSE_SESSION_ENDED = 4001  # logout, expiry, password change, account deactivated
PROTOCOL_CLOSE_CODES = frozenset({CLOSE_POLICY, CLOSE_TOO_BIG, 1011})


def allow_protocol_close_codes() -> None:
    """Patch Daphne's server-side close once per process (a no-op without Daphne)."""
    try:
        from daphne.ws_protocol import WebSocketProtocol  # optional dependency: any ASGI server will do
    except ImportError:  # another ASGI server: nothing to do
        return
    if getattr(WebSocketProtocol, "_tasklight_close_codes", False):
        return
    original = WebSocketProtocol.serverClose

    def server_close(self: Any, code: int | None = None) -> None:
        if code in PROTOCOL_CLOSE_CODES:
            # sendCloseFrame is autobahn's public frame-level call, without the app-code rule.
            self.sendCloseFrame(code=code, isReply=False)
            return
        original(self, code=code)

    WebSocketProtocol.serverClose = server_close
    WebSocketProtocol._tasklight_close_codes = True
