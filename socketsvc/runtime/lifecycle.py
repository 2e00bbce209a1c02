"""Graceful shutdown: refuse new work, let in-flight handlers finish, then close."""

from __future__ import annotations

import asyncio


class Lifecycle:
    """Counts in-flight client events and says when the process is draining."""

    def __init__(self) -> None:
        self.draining = False
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def handling(self) -> Lifecycle:
        """`with lifecycle.handling():` around a client event, counted while it runs (a plain
        context manager, not a generator: it wraps every event)."""
        return self

    def __enter__(self) -> None:
        self._in_flight += 1
        self._idle.clear()

    def __exit__(self, *exc: object) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle.set()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def drain(self, timeout: float) -> bool:
        """Start draining and wait up to `timeout` s for in-flight events; True if idle."""
        self.draining = True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True
