"""Agent presence: connections, availability, and the grace period before requeueing."""

from __future__ import annotations

import asyncio
import logging
import uuid

from socketsvc.domain.errors import Unavailable
from socketsvc.domain.models import Agent
from socketsvc.domain.ports import Broadcaster, PresenceRecords
from socketsvc.domain.routing import RoutingService
from socketsvc.domain.tokens import AgentIdentity
from socketsvc.runtime import metrics

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0
STALE_SECONDS = 3 * HEARTBEAT_SECONDS


class PresenceService:
    """Tracks which agents are connected (on any process) and requeues the absent ones' chats.

    It also knows whether any agent is online (`agents_online`, counted at every tick and after
    each change of an agent on this process) and tells this process's visitors when that changes
    (`availability`); every process counts from the shared database and tells its own visitors.
    """

    def __init__(
        self,
        store: PresenceRecords,
        routing: RoutingService,
        grace: float,
        broadcaster: Broadcaster | None = None,
    ) -> None:
        self.store = store
        self.routing = routing
        self.grace = grace
        self.broadcaster = broadcaster
        self.node_id = uuid.uuid4().hex
        self.interval = max(0.2, min(HEARTBEAT_SECONDS, grace / 4))
        self.agents_online = False
        """Whether an agent was online (status online, a live connection) at the last count."""

    async def connected(self, agent: AgentIdentity, connection_id: str) -> Agent:
        record = await self.store.connected(agent.id, agent.name, connection_id, self.node_id)
        await self.refresh()
        return record

    async def disconnected(self, connection_id: str) -> None:
        await self.store.disconnected(connection_id)
        await self.refresh()

    async def set_status(self, agent: AgentIdentity, status: str) -> None:
        await self.store.set_status(agent.id, status)
        await self.refresh()

    async def refresh(self) -> None:
        """Count the online agents now; tell this process's visitors if availability changed.
        Best effort: a failure is logged and the next tick counts again."""
        try:
            await self._count()
        except Exception as exc:
            log.debug("could not count the online agents: %s", exc)

    async def _count(self) -> None:
        online = await self.store.online_count()
        metrics.AGENTS_ONLINE.set(online)
        available = online > 0
        if available == self.agents_online:
            return
        self.agents_online = available
        if self.broadcaster is not None:
            await self.broadcaster.to_local_visitors("availability", {"agents_online": available})

    async def tick(self) -> int:
        """One heartbeat and one sweep; returns how many conversations were requeued."""
        await self.store.heartbeat(self.node_id)
        await self._count()
        return await self.routing.requeue_absent(self.grace)

    async def run(self) -> None:
        """Heartbeat and sweep until cancelled."""
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Unavailable:
                pass  # the database is away: storage/outages.py logs the outage once
            except Exception:
                log.exception("presence sweep failed")
            await asyncio.sleep(self.interval)

    async def close(self) -> None:
        """Forget this process's connections (its agents' grace period starts now)."""
        await self.store.forget_node(self.node_id)
