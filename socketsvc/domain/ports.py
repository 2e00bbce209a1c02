"""What the domain needs from the layers around it, as interfaces it owns.

`storage.Store` and `storage.presence.PresenceStore` implement the stores over SQLAlchemy;
`transport.broadcast.SocketIOBroadcaster` implements `Broadcaster` over python-socketio. The
composition root (`socketsvc.services`) plugs them in; the domain imports only this module.
Every transition is named: the domain says what happens (accept, transfer, resolve...), the
store knows which columns that changes.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, Protocol

from socketsvc.domain.models import (
    Agent,
    Append,
    BotDelivery,
    Conversation,
    Message,
    Returning,
    Role,
    Sender,
    State,
    Transition,
    Visitor,
)


class ConversationStore(Protocol):
    """Durable visitors, conversations, messages and read marks."""

    async def ensure_visitor(self, visitor_id: str, name: str) -> Visitor: ...

    async def get_visitor(self, visitor_id: str) -> Visitor | None: ...

    async def returning_visitor(self, visitor_id: str) -> Returning:
        """Erased?, the latest conversation, its read marks and queue position, at once."""
        ...

    async def sync_read(
        self, conversation_id: str, after_seq: int, limit: int
    ) -> tuple[list[Message], Returning]:
        """Messages after `after_seq`, then the conversation (None: none) with its read marks
        and queue position, read after them."""
        ...

    async def start_conversation(
        self,
        visitor: Visitor,
        greeting: Message,
        first: tuple[Sender, str, str | None] | None = None,
    ) -> Transition | None:
        """Store a promised conversation with its greeting (and first message); None if it
        exists already; `VisitorErased` if the visitor was erased."""
        ...

    async def create_conversation(
        self,
        visitor_id: str,
        greeting: tuple[Sender, str] | None = None,
        conversation_id: str | None = None,
        *,
        new_visitor_name: str | None = None,
    ) -> Transition: ...

    async def get_conversation(self, conversation_id: str) -> Conversation | None: ...

    async def current_conversation(self, visitor_id: str) -> Conversation | None: ...

    # named transitions (None: the condition did not hold, nothing changed)

    async def queue(
        self,
        conversation_id: str,
        note: str,
        *,
        from_states: Collection[State],
        assigned_to: str | None = None,
        after: Sequence[str] = (),
    ) -> Transition | None: ...

    async def accept(
        self, conversation_id: str, agent_id: str, agent_name: str, note: str
    ) -> Transition | None: ...

    async def transfer(
        self, conversation_id: str, from_agent_id: str, to_agent_id: str, to_name: str, note: str
    ) -> Transition | None: ...

    async def to_bot(
        self,
        conversation_id: str,
        note: str | None,
        *,
        from_states: Collection[State],
        assigned_to: str | None = None,
    ) -> Transition | None: ...

    async def resolve(
        self, conversation_id: str, agent_id: str, note: str
    ) -> Transition | None: ...

    async def resolve_from_bot(self, conversation_id: str, note: str) -> Transition | None: ...

    # messages

    async def append_message(
        self, conversation_id: str, sender: Sender, text: str, client_id: str | None
    ) -> Append | None: ...

    async def append_bot_message(
        self,
        conversation_id: str,
        bot: Sender,
        text: str,
        client_id: str,
        *,
        bot_fallbacks: int,
        human_offered: bool,
    ) -> Append | None: ...

    async def append_agent_message(
        self, conversation_id: str, agent: Sender, text: str, client_id: str | None
    ) -> Append | None: ...

    async def append_bot_reply(
        self,
        conversation_id: str,
        bot: Sender,
        text: str,
        *,
        bot_fallbacks: int,
        human_offered: bool,
    ) -> Append | None: ...

    async def messages_after(
        self, conversation_id: str, after_seq: int, limit: int
    ) -> list[Message]: ...

    async def last_message(
        self, conversation_id: str, role: Role | None = None
    ) -> Message | None: ...

    async def first_message(
        self, conversation_id: str, role: Role | None = None
    ) -> Message | None: ...

    async def mark_read(self, conversation_id: str, reader: Sender, seq: int) -> int: ...

    async def read_marks(self, conversation_id: str) -> list[tuple[str, str, int]]: ...

    # the queue and assignments

    async def queue_position(self, conversation: Conversation) -> int | None: ...

    async def queue_length(self) -> int: ...

    async def queued(self) -> list[Conversation]: ...

    async def assigned_to(self, agent_id: str) -> list[Conversation]: ...


class BotDeliveries(Protocol):
    """Visitor messages given to external bot workers, with a lease, shared by every process."""

    async def add(self, delivery_id: str, conversation_id: str, seq: int, bot: str) -> None: ...

    async def claim(self, bot: str, worker: str, limit: int, lease: float) -> list[BotDelivery]:
        """Claim up to `limit` pending deliveries (the oldest unfinished one of each
        conversation with the bot) for `worker` until the lease ends."""
        ...

    async def held(self, delivery_id: str, worker: str) -> BotDelivery | None:
        """The delivery, if `worker` holds it or answered it."""
        ...

    async def complete(self, delivery_id: str, worker: str) -> bool: ...

    async def release_worker(self, worker: str) -> int: ...

    async def holding(self, worker: str) -> set[str]:
        """The deliveries `worker` holds now (leases expire on any process)."""
        ...

    async def release_expired(self) -> list[tuple[str, str]]:
        """Give back the deliveries whose lease ran out: (delivery, worker that held it)."""
        ...

    async def take_stale(self, bot: str, waited: float) -> list[BotDelivery]:
        """Pending deliveries no worker took for `waited` seconds, each to one caller."""
        ...

    async def purge(self) -> int: ...


class WorkerChannel(Protocol):
    """Sends an event to one connected bot worker of this process."""

    async def to_worker(self, worker: str, event: str, data: dict[str, Any]) -> None: ...


class PrivacyRecords(Protocol):
    """A visitor's personal data as a whole: export, erasure, and retention's deletions."""

    async def visitor_record(self, visitor_id: str) -> dict[str, Any] | None:
        """The visitor with its conversations, messages and read marks (JSON-ready), or None."""
        ...

    async def erase_visitor(self, visitor_id: str) -> dict[str, int] | None:
        """Delete every row of the visitor; rows deleted per table, or None if unknown."""
        ...

    async def delete_resolved_before(self, cutoff: datetime, limit: int) -> dict[str, int]:
        """Delete up to `limit` resolved conversations last changed before `cutoff` (with their
        messages and read marks) in one transaction; rows deleted per table."""
        ...


class PresenceRecords(Protocol):
    """Agents' connections and statuses, shared by every process."""

    async def connected(self, agent_id: str, name: str, sid: str, node_id: str) -> Agent: ...

    async def disconnected(self, sid: str) -> str | None: ...

    async def heartbeat(self, node_id: str) -> None: ...

    async def forget_node(self, node_id: str) -> None: ...

    async def set_status(self, agent_id: str, status: str) -> None: ...

    async def get(self, agent_id: str) -> Agent | None: ...

    async def online_count(self) -> int: ...

    async def absent_with_conversations(self, grace: float) -> list[str]: ...


class Broadcaster(Protocol):
    """Publishes events to the participants of a conversation, an agent, or every agent.

    A conversation's participants are its visitor's connections and, when `agent_id` is given,
    every connection of that agent (the one assigned at the moment of the change). `skip` is the
    opaque id of the connection that caused the event, when it must not get its own echo.
    """

    async def to_conversation(
        self,
        conversation_id: str,
        agent_id: str | None,
        event: str,
        data: dict[str, Any],
        skip: str | None = None,
    ) -> None: ...

    async def to_agent(self, agent_id: str, event: str, data: dict[str, Any]) -> None: ...

    async def to_agents(self, event: str, data: dict[str, Any]) -> None: ...

    async def to_local_visitors(self, event: str, data: dict[str, Any]) -> None:
        """Every visitor connection of this process only (each process sends its own)."""
        ...
