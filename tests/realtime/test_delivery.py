"""Every terminal state reaches every watcher: under load, and when it was never published."""

from __future__ import annotations

import asyncio
import json
import resource
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import websockets
from asgiref.sync import sync_to_async

from tests.realtime.conftest import round_trip, subscribed
from tests.support import TERMINAL, Daphne, Visitor

pytestmark = pytest.mark.live

CLIENTS = 500
TASKS = 50


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= needed, "raise the open-file limit (ulimit -n)"


class Watcher:
    """A lean client: subscribe to all, then record the terminal state of every task."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.url = url
        self.headers = headers
        self.finished: dict[str, str] = {}
        self.frames = 0
        self.ready = asyncio.Event()
        self.done = asyncio.Event()
        self.expected: set[str] = set()
        self.log: list = []

    async def run(self) -> None:
        async with websockets.connect(self.url, additional_headers=self.headers, max_size=None,
                                      open_timeout=30, ping_interval=None) as ws:
            await ws.send('{"type":"subscribe"}')
            async for raw in ws:
                message = json.loads(raw)
                if message["type"] == "snapshot":
                    self.ready.set()
                elif message["type"] == "task":
                    self.frames += 1
                    task = message["task"]
                    self.log.append((task["id"], task["state"], task["seq"]))
                    if task["state"] in TERMINAL:
                        self.finished[task["id"]] = task["state"]
                        if self.expected and self.expected <= self.finished.keys():
                            self.done.set()
                            return


@pytest.fixture(scope="module")
def roomy_daphne(django_db_setup: None) -> Iterator[Daphne]:
    """A Daphne of its own that lets one session open 500 sockets (the default cap is 32)."""
    daphne = Daphne(DJANGO_SETTINGS_MODULE="tests.realtime.settings_many_sockets").start()
    yield daphne
    daphne.stop()


@pytest.fixture
async def roomy(transactional_db: None, worker: object, roomy_daphne: Daphne) -> AsyncIterator[Visitor]:
    async with Visitor(roomy_daphne) as v:
        yield v


async def test_500_clients_of_one_owner_each_get_every_terminal_state_of_50_tasks(roomy):
    visitor, live = roomy, roomy.daphne
    _raise_fd_limit(CLIENTS * 2 + 256)
    headers = {"Cookie": visitor.cookie_header, "Origin": live.base_url}
    watchers = [Watcher(live.ws_url, headers) for _ in range(CLIENTS)]
    runs = []
    for start in range(0, CLIENTS, 50):  # connect in waves: no handshake storm
        batch = watchers[start:start + 50]
        runs.extend(asyncio.create_task(w.run()) for w in batch)
        await asyncio.wait_for(asyncio.gather(*(w.ready.wait() for w in batch)), 30)
    started = time.monotonic()
    launched = await asyncio.gather(*(visitor.launch("demo.sleepy", seconds=0.05) for _ in range(TASKS)))
    ids = {t["id"] for t in launched}
    for w in watchers:
        w.expected = ids
        if ids <= w.finished.keys():
            w.done.set()
    try:
        await asyncio.wait_for(asyncio.gather(*(w.done.wait() for w in watchers)), 45)
    except TimeoutError:
        pass  # reported below, client by client
    finally:
        for run in runs:
            run.cancel()
        await asyncio.gather(*runs, return_exceptions=True)
    elapsed = time.monotonic() - started
    missing = {i: len(ids - w.finished.keys()) for i, w in enumerate(watchers) if not ids <= w.finished.keys()}
    frames = sum(w.frames for w in watchers)
    if missing:
        from tasks.models import TaskRun

        lost = set().union(*(ids - w.finished.keys() for w in watchers))
        rows = {str(r.id): (r.state, r.seq) async for r in TaskRun.objects.filter(id__in=list(lost))}
        seen = [entry for entry in watchers[0].log if entry[0] in lost]
        raise AssertionError(
            f"{len(missing)} of {CLIENTS} clients miss terminal states after {elapsed:.0f} s (worst misses "
            f"{max(missing.values())} of {TASKS}; {frames} task frames in all). Rows: {rows}; "
            f"client 0 saw: {seen}; crashed: {[r.exception() for r in runs if r.done() and not r.cancelled()][:3]}"
        )
    assert all(w.finished[t] == "succeeded" for w in watchers for t in ids)
    print(f"\n{CLIENTS} clients x {TASKS} tasks: {frames} task frames in {elapsed:.1f} s")


async def _own_owner_key(visitor) -> str:
    from tasks.models import TaskRun

    probe = await visitor.launch("demo.sleepy", seconds=0)
    return (await TaskRun.objects.aget(id=probe["id"])).owner_key


async def _insert_row(owner_key: str, state: str) -> str:
    """A run written straight to the database, as if every publish about it had been lost."""
    from tasks.models import TaskRun
    from tasks.objects import next_seq, now

    moment = now()
    row = await TaskRun.objects.acreate(
        id=uuid.uuid4(), name="demo.sleepy", label="Written behind the publisher's back", owner_key=owner_key,
        params={"seconds": 0}, state=state, created_at=moment, updated_at=moment, seq=next_seq(0),
        finished_at=moment if state in TERMINAL else None, result={"slept": 0} if state in TERMINAL else None,
    )
    return str(row.id)


async def _finish_row_silently(task_id: str) -> int:
    from tasks.models import TaskRun
    from tasks.objects import next_seq, now

    def finish() -> int:
        row = TaskRun.objects.get(id=task_id)
        moment = now()
        row.state, row.finished_at, row.updated_at = "succeeded", moment, moment
        row.result = {"slept": 0}
        row.seq = next_seq(row.seq)
        row.save()
        return row.seq

    return await sync_to_async(finish)()


async def test_resync_delivers_a_terminal_state_that_was_never_published(visitor):
    owner_key = await _own_owner_key(visitor)
    task_id = await _insert_row(owner_key, "queued")
    watching_all, snapshot = await subscribed(visitor)
    assert task_id in {t["id"] for t in snapshot["tasks"]}
    watching_one, _ = await subscribed(visitor, task_id)
    seq = await _finish_row_silently(task_id)
    for ws in (watching_all, watching_one):
        final = await ws.until_finished(task_id, timeout=10)  # resync runs every second in tests
        assert final["state"] == "succeeded" and final["seq"] >= seq
    # A task the connection never heard of at all, finished before any publish: found too.
    unseen = await _insert_row(owner_key, "succeeded")
    assert (await watching_all.until_finished(unseen, timeout=10))["state"] == "succeeded"
    # Each is sent once: the resync sends only what is newer than what the connection has.
    await round_trip(watching_all)
    frames = [m for m in watching_all.messages if m.get("type") == "task" and m["task"]["id"] in (task_id, unseen)]
    assert len(frames) == 2, frames
    for ws in (watching_all, watching_one):
        await ws.close()


async def test_a_socket_holds_no_channel_layer_subscription_of_its_own(visitor, redis) -> None:
    # Updates reach sockets through their process's hub: a socket that also had a channel
    # of its own would hold a Redis subscription (and its buffers) that nothing reads.
    import redis as redis_py
    from django.conf import settings

    prefix = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
    client = redis_py.Redis.from_url(redis.url)
    sockets = [(await subscribed(visitor))[0] for _ in range(10)]
    try:
        channels = [c.decode() for c in client.pubsub_channels(f"{prefix}*")]
        assert any(c.startswith(f"{prefix}tasklight.hub.") for c in channels), channels  # the hub's own
        assert [c for c in channels if c.startswith(f"{prefix}specific.")] == []
    finally:
        for ws in sockets:
            await ws.close()
        client.close()
