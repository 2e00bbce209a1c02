"""The wire payloads the domain publishes (docs/protocol.md), each built in one place.

Plain dicts of JSON types; models serialise themselves with `to_dict()` (a message, a sender).
"""

from __future__ import annotations

from typing import Any

from socketsvc.domain.models import Conversation, Message, State, Visitor, iso


def agent_ref(conversation: Conversation) -> dict[str, Any] | None:
    """`{"id", "name"}` of the conversation's agent, None without one."""
    if not conversation.agent_id:
        return None
    return {"id": conversation.agent_id, "name": conversation.agent_name}


def state(conversation: Conversation, queue_position: int | None = None) -> dict[str, Any]:
    """The `state` event: state, the agent when assigned, the queue position when queued."""
    payload: dict[str, Any] = {
        "conversation_id": conversation.id,
        "state": conversation.state.value,
    }
    agent = agent_ref(conversation) if conversation.state == State.ASSIGNED else None
    if agent is not None:
        payload["agent"] = agent
    if conversation.state == State.QUEUED and queue_position is not None:
        payload["queue_position"] = queue_position
    return payload


def conversation_ref(conversation: Conversation) -> dict[str, Any]:
    """A conversation as a bot is told of it (the webhook bot's `conversation` field)."""
    return {
        "id": conversation.id,
        "status": conversation.state.value,
        "last_seq": conversation.last_seq,
        "bot_fallbacks": conversation.bot_fallbacks,
        "human_offered": conversation.human_offered,
        "created_at": iso(conversation.created_at),
    }


FIRST_TEXT_CHARS = 200
"""A queued Summary's `first_text` is at most this long (then `…`)."""


def first_text(message: Message) -> str:
    """The start of a message's text for a queue card: its first FIRST_TEXT_CHARS characters,
    then `…` when it was longer."""
    text = message.text
    return text if len(text) <= FIRST_TEXT_CHARS else text[:FIRST_TEXT_CHARS] + "…"


def summary(
    conversation: Conversation,
    visitor: Visitor | None,
    last: Message | None,
    last_visitor: Message | None,
    queue_position: int | None = None,
    first_visitor: Message | None = None,
) -> dict[str, Any]:
    """The agent-facing Summary of a conversation (`first_visitor`: the visitor's first message,
    shown on queue cards as `first_text` while queued)."""
    data: dict[str, Any] = {
        "conversation_id": conversation.id,
        "state": conversation.state.value,
        "visitor": {
            "id": conversation.visitor_id,
            "name": visitor.name if visitor else "Visitor",
        },
    }
    agent = agent_ref(conversation)
    if agent is not None:
        data["agent"] = agent
    if conversation.state == State.QUEUED and conversation.queued_at is not None:
        data["waiting_since"] = iso(conversation.queued_at)
        if queue_position is not None:
            data["queue_position"] = queue_position
        if first_visitor is not None:
            data["first_text"] = first_text(first_visitor)
    if last is not None:
        data["last_message"] = last.to_dict()
    if last_visitor is not None:
        data["last_visitor_message"] = last_visitor.to_dict()
    return data


def read_mark(reader_role: str, reader_id: str, seq: int) -> dict[str, Any]:
    """An entry of a session's or a sync's `read` list."""
    return {"reader": {"role": reader_role, "id": reader_id}, "seq": seq}


def read_event(conversation_id: str, reader_role: str, reader_id: str, seq: int) -> dict[str, Any]:
    """The `read` event: a participant's read mark rose to `seq`."""
    return {"conversation_id": conversation_id, **read_mark(reader_role, reader_id, seq)}
