"""Agents and their live connections, shared by every process through the database.

Each process refreshes `seen_at` of its own connections on a heartbeat, so the connections of a
process that died stop counting as live after `stale` seconds, without anyone cleaning up.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from socketsvc.domain.models import Agent, State, utcnow
from socketsvc.storage.store import Store, _aware
from socketsvc.storage.tables import agent_connections, agents, conversations


class PresenceStore:
    def __init__(self, store: Store, stale: float) -> None:
        self.store = store
        self.stale = timedelta(seconds=stale)

    def _upsert(self, table: sa.Table, values: dict[str, Any], update: dict[str, Any]) -> Any:
        insert = sqlite_insert if self.store.is_sqlite else pg_insert
        statement = insert(table).values(**values)
        return statement.on_conflict_do_update(index_elements=["id"], set_=update)

    async def connected(self, agent_id: str, name: str, sid: str, node_id: str) -> Agent:
        """Record a new connection of an agent (creating the agent, online, on first sight)."""
        now = utcnow()
        async with self.store.write() as conn:
            await conn.execute(
                self._upsert(
                    agents,
                    {"id": agent_id, "name": name, "status": "online", "last_seen_at": now},
                    {"name": name, "last_seen_at": now},
                )
            )
            await conn.execute(
                agent_connections.insert().values(
                    sid=sid, agent_id=agent_id, node_id=node_id, seen_at=now
                )
            )
        agent = await self.get(agent_id)
        assert agent is not None
        return agent

    async def disconnected(self, sid: str) -> str | None:
        """Forget a connection; returns its agent's id."""
        now = utcnow()
        async with self.store.write() as conn:
            agent_id = (
                await conn.execute(
                    sa.select(agent_connections.c.agent_id).where(agent_connections.c.sid == sid)
                )
            ).scalar_one_or_none()
            if agent_id is None:
                return None
            await conn.execute(agent_connections.delete().where(agent_connections.c.sid == sid))
            await conn.execute(
                agents.update().where(agents.c.id == agent_id).values(last_seen_at=now)
            )
        return str(agent_id)

    async def heartbeat(self, node_id: str) -> None:
        """Mark this process's connections (and their agents) as seen now; drop dead rows."""
        now = utcnow()
        mine = sa.select(agent_connections.c.agent_id).where(agent_connections.c.node_id == node_id)
        async with self.store.write() as conn:
            await conn.execute(
                agent_connections.update()
                .where(agent_connections.c.node_id == node_id)
                .values(seen_at=now)
            )
            await conn.execute(
                agents.update().where(agents.c.id.in_(mine)).values(last_seen_at=now)
            )
            await conn.execute(
                agent_connections.delete().where(agent_connections.c.seen_at < now - 4 * self.stale)
            )

    async def forget_node(self, node_id: str) -> None:
        """Drop every connection row of a process that is shutting down."""
        now = utcnow()
        mine = sa.select(agent_connections.c.agent_id).where(agent_connections.c.node_id == node_id)
        async with self.store.write() as conn:
            await conn.execute(
                agents.update().where(agents.c.id.in_(mine)).values(last_seen_at=now)
            )
            await conn.execute(
                agent_connections.delete().where(agent_connections.c.node_id == node_id)
            )

    async def set_status(self, agent_id: str, status: str) -> None:
        async with self.store.write() as conn:
            await conn.execute(agents.update().where(agents.c.id == agent_id).values(status=status))

    async def get(self, agent_id: str) -> Agent | None:
        async with self.store.read() as conn:
            row = (await conn.execute(agents.select().where(agents.c.id == agent_id))).first()
        if row is None:
            return None
        return Agent(row.id, row.name, row.status, _aware(row.last_seen_at))

    def _live(self, now: datetime) -> Any:
        return sa.select(agent_connections.c.agent_id).where(
            agent_connections.c.seen_at > now - self.stale
        )

    async def online_count(self) -> int:
        """Agents with status online and at least one live connection."""
        now = utcnow()
        query = sa.select(sa.func.count()).where(
            agents.c.status == "online", agents.c.id.in_(self._live(now))
        )
        async with self.store.read() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def absent_with_conversations(self, grace: float) -> list[str]:
        """Agents holding assigned conversations with no live connection for over `grace` s."""
        now = utcnow()
        recently_seen = sa.select(agents.c.id).where(
            agents.c.last_seen_at >= now - timedelta(seconds=grace)
        )
        query = (
            sa.select(conversations.c.agent_id)
            .where(
                conversations.c.state == State.ASSIGNED.value,
                conversations.c.agent_id.is_not(None),
                conversations.c.agent_id.not_in(self._live(now)),
                conversations.c.agent_id.not_in(recently_seen),
            )
            .distinct()
        )
        async with self.store.read() as conn:
            return [str(r[0]) for r in (await conn.execute(query)).all()]
