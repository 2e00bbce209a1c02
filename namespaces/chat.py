"""`/chat`: website visitors. Thin: authenticate, validate, call a service, return the ack."""

from __future__ import annotations

import logging
from typing import Any

from socketsvc.namespaces.base import Connection, Namespace

from socketsvc.domain.conversations import visitor_sender
from socketsvc.domain.errors import ServiceError, Unauthorized, Unavailable
from socketsvc.domain.models import Visitor
from socketsvc.runtime import metrics
from socketsvc.services import Services
from socketsvc.transport import rooms, schemas

log = logging.getLogger(__name__)


class ChatNamespace(Namespace):
    """Visitors: a session and the bot's greeting on connect, then their conversation's events."""

    def __init__(self, services: Services) -> None:
        super().__init__(rooms.CHAT, services)
        self.message_schema = schemas.ChatMessage(max_text=services.settings.max_text_length)
        self.typing_schema = schemas.Typing()
        self.read_schema = schemas.Read()
        self.sync_schema = schemas.Sync()
        self.handoff_schema = schemas.Handoff()

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        try:
            address = self.admit_connection(sid, environ)
            token, identity = _credentials(auth)
            session = await self.services.conversations.open_session(token, identity)
        except ServiceError as exc:
            raise self.refuse(exc) from None
        except Exception:
            log.exception("%s connection failed", self.namespace)
            raise self.refuse(Unavailable("service unavailable")) from None
        conversation_id = session.conversation_id
        self.connection_opened(
            sid,
            VisitorConnection(
                address, session.visitor, conversation_id, session.conversation is not None
            ),
        )
        await self.enter_room(sid, rooms.conversation(conversation_id))
        metrics.CONNECTS.labels(namespace=self.namespace).inc()
        if session.resumed:
            metrics.RESUMED.inc()
        events: list[tuple[str, Any]] = [
            (
                "session",
                {
                    **session.to_dict(),
                    "agents_online": self.services.presence.agents_online,
                    "max_text_length": self.services.settings.max_text_length,
                },
            )
        ]
        if session.greeting is not None:
            events.append(("message", session.greeting.to_dict()))
        self.emit_after_connect(sid, events)

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        self.connection_closed(sid)
        metrics.DISCONNECTS.labels(namespace=self.namespace).inc()

    async def on_message(self, sid: str, *args: Any) -> dict[str, Any]:
        data = schemas.load(self.message_schema, args)
        connection = self._visitor(sid)
        message = await self.services.conversations.post_visitor_message(
            connection.visitor,
            connection.conversation_id,
            data["client_id"],
            data["text"],
            started=connection.started,
        )
        connection.started = True
        return {"message": message.to_dict()}

    async def on_typing(self, sid: str, *args: Any) -> dict[str, Any]:
        data = schemas.load(self.typing_schema, args)
        visitor, conversation_id = await self._who(sid)
        service = self.services.conversations
        conversation = await service.conversation_of(visitor.id, conversation_id)
        await service.typing(conversation, visitor_sender(visitor), data["typing"], origin=sid)
        return {}

    async def on_read(self, sid: str, *args: Any) -> dict[str, Any]:
        data = schemas.load(self.read_schema, args)
        visitor, conversation_id = await self._who(sid)
        service = self.services.conversations
        conversation = await service.conversation_of(visitor.id, conversation_id)
        await service.mark_read(conversation, visitor_sender(visitor), data["seq"])
        return {}

    async def on_sync(self, sid: str, *args: Any) -> dict[str, Any]:
        data = schemas.load(self.sync_schema, args)
        visitor, conversation_id = await self._who(sid)
        result = await self.services.conversations.sync(
            conversation_id, data["after_seq"], data["limit"], promised_to=visitor.id
        )
        return result.to_dict()

    async def on_handoff(self, sid: str, *args: Any) -> dict[str, Any]:
        data = schemas.load(self.handoff_schema, args)
        connection = self._visitor(sid)
        if not connection.started:
            # Asking for a human before writing stores the conversation (greeting only) first.
            await self.services.conversations.start(connection.visitor)
            connection.started = True
        conversation = await self.services.routing.handoff(
            connection.conversation_id, data["reason"], by="visitor"
        )
        return {"state": conversation.state.value}

    async def _who(self, sid: str) -> tuple[Visitor, str]:
        connection = self._visitor(sid)
        return connection.visitor, connection.conversation_id

    def _visitor(self, sid: str) -> VisitorConnection:
        connection = self.connection(sid)
        if not isinstance(connection, VisitorConnection):
            raise Unauthorized("no visitor session on this connection")
        return connection


class VisitorConnection(Connection):
    """A visitor's connection: who it is, its conversation (whose room it is in), and whether
    that conversation was stored when last seen here (False: promised, see `Session`)."""

    __slots__ = ("conversation_id", "started", "visitor")

    def __init__(self, address: str, visitor: Visitor, conversation_id: str, started: bool) -> None:
        super().__init__(address)
        self.visitor = visitor
        self.conversation_id = conversation_id
        self.started = started


def _credentials(auth: Any) -> tuple[str | None, str | None]:
    """(visitor_token, identity) from the handshake's auth object; both None for a new visitor."""
    if auth is None:
        return None, None
    if not isinstance(auth, dict):
        raise Unauthorized("auth must be an object")
    values: list[str | None] = []
    for key in ("visitor_token", "identity"):
        value = auth.get(key)
        if value is None or value == "":
            values.append(None)
        elif isinstance(value, str):
            values.append(value)
        else:
            raise Unauthorized(f"{key} must be a string")
    return values[0], values[1]
