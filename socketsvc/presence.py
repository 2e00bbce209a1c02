"""Agent presence: connections, availability, and the grace period before requeueing."""

from __future__ import annotations

import asyncio
import logging
import uuid

from socketsvc import metrics
from socketsvc.routing import RoutingService
from socketsvc.storage.presence import Agent, PresenceStore
from socketsvc.tokens import AgentIdentity

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0
STALE_SECONDS = 3 * HEARTBEAT_SECONDS


class PresenceService:
    """Tracks which agents are connected (on any process) and requeues the absent ones' chats."""

    def __init__(self, store: PresenceStore, routing: RoutingService, grace: float) -> None:
        self.store = store
        self.routing = routing
        self.grace = grace
        self.node_id = uuid.uuid4().hex
        self.interval = max(0.2, min(HEARTBEAT_SECONDS, grace / 4))

    async def connected(self, agent: AgentIdentity, connection_id: str) -> Agent:
        return await self.store.connected(agent.id, agent.name, connection_id, self.node_id)

    async def disconnected(self, connection_id: str) -> None:
        await self.store.disconnected(connection_id)

    async def set_status(self, agent: AgentIdentity, status: str) -> None:
        await self.store.set_status(agent.id, status)

    async def tick(self) -> int:
        """One heartbeat and one sweep; returns how many conversations were requeued."""
        await self.store.heartbeat(self.node_id)
        metrics.AGENTS_ONLINE.set(await self.store.online_count())
        return await self.routing.requeue_absent(self.grace)

    async def run(self) -> None:
        """Heartbeat and sweep until cancelled."""
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("presence sweep failed")
            await asyncio.sleep(self.interval)

    async def close(self) -> None:
        """Forget this process's connections (its agents' grace period starts now)."""
        await self.store.forget_node(self.node_id)
