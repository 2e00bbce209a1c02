"""Plain data the domain services pass around (no Socket.IO, no SQL)."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class Role(StrEnum):
    VISITOR = "visitor"
    BOT = "bot"
    AGENT = "agent"
    SYSTEM = "system"


class State(StrEnum):
    BOT = "bot"
    QUEUED = "queued"
    ASSIGNED = "assigned"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class Sender:
    role: Role
    id: str
    name: str

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role.value, "id": self.id, "name": self.name}


SYSTEM = Sender(Role.SYSTEM, "system", "socketsvc")


@dataclass(frozen=True)
class Message:
    id: str
    conversation_id: str
    seq: int
    client_id: str | None
    sender: Sender
    text: str
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """The wire form; built once per message (its push and its ack share it), so callers
        must not change it."""
        return self._wire

    @functools.cached_property
    def _wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "conversation_id": self.conversation_id,
            "seq": self.seq,
            "client_id": self.client_id,
            "sender": self.sender.to_dict(),
            "text": self.text,
            "created_at": iso(self.created_at),
        }


@dataclass(frozen=True)
class Visitor:
    id: str
    name: str
    created_at: datetime


@dataclass(frozen=True)
class Conversation:
    id: str
    visitor_id: str
    state: State
    last_seq: int
    agent_id: str | None
    agent_name: str | None
    queued_at: datetime | None
    bot_fallbacks: int
    human_offered: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Append:
    """The result of storing one message; `created` is False for a repeated `client_id`."""

    message: Message
    created: bool
    conversation: Conversation | None


@dataclass(frozen=True)
class Returning:
    """What a reconnecting visitor's handshake needs, read at once: whether the visitor was
    erased, its latest conversation (None: not stored), that conversation's read marks
    (role, reader id, seq; by role then id) and its place in the queue (when queued)."""

    erased: bool
    conversation: Conversation | None
    read_marks: list[tuple[str, str, int]]
    queue_position: int | None


@dataclass(frozen=True)
class Transition:
    """The result of a conditional change: the conversation after it, and the messages added."""

    conversation: Conversation
    messages: list[Message]


@dataclass(frozen=True)
class Agent:
    """An agent as presence records it."""

    id: str
    name: str
    status: str
    last_seen_at: datetime


def new_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """`2026-11-26T08:00:00.123Z`: UTC, milliseconds, a Z."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    elif moment.utcoffset():
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="milliseconds")[:-6] + "Z"


@dataclass(frozen=True)
class BotDelivery:
    """A visitor message given to an external bot: `pending` until a worker claims it (with a
    lease), `claimed` by `worker`, `done` once answered (or handled by the fallback)."""

    id: str
    """The visitor message's id."""
    conversation_id: str
    seq: int
    bot: str
    state: str
    worker: str | None
    attempts: int
