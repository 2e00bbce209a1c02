"""Routing between the bot, the queue and human agents.

Every move is one conditional statement on the conversation row (`Store.transition`): it applies
only from the expected state (and, for an agent's action, only while the conversation is still
assigned to that agent), so two agents on two processes can never both win an `accept`.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from socketsvc.bots.base import CONVERSATION_RESOLVED
from socketsvc.domain import payloads
from socketsvc.domain.conversations import ConversationService
from socketsvc.domain.errors import Conflict, Forbidden, Invalid, NotFound
from socketsvc.domain.models import Conversation, Message, Role, State, Transition, utcnow
from socketsvc.domain.ports import Broadcaster, ConversationStore, PresenceRecords
from socketsvc.domain.tokens import AgentIdentity
from socketsvc.runtime import metrics

log = logging.getLogger(__name__)

HISTORY_LIMIT = 1000


def queued_text(position: int, agents_online: int) -> str:
    if agents_online == 0:
        return (
            "No agent is online right now. You're in the queue and an agent will reply here as "
            "soon as one is available; you can keep writing meanwhile."
        )
    ahead = position - 1
    if ahead <= 0:
        wait = "You're next in line."
    elif ahead == 1:
        wait = "There is 1 person ahead of you."
    else:
        wait = f"There are {ahead} people ahead of you."
    return f"A human agent will join this chat soon. {wait} You can keep writing here meanwhile."


def handoff_note(reason: str | None, summary: str) -> str:
    """The system note with a bot's handoff summary."""
    return f"Bot handoff ({reason}): {summary}" if reason else f"Bot handoff: {summary}"


@dataclass(frozen=True)
class Handled:
    """A conversation after an agent's change, and the Summary the agent was sent of it."""

    conversation: Conversation
    summary: dict[str, Any]


@dataclass(frozen=True)
class Accepted:
    conversation: Conversation
    summary: dict[str, Any]
    messages: list[Message]


class RoutingService:
    """Moves conversations between the bot, the queue and agents, and tells everyone involved."""

    def __init__(
        self,
        store: ConversationStore,
        presence: PresenceRecords,
        conversations: ConversationService,
        broadcaster: Broadcaster,
    ) -> None:
        self.store = store
        self.presence = presence
        self.conversations = conversations
        self.broadcaster = broadcaster

    # visitor side ---------------------------------------------------------------------------

    async def handoff(
        self,
        conversation_id: str,
        reason: str | None,
        by: str,
        *,
        summary: str | None = None,
        from_states: Collection[State] = (State.BOT, State.RESOLVED),
    ) -> Conversation:
        """Queue the conversation for a human (the bot falls silent); idempotent.

        `summary` (a bot's short account for the agent) is stored as a system note after the
        queue's, so it is the `last_message` of the Summary agents see in the queue.
        """
        waiting = await self.store.queue_length()
        online = await self.presence.online_count()
        changed = await self.store.queue(
            conversation_id,
            queued_text(waiting + 1, online),
            from_states=from_states,
            after=() if not summary else (handoff_note(reason, summary),),
        )
        if changed is None:
            current = await self.store.get_conversation(conversation_id)
            if current is None:
                raise NotFound("no such conversation")
            return current
        log.info(
            "conversation queued (%s)",
            by,
            extra={"conversation_id": conversation_id, "reason": reason},
        )
        metrics.HANDOFFS.labels(by=by).inc()
        await self._entered_queue(changed)
        return changed.conversation

    # agent side -----------------------------------------------------------------------------

    async def accept(self, agent: AgentIdentity, conversation_id: str) -> Accepted:
        """Claim a queued conversation: exactly one agent wins, the others get `conflict`."""
        before = await self.store.get_conversation(conversation_id)
        changed = await self.store.accept(
            conversation_id, agent.id, agent.name, f"{agent.name} joined the chat."
        )
        if changed is None:
            current = await self.store.get_conversation(conversation_id)
            if current is None:
                raise NotFound("no such conversation")
            if current.state == State.ASSIGNED and current.agent_id == agent.id:
                conversation = current  # a retried accept: same answer
            elif current.state == State.ASSIGNED:
                raise Conflict("another agent has already accepted this conversation")
            else:
                raise Conflict(f"conversation is not waiting in the queue ({current.state})")
        else:
            conversation = changed.conversation
            if before is not None and before.queued_at is not None:
                metrics.QUEUE_WAIT.observe((utcnow() - before.queued_at).total_seconds())
            log.info("accepted by %s", agent.id, extra={"conversation_id": conversation_id})
            await self._publish(changed)
            await self.conversations.publish_state(conversation)
            await self._left_queue(conversation)
        history = await self.store.messages_after(conversation_id, 0, HISTORY_LIMIT)
        return Accepted(conversation, await self.summary(conversation), history)

    async def transfer(self, agent: AgentIdentity, conversation_id: str, target_id: str) -> Handled:
        """Hand an assigned conversation to another (known) agent."""
        await self.conversation_for(agent, conversation_id)  # yours, before anything else
        if target_id == agent.id:
            raise Invalid("cannot transfer to yourself", {"agent_id": ["Is your own id."]})
        target = await self.presence.get(target_id)
        if target is None:
            raise NotFound("no such agent")
        changed = await self.store.transfer(
            conversation_id,
            agent.id,
            target.id,
            target.name,
            f"{agent.name} transferred the chat to {target.name}.",
        ) or await self._not_mine(agent, conversation_id)
        conversation = changed.conversation
        await self._publish(changed)
        await self.conversations.publish_state(conversation)
        summary = await self.summary(conversation)
        await self.broadcaster.to_agent(agent.id, "conversation", summary)
        await self.broadcaster.to_agent(target.id, "conversation", summary)
        return Handled(conversation, summary)

    async def release(self, agent: AgentIdentity, conversation_id: str, to: str) -> Handled:
        """Give an assigned conversation back to the queue or to the bot."""
        if to == "queue":
            waiting = await self.store.queue_length()
            note = f"{agent.name} returned this chat to the queue. " + queued_text(
                waiting + 1, await self.presence.online_count()
            )
            changed = await self.store.queue(
                conversation_id, note, from_states=[State.ASSIGNED], assigned_to=agent.id
            ) or await self._not_mine(agent, conversation_id)
            summary = await self.summary(changed.conversation)
            await self.broadcaster.to_agent(agent.id, "conversation", summary)
            await self._entered_queue(changed)
        else:
            changed = await self.store.to_bot(
                conversation_id,
                f"{agent.name} handed this chat back to the bot.",
                from_states=[State.ASSIGNED],
                assigned_to=agent.id,
            ) or await self._not_mine(agent, conversation_id)
            summary = await self._left_agent(agent, changed)
        return Handled(changed.conversation, summary)

    async def resolve(self, agent: AgentIdentity, conversation_id: str) -> Handled:
        """Close an assigned conversation; a later visitor message reopens it with the bot."""
        changed = await self.store.resolve(
            conversation_id,
            agent.id,
            f"{agent.name} marked this conversation as resolved. Write again any time.",
        ) or await self._not_mine(agent, conversation_id)
        self.conversations.notify(CONVERSATION_RESOLVED, changed.conversation)
        return Handled(changed.conversation, await self._left_agent(agent, changed))

    async def requeue_absent(self, grace: float) -> int:
        """Return the conversations of agents gone for longer than `grace` to the queue."""
        moved = 0
        for agent_id in await self.presence.absent_with_conversations(grace):
            for conversation in await self.store.assigned_to(agent_id):
                waiting = await self.store.queue_length()
                name = conversation.agent_name or "The agent"
                note = f"{name} was disconnected. " + queued_text(
                    waiting + 1, await self.presence.online_count()
                )
                changed = await self.store.queue(
                    conversation.id, note, from_states=[State.ASSIGNED], assigned_to=agent_id
                )
                if changed is None:
                    continue
                moved += 1
                log.info(
                    "requeued: agent %s gone", agent_id, extra={"conversation_id": conversation.id}
                )
                await self.broadcaster.to_agent(
                    agent_id, "conversation", await self.summary(changed.conversation)
                )
                await self._entered_queue(changed)
        return moved

    async def conversation_for(self, agent: AgentIdentity, conversation_id: str) -> Conversation:
        """The conversation, if it is assigned to this agent (`forbidden` otherwise)."""
        conversation = await self.store.get_conversation(conversation_id)
        if conversation is None:
            raise NotFound("no such conversation")
        require_assigned(agent, conversation)
        return conversation

    async def snapshot(self, agent_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Summaries of the queue and of the agent's assigned conversations."""
        queued = [
            await self.summary(c, position)
            for position, c in enumerate(await self.store.queued(), start=1)
        ]
        assigned = [await self.summary(c) for c in await self.store.assigned_to(agent_id)]
        return queued, assigned

    async def summary(
        self, conversation: Conversation, queue_position: int | None = None
    ) -> dict[str, Any]:
        """The agent-facing Summary of a conversation (three reads: the visitor's name and the
        last messages; a fourth while queued: the visitor's first message, for the queue card)."""
        queued = conversation.state == State.QUEUED
        return payloads.summary(
            conversation,
            await self.store.get_visitor(conversation.visitor_id),
            await self.store.last_message(conversation.id),
            await self.store.last_message(conversation.id, role=Role.VISITOR),
            queue_position,
            await self.store.first_message(conversation.id, role=Role.VISITOR) if queued else None,
        )

    # internals ------------------------------------------------------------------------------

    async def _not_mine(self, agent: AgentIdentity, conversation_id: str) -> Transition:
        """Raise why a change of a conversation that had to be the agent's did not apply."""
        await self.conversation_for(agent, conversation_id)  # raises the right error
        raise Conflict("conversation changed meanwhile")  # pragma: no cover - a race

    async def _left_agent(self, agent: AgentIdentity, changed: Transition) -> dict[str, Any]:
        """Tell the visitor (message, state) and the agent (summary) that the agent let go;
        returns that summary."""
        await self._publish(changed)
        await self.conversations.publish_state(changed.conversation)
        summary = await self.summary(changed.conversation)
        await self.broadcaster.to_agent(agent.id, "conversation", summary)
        return summary

    async def _publish(self, changed: Transition) -> None:
        for message in changed.messages:
            await self.conversations.publish(changed.conversation, message)

    async def _entered_queue(self, changed: Transition) -> None:
        await self._publish(changed)
        conversation = changed.conversation
        position = await self.store.queue_position(conversation)
        await self.conversations.publish_state(conversation, position)
        await self.broadcaster.to_agents("conversation", await self.summary(conversation, position))
        metrics.QUEUE_LENGTH.set(await self.store.queue_length())

    async def _left_queue(self, conversation: Conversation) -> None:
        """Tell every agent the conversation left the queue, and each waiting visitor its place.

        Agents order the queue by `waiting_since`, so the others' summaries are not resent.
        """
        await self.broadcaster.to_agents("conversation", await self.summary(conversation))
        queued = await self.store.queued()
        metrics.QUEUE_LENGTH.set(len(queued))
        for position, waiting in enumerate(queued, start=1):
            await self.conversations.publish_state(waiting, position)


def require_assigned(agent: AgentIdentity, conversation: Conversation) -> None:
    """Raise `forbidden` unless the conversation is assigned to the agent."""
    if conversation.state != State.ASSIGNED or conversation.agent_id != agent.id:
        raise Forbidden("this conversation is not assigned to you")
