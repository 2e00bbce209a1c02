"""Visitor conversations: sessions, messages, typing, read receipts and sync.

Knows nothing of Socket.IO or SQL: it stores through a `ConversationStore` and publishes through
a `Broadcaster` (domain.ports).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from socketsvc.bots.base import CONVERSATION_OPENED, Bot, BotContext, NotifiedBot
from socketsvc.domain import payloads
from socketsvc.domain.errors import Forbidden, Invalid, NotFound, VisitorErased
from socketsvc.domain.models import (
    Append,
    Conversation,
    Message,
    Returning,
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
    """A connected visitor: who it is, its conversation, and a fresh token to resume with.

    `conversation` is None while the visitor has not written: its id is promised
    (`conversation_id`) and the greeting is sent, but nothing is stored until the first message.
    """

    visitor: Visitor
    conversation_id: str
    conversation: Conversation | None
    token: str
    greeting: Message | None
    resumed: bool
    context: ConversationContext

    def to_dict(self) -> dict[str, Any]:
        conversation = self.conversation
        return {
            "visitor_token": self.token,
            "visitor_id": self.visitor.id,
            "conversation_id": self.conversation_id,
            "state": State.BOT.value if conversation is None else conversation.state.value,
            "last_seq": 0 if conversation is None else conversation.last_seq,
            "started": conversation is not None,
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
    started: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "messages": [m.to_dict() for m in self.messages],
            "state": self.state.value,
            "last_seq": self.last_seq,
            "started": self.started,
            **self.context.to_dict(),
        }


def visitor_sender(visitor: Visitor) -> Sender:
    return Sender(Role.VISITOR, visitor.id, visitor.name)


def bot_sender(bot: Bot) -> Sender:
    return Sender(Role.BOT, "bot", bot.name)


def _derived_id(kind: str, source: str) -> str:
    """32 hex digits (the shape of `new_id`) derived from `source`; never to change, since
    stored conversations and greetings carry these ids."""
    return hashlib.blake2b(f"{kind}:{source}".encode(), digest_size=16).hexdigest()


def promised_conversation_id(visitor_id: str) -> str:
    """The id a visitor's conversation gets when it is stored, known before: every connection
    of a visitor who has not written yet joins the same room, and the id proves ownership
    without a lookup. (After retention deleted a visitor's resolved conversation, its next one
    has the same id again.)"""
    return _derived_id("socketsvc-conversation", visitor_id)


def greeting_id(conversation_id: str) -> str:
    """The greeting's message id: the same when sent before it is stored and once stored."""
    return _derived_id("socketsvc-greeting", conversation_id)


NO_CONTEXT = ConversationContext(None, None, [])
"""A conversation just started (or not yet): no agent, queue position or read marks."""


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
        self._notified = bot if isinstance(bot, NotifiedBot) else None

    async def open_session(self, token: Any, identity: Any = None) -> Session:
        """Resume the visitor a token names, or start a new visitor when `token` is None.

        With `identity` (the host site's signed assertion of its logged-in user) the visitor is
        that user on every device. A new visitor, and one who has not written yet, costs no
        write: its conversation is promised (`Session.conversation` None) and greeted, and
        stored by `post_visitor_message` or `start`. A resume reads once (the erasure marker and
        the latest conversation); an erased visitor is refused (`VisitorErased`).
        """
        if identity is not None:
            user = self.tokens.verify_identity(identity)
            visitor_id, name = user.visitor_id, user.name
        elif token is not None:
            visitor_id, name = self.tokens.verify_visitor(token), None
        else:
            visitor_id, name = new_id(), None
        resumed = identity is not None or token is not None
        visitor = Visitor(visitor_id, name or f"Visitor {visitor_id[:4]}", utcnow())
        conversation: Conversation | None = None
        if resumed:
            returning = await self.store.returning_visitor(visitor_id)
            if returning.erased:
                raise VisitorErased()
            conversation = returning.conversation
        token_out = self.tokens.mint_visitor(visitor_id)
        if conversation is not None:
            context = self._context(returning)
            return Session(visitor, conversation.id, conversation, token_out, None, True, context)
        conversation_id = promised_conversation_id(visitor_id)
        greeting = await self.greeting(visitor, conversation_id)
        return Session(visitor, conversation_id, None, token_out, greeting, resumed, NO_CONTEXT)

    async def greeting(self, visitor: Visitor, conversation_id: str) -> Message:
        """The bot's greeting, seq 1 of the conversation (sent before it is stored)."""
        text = await self.bot.greeting(BotContext(conversation_id, visitor.name))
        return Message(
            greeting_id(conversation_id),
            conversation_id,
            1,
            None,
            bot_sender(self.bot),
            text,
            utcnow(),
        )

    async def start(
        self, visitor: Visitor, first: tuple[str, str | None] | None = None
    ) -> Conversation:
        """The visitor's promised conversation, stored now with the greeting (and `first`:
        the visitor's text and client_id) unless it is stored already; as it is now."""
        conversation_id = promised_conversation_id(visitor.id)
        greeting = await self.greeting(visitor, conversation_id)
        message = None if first is None else (visitor_sender(visitor), first[0], first[1])
        started = await self.store.start_conversation(visitor, greeting, message)
        if started is None:
            found = await self.store.get_conversation(conversation_id)
            if found is None:  # pragma: no cover - it existed a moment ago
                raise NotFound("no such conversation")
            return found
        metrics.CONVERSATIONS_STARTED.inc()
        self.notify(CONVERSATION_OPENED, started.conversation, visitor)
        return started.conversation

    @staticmethod
    def _context(returning: Returning) -> ConversationContext:
        """The context of `returning.conversation` (not None) from what was read with it."""
        conversation = returning.conversation
        assert conversation is not None
        agent = payloads.agent_ref(conversation) if conversation.state == State.ASSIGNED else None
        marks = [payloads.read_mark(*mark) for mark in returning.read_marks]
        return ConversationContext(agent, returning.queue_position, marks)

    async def conversation_of(self, visitor_id: str, conversation_id: str) -> Conversation | None:
        """The conversation, if this visitor owns it (`forbidden` or `not_found` otherwise);
        None for the visitor's promised conversation while it is not stored."""
        conversation = await self.store.get_conversation(conversation_id)
        if conversation is None:
            if conversation_id == promised_conversation_id(visitor_id):
                return None
            raise NotFound("no such conversation")
        if conversation.visitor_id != visitor_id:
            raise Forbidden("not your conversation")
        return conversation

    async def post_visitor_message(
        self,
        visitor: Visitor,
        conversation_id: str,
        client_id: str | None,
        text: str,
        *,
        started: bool = True,
    ) -> Message:
        """Store, publish and return a visitor's message; a retry returns the first one.

        `conversation_id` is the visitor's own (taken from its session); `started` False: the
        session found it promised, not stored, so the message first tries to store it, with the
        greeting before it (one transaction), and otherwise appends. A message to a resolved
        conversation reopens it with the bot.
        """
        sender = visitor_sender(visitor)
        appended: Append | None = None
        if not started and conversation_id == promised_conversation_id(visitor.id):
            appended = await self._start_with(visitor, text, client_id)
        if appended is None:
            appended = await self.store.append_message(conversation_id, sender, text, client_id)
        if appended is None and conversation_id == promised_conversation_id(visitor.id):
            # Stored after all, then deleted (retention of a resolved conversation): anew.
            appended = await self._start_with(visitor, text, client_id)
        if appended is None:
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

    async def _start_with(
        self, visitor: Visitor, text: str, client_id: str | None
    ) -> Append | None:
        """Store the promised conversation with this first message; None if it is stored."""
        conversation_id = promised_conversation_id(visitor.id)
        greeting = await self.greeting(visitor, conversation_id)
        started = await self.store.start_conversation(
            visitor, greeting, (visitor_sender(visitor), text, client_id)
        )
        if started is None:
            return None
        metrics.CONVERSATIONS_STARTED.inc()
        self.notify(CONVERSATION_OPENED, started.conversation, visitor)
        return Append(started.messages[-1], created=True, conversation=started.conversation)

    def notify(
        self, event: str, conversation: Conversation, visitor: Visitor | None = None
    ) -> None:
        """Tell a bot that wants to know (`NotifiedBot`) that a conversation was opened or
        resolved; it only schedules its work, and nothing it raises reaches the caller."""
        if self._notified is None:
            return
        who: dict[str, Any] = {"id": conversation.visitor_id}
        if visitor is not None:
            who["name"] = visitor.name
        try:
            self._notified.notify(event, payloads.conversation_ref(conversation), who)
        except Exception:
            log.exception(
                "the bot's %s notification failed",
                event,
                extra={"conversation_id": conversation.id},
            )

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
        self,
        conversation: Conversation | None,
        sender: Sender,
        typing: bool,
        origin: str | None = None,
    ) -> None:
        """Tell the conversation's other connections that `sender` is (not) typing (nobody, for
        a promised conversation: no agent or bot can be in it yet)."""
        if conversation is None:
            return
        await self.broadcaster.to_conversation(
            conversation.id,
            conversation.agent_id,
            "typing",
            {"conversation_id": conversation.id, "sender": sender.to_dict(), "typing": typing},
            skip=origin,
        )

    async def mark_read(self, conversation: Conversation | None, reader: Sender, seq: int) -> int:
        """Record that `reader` has seen everything up to `seq`, and tell the conversation.

        For a promised conversation (None) only the greeting (seq 1) can have been seen: that
        is accepted and not recorded (nobody else can be told).
        """
        if conversation is None:
            if seq > 1:
                raise Invalid(
                    "seq is beyond the last message", {"seq": ["Beyond the last message."]}
                )
            return seq
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
        *,
        promised_to: str | None = None,
    ) -> SyncResult:
        """Messages after `after_seq`, with the state and last seq read after them.

        `allowed` raises if the asker may not read the conversation as it is then (checked on
        that one read of the conversation; the messages read before are dropped).
        `promised_to`: the visitor asking; its promised conversation, not stored yet, syncs
        as empty (`started` False) instead of `not_found`.
        """
        found, returning = await self.store.sync_read(conversation_id, after_seq, limit)
        conversation = returning.conversation
        if conversation is None:
            if promised_to is not None and conversation_id == promised_conversation_id(promised_to):
                return SyncResult([], State.BOT, 0, NO_CONTEXT, started=False)
            raise NotFound("no such conversation")
        if allowed is not None:
            allowed(conversation)
        return SyncResult(
            found, conversation.state, conversation.last_seq, self._context(returning)
        )

    async def publish(
        self, conversation: Conversation, message: Message, draft_id: str | None = None
    ) -> None:
        """Send a stored message to the conversation's participants as of `conversation`; a
        streamed reply carries the `draft_id` of the draft it replaces."""
        data = (
            message.to_dict() if draft_id is None else {**message.to_dict(), "draft_id": draft_id}
        )
        await self.broadcaster.to_conversation(
            conversation.id, conversation.agent_id, "message", data
        )

    async def publish_delta(
        self,
        conversation: Conversation,
        draft_id: str,
        sender: Sender,
        text: str,
        *,
        discarded: bool = False,
    ) -> None:
        """A reply being written (`text`: all of it so far), or, `discarded`, one that never
        will be stored."""
        data: dict[str, Any] = {
            "conversation_id": conversation.id,
            "draft_id": draft_id,
            "sender": sender.to_dict(),
            "text": text,
        }
        if discarded:
            data["discarded"] = True
        await self.broadcaster.to_conversation(
            conversation.id, conversation.agent_id, "message_delta", data
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
