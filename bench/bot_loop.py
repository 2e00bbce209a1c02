"""The real bot in the loop (bench/run.py scenario b, last table): visitor message -> the default
knowledge-base bot's reply delivered to the visitor.

socketsvc runs with `BOT=kb` (the packaged knowledge base, `BOT_DELAY` 0); every visitor sends
a question the knowledge base answers (`TEXT`), so each message gets exactly one bot reply, in
order per conversation. The latency of a message is from its send to the arrival of the bot's
`message` push that answers it (the n-th bot reply on a connection answers its n-th message).
There is no baseline to compare with: the bare servers have no bot.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from harness import CpuWindow, RateResult, open_clients, wait_until
from lean_client import BaseSocket

TEXT = "How do I run the tests?"
"""Answered by the default knowledge base (its `run_tests` intent) every time."""


class Replies:
    """Per connection: send times of the messages the bot has not answered yet."""

    def __init__(self) -> None:
        self.pending: dict[int, deque[float]] = {}
        self.latencies: list[float] = []
        self.unmatched = 0

    def on_event(self, sock: BaseSocket, event: str, data: Any) -> None:
        if event != "message" or not isinstance(data, dict):
            return
        if (data.get("sender") or {}).get("role") != "bot" or data.get("seq") == 1:
            return  # the visitor's own echo, or the greeting
        queue = self.pending.get(id(sock))
        if not queue:
            self.unmatched += 1
            return
        self.latencies.append((time.monotonic() - queue.popleft()) * 1000.0)


async def open_visitors(http: Any, url: str, count: int, replies: Replies) -> list[BaseSocket]:
    ramp = await open_clients(http, url, count, concurrency=100, on_event=replies.on_event)
    return ramp.clients


async def run(
    clients: Sequence[BaseSocket],
    replies: Replies,
    rate: float,
    duration: float,
    pids: Sequence[int],
    prefix: str,
    drain: float = 10.0,
) -> RateResult:
    """Open loop at `rate` msgs/s for `duration` s, round-robin; latencies are to the reply."""
    result = RateResult(offered=rate, duration=duration)
    replies.latencies = result.latencies
    total = max(1, int(rate * duration))
    n = len(clients)
    errors = result.errors

    def on_ack(ack: Any) -> None:
        result.acked += 1
        if not (isinstance(ack, dict) and ack.get("ok")):
            errors["nack"] += 1

    cpu = CpuWindow(pids)
    start = time.monotonic()
    sent = 0
    while sent < total:
        now = time.monotonic()
        due = min(total, int((now - start) * rate) + 1)
        while sent < due:
            client = clients[sent % n]
            replies.pending.setdefault(id(client), deque()).append(now)
            client.emit("message", {"client_id": f"{prefix}{sent}", "text": TEXT}, on_ack)
            sent += 1
        await asyncio.sleep(max(0.0, start + sent / rate - time.monotonic()))
    result.sent = sent
    await wait_until(lambda: len(result.latencies) >= sent, drain)
    result.cpu = cpu.stop()
    result.acked_in_window = len(result.latencies)
    missing = sent - len(result.latencies)
    if missing:
        errors["no reply"] += missing
    for queue in replies.pending.values():
        queue.clear()
    return result
