"""A coarse timer wheel: the long, imprecise timers every connection keeps, on one loop timer."""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import weakref
from collections.abc import Callable

log = logging.getLogger(__name__)

RESOLUTION = 0.1
"""Seconds: a callback runs at its time or up to this much later."""
_SLACK = 0.002
"""The loop timer is set this much after a bucket's time: uvloop rounds delays to whole
milliseconds, and a tick that came early would find its bucket not yet due."""


class TimerWheel:
    """Runs callbacks at their time, or up to `resolution` seconds after it, all on one event-loop
    timer (the earliest pending bucket's).

    Made for the timers an idle connection holds for its whole life: Engine.IO's next ping
    (`ping_interval`, 25 s) and the WebSocket reader's and writer's watchdogs (`ping_interval +
    ping_timeout`). With uvloop, each `loop.call_at()` timer is a Python handle plus a libuv
    timer, 540 to 800 bytes (tracemalloc) for as long as it is pending; a callback waiting here
    costs a slot in its bucket's list. A callback cannot be cancelled: it looks at its object's
    state when it runs and does nothing if it is no longer due (hence `coarse`: for timers whose
    owners can tell, not for general use). A callback that raises is logged; the others run.
    """

    __slots__ = ("__weakref__", "_armed_key", "_buckets", "_handle", "_keys", "_loop", "resolution")

    def __init__(self, loop: asyncio.AbstractEventLoop, resolution: float = RESOLUTION) -> None:
        if resolution <= 0:
            raise ValueError(f"resolution must be > 0 seconds, got {resolution}")
        self._loop = loop
        self.resolution = resolution
        self._buckets: dict[int, list[Callable[[], object]]] = {}
        self._keys: list[int] = []
        """Heap of the keys of `_buckets` (a bucket's key: its time / resolution, rounded up)."""
        self._handle: asyncio.TimerHandle | None = None
        self._armed_key = 0

    def __len__(self) -> int:
        """Callbacks waiting."""
        return sum(len(bucket) for bucket in self._buckets.values())

    def call_at(self, when: float, callback: Callable[[], object]) -> None:
        """Run `callback()` at loop time `when` (at most `resolution` seconds late)."""
        key = math.ceil(when / self.resolution)
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.append(callback)
            return
        self._buckets[key] = [callback]
        heapq.heappush(self._keys, key)
        if self._handle is None or key < self._armed_key:
            self._arm(key)

    def _arm(self, key: int) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed_key = key
        self._handle = self._loop.call_at(key * self.resolution + _SLACK, self._tick)

    def _tick(self) -> None:
        self._handle = None
        due = math.floor(self._loop.time() / self.resolution)
        keys, buckets = self._keys, self._buckets
        while keys and keys[0] <= due:
            for callback in buckets.pop(heapq.heappop(keys)):
                try:
                    callback()
                except Exception:
                    log.exception("timer callback %r failed", callback)
        if keys:
            self._arm(keys[0])


_wheels: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, TimerWheel] = (
    weakref.WeakKeyDictionary()
)


def wheel(loop: asyncio.AbstractEventLoop | None = None) -> TimerWheel:
    """The loop's wheel (the running loop's by default), made on first use."""
    loop = loop or asyncio.get_running_loop()
    found = _wheels.get(loop)
    if found is None:
        found = _wheels[loop] = TimerWheel(loop)
    return found
