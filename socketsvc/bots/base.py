"""The bot interface: one small async protocol that every bot implements.

The conversation service owns state (fallback counters, whether a human was offered, the
conversation's state); a bot only turns a visitor's text into a reply. It never stores or
sends anything itself, so a bot cannot post into a conversation that left the `bot` state.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class BotContext:
    """What a bot may know about the conversation it answers in."""

    conversation_id: str
    visitor_name: str
    consecutive_fallbacks: int = 0
    """How many of the bot's previous replies in a row were fallbacks (0 after a match)."""
    human_offered: bool = False
    """True when the bot's previous reply offered a human and the visitor has not yet answered."""
    message: Mapping[str, Any] | None = None
    """The visitor message being answered, in its wire form (`Message.to_dict()`: id, seq,
    client_id, sender, text, created_at); None for a greeting."""
    conversation: Mapping[str, Any] | None = None
    """The conversation as the message found it (`payloads.conversation_ref`: id, status,
    last_seq, bot_fallbacks, human_offered, created_at); None for a greeting."""
    recent: Sequence[Mapping[str, Any]] = ()
    """The messages before `message`, oldest first, in wire form: only for a bot with a
    `history` attribute above 0 (that many at most; the runner reads them for it)."""


@dataclass(frozen=True)
class BotReply:
    """The bot's answer to one visitor message."""

    text: str
    matched: bool
    """False when this is a fallback (nothing matched above the confidence threshold)."""
    intent: str | None = None
    score: float = 0.0
    offer_human: bool = False
    """The reply offers a human; the service remembers it for the next message."""
    handoff: bool = False
    """The visitor asked for (or accepted) a human: the service queues the conversation."""
    keeps_draft: bool = True
    """For a streamed reply: `text` is what was streamed, so the draft becomes this message.
    False when the stream failed and this is a reply of its own (a fallback): the draft is
    discarded first."""
    client_id: str | None = None
    """Stores the reply idempotently by this id (a bot whose answer may be computed twice for
    one visitor message); None: the runner stores it once, as it is."""
    more: tuple[str, ...] = ()
    """Further messages stored after `text`, each a message of its own (needs `client_id`)."""
    handoff_reason: str | None = None
    handoff_summary: str | None = None
    """With `handoff`: the reason logged and the short account for the agent (stored as a system
    note after the queue's)."""


class Bot(Protocol):
    """A bot answering visitors while a conversation is in the `bot` state.

    An empty `BotReply.text` stores nothing (with `handoff`, only the handoff happens). A bot
    may have an `int` attribute `history`: the runner then passes that many earlier messages as
    `BotContext.recent` (one more read per visitor message).
    """

    name: str
    """Display name used as the sender name of the bot's messages."""

    async def greeting(self, ctx: BotContext) -> str:
        """The first message of a new conversation."""
        ...

    async def reply(self, ctx: BotContext, text: str) -> BotReply:
        """Answer one visitor message."""
        ...

    async def close(self) -> None:
        """Release whatever the bot holds (HTTP sessions, files)."""
        ...


@runtime_checkable
class StreamingBot(Bot, Protocol):
    """A bot whose replies grow while they are generated (e.g. an LLM streaming tokens).

    The bot runner shows the text so far as a draft (`message_delta` events) and stores the
    reply once, when it is complete and only while the conversation is still with the bot.
    """

    def stream(self, ctx: BotContext, text: str) -> AsyncIterator[str | BotReply]:
        """Answer one visitor message: pieces of text as they come (`str`, each appended to
        the previous ones), then exactly one `BotReply`, the whole answer. Closing the iterator
        early (a handoff meanwhile) must stop the generation."""
        ...


CONVERSATION_OPENED = "conversation.opened"
CONVERSATION_RESOLVED = "conversation.resolved"


@runtime_checkable
class NotifiedBot(Bot, Protocol):
    """A bot that wants to hear of conversations' lives, not just of visitor messages.

    `notify` is called where a conversation is stored (the visitor's first message, or a handoff
    before any) with `CONVERSATION_OPENED`, and where one is resolved (by an agent or a `/bot`
    worker) with `CONVERSATION_RESOLVED`. It must not block: it only schedules what it does
    (the caller is answering a visitor's or an agent's event) and must not raise.
    """

    def notify(
        self, event: str, conversation: Mapping[str, Any], visitor: Mapping[str, Any]
    ) -> None:
        """`conversation`: `payloads.conversation_ref`; `visitor`: `{"id"}` and, when known,
        `"name"`."""
        ...
