"""The live record of each task in Redis: the newest object and its ``seq``.

One hash per task, one JSON-encoded field per top-level key of the task object, plus
``seq`` and ``_owner``. Writes go through one Lua script that merges a patch, refuses
any change to a task already in a terminal state, and gives the change its ``seq``
(above the previous one, the Redis clock in microseconds and the caller's floor), so
that concurrent writers (the worker's publisher, Daphne's cancel) are ordered by
``seq`` and every published object contains all earlier changes.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tasks import conf
from tasks.contracts import TERMINAL_NAMES

# The terminal check is written from the one list of states (tasks/contracts.py).
_TERMINAL_LUA = " or ".join(f"state == '\"{name}\"'" for name in TERMINAL_NAMES)
MERGE_SCRIPT = f"""
local state = redis.call('HGET', KEYS[1], 'state')
if {_TERMINAL_LUA} then
  return 0
end
if ARGV[3] == '1' and redis.call('HEXISTS', KEYS[1], 'id') == 0 then
  return -1
end
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0') + 1
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local floor = tonumber(ARGV[1])
if now > seq then seq = now end
if floor > seq then seq = floor end
redis.call('HSET', KEYS[1], 'seq', string.format('%.0f', seq), unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('HGETALL', KEYS[1])
"""

# One client per event loop: a redis.asyncio connection belongs to the loop that made it.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = (
    weakref.WeakKeyDictionary()
)


def prefix() -> str:
    return conf.get().REDIS_PREFIX


def live_key(task_id: str) -> str:
    return f"{prefix()}:task:{task_id}"


def cancel_key(task_id: str) -> str:
    return f"{prefix()}:cancel:{task_id}"


def heartbeat_key(task_id: str) -> str:
    return f"{prefix()}:hb:{task_id}"


def client_options() -> dict[str, Any]:
    # Short timeouts and one quick retry: a Redis that is away must never hold a task up.
    return {
        "socket_connect_timeout": 0.5,
        "socket_timeout": 1.0,
        "retry": Retry(NoBackoff(), 1),
        "health_check_interval": 10,
    }


def get_client() -> aioredis.Redis:
    """The Redis client of the running event loop."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = aioredis.Redis.from_url(conf.get().REDIS_URL, **client_options())
        _clients[loop] = client
    return client


async def close_client() -> None:
    """Close the running loop's client (a loop made for one call, e.g. a WSGI view's)."""
    client = _clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()


class MergeResult:
    __slots__ = ("status", "record")

    def __init__(self, status: str, record: dict[str, Any] | None = None) -> None:
        self.status = status  # "ok", "terminal" (refused) or "missing" (needs the full object)
        self.record = record


def decode_record(raw: Any) -> dict[str, Any]:
    """Turn a stored hash (HGETALL) into the live record: JSON values, int seq, owner."""
    pairs: Iterable[tuple[Any, Any]]
    if isinstance(raw, list):
        pairs = zip(raw[0::2], raw[1::2])
    else:
        pairs = raw.items()
    record: dict[str, Any] = {}
    for key, value in pairs:
        name = key.decode()
        if name == "seq":
            record["seq"] = int(value)
        elif name == "_owner":
            record["_owner"] = value.decode()
        else:
            record[name] = json.loads(value)
    return record


async def merge(
    task_id: str,
    fields: dict[str, Any],
    *,
    owner_key: str | None = None,
    seq_floor: int = 0,
    require_existing: bool = False,
) -> MergeResult:
    """Merge ``fields`` into the live record and return the whole record with its new seq."""
    client = get_client()
    args: list[Any] = [str(seq_floor), str(int(conf.get().LIVE_TTL * 1000))]
    args.append("1" if require_existing else "0")
    for name, value in fields.items():
        args.extend((name, json.dumps(value, separators=(",", ":"))))
    if owner_key is not None:
        args.extend(("_owner", owner_key))
    reply = await client.eval(MERGE_SCRIPT, 1, live_key(task_id), *args)
    if reply == 0:
        return MergeResult("terminal")
    if reply == -1:
        return MergeResult("missing")
    return MergeResult("ok", decode_record(reply))


async def read_many(task_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The live records of these tasks that Redis holds (one round trip)."""
    if not task_ids:
        return {}
    client = get_client()
    async with client.pipeline(transaction=False) as pipe:
        for task_id in task_ids:
            pipe.hgetall(live_key(task_id))
        replies = await pipe.execute()
    return {tid: decode_record(raw) for tid, raw in zip(task_ids, replies) if raw}


def cancel_channel() -> str:
    """Pub/sub channel on which cancel requests are announced to every worker at once."""
    return f"{prefix()}:cancels"


async def set_cancel_flag(task_id: str) -> None:
    """Record a cancel request (the flag workers poll) and announce it (what they hear first)."""
    ttl = int(conf.get().LIVE_TTL)
    async with get_client().pipeline(transaction=False) as pipe:
        pipe.set(cancel_key(task_id), b"1", ex=ttl)
        pipe.publish(cancel_channel(), task_id.encode())
        await pipe.execute()


def refresh_cancel_flags(client: Any, task_ids: list[str]) -> None:
    """Set again the cancel flags of these tasks (sync: the watchdog's own client)."""
    ttl = int(conf.get().LIVE_TTL)
    with client.pipeline(transaction=False) as pipe:
        for task_id in task_ids:
            pipe.set(cancel_key(task_id), b"1", ex=ttl)
        pipe.execute()


def delete_records(client: Any, task_ids: list[str]) -> int:
    """Delete the live record, cancel flag and heartbeat of these tasks; how many records went."""
    if not task_ids:
        return 0
    with client.pipeline(transaction=False) as pipe:
        pipe.delete(*[live_key(i) for i in task_ids])
        pipe.delete(*[cancel_key(i) for i in task_ids], *[heartbeat_key(i) for i in task_ids])
        return int(pipe.execute()[0])
