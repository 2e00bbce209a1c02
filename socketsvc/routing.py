"""Routing between the bot and humans: handoff to the queue and the queue's notifications."""

from __future__ import annotations

import logging
from typing import Any

from socketsvc import metrics
from socketsvc.broadcast import Broadcaster
from socketsvc.conversations import ConversationService
from socketsvc.errors import NotFound
from socketsvc.models import SYSTEM, Conversation, State, iso, utcnow
from socketsvc.storage.store import Store

log = logging.getLogger(__name__)


def queued_text(position: int) -> str:
    ahead = position - 1
    if ahead <= 0:
        wait = "You're next in line."
    elif ahead == 1:
        wait = "There is 1 person ahead of you."
    else:
        wait = f"There are {ahead} people ahead of you."
    return f"A human agent will join this chat soon. {wait} You can keep writing here meanwhile."


class RoutingService:
    """Moves conversations between the bot, the queue and agents."""

    def __init__(
        self, store: Store, conversations: ConversationService, broadcaster: Broadcaster
    ) -> None:
        self.store = store
        self.conversations = conversations
        self.broadcaster = broadcaster

    async def handoff(self, conversation_id: str, reason: str | None, by: str) -> Conversation:
        """Queue the conversation for a human (the bot falls silent); idempotent."""
        waiting = len(await self.store.queued())
        changed = await self.store.transition(
            conversation_id,
            from_states=[State.BOT, State.RESOLVED],
            values={
                "state": State.QUEUED.value,
                "queued_at": utcnow(),
                "agent_id": None,
                "agent_name": None,
                "bot_fallbacks": 0,
                "human_offered": False,
            },
            add=[(SYSTEM, queued_text(waiting + 1))],
        )
        if changed is None:
            current = await self.store.get_conversation(conversation_id)
            if current is None:
                raise NotFound("no such conversation")
            return current
        conversation = changed.conversation
        log.info(
            "conversation queued",
            extra={"conversation_id": conversation_id, "reason": reason, "by": by},
        )
        metrics.HANDOFFS.labels(by=by).inc()
        for message in changed.messages:
            metrics.MESSAGES_STORED.labels(role=message.sender.role.value).inc()
            await self.conversations.publish(message)
        position = await self.store.queue_position(conversation)
        await self.conversations.publish_state(conversation, position)
        await self.broadcaster.to_agents("conversation", await self.summary(conversation))
        return conversation

    async def summary(self, conversation: Conversation) -> dict[str, Any]:
        """The agent-facing Summary of a conversation."""
        visitor = await self.store.get_visitor(conversation.visitor_id)
        data: dict[str, Any] = {
            "conversation_id": conversation.id,
            "state": conversation.state.value,
            "visitor": {
                "id": conversation.visitor_id,
                "name": visitor.name if visitor else "Visitor",
            },
        }
        if conversation.agent_id:
            data["agent"] = {"id": conversation.agent_id, "name": conversation.agent_name}
        if conversation.state == State.QUEUED and conversation.queued_at is not None:
            data["waiting_since"] = iso(conversation.queued_at)
        last = await self.store.last_message(conversation.id)
        if last is not None:
            data["last_message"] = last.to_dict()
        return data
