"""Fan-out through the two channels_redis layers: what arrives, and how late (docs/realtime.md).

One process plays one Daphne: M consumers (channels) in one group, each receiving in
its own task as a consumer does. A second layer instance plays the worker and
group_sends N messages at a steady rate. Counts what each consumer got and the latency
from send to receive. Uses REDIS_URL, or starts a private redis-server.

    .venv/bin/python scripts/compare_layers.py [--consumers 200] [--messages 200] [--rate 500]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import time
import uuid
from typing import Any


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_layer(kind: str, url: str, prefix: str) -> Any:
    if kind == "pubsub":
        from channels_redis.pubsub import RedisPubSubChannelLayer

        return RedisPubSubChannelLayer(hosts=[url], prefix=prefix)
    from channels_redis.core import RedisChannelLayer

    return RedisChannelLayer(hosts=[url], prefix=prefix)  # capacity 100, the default


def send_all(kind: str, url: str, prefix: str, group: str, messages: int, rate: float) -> float:
    """The worker's side, on a thread with its own loop: N group_sends at a steady rate."""

    async def go() -> float:
        sending = make_layer(kind, url, prefix)
        started = time.monotonic()
        for i in range(messages):
            await sending.group_send(group, {"type": "task.update", "t": time.time(), "i": i, "frame": "x" * 400})
            lag = started + (i + 1) / rate - time.monotonic()
            if lag > 0:
                await asyncio.sleep(lag)
        return time.monotonic() - started

    return asyncio.run(go())


async def run(
    kind: str, url: str, consumers: int, messages: int, rate: float, work_us: float, stall_ms: float = 0.0
) -> dict[str, Any]:
    prefix = f"cmp{uuid.uuid4().hex[:6]}"
    receiving = make_layer(kind, url, prefix)
    group = "fanout"
    channels = [await receiving.new_channel() for _ in range(consumers)]
    for channel in channels:
        await receiving.group_add(group, channel)
    counts = [0] * consumers
    latencies: list[float] = []
    last_arrival = [time.monotonic()]

    async def consume(index: int, channel: str) -> None:
        while True:
            message = await receiving.receive(channel)
            now = time.time()
            if work_us:  # what a consumer does per frame (encode, write to its socket)
                until = time.perf_counter() + work_us / 1e6
                while time.perf_counter() < until:
                    pass
            counts[index] += 1
            latencies.append(now - message["t"])
            last_arrival[0] = time.monotonic()

    async def stall() -> None:
        # A busy moment of the whole process (a burst of socket writes, a GC pause).
        while True:
            await asyncio.sleep(0.5)
            time.sleep(stall_ms / 1000)

    tasks = [asyncio.create_task(consume(i, c)) for i, c in enumerate(channels)]
    if stall_ms:
        tasks.append(asyncio.create_task(stall()))
    await asyncio.sleep(0.5)  # subscriptions settle
    send_seconds = await asyncio.to_thread(send_all, kind, url, prefix, group, messages, rate)
    expected = messages * consumers
    deadline = time.monotonic() + 20
    while sum(counts) < expected and time.monotonic() < deadline and time.monotonic() - last_arrival[0] < 3:
        await asyncio.sleep(0.05)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    closer = getattr(receiving, "flush", None)
    if closer is not None:
        try:
            await closer()
        except Exception:
            pass
    got = sum(counts)
    ordered = sorted(latencies) or [float("nan")]
    return {
        "layer": kind,
        "consumers": consumers,
        "messages": messages,
        "rate": rate,
        "work_us": work_us,
        "stall_ms": stall_ms,
        "send_s": round(send_seconds, 2),
        "delivered": got,
        "expected": expected,
        "lost_pct": round(100 * (expected - got) / expected, 2),
        "worst_consumer": min(counts),
        "p50_ms": round(1000 * statistics.median(ordered), 1),
        "p99_ms": round(1000 * ordered[int(0.99 * (len(ordered) - 1))], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--consumers", type=int, nargs="+", default=[20, 200])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--work-us", type=float, nargs="+", default=[0.0, 50.0],
                        help="CPU time each consumer spends per message (a busy Daphne)")
    parser.add_argument("--stall-ms", type=float, default=0.0,
                        help="block the receiving process this long every half second")
    args = parser.parse_args()
    url = os.environ.get("REDIS_URL")
    server = None
    if not url:
        port = _free_port()
        server = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        url = f"redis://127.0.0.1:{port}/0"
        time.sleep(0.5)
    try:
        print(f"stall every 0.5 s: {args.stall_ms:g} ms")
        print("| layer | consumers | msgs | rate/s | work µs | delivered | lost % | worst consumer | p50 ms | p99 ms |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for consumers in args.consumers:
            for work in args.work_us:
                for kind in ("pubsub", "core"):
                    r = asyncio.run(run(kind, url, consumers, args.messages, args.rate, work, args.stall_ms))
                    print(f"| {r['layer']} | {r['consumers']} | {r['messages']} | {r['rate']:.0f} | {work:.0f} | "
                          f"{r['delivered']}/{r['expected']} | {r['lost_pct']} | {r['worst_consumer']} | "
                          f"{r['p50_ms']} | {r['p99_ms']} |", flush=True)
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
