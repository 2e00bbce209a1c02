"""A recording stand-in for the domain's Broadcaster seam (unit tests of the services)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Published:
    """One publication: to whom (`conversation:<id>`, `agent:<id>`, `agents`, `visitors`), what,
    and for a conversation the agent whose connections it also reaches and the skipped one."""

    target: str
    event: str
    data: dict[str, Any]
    agent_id: str | None = None
    skip: str | None = None


class RecordingBroadcaster:
    """A stand-in for the Socket.IO seam that records every publication.

    Each method takes the target first and `(event, data)` last, whatever else the
    `Broadcaster` protocol passes in between (e.g. the assigned agent's id).
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.published: list[Published] = []
        self.changed = asyncio.Event()

    def _record(
        self, target: str, args: tuple[Any, ...], agent_id: str | None = None, skip: Any = None
    ) -> None:
        event, data = args[-2], args[-1]
        assert isinstance(event, str) and isinstance(data, dict), args
        self.calls.append((target, event, data))
        self.published.append(Published(target, event, data, agent_id, skip))
        self.changed.set()

    async def to_conversation(
        self,
        conversation_id: str,
        agent_id: str | None,
        event: str,
        data: dict[str, Any],
        skip: str | None = None,
    ) -> None:
        self._record(f"conversation:{conversation_id}", (event, data), agent_id, skip)

    async def to_agent(self, agent_id: str, *args: Any, **_: Any) -> None:
        self._record(f"agent:{agent_id}", args)

    async def to_agents(self, *args: Any, **_: Any) -> None:
        self._record("agents", args)

    async def to_local_visitors(self, *args: Any, **_: Any) -> None:
        self._record("visitors", args)

    def clear(self) -> None:
        """Forget what was published so far (a test looks at what one step publishes)."""
        self.calls.clear()
        self.published.clear()

    def to(self, target: str, event: str | None = None) -> list[dict[str, Any]]:
        """The data published to `target` (of `event` only, when given), in order."""
        return [
            p.data
            for p in self.published
            if p.target == target and (event is None or p.event == event)
        ]

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
