"""Runs the bot for each new visitor message, and keeps it silent outside the `bot` state."""

from __future__ import annotations

import asyncio
import logging

from socketsvc import metrics
from socketsvc.bots.base import Bot, BotContext, BotReply
from socketsvc.conversations import ConversationService, bot_sender
from socketsvc.models import Conversation, Message, Role, State
from socketsvc.routing import RoutingService
from socketsvc.storage.store import Store
from socketsvc.tasks import KeyedLocks, TaskTracker

log = logging.getLogger(__name__)


class BotRunner:
    """Answers visitor messages in the background, one at a time per conversation.

    The bot's reply is stored with a condition on the conversation's state in the same
    statement that numbers it, so a reply computed while a handoff happened is dropped.
    """

    def __init__(
        self,
        store: Store,
        conversations: ConversationService,
        routing: RoutingService,
        bot: Bot,
        tasks: TaskTracker,
        timeout: float = 30.0,
    ) -> None:
        self.store = store
        self.conversations = conversations
        self.routing = routing
        self.bot = bot
        self.tasks = tasks
        self.timeout = timeout
        self._locks = KeyedLocks()

    def schedule(self, conversation: Conversation, message: Message) -> None:
        """Answer `message` soon, if the conversation is (still) with the bot."""
        if conversation.state != State.BOT:
            return
        self.tasks.spawn(self.answer(conversation.id, message), name=f"bot:{conversation.id}")

    async def answer(self, conversation_id: str, message: Message) -> Message | None:
        async with self._locks.hold(conversation_id):
            conversation = await self.store.get_conversation(conversation_id)
            if conversation is None or conversation.state != State.BOT:
                return None
            sender = bot_sender(self.bot)
            await self.conversations.typing(conversation, sender, True)
            try:
                reply = await self._reply(conversation, message)
                stored = None
                if reply is not None:
                    stored = await self._store(conversation, reply)
            finally:
                await self.conversations.typing(conversation, sender, False)
            if stored is None:
                return None
            await self.conversations.publish(conversation, stored)
            if reply is not None and reply.handoff:
                await self.routing.handoff(
                    conversation_id, reason="visitor asked the bot", by="bot"
                )
            return stored

    async def _reply(self, conversation: Conversation, message: Message) -> BotReply | None:
        visitor = await self.store.get_visitor(conversation.visitor_id)
        ctx = BotContext(
            conversation_id=conversation.id,
            visitor_name=visitor.name if visitor else "Visitor",
            consecutive_fallbacks=conversation.bot_fallbacks,
            human_offered=conversation.human_offered,
        )
        try:
            return await asyncio.wait_for(self.bot.reply(ctx, message.text), self.timeout)
        except Exception:
            log.exception("bot failed to answer", extra={"conversation_id": conversation.id})
            metrics.BOT_ERRORS.inc()
            return None

    async def _store(self, conversation: Conversation, reply: BotReply) -> Message | None:
        appended = await self.store.append_message(
            conversation.id,
            bot_sender(self.bot),
            reply.text,
            None,
            only_in_states=[State.BOT],
            values={
                "bot_fallbacks": 0 if reply.matched else conversation.bot_fallbacks + 1,
                "human_offered": reply.offer_human,
            },
        )
        if appended is None:
            metrics.BOT_SUPPRESSED.inc()
            log.info(
                "bot reply dropped: conversation left the bot state",
                extra={"conversation_id": conversation.id},
            )
            return None
        metrics.MESSAGES_STORED.labels(role=Role.BOT.value).inc()
        if not reply.matched:
            metrics.BOT_FALLBACKS.inc()
        return appended.message
