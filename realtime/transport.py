"""Tasklight's adjustments to Daphne's WebSocket protocol (a no-op under another server).

- **Protocol close codes.** Autobahn (Daphne's WebSocket engine) accepts only 1000 and
  3000-4999 in ``sendClose``: the rule browsers apply to *applications*. RFC 6455
  (7.4.1) lets a server endpoint send 1008 (policy violation) and 1009 (message too
  big), which is what docs/protocol.md promises. Without this, ``close(code=1009)``
  raises inside Daphne, which logs a traceback and the client sees 1011 or an abnormal
  closure instead.
- **Nothing sent once the close has begun.** Autobahn raises "Attempt to send on a
  closed protocol" for a frame sent after the close frame; such a frame is dropped.
- **Back-pressure.** A client that does not read leaves what the server writes in the
  transport's buffer, without bound. Before a frame is written, the bytes still waiting
  in the buffer are compared with ``TASKLIGHT["MAX_SOCKET_BUFFER"]`` (attribute reads of
  Twisted's transport, no system call): over it, the frame is dropped and the socket is
  closed with 4008; a client that does not answer the close within autobahn's close
  handshake timeout (1 s) is cut off, which frees the buffer.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

CLOSE_POLICY = 1008  # a client that keeps breaking the rate limit
CLOSE_TOO_BIG = 1009  # a frame over the size limit
CLOSE_SESSION_ENDED = 4001  # logout, expiry, password change, account deactivated
CLOSE_TOO_SLOW = 4008  # a client that does not read what it is sent
CLOSE_TOO_MANY = 4029  # too many sockets for one session or one client address
PROTOCOL_CLOSE_CODES = frozenset({CLOSE_POLICY, CLOSE_TOO_BIG, 1011})

# Owned by this module: the buffer limit of this process, set when the route is built.
_max_buffer: int = 1024 * 1024


def pending_bytes(transport: Any) -> int:
    """Bytes a Twisted TCP transport holds that the kernel has not taken yet (0 if unknown).

    Under TLS (Daphne's ``ssl:`` endpoint) the protocol's transport is the TLS layer:
    the bytes wait in the TCP transport beneath it.
    """
    for candidate in (transport, getattr(transport, "transport", None)):
        try:
            return len(candidate.dataBuffer) - candidate.offset + candidate._tempDataLen  # type: ignore[no-any-return,union-attr]
        except (AttributeError, TypeError):
            continue
    return 0


def allow_protocol_close_codes(max_buffer: int | None = None) -> None:
    """Patch Daphne's WebSocket protocol once per process (a no-op without Daphne)."""
    global _max_buffer
    if max_buffer is not None:
        _max_buffer = max_buffer
    try:
        from daphne.ws_protocol import WebSocketProtocol  # optional dependency: any ASGI server will do
    except ImportError:  # another ASGI server: nothing to do
        return
    if getattr(WebSocketProtocol, "_tasklight_close_codes", False):
        return
    original_close = WebSocketProtocol.serverClose
    original_reply = WebSocketProtocol.handle_reply
    open_state = WebSocketProtocol.STATE_OPEN
    ending = (WebSocketProtocol.STATE_CLOSING, WebSocketProtocol.STATE_CLOSED)

    def server_close(self: Any, code: int | None = None) -> None:
        if self.state in ending:
            return  # closing or closed already: one close frame is enough
        if code in PROTOCOL_CLOSE_CODES:
            # sendCloseFrame is autobahn's public frame-level call, without the app-code rule.
            self.sendCloseFrame(code=code, isReply=False)
            return
        original_close(self, code=code)

    def handle_reply(self: Any, message: dict[str, Any]) -> None:
        if message.get("type") == "websocket.send":
            if self.state in ending:
                return  # the close has begun: the frame could never be read
            if self.state == open_state and pending_bytes(self.transport) > _max_buffer:
                logger.info("Closing a WebSocket whose client does not read (%s)", self.client_addr)
                self.sendClose(code=CLOSE_TOO_SLOW)
                return
        original_reply(self, message)

    WebSocketProtocol.serverClose = server_close
    WebSocketProtocol.handle_reply = handle_reply
    WebSocketProtocol._tasklight_close_codes = True
