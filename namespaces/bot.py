"""`/bot`: external bot workers. Thin: authenticate, validate, call the dispatch, return the ack."""

from __future__ import annotations

import logging
from typing import Any

from socketsvc.namespaces.base import Connection, Namespace

from socketsvc.domain.bot_dispatch import DEFAULT_CAPACITY, MAX_CAPACITY, BotDispatch
from socketsvc.domain.errors import Forbidden, ServiceError, Unauthorized, Unavailable
from socketsvc.runtime import metrics
from socketsvc.services import Services
from socketsvc.transport import rooms, schemas

log = logging.getLogger(__name__)


class BotNamespace(Namespace):
    """Workers of the external bot (`BOT=workers:NAME`): `visitor_message` events to answer
    with `message`, `typing`, `handoff`, `resolve` or `done`."""

    def __init__(self, services: Services) -> None:
        super().__init__(rooms.BOT, services)
        self.message_schema = schemas.BotMessage(max_text=services.settings.max_text_length)
        self.typing_schema = schemas.BotTyping()
        self.handoff_schema = schemas.BotHandoff()
        self.delivery_schema = schemas.BotDelivery()

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        try:
            address = self.admit_connection(sid, environ)
            if not isinstance(auth, dict):
                raise Unauthorized("auth must be an object: {bot, token} or {bot, key}")
            identity = self.services.tokens.verify_bot(
                auth.get("bot"), auth.get("token"), auth.get("key")
            )
            dispatch = self.services.bot_dispatch
            if dispatch is None or identity.bot != dispatch.bot:
                raise Forbidden(
                    f"this service does not serve bot {identity.bot!r} (BOT=workers:NAME)"
                )
            capacity = _capacity(auth.get("capacity"))
        except ServiceError as exc:
            raise self.refuse(exc) from None
        except Exception:
            log.exception("%s connection failed", self.namespace)
            raise self.refuse(Unavailable("service unavailable")) from None
        self.connection_opened(sid, BotConnection(address, identity.bot))
        await self.enter_room(sid, rooms.bot(identity.bot))
        metrics.CONNECTS.labels(namespace=self.namespace).inc()
        log.info("bot worker %s of %s connected", sid, identity.bot)
        self.emit_after_connect(
            sid,
            [
                (
                    "ready",
                    {
                        "bot": identity.bot,
                        "worker_id": sid,
                        "capacity": capacity,
                        "redelivery_timeout": dispatch.redelivery,
                    },
                )
            ],
        )
        dispatch.connected(sid, capacity)

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        connection = self.connection(sid)
        self.connection_closed(sid)
        metrics.DISCONNECTS.labels(namespace=self.namespace).inc()
        if connection is None or self.services.bot_dispatch is None:
            return
        try:
            await self.services.bot_dispatch.disconnected(sid)
        except Exception:
            # Its leases run out and the deliveries go to another worker all the same.
            log.warning("could not give back a bot worker's deliveries", exc_info=True)

    async def on_message(self, sid: str, *args: Any) -> dict[str, Any]:
        data = schemas.load(self.message_schema, args)
        message = await self._dispatch(sid).reply(
            sid,
            data["delivery_id"],
            data["client_id"],
            data["text"],
            matched=data["matched"],
            offer_human=data["offer_human"],
        )
        return {"message": message.to_dict()}

    async def on_typing(self, sid: str, *args: Any) -> dict[str, Any]:
        data = schemas.load(self.typing_schema, args)
        await self._dispatch(sid).typing(sid, data["delivery_id"], data["typing"])
        return {}

    async def on_handoff(self, sid: str, *args: Any) -> dict[str, Any]:
        data = schemas.load(self.handoff_schema, args)
        conversation = await self._dispatch(sid).handoff(
            sid, data["delivery_id"], data["reason"], data["summary"]
        )
        return {"state": conversation.state.value}

    async def on_resolve(self, sid: str, *args: Any) -> dict[str, Any]:
        data = schemas.load(self.delivery_schema, args)
        conversation = await self._dispatch(sid).resolve(sid, data["delivery_id"])
        return {"state": conversation.state.value}

    async def on_done(self, sid: str, *args: Any) -> dict[str, Any]:
        data = schemas.load(self.delivery_schema, args)
        await self._dispatch(sid).done(sid, data["delivery_id"])
        return {}

    def _dispatch(self, sid: str) -> BotDispatch:
        dispatch = self.services.bot_dispatch
        if not isinstance(self.connection(sid), BotConnection) or dispatch is None:
            raise Unauthorized("no bot worker session on this connection")
        return dispatch


class BotConnection(Connection):
    """A bot worker's connection: which bot it serves."""

    __slots__ = ("bot",)

    def __init__(self, address: str, bot: str) -> None:
        super().__init__(address)
        self.bot = bot


def _capacity(value: Any) -> int:
    """`auth.capacity`: deliveries the worker takes at a time (1..100, default 10)."""
    if value is None:
        return DEFAULT_CAPACITY
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CAPACITY:
        raise Unauthorized(f"auth.capacity must be an integer from 1 to {MAX_CAPACITY}")
    return value
