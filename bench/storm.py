"""Reconnect storms and resumed handshakes (bench/run.py scenarios a and e).

A storm: `count` visitors hold a session with a visitor token, half of them with a stored
conversation (they wrote one message, acked). Then every connection drops at once and each
visitor reconnects as socket.io-client 4.x does (`reconnectionDelay` 1000 ms doubling up to
`reconnectionDelayMax` 5000 ms, `randomizationFactor` 0.5: the first attempt 0.5-1.5 s after the
drop; a failed or timed-out attempt (`timeout` 20 s) waits the next delay), with its token, and
`sync`s from the last seq it holds. Reported: the seconds from the drop until every visitor is
back and synced, handshake latency p50/p99 (connect start to `session`), failed attempts and
visitors that never came back.

With `kill`, the visitors are split over the target's processes and the first process is
killed (SIGKILL) instead: its visitors reconnect to the survivor (what a load balancer does when
a node disappears), the others stay connected.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from harness import CpuWindow, Target, log, open_clients, percentile
from lean_client import BaseSocket, WebSocketClient

DELAY = 1.0
DELAY_MAX = 5.0
JITTER = 0.5
ATTEMPT_TIMEOUT = 20.0
GIVE_UP = 120.0
"""A visitor not back and synced this long after the drop counts as a failure."""


def backoff(attempt: int, rng: random.Random) -> float:
    """socket.io-client's delay before reconnection attempt `attempt` (0-based), in seconds."""
    ms = DELAY * 1000.0 * (2**attempt)
    rand = rng.random()
    deviation = int(rand * JITTER * ms)
    ms = ms - deviation if int(rand * 10) & 1 == 0 else ms + deviation
    return min(ms, DELAY_MAX * 1000.0) / 1000.0


@dataclass
class Visitor:
    token: str
    last_seq: int
    url: str


@dataclass
class StormResult:
    visitors: int
    back: int = 0
    seconds: float = float("nan")
    """From the drop until the last visitor was back and synced."""
    handshakes: list[float] = field(default_factory=list)
    """Milliseconds from connect start to `session`, successful attempts."""
    failed_attempts: int = 0
    attempt_errors: dict[str, int] = field(default_factory=dict)
    synced_messages: int = 0
    srv_cpu: float = float("nan")
    gen_cpu: float = float("nan")
    db_cpu: float = float("nan")
    other: str = "-"
    clients: list[BaseSocket] = field(default_factory=list)

    @property
    def failures(self) -> int:
        return self.visitors - self.back

    def summary(self) -> dict[str, Any]:
        return {
            "visitors": self.visitors,
            "back": self.back,
            "seconds": self.seconds,
            "handshake_p50_ms": percentile(self.handshakes, 50),
            "handshake_p99_ms": percentile(self.handshakes, 99),
            "failed_attempts": self.failed_attempts,
            "attempt_errors": self.attempt_errors,
            "failures": self.failures,
            "synced_messages": self.synced_messages,
            "srv_cpu": self.srv_cpu,
            "gen_cpu": self.gen_cpu,
        }


async def prepare(
    http: aiohttp.ClientSession, target: Target, count: int, urls: list[str]
) -> tuple[list[BaseSocket], list[Visitor]]:
    """`count` visitors with sessions, spread over `urls`; every second one writes a message
    (its conversation is stored). Returns the open clients and what each will resume with."""
    clients: list[BaseSocket] = []
    for i, url in enumerate(urls):
        share = count // len(urls) + (1 if i < count % len(urls) else 0)
        ramp = await open_clients(http, url, share, concurrency=200, pids=target.pids)
        if ramp.failures:
            raise RuntimeError(f"storm setup: {dict(ramp.failures)}")
        clients.extend(ramp.clients)
    visitors = [Visitor(c.session["visitor_token"], 0, c.base_url) for c in clients]
    writers = [(c, v) for i, (c, v) in enumerate(zip(clients, visitors, strict=True)) if i % 2]
    semaphore = asyncio.Semaphore(200)

    async def write(client: BaseSocket, visitor: Visitor) -> None:
        async with semaphore:
            ack = await client.call("message", {"client_id": "storm-1", "text": "hello"}, 60.0)
        if not (isinstance(ack, dict) and ack.get("ok")):
            raise RuntimeError(f"storm setup: message refused: {ack}")
        visitor.last_seq = int(ack["message"]["seq"])

    await asyncio.gather(*(write(c, v) for c, v in writers))
    return clients, visitors


async def reconnect_all(
    http: aiohttp.ClientSession,
    visitors: list[Visitor],
    target: Target,
    *,
    url: str | None = None,
    seed: int = 17,
) -> StormResult:
    """Every visitor reconnects (to `url`, else its own) with socket.io-client's backoff and
    syncs; measured from now (the drop)."""
    rng = random.Random(seed)
    result = StormResult(len(visitors))
    errors: dict[str, int] = {}
    dropped = time.monotonic()
    done_at: list[float] = []
    cpu = CpuWindow(target.pids)

    async def one(visitor: Visitor) -> None:
        attempt = 0
        while time.monotonic() - dropped < GIVE_UP:
            await asyncio.sleep(backoff(attempt, rng))
            attempt += 1
            client = WebSocketClient(url or visitor.url, "/chat", {"visitor_token": visitor.token})
            began = time.monotonic()
            try:
                await client.connect(http, wait_event="session", timeout=ATTEMPT_TIMEOUT)
                result.handshakes.append((time.monotonic() - began) * 1000.0)
                synced = await client.call(
                    "sync", {"after_seq": visitor.last_seq}, timeout=ATTEMPT_TIMEOUT
                )
                if not (isinstance(synced, dict) and synced.get("ok")):
                    raise RuntimeError(f"sync refused: {synced}")
            except Exception as exc:
                client.abort()
                result.failed_attempts += 1
                name = type(exc).__name__
                errors[name] = errors.get(name, 0) + 1
                continue
            result.synced_messages += len(synced.get("messages", ()))
            result.clients.append(client)
            result.back += 1
            done_at.append(time.monotonic())
            return

    await asyncio.gather(*(one(v) for v in visitors))
    window = cpu.stop()
    result.seconds = (max(done_at) - dropped) if done_at else float("nan")
    result.attempt_errors = errors
    result.srv_cpu, result.gen_cpu, result.db_cpu = window.srv_pct, window.gen_pct, window.db_pct
    result.other = window.other
    return result


async def storm(
    http: aiohttp.ClientSession,
    target: Target,
    count: int,
    on_drop: Callable[[], Any] | None = None,
) -> StormResult:
    """Every visitor of one process drops at once (the generator aborts every connection) and
    reconnects; `on_drop` is called at the drop (it may return a process to wait for)."""
    clients, visitors = await prepare(http, target, count, [target.visitor_url])
    await asyncio.sleep(1.0)
    for client in clients:
        client.abort()
    log(f"  storm {target.label}: {count:,} visitors dropped")
    profiler = on_drop() if on_drop is not None else None
    result = await reconnect_all(http, visitors, target)
    if profiler is not None:
        profiler.wait()
    return result


async def kill_storm(http: aiohttp.ClientSession, target: Target, count: int) -> StormResult:
    """Visitors spread over two processes; process 0 is killed (SIGKILL); its visitors
    reconnect to process 1."""
    urls = [s.url for s in target.servers]
    clients, visitors = await prepare(http, target, count, urls)
    await asyncio.sleep(1.0)
    victim, survivor = target.servers[0], target.servers[1]
    moving = [v for v in visitors if v.url == victim.url.rstrip("/")]
    assert victim.proc is not None
    victim.proc.send_signal(signal.SIGKILL)
    log(f"  kill storm {target.label}: process 0 killed, {len(moving):,} visitors move")
    for client in clients:
        if client.base_url == victim.url.rstrip("/"):
            client.abort()
    target_view = Target(target.spec, [survivor], target.secret)
    result = await reconnect_all(http, moving, target_view, url=survivor.url)
    for client in clients:
        client.abort()
    return result


async def resumed_ramp(
    http: aiohttp.ClientSession,
    target: Target,
    tokens: list[str],
    concurrency: int = 200,
) -> tuple[float, int, CpuWindow]:
    """Handshakes/s of visitors resuming with `tokens` (`concurrency` in flight): the new
    connections are closed again afterwards. Returns (rate, failures, CPU)."""
    ramp = await open_clients(
        http,
        target.visitor_url,
        len(tokens),
        concurrency=concurrency,
        auth=lambda i: {"visitor_token": tokens[i]},
        pids=target.pids,
    )
    for client in ramp.clients:
        client.abort()
    return ramp.rate, sum(ramp.failures.values()), ramp.cpu
