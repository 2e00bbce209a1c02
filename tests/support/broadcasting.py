"""A recording stand-in for the domain's Broadcaster seam (unit tests of the services)."""

from __future__ import annotations

import asyncio
from typing import Any


class RecordingBroadcaster:
    """A stand-in for the Socket.IO seam that records every publication.

    Each method takes the target first and `(event, data)` last, whatever else the
    `Broadcaster` protocol passes in between (e.g. the assigned agent's id).
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.changed = asyncio.Event()

    def _record(self, target: str, args: tuple[Any, ...]) -> None:
        event, data = args[-2], args[-1]
        assert isinstance(event, str) and isinstance(data, dict), args
        self.calls.append((target, event, data))
        self.changed.set()

    async def to_conversation(self, conversation_id: str, *args: Any, **_: Any) -> None:
        self._record(f"conversation:{conversation_id}", args)

    async def to_agent(self, agent_id: str, *args: Any, **_: Any) -> None:
        self._record(f"agent:{agent_id}", args)

    async def to_agents(self, *args: Any, **_: Any) -> None:
        self._record("agents", args)

    async def to_local_visitors(self, *args: Any, **_: Any) -> None:
        self._record("visitors", args)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [data for _, event, data in self.calls if event == name]

    def bot_messages(self) -> list[dict[str, Any]]:
        return [m for m in self.events("message") if m["sender"]["role"] == "bot"]

    def bot_typing(self) -> list[bool]:
        return [t["typing"] for t in self.events("typing") if t["sender"]["role"] == "bot"]

    async def wait_for(self, predicate: Any, timeout: float = 5.0) -> None:
        async def wait() -> None:
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), timeout)
