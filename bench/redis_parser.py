"""CPU per pub/sub message received by redis-py's asyncio client: hiredis against pure Python.

    .venv/bin/python bench/redis_parser.py [--messages 20000] [--rounds 2]

Every socketsvc process with REDIS_URL reads every message published on the channel (its own
included), so the reply parser's cost is paid per process per broadcast. This subscribes on a
fresh channel, publishes `--messages` payloads of 600 bytes (the size of a chat `message` event)
in pipelines of 100 from the same process, and prints the process CPU per message for each
parser, alternating `--rounds` times, and their ratio. The process pins itself to core 0 and
says so; Redis (`BENCH_REDIS_URL`, default redis://127.0.0.1:6379/0) runs wherever it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from typing import Any

import redis.asyncio as aioredis
from harness import REDIS_URL, SERVER_CORE
from redis._parsers import _AsyncHiredisParser, _AsyncRESP2Parser

PARSERS: dict[str, Any] = {"python": _AsyncRESP2Parser, "hiredis": _AsyncHiredisParser}


async def cpu_per_message(parser: Any, messages: int) -> float:
    """Microseconds of this process's CPU per message published and received."""
    pool = aioredis.ConnectionPool.from_url(REDIS_URL, parser_class=parser)
    subscriber = aioredis.Redis(connection_pool=pool)
    publisher = aioredis.Redis(
        connection_pool=aioredis.ConnectionPool.from_url(REDIS_URL, parser_class=parser)
    )
    pubsub = subscriber.pubsub(ignore_subscribe_messages=True)
    channel = f"socketsvc-bench-parser-{uuid.uuid4().hex[:12]}"
    payload = os.urandom(300).hex()
    await pubsub.subscribe(channel)
    received = 0

    async def consume() -> None:
        nonlocal received
        async for message in pubsub.listen():
            if message["type"] == "message":
                received += 1
                if received == messages:
                    return

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0.2)
    start = time.process_time()
    for _ in range(messages // 100):
        async with publisher.pipeline(transaction=False) as pipe:
            for _ in range(100):
                pipe.publish(channel, payload)
            await pipe.execute()
    await asyncio.wait_for(consumer, timeout=120)
    used = time.process_time() - start
    await pubsub.aclose()
    await subscriber.aclose()
    await publisher.aclose()
    return 1e6 * used / messages


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    os.sched_setaffinity(0, {SERVER_CORE})
    print(f"redis_parser bench: pid {os.getpid()} pinned to core {SERVER_CORE}; Redis {REDIS_URL}")
    results: dict[str, list[float]] = {name: [] for name in PARSERS}
    for _ in range(args.rounds):
        for name, parser_class in PARSERS.items():
            us = asyncio.run(cpu_per_message(parser_class, args.messages - args.messages % 100))
            results[name].append(us)
            print(f"  {name:8s} {us:6.1f} us CPU per message (publishing included)")
    python, hiredis = (statistics.median(results[n]) for n in ("python", "hiredis"))
    print(
        f"median: python {python:.1f} us, hiredis {hiredis:.1f} us: hiredis/python = "
        f"{hiredis / python:.2f} ({python - hiredis:.1f} us less per message)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
