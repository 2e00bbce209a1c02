"""Spacing group commits apart while the process is busy (PostgreSQL's `commit_delay`, by load).

Every commit round costs the same fixed work however many messages it carries: on SQLite the
transaction, the WAL writes of the pages it shares, one fdatasync and two thread hand-overs; on
PostgreSQL a round trip and a statement; and each round's acks wake the event loop and the
clients once more. While the process has CPU to spare, a round starts as soon as the previous one
has finished, which gives the lowest latency. Once it is busy, waiting a moment lets more
messages join the next round: fewer rounds for the same messages leave more CPU for the messages
themselves (bench/README.md, "Session 5").
"""

from __future__ import annotations

import asyncio
import math
import time

from socketsvc.runtime import metrics


class CommitPacer:
    """Decides how long the next commit round waits.

    The process's CPU use (all its threads) is sampled at most every `window` seconds, when a
    round is about to start. A sample at or above `busy` (a share of one core) turns pacing on:
    rounds then start at least `delay` seconds apart. Pacing stays on until no sample has been
    busy for `linger` seconds. Turning on quickly matters: at a rate the process can only just
    keep up with, every moment without pacing leaves a backlog that takes many times as long to
    work off. Turning off slowly costs nothing while traffic is light (rounds that are more than
    `delay` apart anyway never wait) and keeps a short lull from switching pacing off just
    before the next burst. `delay=0` turns pacing off.
    """

    def __init__(
        self, delay: float, *, busy: float = 0.6, window: float = 0.05, linger: float = 1.0
    ) -> None:
        if delay < 0:
            raise ValueError(f"delay must be >= 0 seconds, got {delay}")
        self.delay = delay
        self.busy = busy
        self.window = window
        self.linger = linger
        self.pacing = False
        """Whether rounds are being spaced apart."""
        self._sampled_at = time.monotonic()
        self._cpu_at = time.process_time()
        self._busy_at = -math.inf
        """When a sample last found the process busy."""
        self._round_at = 0.0

    async def wait(self) -> None:
        """Wait until the next round may start; await right before each round."""
        if not self.delay:
            return
        now = time.monotonic()
        if now - self._sampled_at >= self.window:
            self._sample(now)
        if self.pacing:
            wait = self._round_at + self.delay - now
            if wait > 0:
                await asyncio.sleep(wait)
                now = time.monotonic()
        self._round_at = now

    def _sample(self, now: float) -> None:
        elapsed = now - self._sampled_at
        if elapsed <= 0:
            return
        cpu = time.process_time()
        if (cpu - self._cpu_at) / elapsed >= self.busy:
            self._busy_at = now
        self._sampled_at, self._cpu_at = now, cpu
        pacing = now - self._busy_at < self.linger
        if pacing != self.pacing:
            self.pacing = pacing
            metrics.COMMIT_PACING.set(int(pacing))
