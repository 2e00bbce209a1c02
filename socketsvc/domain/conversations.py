"""Visitor conversations: sessions, messages, typing, read receipts and sync.

Knows nothing of Socket.IO or SQL: it stores through a `ConversationStore` and publishes through
a `Broadcaster` (domain.ports).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from socketsvc.bots.base import Bot, BotContext
from socketsvc.domain import payloads
from socketsvc.domain.errors import Forbidden, Invalid, NotFound
from socketsvc.domain.models import (
    Conversation,
    Message,
    Role,
    Sender,
    State,
    Visitor,
    new_id,
    utcnow,
)
from socketsvc.domain.ports import Broadcaster, ConversationStore
from socketsvc.domain.tokens import TokenService
from socketsvc.runtime import metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Session:
    """A connected visitor: who it is, its conversation, and a fresh token to resume with."""

    visitor: Visitor
    conversation: Conversation
    token: str
    greeting: Message | None
    resumed: bool
    context: ConversationContext

    def to_dict(self) -> dict[str, Any]:
        return {
            "visitor_token": self.token,
            "visitor_id": self.visitor.id,
            "conversation_id": self.conversation.id,
            "state": self.conversation.state.value,
            "last_seq": self.conversation.last_seq,
            **self.context.to_dict(),
        }


@dataclass(frozen=True)
class ConversationContext:
    """What a client needs to draw a conversation after a reload: who answers, the queue
    position, and how far each participant has read."""

    agent: dict[str, Any] | None
    queue_position: int | None
    read: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"read": self.read}
        if self.agent is not None:
            data["agent"] = self.agent
        if self.queue_position is not None:
            data["queue_position"] = self.queue_position
        return data


@dataclass(frozen=True)
class SyncResult:
    messages: list[Message]
    state: State
    last_seq: int
    context: ConversationContext

    def to_dict(self) -> dict[str, Any]:
        return {
            "messages": [m.to_dict() for m in self.messages],
            "state": self.state.value,
            "last_seq": self.last_seq,
            **self.context.to_dict(),
        }


def visitor_sender(visitor: Visitor) -> Sender:
    return Sender(Role.VISITOR, visitor.id, visitor.name)


def bot_sender(bot: Bot) -> Sender:
    return Sender(Role.BOT, "bot", bot.name)


class ConversationService:
    """Everything a visitor can do to its conversation, and the messages of any participant."""

    def __init__(
        self,
        store: ConversationStore,
        broadcaster: Broadcaster,
        tokens: TokenService,
        bot: Bot,
        on_visitor_message: Callable[[Conversation, Message], None] | None = None,
    ) -> None:
        self.store = store
        self.broadcaster = broadcaster
        self.tokens = tokens
        self.bot = bot
        self.on_visitor_message = on_visitor_message
        """Called after a new visitor message is stored and published (the bot hooks in here)."""

    async def open_session(self, token: Any, identity: Any = None) -> Session:
        """Resume the visitor a token names, or start a new visitor when `token` is None.

        With `identity` (the host site's signed assertion of its logged-in user) the visitor is
        that user on every device. A new conversation starts with the bot's greeting as seq 1.
        """
        if identity is not None:
            user = self.tokens.verify_identity(identity)
            visitor_id, name = user.visitor_id, user.name
        elif token is not None:
            visitor_id, name = self.tokens.verify_visitor(token), None
        else:
            visitor_id, name = new_id(), None
        resumed = identity is not None or token is not None
        name = name or f"Visitor {visitor_id[:4]}"
        if resumed:
            visitor = await self.store.ensure_visitor(visitor_id, name)
            conversation = await self.store.current_conversation(visitor.id)
        else:
            visitor, conversation = Visitor(visitor_id, name, utcnow()), None
        greeting: Message | None = None
        if conversation is None:
            conversation_id = new_id()
            text = await self.bot.greeting(BotContext(conversation_id, visitor.name))
            created = await self.store.create_conversation(
                visitor.id,
                (bot_sender(self.bot), text),
                conversation_id=conversation_id,
                new_visitor_name=None if resumed else visitor.name,
            )
            conversation = created.conversation
            greeting = created.messages[0]
            metrics.CONVERSATIONS_STARTED.inc()
            # A conversation created just now has no agent, queue position or read marks.
            context = ConversationContext(None, None, [])
        else:
            context = await self.context(conversation)
        return Session(
            visitor,
            conversation,
            self.tokens.mint_visitor(visitor.id),
            greeting,
            resumed,
            context,
        )

    async def context(self, conversation: Conversation) -> ConversationContext:
        agent = payloads.agent_ref(conversation) if conversation.state == State.ASSIGNED else None
        marks = await self.store.read_marks(conversation.id)
        return ConversationContext(
            agent,
            await self.store.queue_position(conversation),
            [payloads.read_mark(role, reader, seq) for role, reader, seq in marks],
        )

    async def conversation_of(self, visitor_id: str, conversation_id: str) -> Conversation:
        """The conversation, if this visitor owns it (`forbidden` or `not_found` otherwise)."""
        conversation = await self.store.get_conversation(conversation_id)
        if conversation is None:
            raise NotFound("no such conversation")
        if conversation.visitor_id != visitor_id:
            raise Forbidden("not your conversation")
        return conversation

    async def post_visitor_message(
        self, visitor: Visitor, conversation_id: str, client_id: str | None, text: str
    ) -> Message:
        """Store, publish and return a visitor's message; a retry returns the first one.

        `conversation_id` is the visitor's own (taken from its session). A message to a
        resolved conversation reopens it with the bot.
        """
        appended = await self.store.append_message(
            conversation_id, visitor_sender(visitor), text, client_id
        )
        if appended is None:  # pragma: no cover - the conversation row cannot vanish
            raise NotFound("no such conversation")
        if not appended.created:
            metrics.DUPLICATES.inc()
            return appended.message
        conversation = appended.conversation
        assert conversation is not None
        await self.publish(conversation, appended.message)
        if conversation.state == State.RESOLVED:
            conversation = await self._reopen(conversation)
        if self.on_visitor_message is not None:
            self.on_visitor_message(conversation, appended.message)
        return appended.message

    async def post_agent_message(
        self, agent: Sender, conversation_id: str, client_id: str | None, text: str
    ) -> Message:
        """Store and publish an agent's message to a conversation assigned to that agent."""
        appended = await self.store.append_agent_message(conversation_id, agent, text, client_id)
        if appended is None:
            if await self.store.get_conversation(conversation_id) is None:
                raise NotFound("no such conversation")
            raise Forbidden("this conversation is not assigned to you")
        if appended.created:
            assert appended.conversation is not None
            await self.publish(appended.conversation, appended.message)
        else:
            metrics.DUPLICATES.inc()
        return appended.message

    async def _reopen(self, conversation: Conversation) -> Conversation:
        """Back to the bot after `resolved`; returns the conversation as it is now."""
        changed = await self.store.to_bot(conversation.id, None, from_states=[State.RESOLVED])
        if changed is None:
            return await self.store.get_conversation(conversation.id) or conversation
        await self.publish_state(changed.conversation)
        return changed.conversation

    async def typing(
        self, conversation: Conversation, sender: Sender, typing: bool, origin: str | None = None
    ) -> None:
        """Tell the conversation's other connections that `sender` is (not) typing."""
        await self.broadcaster.to_conversation(
            conversation.id,
            conversation.agent_id,
            "typing",
            {"conversation_id": conversation.id, "sender": sender.to_dict(), "typing": typing},
            skip=origin,
        )

    async def mark_read(self, conversation: Conversation, reader: Sender, seq: int) -> int:
        """Record that `reader` has seen everything up to `seq`, and tell the conversation."""
        if seq > conversation.last_seq:
            raise Invalid("seq is beyond the last message", {"seq": ["Beyond the last message."]})
        stored = await self.store.mark_read(conversation.id, reader, seq)
        if stored == seq:
            await self.broadcaster.to_conversation(
                conversation.id,
                conversation.agent_id,
                "read",
                payloads.read_event(conversation.id, reader.role.value, reader.id, seq),
            )
        return stored

    async def sync(
        self,
        conversation_id: str,
        after_seq: int,
        limit: int,
        allowed: Callable[[Conversation], None] | None = None,
    ) -> SyncResult:
        """Messages after `after_seq`, with the state and last seq read after them.

        `allowed` raises if the asker may not read the conversation as it is then (checked on
        that one read of the conversation; the messages read before are dropped).
        """
        found = await self.store.messages_after(conversation_id, after_seq, limit)
        conversation = await self.store.get_conversation(conversation_id)
        if conversation is None:
            raise NotFound("no such conversation")
        if allowed is not None:
            allowed(conversation)
        return SyncResult(
            found, conversation.state, conversation.last_seq, await self.context(conversation)
        )

    async def publish(self, conversation: Conversation, message: Message) -> None:
        """Send a stored message to the conversation's participants as of `conversation`."""
        await self.broadcaster.to_conversation(
            conversation.id, conversation.agent_id, "message", message.to_dict()
        )

    async def publish_state(
        self, conversation: Conversation, queue_position: int | None = None
    ) -> None:
        await self.broadcaster.to_conversation(
            conversation.id,
            conversation.agent_id,
            "state",
            payloads.state(conversation, queue_position),
        )
