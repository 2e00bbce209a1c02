"""Cyclic garbage collection for the service process: long-lived objects are frozen.

CPython's full (generation 2) collection scans every tracked object and stops the event loop
meanwhile: ~1 s for the ~1.5 million objects of 10,000 held connections. This policy keeps the
long-lived heap out of the collector's view with `gc.freeze()` and bounds what that can leak:

- at start-up: collect, then freeze what is left (imports, settings, the knowledge base);
- every `interval` s, a *freeze step*: collect the objects created since the previous step
  (frozen ones are not scanned, so this costs milliseconds), then freeze the survivors;
- a *full step* instead once the interpreter's memory blocks (`sys.getallocatedblocks()`, every
  small object and buffer) have grown by `growth` (a fraction) since the last full collection:
  `gc.unfreeze()`, collect everything, freeze again. Cyclic garbage among frozen objects (a
  connection frozen while open, then closed) is only reclaimed there, so that memory stays
  within (1 + `growth`) x what was live after the last full collection, and a process that
  merely holds its connections never pays for a full collection.

Full collections are at least `min_spacing` s apart (30 s) unless memory has grown by four times
the bound: while thousands of visitors reconnect at once (a deploy, a lost node) the heap grows
fast and every growth bound passed would stop the loop for a collection of everything, several
per storm, each as long as the whole heap; one waits until the storm has passed instead.

Counting frozen objects (`gc.get_freeze_count()`) walks all of them, ~0.2 us each, which is why
the trigger is the block count (a walk over arenas, well under 1 ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Literal

from socketsvc.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Step:
    """What one step of the policy did."""

    kind: Literal["start", "freeze", "full"]
    collected: int
    """Unreachable objects found."""
    blocks: int
    """`sys.getallocatedblocks()` afterwards."""
    seconds: float
    """How long the step held the event loop."""


MIN_FULL_SPACING = 30.0
"""Seconds between two full collections, unless memory grew past `HARD_FACTOR` x the bound."""
HARD_FACTOR = 4

MIN_GROWTH_BLOCKS = 250_000
"""A small heap waits for at least this many more memory blocks (some 20 MB) before a full
collection: otherwise a process warming up its caches would pay one every few seconds."""


class GcPolicy:
    """Periodic freezing, with a full collection after `growth` of the memory blocks."""

    def __init__(
        self,
        interval: float,
        growth: float,
        min_growth: int = MIN_GROWTH_BLOCKS,
        *,
        min_spacing: float = MIN_FULL_SPACING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval <= 0 or growth <= 0:
            raise ValueError("interval and growth must be positive")
        self.interval = interval
        self.growth = growth
        self.min_growth = min_growth
        self.min_spacing = min_spacing
        self.clock = clock
        self.last_full = float("-inf")
        self.baseline = 0
        """Memory blocks right after the last full collection (or start-up)."""
        self.full_collections = 0

    @property
    def limit(self) -> int:
        """Memory blocks above which the next step is a full collection."""
        return self.baseline + self._bound

    @property
    def hard_limit(self) -> int:
        """Memory blocks above which it is one even within `min_spacing` of the last."""
        return self.baseline + HARD_FACTOR * self._bound

    @property
    def _bound(self) -> int:
        return max(int(self.baseline * self.growth), self.min_growth)

    def _full_due(self) -> bool:
        blocks = sys.getallocatedblocks()
        if blocks <= self.limit:
            return False
        return blocks > self.hard_limit or self.clock() - self.last_full >= self.min_spacing

    def start(self) -> Step:
        """Collect everything and freeze what survives."""
        return self._full("start")

    def step(self) -> Step:
        """One periodic step: a full step past the limit, else a freeze step."""
        if self._full_due():
            return self._full("full")
        began = time.perf_counter()
        collected = gc.collect()
        gc.freeze()
        return Step("freeze", collected, sys.getallocatedblocks(), time.perf_counter() - began)

    def stop(self) -> None:
        """Hand every frozen object back to the collector."""
        gc.unfreeze()

    async def run(self) -> None:
        """Call `step()` every `interval` s until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            step = self.step()
            log.log(
                logging.INFO if step.kind == "full" else logging.DEBUG,
                "gc %s step: %d unreachable, %d memory blocks (full step above %d), %.0f ms",
                step.kind,
                step.collected,
                step.blocks,
                self.limit,
                step.seconds * 1000.0,
            )

    def _full(self, kind: Literal["start", "full"]) -> Step:
        began = time.perf_counter()
        gc.unfreeze()
        collected = gc.collect()
        gc.freeze()
        self.baseline = sys.getallocatedblocks()
        self.full_collections += kind == "full"
        self.last_full = self.clock()
        return Step(kind, collected, self.baseline, time.perf_counter() - began)


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[GcPolicy | None]:
    """Apply the policy of `settings` while the block runs (None: CPython's default GC)."""
    if settings.gc_freeze_interval <= 0:
        yield None
        return
    policy = GcPolicy(settings.gc_freeze_interval, settings.gc_full_growth / 100.0)
    step = policy.start()
    log.info(
        "gc: %d objects frozen after start-up (%.0f ms); a freeze step every %g s, a full "
        "collection after %g %% growth",
        gc.get_freeze_count(),
        step.seconds * 1000.0,
        policy.interval,
        settings.gc_full_growth,
    )
    task = asyncio.create_task(policy.run(), name="gc-policy")
    try:
        yield policy
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        policy.stop()
