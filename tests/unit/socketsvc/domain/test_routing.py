"""`RoutingService` over a real SQLite store: handoff, the queue, accept races, transfer, release,
resolve, and what each move publishes to whom (the visitor's conversation room, one agent, every
agent)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from socketsvc.domain.errors import Conflict, Forbidden, Invalid, NotFound
from socketsvc.domain.models import Role, State
from socketsvc.domain.routing import Accepted
from tests.support.domain import Domain


def room(conversation_id: str) -> str:
    return f"conversation:{conversation_id}"


def texts(messages: list[dict[str, Any]]) -> list[str]:
    return [m["text"] for m in messages]


async def stored(domain: Domain, conversation_id: str) -> list[tuple[int, Role, str]]:
    synced = await domain.conversations.sync(conversation_id, 0, 1000)
    return [(m.seq, m.sender.role, m.text) for m in synced.messages]


# handoff ------------------------------------------------------------------------------------


async def test_handoff_queues_once_and_a_repeat_changes_and_publishes_nothing(domain: Domain):
    session = await domain.visitor()
    cid = session.conversation.id
    domain.broadcast.clear()

    queued = await domain.routing.handoff(cid, reason="help", by="visitor")
    assert queued.state == State.QUEUED and queued.last_seq == 2
    assert queued.agent_id is None and queued.queued_at is not None
    [system] = domain.broadcast.to(room(cid), "message")
    assert system["seq"] == 2 and system["sender"]["role"] == "system"
    assert "No agent is online" in system["text"]
    assert domain.broadcast.to(room(cid), "state") == [
        {"conversation_id": cid, "state": "queued", "queue_position": 1}
    ]
    [summary] = domain.broadcast.to("agents", "conversation")
    assert summary["conversation_id"] == cid and summary["state"] == "queued"
    assert summary["queue_position"] == 1 and summary["waiting_since"].endswith("Z")
    assert summary["visitor"] == {"id": session.visitor.id, "name": session.visitor.name}
    assert summary["last_message"]["seq"] == 2

    domain.broadcast.clear()
    again = await domain.routing.handoff(cid, reason="help", by="visitor")
    assert again.state == State.QUEUED and again.last_seq == 2
    assert domain.broadcast.published == []
    assert await stored(domain, cid) == [
        (1, Role.BOT, "Echo bot here: I repeat what you say."),
        (2, Role.SYSTEM, system["text"]),
    ]


async def test_handoff_of_an_unknown_conversation_is_not_found(domain: Domain):
    with pytest.raises(NotFound):
        await domain.routing.handoff("no-such-conversation", reason=None, by="visitor")


async def test_handoff_while_assigned_keeps_the_agent(domain: Domain):
    alice = await domain.agent("alice", "Alice")
    session = await domain.queued()
    cid = session.conversation.id
    await domain.routing.accept(alice, cid)
    kept = await domain.routing.handoff(cid, reason=None, by="visitor")
    assert kept.state == State.ASSIGNED and kept.agent_id == "alice"


async def test_queue_positions_are_told_to_each_visitor_and_move_up_after_an_accept(
    domain: Domain,
):
    alice = await domain.agent("alice", "Alice")
    sessions = [await domain.queued() for _ in range(3)]
    cids = [s.conversation.id for s in sessions]
    for position, cid in enumerate(cids, start=1):
        assert domain.broadcast.to(room(cid), "state")[-1]["queue_position"] == position
    # With an agent online, the system message tells how many are ahead.
    told = [texts(domain.broadcast.to(room(cid), "message"))[-1] for cid in cids]
    assert told[0].endswith("You're next in line. You can keep writing here meanwhile.")
    assert "There is 1 person ahead of you." in told[1]
    assert "There are 2 people ahead of you." in told[2]
    queue, assigned = await domain.routing.snapshot("alice")
    assert [(s["conversation_id"], s["queue_position"]) for s in queue] == [
        (cids[0], 1),
        (cids[1], 2),
        (cids[2], 3),
    ]
    assert assigned == []

    domain.broadcast.clear()
    await domain.routing.accept(alice, cids[0])
    assert domain.broadcast.to(room(cids[1]), "state") == [
        {"conversation_id": cids[1], "state": "queued", "queue_position": 1}
    ]
    assert domain.broadcast.to(room(cids[2]), "state") == [
        {"conversation_id": cids[2], "state": "queued", "queue_position": 2}
    ]
    queue, assigned = await domain.routing.snapshot("alice")
    assert [s["conversation_id"] for s in queue] == cids[1:]
    assert [s["conversation_id"] for s in assigned] == [cids[0]]
    assert assigned[0]["agent"] == {"id": "alice", "name": "Alice"}
    assert "queue_position" not in assigned[0]


# accept -------------------------------------------------------------------------------------


async def test_accept_assigns_publishes_to_the_visitor_and_every_agent_and_returns_history(
    domain: Domain,
):
    alice = await domain.agent("alice", "Alice")
    session = await domain.queued()
    cid = session.conversation.id
    domain.broadcast.clear()

    accepted = await domain.routing.accept(alice, cid)
    assert isinstance(accepted, Accepted)
    assert accepted.conversation.state == State.ASSIGNED
    assert accepted.conversation.agent_id == "alice" and accepted.conversation.queued_at is None
    assert [m.seq for m in accepted.messages] == [1, 2, 3]
    assert accepted.messages[-1].text == "Alice joined the chat."
    assert accepted.summary["state"] == "assigned"
    assert accepted.summary["agent"] == {"id": "alice", "name": "Alice"}

    joined = [p for p in domain.broadcast.published if p.event == "message"]
    assert [(p.target, p.agent_id, p.data["text"]) for p in joined] == [
        (room(cid), "alice", "Alice joined the chat.")
    ]
    assert domain.broadcast.to(room(cid), "state") == [
        {"conversation_id": cid, "state": "assigned", "agent": {"id": "alice", "name": "Alice"}}
    ]
    [summary] = domain.broadcast.to("agents", "conversation")
    assert summary["state"] == "assigned" and summary["agent"]["id"] == "alice"
    assert await domain.state_of(cid) == State.ASSIGNED


async def test_concurrent_accepts_exactly_one_wins_the_others_get_conflict(domain: Domain):
    agents = [await domain.agent(f"agent-{i}", f"Agent {i}") for i in range(5)]
    for _ in range(10):
        cid = (await domain.queued()).conversation.id
        domain.broadcast.clear()
        results = await asyncio.gather(
            *(domain.routing.accept(agent, cid) for agent in agents), return_exceptions=True
        )
        winners = [r for r in results if isinstance(r, Accepted)]
        losers = [r for r in results if not isinstance(r, Accepted)]
        assert len(winners) == 1, results
        assert len(losers) == 4 and all(isinstance(r, Conflict) for r in losers), results
        winner = winners[0].conversation.agent_id
        # One "joined" message, one assigned state, all naming the winner.
        joined = domain.broadcast.to(room(cid), "message")
        assert len(joined) == 1 and joined[0]["text"].endswith("joined the chat.")
        assert [s["agent"]["id"] for s in domain.broadcast.to(room(cid), "state")] == [winner]
        assert [m[1] for m in await stored(domain, cid)] == [Role.BOT, Role.SYSTEM, Role.SYSTEM]


async def test_a_retried_accept_by_the_winner_returns_the_same_and_publishes_nothing(
    domain: Domain,
):
    alice = await domain.agent("alice", "Alice")
    bob = await domain.agent("bob", "Bob")
    cid = (await domain.queued()).conversation.id
    first = await domain.routing.accept(alice, cid)
    domain.broadcast.clear()
    again = await domain.routing.accept(alice, cid)
    assert again.conversation == first.conversation
    assert [m.seq for m in again.messages] == [m.seq for m in first.messages]
    assert domain.broadcast.published == []
    with pytest.raises(Conflict, match="another agent"):
        await domain.routing.accept(bob, cid)


async def test_accept_of_a_conversation_not_in_the_queue(domain: Domain):
    alice = await domain.agent("alice", "Alice")
    with_bot = (await domain.visitor()).conversation.id
    with pytest.raises(Conflict, match="not waiting in the queue"):
        await domain.routing.accept(alice, with_bot)
    with pytest.raises(NotFound):
        await domain.routing.accept(alice, "no-such-conversation")
    assert await domain.state_of(with_bot) == State.BOT


# transfer -----------------------------------------------------------------------------------


async def test_transfer_to_a_known_agent_moves_the_conversation_and_tells_both(domain: Domain):
    alice = await domain.agent("alice", "Alice")
    bob = await domain.agent("bob", "Bob")
    cid = (await domain.queued()).conversation.id
    await domain.routing.accept(alice, cid)
    domain.broadcast.clear()

    moved = (await domain.routing.transfer(alice, cid, "bob")).conversation
    assert moved.state == State.ASSIGNED and moved.agent_id == "bob" and moved.agent_name == "Bob"
    [note] = [p for p in domain.broadcast.published if p.event == "message"]
    assert note.target == room(cid) and note.agent_id == "bob"
    assert note.data["text"] == "Alice transferred the chat to Bob."
    assert domain.broadcast.to(room(cid), "state") == [
        {"conversation_id": cid, "state": "assigned", "agent": {"id": "bob", "name": "Bob"}}
    ]
    for who in ("alice", "bob"):
        [summary] = domain.broadcast.to(f"agent:{who}", "conversation")
        assert summary["agent"] == {"id": "bob", "name": "Bob"}
    assert domain.broadcast.to("agents") == []

    # Now Bob's: Alice may no longer act on it, Bob may.
    with pytest.raises(Forbidden):
        await domain.routing.transfer(alice, cid, "bob")
    with pytest.raises(Forbidden):
        await domain.routing.resolve(alice, cid)
    assert [s["conversation_id"] for s in (await domain.routing.snapshot("bob"))[1]] == [cid]
    assert (await domain.routing.snapshot("alice"))[1] == []
    await domain.routing.resolve(bob, cid)


async def test_transfer_to_an_unknown_agent_or_to_yourself_is_refused_and_changes_nothing(
    domain: Domain,
):
    alice = await domain.agent("alice", "Alice")
    bob = await domain.agent("bob", "Bob")
    cid = (await domain.queued()).conversation.id
    await domain.routing.accept(alice, cid)
    before = await stored(domain, cid)
    domain.broadcast.clear()

    with pytest.raises(NotFound, match="no such agent"):
        await domain.routing.transfer(alice, cid, "nobody")
    with pytest.raises(Invalid):
        await domain.routing.transfer(alice, cid, "alice")
    with pytest.raises(Forbidden):  # not Bob's to transfer
        await domain.routing.transfer(bob, cid, "alice")
    with pytest.raises(NotFound):
        await domain.routing.transfer(alice, "no-such-conversation", "bob")

    assert domain.broadcast.published == []
    assert await stored(domain, cid) == before
    conversation = (await domain.routing.snapshot("alice"))[1]
    assert [c["conversation_id"] for c in conversation] == [cid]


# release and resolve ------------------------------------------------------------------------


async def test_release_to_the_queue_puts_it_back_for_every_agent(domain: Domain):
    alice = await domain.agent("alice", "Alice")
    cid = (await domain.queued()).conversation.id
    await domain.routing.accept(alice, cid)
    domain.broadcast.clear()

    released = (await domain.routing.release(alice, cid, to="queue")).conversation
    assert released.state == State.QUEUED and released.agent_id is None
    [note] = domain.broadcast.to(room(cid), "message")
    assert note["text"].startswith("Alice returned this chat to the queue. ")
    assert domain.broadcast.to(room(cid), "state") == [
        {"conversation_id": cid, "state": "queued", "queue_position": 1}
    ]
    [to_alice] = domain.broadcast.to("agent:alice", "conversation")
    assert to_alice["state"] == "queued" and "agent" not in to_alice
    [to_all] = domain.broadcast.to("agents", "conversation")
    assert to_all["state"] == "queued" and to_all["queue_position"] == 1
    queue, assigned = await domain.routing.snapshot("alice")
    assert [c["conversation_id"] for c in queue] == [cid] and assigned == []
    # Back in the queue: anyone may accept it again.
    bob = await domain.agent("bob", "Bob")
    assert (await domain.routing.accept(bob, cid)).conversation.agent_id == "bob"


async def test_release_to_the_bot_lets_the_bot_answer_again(domain: Domain):
    alice = await domain.agent("alice", "Alice")
    session = await domain.queued()
    cid = session.conversation.id
    await domain.routing.accept(alice, cid)
    domain.broadcast.clear()

    released = (await domain.routing.release(alice, cid, to="bot")).conversation
    assert released.state == State.BOT and released.agent_id is None
    assert texts(domain.broadcast.to(room(cid), "message")) == [
        "Alice handed this chat back to the bot."
    ]
    assert domain.broadcast.to(room(cid), "state") == [{"conversation_id": cid, "state": "bot"}]
    [summary] = domain.broadcast.to("agent:alice", "conversation")
    assert summary["state"] == "bot"
    assert domain.broadcast.to("agents") == []

    sent = await domain.conversations.post_visitor_message(session.visitor, cid, "c-1", "hello")
    await domain.settle()
    assert (await stored(domain, cid))[-1] == (sent.seq + 1, Role.BOT, "You said: hello")


async def test_resolve_closes_for_the_agent_and_a_new_visitor_message_reopens_with_the_bot(
    domain: Domain,
):
    alice = await domain.agent("alice", "Alice")
    session = await domain.queued()
    cid = session.conversation.id
    await domain.routing.accept(alice, cid)
    domain.broadcast.clear()

    resolved = (await domain.routing.resolve(alice, cid)).conversation
    assert resolved.state == State.RESOLVED and resolved.agent_id is None
    assert texts(domain.broadcast.to(room(cid), "message")) == [
        "Alice marked this conversation as resolved. Write again any time."
    ]
    assert domain.broadcast.to(room(cid), "state") == [
        {"conversation_id": cid, "state": "resolved"}
    ]
    assert domain.broadcast.to("agent:alice", "conversation")[0]["state"] == "resolved"
    for action in (
        domain.routing.resolve(alice, cid),
        domain.routing.release(alice, cid, to="queue"),
        domain.routing.conversation_for(alice, cid),
    ):
        with pytest.raises(Forbidden):
            await action

    domain.broadcast.clear()
    await domain.conversations.post_visitor_message(session.visitor, cid, "c-1", "one more")
    await domain.settle()
    assert domain.broadcast.to(room(cid), "state") == [{"conversation_id": cid, "state": "bot"}]
    assert domain.broadcast.bot_messages()[-1]["text"] == "You said: one more"
    assert await domain.state_of(cid) == State.BOT


async def test_a_resolved_conversation_can_be_handed_off_again(domain: Domain):
    alice = await domain.agent("alice", "Alice")
    cid = (await domain.queued()).conversation.id
    await domain.routing.accept(alice, cid)
    await domain.routing.resolve(alice, cid)
    again = await domain.routing.handoff(cid, reason=None, by="visitor")
    assert again.state == State.QUEUED


async def test_requeue_absent_moves_only_the_conversations_of_agents_gone_past_the_grace(
    domain: Domain,
):
    alice = await domain.agent("alice", "Alice", connection="sid-alice")
    await domain.agent("bob", "Bob", connection="sid-bob")  # Bob stays connected
    mine = (await domain.queued()).conversation.id
    await domain.routing.accept(alice, mine)
    await domain.presence.disconnected("sid-alice")

    # Within the grace period: nothing moves.
    assert await domain.routing.requeue_absent(grace=3600) == 0
    assert await domain.state_of(mine) == State.ASSIGNED
    domain.broadcast.clear()
    # Past it (grace 0: gone at all): back to the queue, with a notice to the visitor.
    assert await domain.routing.requeue_absent(grace=0) == 1
    assert await domain.state_of(mine) == State.QUEUED
    [notice] = domain.broadcast.to(room(mine), "message")
    assert notice["text"].startswith("Alice was disconnected. ")
    assert domain.broadcast.to("agent:alice", "conversation")[0]["state"] == "queued"
    assert domain.broadcast.to("agents", "conversation")[0]["state"] == "queued"
    assert await domain.routing.requeue_absent(grace=0) == 0
