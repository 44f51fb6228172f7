"""The socket's security findings of issue 12, each reproduced against a live Daphne.

1. The Origin is checked exactly (scheme, host, port): another port or scheme of the
   same host is refused (realtime/security.py).
2. A consumer closed by the server (1009, 1008, 4001) handles no frame queued after
   the close, never sends onto the closed socket, and leaves its groups and the monitor.
3. A client that does not read is closed (4008) before its pending output passes
   ``TASKLIGHT["MAX_SOCKET_BUFFER"]``; others are not slowed.
6. The rate-limit cost follows the parsed type; sockets per session and per address
   are capped (4029); an unknown path is refused without a traceback.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time
import uuid
from typing import Any

import pytest
import websockets
from asgiref.sync import sync_to_async

from tests.realtime.conftest import closed_with, round_trip, subscribed

TOO_SLOW = 4008
TOO_MANY = 4029


# ---- a raw WebSocket client: frames written and read byte for byte --------------------
def raw_connect(port: int, cookie: str, origin: str, path: str = "/ws/tasks/", rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: {origin}\r\nCookie: {cookie}\r\n\r\n".encode()
    )
    head = b""
    while not head.endswith(b"\r\n\r\n"):  # byte by byte: the first frame stays in the socket
        chunk = sock.recv(1)
        assert chunk, head
        head += chunk
    assert head.split(b"\r\n")[0].split()[1] == b"101", head
    return sock


def frame(payload: str | bytes, opcode: int = 1) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    mask = os.urandom(4)
    size = len(data)
    if size < 126:
        head = bytes([0x80 | opcode, 0x80 | size])
    elif size < 65536:
        head = bytes([0x80 | opcode, 0x80 | 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + size.to_bytes(8, "big")
    masked = (int.from_bytes(data, "big") ^ int.from_bytes((mask * (size // 4 + 1))[:size], "big")).to_bytes(size, "big")
    return head + mask + masked


def read_frames(sock: socket.socket, timeout: float) -> tuple[list[tuple[int, bytes]], str]:
    """Every frame until the connection ends or ``timeout`` passes; and how it ended."""
    sock.settimeout(timeout)
    data = b""
    ended = "timeout"
    try:
        while True:
            chunk = sock.recv(1 << 16)
            if not chunk:
                ended = "eof"
                break
            data += chunk
    except TimeoutError:
        ended = "timeout"
    except (ConnectionResetError, BrokenPipeError):
        ended = "reset"
    frames = []
    while len(data) >= 2:
        opcode, size, at = data[0] & 0x0F, data[1] & 0x7F, 2
        if size == 126:
            size, at = int.from_bytes(data[2:4], "big"), 4
        elif size == 127:
            size, at = int.from_bytes(data[2:10], "big"), 10
        if len(data) < at + size:
            break
        frames.append((opcode, data[at:at + size]))
        data = data[at + size:]
    return frames, ended


def close_code(frames: list[tuple[int, bytes]]) -> int | None:
    for opcode, payload in frames:
        if opcode == 8:
            return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
    return None


# ---- 1. exact origins -------------------------------------------------------------------
@pytest.mark.live
async def test_a_handshake_from_another_port_or_scheme_of_the_same_host_is_refused(visitor, live):
    port = live.port
    for origin in (
        f"http://127.0.0.1:{port + 1}",  # another site of the same host
        f"http://127.0.0.1:{port - 1}",
        "http://127.0.0.1",  # port 80
        f"https://127.0.0.1:{port}",  # another scheme
        f"ftp://127.0.0.1:{port}",
        f"http://localhost:{port}",  # an allowed host, but not the one this socket was opened on
        f"http://127.0.0.1.evil.example:{port}",
        f"http://user@127.0.0.1:{port}",
    ):
        with pytest.raises(websockets.InvalidStatus) as refused:
            await visitor.socket(origin=origin)
        assert refused.value.response.status_code == 403, origin
    # The socket's own origin, in any case of the host name, is served.
    for origin in (live.base_url, f"HTTP://127.0.0.1:{port}"):
        ws = await visitor.socket(origin=origin)
        await round_trip(ws)
        await ws.close()


def _scope(origin: str | None, host: str = "tasks.example.com", scheme: str = "ws", **headers: str) -> dict[str, Any]:
    raw = [(b"host", host.encode())] + ([(b"origin", origin.encode())] if origin is not None else [])
    raw += [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return {"type": "websocket", "path": "/ws/tasks/", "headers": raw, "scheme": scheme}


def test_the_allowed_origins_are_exact(settings):
    from realtime.security import origin_allowed

    settings.ALLOWED_HOSTS = ["tasks.example.com", "other.example.com"]
    settings.CSRF_TRUSTED_ORIGINS = ["https://admin.example.com", "https://*.corp.example.com"]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # Default: the socket's own origin only, plus CSRF_TRUSTED_ORIGINS.
    assert origin_allowed(_scope("http://tasks.example.com"))
    assert origin_allowed(_scope("http://tasks.example.com:80"))
    assert not origin_allowed(_scope("https://tasks.example.com"))
    assert origin_allowed(_scope("https://tasks.example.com", scheme="wss"))
    assert not origin_allowed(_scope("http://tasks.example.com", scheme="wss"))
    assert origin_allowed(_scope("https://tasks.example.com", x_forwarded_proto="https"))
    assert not origin_allowed(_scope("http://tasks.example.com:8080"))
    assert not origin_allowed(_scope("http://other.example.com"))
    assert origin_allowed(_scope("http://tasks.example.com:8080", host="tasks.example.com:8080"))
    assert not origin_allowed(_scope("http://evil.example", host="evil.example"))  # not an allowed host
    assert origin_allowed(_scope("https://admin.example.com"))
    assert not origin_allowed(_scope("http://admin.example.com"))
    assert not origin_allowed(_scope("https://admin.example.com:8443"))
    assert origin_allowed(_scope("https://a.corp.example.com"))
    assert not origin_allowed(_scope("https://corp.example.com.evil.example"))
    for bad in (None, "", "null", "ftp://tasks.example.com", "tasks.example.com", "http://tasks.example.com/x"):
        assert not origin_allowed(_scope(bad)), bad
    # A configured list replaces the default.
    settings.TASKLIGHT = {**settings.TASKLIGHT, "ALLOWED_ORIGINS": ["https://app.example.com:8443"]}
    assert origin_allowed(_scope("https://app.example.com:8443"))
    assert not origin_allowed(_scope("https://app.example.com"))
    assert not origin_allowed(_scope("http://tasks.example.com"))
    assert origin_allowed(_scope("https://admin.example.com"))


def test_the_new_settings_are_validated(settings):
    from tasks import conf

    for key, value in (
        ("ALLOWED_ORIGINS", "https://a.example.com"),
        ("ALLOWED_ORIGINS", ["a.example.com"]),
        ("ALLOWED_ORIGINS", ["https://a.example.com/path"]),
        ("ALLOWED_ORIGINS", ["https://a.example.com:port"]),
        ("ALLOWED_ORIGINS", [42]),
        ("MAX_SOCKET_BUFFER", 1000),
        ("MAX_SOCKET_BUFFER", 1.5e6),
        ("MAX_SOCKETS_PER_SESSION", 0),
        ("MAX_SOCKETS_PER_ADDRESS", "many"),
    ):
        settings.TASKLIGHT = {**settings.TASKLIGHT, key: value}
        assert [k for k, _ in conf.problems()] == [key], (key, value)
        del settings.TASKLIGHT[key]
    settings.TASKLIGHT = {**settings.TASKLIGHT, "ALLOWED_ORIGINS": ["https://a.example.com", "http://127.0.0.1:8000"]}
    assert conf.get().ALLOWED_ORIGINS == ("https://a.example.com", "http://127.0.0.1:8000")
    assert conf.get().MAX_SOCKET_BUFFER == 1024 * 1024


# ---- 2. the consumer after a server-initiated close --------------------------------------
class ClosedProtocol(Exception):
    pass


class Harness:
    """The consumer run in this process as Daphne runs it: a send after the close raises
    (autobahn's "Attempt to send on a closed protocol")."""

    def __init__(self, scope: dict[str, Any]) -> None:
        from realtime.consumers import TasksConsumer

        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []
        self.sent_after_close = 0
        self.closed = False
        self.task = asyncio.get_running_loop().create_task(TasksConsumer.as_asgi()(scope, self.queue.get, self.send))

    async def send(self, message: dict[str, Any]) -> None:
        if self.closed:
            self.sent_after_close += 1
            raise ClosedProtocol("Attempt to send on a closed protocol")
        self.sent.append(message)
        if message["type"] == "websocket.close":
            self.closed = True

    async def next(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for message in self.sent[seen:]:
                if message["type"] == kind or json.loads(message.get("text") or "{}").get("type") == kind:
                    self.sent.remove(message)
                    return message
            seen = 0
            await asyncio.sleep(0.01)
        raise AssertionError(f"no {kind} within {timeout}s: {self.sent[-3:]}")


async def _visitor_session() -> Any:
    from django.contrib.sessions.backends.db import SessionStore

    from tasks.owners import VISITOR_SESSION_KEY

    def make() -> Any:
        store = SessionStore()
        store[VISITOR_SESSION_KEY] = uuid.uuid4().hex
        store.save()
        return SessionStore(session_key=store.session_key)

    return await sync_to_async(make)()


async def _visitor_scope(address: str) -> dict[str, Any]:
    """The scope of an anonymous visitor's socket from ``address``, as AuthMiddlewareStack fills it."""
    from django.contrib.auth.models import AnonymousUser

    return {"type": "websocket", "path": "/ws/tasks/", "headers": [], "client": [address, 5000],
            "session": await _visitor_session(), "user": AnonymousUser()}


def _members_of(consumer: Any) -> list[str]:
    from realtime.fanout import hub

    return [group for group, members in hub().members.items() if consumer in members]


async def _stop_hub() -> None:
    from realtime.fanout import hub

    pump = hub()._pump
    if pump is not None:
        pump.cancel()


@pytest.mark.parametrize("closing", ["too_big", "rate_limit", "session_ended"])
async def test_a_consumer_closed_by_the_server_handles_no_queued_frame_and_leaves_everything(transactional_db, closing):

    from realtime import monitor
    from realtime.consumers import TasksConsumer

    scope = await _visitor_scope("10.9.8.7")
    before = set(monitor._consumers)
    app = Harness(scope)
    try:
        await app.queue.put({"type": "websocket.connect"})
        await app.next("websocket.accept")
        await app.queue.put({"type": "websocket.receive", "text": '{"type":"subscribe"}'})
        await app.next("snapshot")
        consumer = next(iter(set(monitor._consumers) - before))
        assert isinstance(consumer, TasksConsumer)
        assert len(_members_of(consumer)) == 2  # the session's group and the owner's
        # The closing frame, then more in the same write, handled only after the close began.
        if closing == "too_big":
            queued = [{"type": "websocket.receive", "text": '{"type":"ping","pad":"' + "x" * 70_000 + '"}'}]
        elif closing == "rate_limit":
            queued = [{"type": "websocket.receive", "text": "[]"}] * 80
        else:
            queued = []
            await consumer.close(code=4001)
        queued += [{"type": "websocket.receive", "text": '{"type":"ping"}'},
                   {"type": "websocket.receive", "text": '{"type":"subscribe"}'},
                   {"type": "websocket.receive", "text": "not json"}]
        for message in queued:
            app.queue.put_nowait(message)
        close = await app.next("websocket.close")
        assert close["code"] == {"too_big": 1009, "rate_limit": 1008, "session_ended": 4001}[closing]
        for _ in range(50):
            if app.queue.empty():
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        assert not app.task.done() or app.task.exception() is None, app.task.exception()
        assert app.sent_after_close == 0
        # Gone from the hub and the monitor at once, before the client's disconnect arrives.
        assert _members_of(consumer) == []
        assert consumer not in set(monitor._consumers)
        await app.queue.put({"type": "websocket.disconnect", "code": 1006})
        await asyncio.wait_for(app.task, 5)
        assert _members_of(consumer) == []
    finally:
        if not app.task.done():
            app.task.cancel()
        await _stop_hub()


async def test_a_consumer_that_fails_leaves_its_groups_and_the_monitor(transactional_db, monkeypatch):

    from realtime import monitor
    from realtime.consumers import TasksConsumer

    scope = await _visitor_scope("10.9.8.6")
    before = set(monitor._consumers)
    app = Harness(scope)
    try:
        await app.queue.put({"type": "websocket.connect"})
        await app.next("websocket.accept")
        consumer = next(iter(set(monitor._consumers) - before))
        assert _members_of(consumer)
        boom = RuntimeError("boom")

        async def fail(self: Any, message: dict[str, Any]) -> None:
            raise boom

        monkeypatch.setattr(TasksConsumer, "websocket_receive", fail)
        await app.queue.put({"type": "websocket.receive", "text": '{"type":"ping"}'})
        with pytest.raises(RuntimeError):
            await asyncio.wait_for(app.task, 5)
        assert _members_of(consumer) == []
        assert consumer not in set(monitor._consumers)
    finally:
        await _stop_hub()


@pytest.mark.live
async def test_a_frame_queued_behind_a_close_is_not_answered_under_daphne(visitor, live):
    ws, _ = await subscribed(visitor)
    await ws.close()
    sock = raw_connect(live.port, visitor.cookie_header, live.base_url)
    try:
        sock.sendall(frame('{"type":"subscribe"}'))
        frames, _ = read_frames(sock, 0.5)
        assert [json.loads(p)["type"] for op, p in frames if op == 1] == ["snapshot"]
        # Too big, then a ping, in one write: the close comes, the pong never does.
        sock.sendall(frame('{"type":"ping","pad":"' + "x" * 70_000 + '"}') + frame('{"type":"ping"}'))
        frames, _ = read_frames(sock, 1.5)  # the close is not answered: Daphne drops us after 1 s
        assert close_code(frames) == 1009
        assert [p for op, p in frames if op == 1] == []
    finally:
        sock.close()
    # Daphne logged no traceback (the autouse fixture) and serves the next socket.
    again = await visitor.socket()
    await round_trip(again)
    await again.close()


# ---- 3. back-pressure ---------------------------------------------------------------------
@pytest.mark.live
async def test_a_client_that_does_not_read_is_closed_and_others_are_not_slowed(visitor, other_visitor, live):
    # Snapshots of 50 tasks: about 35 KB each.
    await asyncio.gather(*(visitor.launch("demo.sleepy", seconds=0) for _ in range(50)))
    bystander, _ = await subscribed(other_visitor)
    sock = raw_connect(live.port, visitor.cookie_header, live.base_url, rcvbuf=4096)
    pings = []
    closed_after = None
    started = time.monotonic()
    try:
        # About 35 s here: the kernel buffers of both ends fill before the server's own does.
        while time.monotonic() - started < 120:
            try:
                sock.sendall(frame('{"type":"subscribe"}'))  # the rate limit lets 4 a second through
            except OSError:
                closed_after = time.monotonic() - started
                break
            clock = time.monotonic()
            await round_trip(bystander)
            pings.append(time.monotonic() - clock)
            await asyncio.sleep(0.25)
        else:
            frames, ended = read_frames(sock, 2)
            raise AssertionError(f"never closed: {ended}, {len(frames)} frames readable")
    finally:
        sock.close()
    assert closed_after is not None
    assert max(pings) < 0.5, pings
    await round_trip(bystander)
    await bystander.close()


# ---- 6. rate-limit cost, socket caps, unknown paths ----------------------------------------
@pytest.mark.live
async def test_the_subscribe_cost_follows_the_parsed_type(visitor):
    ws = await visitor.socket()
    spelled = '{"type": "subscrib\\u0065"}'  # the same message, without the substring
    for _ in range(12):
        await ws.send(spelled)
    answers = [await ws.expect(lambda m: m["type"] in ("snapshot", "error")) for _ in range(12)]
    kinds = [a["type"] if a["type"] == "snapshot" else a["code"] for a in answers]
    assert "rate_limited" in kinds, kinds  # 8 subscribes fill the bucket of 40
    assert kinds.count("snapshot") <= 9, kinds
    await ws.close()


@pytest.mark.live
async def test_sockets_per_session_are_capped(visitor, other_visitor):
    from tasks import conf

    cap = conf.DEFAULTS.get("MAX_SOCKETS_PER_SESSION", 32)
    sockets = []
    try:
        for _ in range(cap):
            ws = await visitor.socket()
            await round_trip(ws)
            sockets.append(ws)
        extra = await visitor.socket()
        assert await closed_with(extra, 5) == TOO_MANY
        # Another session is not affected, and a closed socket frees its place.
        elsewhere = await other_visitor.socket()
        await round_trip(elsewhere)
        await elsewhere.close()
        await sockets.pop().close()
        # The server frees the place once it has seen the close: wait for that, bounded.
        deadline = time.monotonic() + 10
        while True:
            again = await visitor.socket()
            try:
                await round_trip(again)
                break
            except (AssertionError, websockets.ConnectionClosed):
                assert time.monotonic() < deadline, "the closed socket's place was never freed"
        sockets.append(again)
    finally:
        for ws in sockets:
            await ws.close()


async def test_sockets_per_address_are_capped(transactional_db, settings):
    settings.TASKLIGHT = {**settings.TASKLIGHT, "MAX_SOCKETS_PER_ADDRESS": 2}
    apps = []
    try:
        for _ in range(3):
            app = Harness(await _visitor_scope("10.1.2.3"))
            apps.append(app)
            await app.queue.put({"type": "websocket.connect"})
            await app.next("websocket.accept")
        assert [a.closed for a in apps] == [False, False, True]
        assert (await apps[2].next("websocket.close"))["code"] == TOO_MANY
        for app in apps:
            await app.queue.put({"type": "websocket.disconnect", "code": 1000})
            await asyncio.wait_for(app.task, 5)
        from realtime import consumers

        assert "10.1.2.3" not in consumers._open_per_address
    finally:
        for app in apps:
            if not app.task.done():
                app.task.cancel()
        await _stop_hub()


@pytest.mark.live
async def test_an_unknown_path_is_refused_without_a_traceback(visitor, live):
    start = len(live.output())  # this test's part of the log: others may stop Redis, which logs
    for path in ("/ws/nope/", "/", "/ws/tasks/extra/", "/api/tasks/"):
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(f"ws://127.0.0.1:{live.port}{path}",
                                     additional_headers={"Cookie": visitor.cookie_header, "Origin": live.base_url})
        assert refused.value.response.status_code == 403
    # The refusal is answered after anything the server would log about it.
    log = live.output()[start:]
    assert "Traceback" not in log and "No route found" not in log


async def test_a_socket_launch_is_forbidden_when_only_signed_in_users_may_launch(transactional_db, settings):

    settings.TASKLIGHT = {**settings.TASKLIGHT, "ALLOW_ANONYMOUS": False}
    scope = await _visitor_scope("10.9.8.7")
    app = Harness(scope)
    try:
        await app.queue.put({"type": "websocket.connect"})
        await app.next("websocket.accept")
        await app.queue.put({"type": "websocket.receive", "text": '{"type":"launch","name":"demo.sleepy","params":{}}'})
        error = json.loads((await app.next("error"))["text"])
        assert error["code"] == "forbidden", error
    finally:
        await app.queue.put({"type": "websocket.disconnect", "code": 1000})
        await asyncio.wait_for(app.task, 5)
        await _stop_hub()
