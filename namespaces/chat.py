"""`/chat`: website visitors. Thin: authenticate, validate, call a service, return the ack."""

from __future__ import annotations

import logging
from typing import Any

import socketio
from socketsvc.namespaces.base import Namespace

from socketsvc import metrics, rooms, schemas
from socketsvc.conversations import visitor_sender
from socketsvc.errors import ServiceError, Unauthorized
from socketsvc.models import Visitor
from socketsvc.services import Services

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
            self.refuse_while_draining()
            token = _visitor_token(auth)
            session = await self.services.conversations.open_session(token)
        except ServiceError as exc:
            metrics.CONNECT_REFUSALS.labels(namespace=self.namespace, code=exc.code).inc()
            log.info("/chat connection refused: %s", exc.message)
            raise socketio.exceptions.ConnectionRefusedError(exc.message, exc.to_dict()) from None
        except Exception:
            metrics.CONNECT_REFUSALS.labels(namespace=self.namespace, code="unavailable").inc()
            log.exception("/chat connection failed")
            raise socketio.exceptions.ConnectionRefusedError(
                "service unavailable", {"code": "unavailable", "message": "service unavailable"}
            ) from None
        conversation = session.conversation
        await self.save_session(
            sid,
            {
                "visitor": session.visitor,
                "conversation_id": conversation.id,
            },
        )
        await self.enter_room(sid, rooms.conversation(conversation.id))
        await self.enter_room(sid, rooms.visitor(session.visitor.id))
        metrics.CONNECTS.labels(namespace=self.namespace).inc()
        if session.resumed:
            metrics.RESUMED.inc()
        events: list[tuple[str, Any]] = [("session", session.to_dict())]
        if session.greeting is not None:
            events.append(("message", session.greeting.to_dict()))
        self.emit_after_connect(sid, events)

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        metrics.DISCONNECTS.labels(namespace=self.namespace).inc()

    async def on_message(self, sid: str, *args: Any) -> dict[str, Any]:
        data = schemas.load(self.message_schema, args)
        visitor, conversation_id = await self._who(sid)
        message = await self.services.conversations.post_visitor_message(
            visitor, conversation_id, data["client_id"], data["text"]
        )
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
        _, conversation_id = await self._who(sid)
        result = await self.services.conversations.sync(
            conversation_id, data["after_seq"], data["limit"]
        )
        return result.to_dict()

    async def on_handoff(self, sid: str, *args: Any) -> dict[str, Any]:
        data = schemas.load(self.handoff_schema, args)
        _, conversation_id = await self._who(sid)
        conversation = await self.services.routing.handoff(
            conversation_id, data["reason"], by="visitor"
        )
        return {"state": conversation.state.value}

    async def _who(self, sid: str) -> tuple[Visitor, str]:
        session = await self.get_session(sid)
        if not session or "visitor" not in session:
            raise Unauthorized("no visitor session on this connection")
        return session["visitor"], session["conversation_id"]


def _visitor_token(auth: Any) -> str | None:
    """The token from the handshake's auth object; None for a new visitor."""
    if auth is None:
        return None
    if not isinstance(auth, dict):
        raise Unauthorized("auth must be an object")
    token = auth.get("visitor_token")
    if token is None or token == "":
        return None
    if not isinstance(token, str):
        raise Unauthorized("visitor_token must be a string")
    return token
