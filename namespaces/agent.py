"""`/agent`: human agents. Thin: authenticate, validate, call a service, return the ack."""

from __future__ import annotations

import functools
import logging
from typing import Any

from socketsvc.namespaces.base import Connection, Namespace

from socketsvc.domain.errors import ServiceError, Unauthorized, Unavailable
from socketsvc.domain.models import Role, Sender
from socketsvc.domain.routing import require_assigned
from socketsvc.domain.tokens import AgentIdentity
from socketsvc.runtime import metrics
from socketsvc.services import Services
from socketsvc.transport import rooms, schemas

log = logging.getLogger(__name__)


def agent_sender(agent: AgentIdentity) -> Sender:
    return Sender(Role.AGENT, agent.id, agent.name)


class AgentNamespace(Namespace):
    """Agents: queue and assigned snapshots on connect, then accept, chat, transfer, resolve."""

    def __init__(self, services: Services) -> None:
        super().__init__(rooms.AGENT, services)
        self.accept_schema = schemas.AgentAccept()
        self.message_schema = schemas.AgentMessage(max_text=services.settings.max_text_length)
        self.typing_schema = schemas.AgentTyping()
        self.read_schema = schemas.AgentRead()
        self.sync_schema = schemas.AgentSync()
        self.transfer_schema = schemas.AgentTransfer()
        self.release_schema = schemas.AgentRelease()
        self.resolve_schema = schemas.AgentResolve()
        self.availability_schema = schemas.Availability()

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        try:
            address = self.admit_connection(sid, environ)
            token = auth.get("token") if isinstance(auth, dict) else None
            agent = self.services.tokens.verify_agent(token)
            queue, assigned = await self.services.routing.snapshot(agent.id)
            await self.services.presence.connected(agent, sid)
        except ServiceError as exc:
            raise self.refuse(exc) from None
        except Exception:
            log.exception("%s connection failed", self.namespace)
            raise self.refuse(Unavailable("service unavailable")) from None
        self.connection_opened(sid, AgentConnection(address, agent))
        await self.enter_room(sid, rooms.AGENTS_ROOM)
        await self.enter_room(sid, rooms.agent(agent.id))
        metrics.CONNECTS.labels(namespace=self.namespace).inc()
        # The queue snapshot also says how long a message may be (as the visitor's `session`).
        limit = self.services.settings.max_text_length
        self.emit_after_connect(
            sid,
            [
                ("queue", {"conversations": queue, "max_text_length": limit}),
                ("assigned", {"conversations": assigned}),
            ],
        )

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        self.connection_closed(sid)
        metrics.DISCONNECTS.labels(namespace=self.namespace).inc()
        try:
            await self.services.presence.disconnected(sid)
        except Unavailable:
            # Logged once per outage by storage/outages.py. The connection's row is left
            # behind: this process's heartbeat keeps it fresh until the process exits.
            log.debug("could not record an agent's disconnection: the database is unavailable")
        except Exception:
            log.exception("could not record an agent's disconnection")

    async def on_accept(self, sid: str, *args: Any) -> dict[str, Any]:
        data = schemas.load(self.accept_schema, args)
        accepted = await self.services.routing.accept(await self._who(sid), data["conversation_id"])
        return {
            "conversation": accepted.summary,
            "messages": [m.to_dict() for m in accepted.messages],
        }

    async def on_message(self, sid: str, *args: Any) -> dict[str, Any]:
        data = schemas.load(self.message_schema, args)
        agent = await self._who(sid)
        message = await self.services.conversations.post_agent_message(
            agent_sender(agent), data["conversation_id"], data["client_id"], data["text"]
        )
        return {"message": message.to_dict()}

    async def on_typing(self, sid: str, *args: Any) -> dict[str, Any]:
        data = schemas.load(self.typing_schema, args)
        agent = await self._who(sid)
        conversation = await self.services.routing.conversation_for(agent, data["conversation_id"])
        await self.services.conversations.typing(
            conversation, agent_sender(agent), data["typing"], origin=sid
        )
        return {}

    async def on_read(self, sid: str, *args: Any) -> dict[str, Any]:
        data = schemas.load(self.read_schema, args)
        agent = await self._who(sid)
        conversation = await self.services.routing.conversation_for(agent, data["conversation_id"])
        await self.services.conversations.mark_read(conversation, agent_sender(agent), data["seq"])
        return {}

    async def on_sync(self, sid: str, *args: Any) -> dict[str, Any]:
        data = schemas.load(self.sync_schema, args)
        agent = await self._who(sid)
        result = await self.services.conversations.sync(
            data["conversation_id"],
            data["after_seq"],
            data["limit"],
            allowed=functools.partial(require_assigned, agent),
        )
        return result.to_dict()

    async def on_transfer(self, sid: str, *args: Any) -> dict[str, Any]:
        data = schemas.load(self.transfer_schema, args)
        handled = await self.services.routing.transfer(
            await self._who(sid), data["conversation_id"], data["agent_id"]
        )
        return {"conversation": handled.summary}

    async def on_release(self, sid: str, *args: Any) -> dict[str, Any]:
        data = schemas.load(self.release_schema, args)
        handled = await self.services.routing.release(
            await self._who(sid), data["conversation_id"], data["to"]
        )
        return {"conversation": handled.summary}

    async def on_resolve(self, sid: str, *args: Any) -> dict[str, Any]:
        data = schemas.load(self.resolve_schema, args)
        handled = await self.services.routing.resolve(await self._who(sid), data["conversation_id"])
        return {"conversation": handled.summary}

    async def on_availability(self, sid: str, *args: Any) -> dict[str, Any]:
        data = schemas.load(self.availability_schema, args)
        await self.services.presence.set_status(await self._who(sid), data["status"])
        return {}

    async def _who(self, sid: str) -> AgentIdentity:
        connection = self.connection(sid)
        if not isinstance(connection, AgentConnection):
            raise Unauthorized("no agent session on this connection")
        return connection.agent


class AgentConnection(Connection):
    """An agent's connection: who the agent is."""

    __slots__ = ("agent",)

    def __init__(self, address: str, agent: AgentIdentity) -> None:
        super().__init__(address)
        self.agent = agent
