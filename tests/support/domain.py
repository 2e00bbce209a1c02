"""The domain services of one process over a real store, publishing into a recorder.

Built through `Services.build` only (the same wiring as the app), so a test of the domain speaks
its public API and survives changes to the store underneath.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from socketsvc.bots.base import Bot
from socketsvc.bots.echo_bot import EchoBot
from socketsvc.domain.conversations import Session
from socketsvc.domain.tokens import AgentIdentity
from socketsvc.services import Services
from socketsvc.storage.store import Store
from tests.support.broadcasting import RecordingBroadcaster


class Domain:
    """`Services` plus the recorder they publish into, and a few shorthands."""

    def __init__(self, services: Services, broadcast: RecordingBroadcaster) -> None:
        self.services = services
        self.broadcast = broadcast
        self.conversations = services.conversations
        self.routing = services.routing
        self.presence = services.presence

    async def visitor(self) -> Session:
        """A new visitor with its conversation stored (the bot's greeting is seq 1), as after
        its first write; `page_view` for one that has not written."""
        session = await self.page_view()
        conversation = await self.conversations.start(session.visitor)
        return dataclasses.replace(session, conversation=conversation)

    async def page_view(self) -> Session:
        """A new visitor's session: its conversation promised, nothing stored."""
        return await self.conversations.open_session(None)

    async def queued(self) -> Session:
        """A new visitor whose conversation waits in the queue."""
        session = await self.visitor()
        await self.routing.handoff(session.conversation.id, reason=None, by="visitor")
        return session

    async def agent(self, agent_id: str, name: str, connection: str | None = None) -> AgentIdentity:
        """An agent connected (and so known and online) on this process."""
        identity = AgentIdentity(agent_id, name)
        await self.presence.connected(identity, connection or f"sid-{agent_id}")
        return identity

    async def state_of(self, conversation_id: str) -> Any:
        return (await self.conversations.sync(conversation_id, 0, 1)).state

    async def settle(self, timeout: float = 10.0) -> None:
        """Wait for the background work (the bot's turns) to finish."""
        await self.services.tasks.drain(timeout=timeout)


@asynccontextmanager
async def open_domain(
    database_url: str, bot: Bot | None = None, store: Store | None = None, **settings: Any
) -> AsyncIterator[Domain]:
    """`Domain` on `database_url` (a store opened and closed here unless one is given)."""
    from tests.conftest import make_settings

    opened = store or await Store.open(database_url)
    broadcast = RecordingBroadcaster()
    services = Services.build(
        make_settings(database_url, BOT="echo", **settings), opened, broadcast, bot or EchoBot()
    )
    try:
        yield Domain(services, broadcast)
        await services.tasks.drain(timeout=10.0)
        assert len(services.tasks) == 0, "background work left running"
    finally:
        if store is None:
            await opened.close()
