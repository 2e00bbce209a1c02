"""`Store` on SQLite and PostgreSQL: gapless numbering under concurrency, idempotency."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from socketsvc.domain.models import SYSTEM, Role, Sender, State
from socketsvc.storage.store import Store

BOT = Sender(Role.BOT, "bot", "Bot")
VISITOR = Sender(Role.VISITOR, "v1", "Visitor v1")


async def new_conversation(store: Store, visitor_id: str = "v1") -> str:
    """A conversation of `visitor_id` holding the bot's greeting as seq 1."""
    await store.ensure_visitor(visitor_id, f"Visitor {visitor_id}")
    created = await store.create_conversation(visitor_id, (BOT, "Hello!"))
    assert created.conversation.last_seq == 1
    assert [m.seq for m in created.messages] == [1]
    return created.conversation.id


async def all_messages(store: Store, conversation_id: str) -> list[tuple[int, str]]:
    return [(m.seq, m.text) for m in await store.messages_after(conversation_id, 0, 10_000)]


async def queue(store: Store, conversation_id: str, at: datetime | None = None) -> None:
    changed = await store.transition(
        conversation_id,
        from_states=[State.BOT],
        values={"state": State.QUEUED.value, "queued_at": at or datetime.now(UTC)},
    )
    assert changed is not None and changed.conversation.state == State.QUEUED


async def test_fifty_concurrent_appends_are_numbered_2_to_51(store: Store) -> None:
    conversation_id = await new_conversation(store)
    results = await asyncio.gather(
        *(store.append_message(conversation_id, VISITOR, f"m{i}", f"c{i}") for i in range(50))
    )
    assert all(r is not None and r.created for r in results)
    seqs = sorted(r.message.seq for r in results if r is not None)
    assert seqs == list(range(2, 52))
    conversation = await store.get_conversation(conversation_id)
    assert conversation is not None and conversation.last_seq == 51
    stored = await store.messages_after(conversation_id, 0, 500)
    assert [m.seq for m in stored] == list(range(1, 52))
    # Each returned message is exactly what was stored under its seq.
    by_seq = {m.seq: m for m in stored}
    for result in results:
        assert result is not None
        assert by_seq[result.message.seq] == result.message


async def test_concurrent_appends_without_client_id_are_gapless(store: Store) -> None:
    conversation_id = await new_conversation(store)
    results = await asyncio.gather(
        *(store.append_message(conversation_id, BOT, f"b{i}", None) for i in range(20))
    )
    assert sorted(r.message.seq for r in results if r is not None) == list(range(2, 22))
    assert [s for s, _ in await all_messages(store, conversation_id)] == list(range(1, 22))


async def test_twenty_concurrent_retries_store_one_message(store: Store) -> None:
    conversation_id = await new_conversation(store)
    results = await asyncio.gather(
        *(store.append_message(conversation_id, VISITOR, "once", "same-id") for _ in range(20))
    )
    assert all(r is not None for r in results)
    assert [r.created for r in results if r is not None].count(True) == 1
    assert {r.message.id for r in results if r is not None} == {results[0].message.id}
    assert {r.message.seq for r in results if r is not None} == {2}
    assert await all_messages(store, conversation_id) == [(1, "Hello!"), (2, "once")]
    conversation = await store.get_conversation(conversation_id)
    assert conversation is not None and conversation.last_seq == 2  # no seq lost to a rollback
    # The next message follows without a gap.
    after = await store.append_message(conversation_id, VISITOR, "next", "other-id")
    assert after is not None and after.message.seq == 3


async def test_one_batch_over_many_conversations_numbers_each_in_arrival_order(
    store: Store,
) -> None:
    first, second = await new_conversation(store), await new_conversation(store)
    earlier = await store.append_message(first, VISITOR, "before", "old")
    assert earlier is not None and earlier.message.seq == 2
    # Submitted together (one batch): new messages to two conversations, a retry of a stored
    # message, a retry inside the batch, and a conversation that does not exist.
    calls = [
        (first, "a1", "f1"),
        (second, "b1", "s1"),
        (first, "again", "old"),
        (first, "a2", "f2"),
        ("missing", "lost", "m1"),
        (second, "b1 again", "s1"),
        (second, "b2", "s2"),
    ]
    results = await asyncio.gather(
        *(store.append_message(c, VISITOR, text, cid) for c, text, cid in calls)
    )
    summary = [
        None if r is None else (r.message.conversation_id, r.message.seq, r.created)
        for r in results
    ]
    assert summary == [
        (first, 3, True),
        (second, 2, True),
        (first, 2, False),
        (first, 4, True),
        None,
        (second, 2, False),
        (second, 3, True),
    ]
    assert results[2] is not None and results[2].message == earlier.message
    assert results[5] is not None and results[1] is not None
    assert results[5].message == results[1].message
    # Each new message carries its conversation as it was right after that message.
    assert [r.conversation.last_seq for r in results if r is not None and r.conversation] == [
        3,
        2,
        4,
        3,
    ]
    assert await all_messages(store, first) == [(1, "Hello!"), (2, "before"), (3, "a1"), (4, "a2")]
    assert await all_messages(store, second) == [(1, "Hello!"), (2, "b1"), (3, "b2")]


async def test_retry_returns_the_stored_message_unchanged(store: Store) -> None:
    conversation_id = await new_conversation(store)
    first = await store.append_message(conversation_id, VISITOR, "hi", "c-1")
    again = await store.append_message(conversation_id, VISITOR, "different text", "c-1")
    assert first is not None and again is not None
    assert first.created is True and again.created is False
    assert again.message == first.message
    assert again.conversation is None
    assert await all_messages(store, conversation_id) == [(1, "Hello!"), (2, "hi")]
    # The same client_id from another role is another sender's key: a new message.
    agent = await store.append_message(
        conversation_id, Sender(Role.AGENT, "a1", "Alice"), "a", "c-1"
    )
    assert agent is not None and agent.created is True and agent.message.seq == 3


async def test_conditional_append_stores_nothing_once_queued(store: Store) -> None:
    conversation_id = await new_conversation(store)
    allowed = await store.append_message(
        conversation_id, BOT, "while with the bot", None, only_in_states=[State.BOT]
    )
    assert allowed is not None and allowed.message.seq == 2
    await queue(store, conversation_id)
    refused = await store.append_message(
        conversation_id,
        BOT,
        "too late",
        None,
        only_in_states=[State.BOT],
        values={"bot_fallbacks": 9},
    )
    assert refused is None
    conversation = await store.get_conversation(conversation_id)
    assert conversation is not None
    assert conversation.state == State.QUEUED
    assert conversation.last_seq == 2
    assert conversation.bot_fallbacks == 0  # the refused write's values were not applied
    assert await all_messages(store, conversation_id) == [(1, "Hello!"), (2, "while with the bot")]


async def test_transition_with_wrong_from_states_changes_nothing(store: Store) -> None:
    conversation_id = await new_conversation(store)
    before = await store.get_conversation(conversation_id)
    result = await store.transition(
        conversation_id,
        from_states=[State.QUEUED, State.ASSIGNED],
        values={"state": State.RESOLVED.value, "agent_id": "a1"},
        add=[(SYSTEM, "resolved")],
    )
    assert result is None
    after = await store.get_conversation(conversation_id)
    assert after == before
    assert await all_messages(store, conversation_id) == [(1, "Hello!")]


async def test_transition_changes_state_and_numbers_added_messages(store: Store) -> None:
    conversation_id = await new_conversation(store)
    result = await store.transition(
        conversation_id,
        from_states=[State.BOT],
        values={"state": State.ASSIGNED.value, "agent_id": "a1", "agent_name": "Alice"},
        add=[(SYSTEM, "one"), (SYSTEM, "two")],
    )
    assert result is not None
    assert result.conversation.state == State.ASSIGNED
    assert result.conversation.agent_id == "a1" and result.conversation.agent_name == "Alice"
    assert result.conversation.last_seq == 3
    assert [(m.seq, m.text, m.sender) for m in result.messages] == [
        (2, "one", SYSTEM),
        (3, "two", SYSTEM),
    ]
    assert await all_messages(store, conversation_id) == [(1, "Hello!"), (2, "one"), (3, "two")]


async def test_messages_after_pages(store: Store) -> None:
    conversation_id = await new_conversation(store)
    for i in range(2, 11):
        await store.append_message(conversation_id, VISITOR, f"m{i}", None)
    pages: list[list[int]] = []
    after = 0
    while True:
        page = await store.messages_after(conversation_id, after, 3)
        if not page:
            break
        pages.append([m.seq for m in page])
        after = page[-1].seq
    assert pages == [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10]]
    assert [m.seq for m in await store.messages_after(conversation_id, 8, 100)] == [9, 10]
    assert await store.messages_after(conversation_id, 10, 100) == []
    assert [m.text for m in await store.messages_after(conversation_id, 4, 2)] == ["m5", "m6"]
    # Only this conversation's messages.
    other = await new_conversation(store, "v2")
    assert [m.text for m in await store.messages_after(other, 0, 10)] == ["Hello!"]
    assert {m.conversation_id for m in await store.messages_after(conversation_id, 0, 100)} == {
        conversation_id
    }


async def test_first_and_last_message_of_a_role(store: Store) -> None:
    conversation_id = await new_conversation(store)
    for text in ("first question", "second", "third"):
        await store.append_message(conversation_id, VISITOR, text, None)
    await store.append_message(conversation_id, BOT, "an answer", None)
    first, last = (
        await store.first_message(conversation_id, role=Role.VISITOR),
        await store.last_message(conversation_id, role=Role.VISITOR),
    )
    assert first is not None and (first.seq, first.text) == (2, "first question")
    assert last is not None and (last.seq, last.text) == (4, "third")
    anyone = await store.first_message(conversation_id)
    assert anyone is not None and (anyone.seq, anyone.text) == (1, "Hello!")
    assert await store.first_message(await new_conversation(store, "v2"), role=Role.VISITOR) is None


async def test_mark_read_never_lowers_the_mark(store: Store) -> None:
    conversation_id = await new_conversation(store)
    for i in range(7):
        await store.append_message(conversation_id, VISITOR, f"m{i}", None)
    reader = Sender(Role.AGENT, "a1", "Alice")
    assert await store.read_mark(conversation_id, Role.AGENT, "a1") == 0
    assert await store.mark_read(conversation_id, reader, 5) == 5
    assert await store.mark_read(conversation_id, reader, 3) == 5
    assert await store.read_mark(conversation_id, Role.AGENT, "a1") == 5
    assert await store.mark_read(conversation_id, reader, 5) == 5
    assert await store.mark_read(conversation_id, reader, 7) == 7
    assert await store.read_mark(conversation_id, Role.AGENT, "a1") == 7
    # Marks are per reader.
    assert await store.read_mark(conversation_id, Role.VISITOR, "v1") == 0
    assert await store.mark_read(conversation_id, VISITOR, 2) == 2
    assert await store.read_mark(conversation_id, Role.AGENT, "a1") == 7


async def test_concurrent_first_read_marks_keep_the_highest(store: Store) -> None:
    conversation_id = await new_conversation(store)
    for i in range(9):
        await store.append_message(conversation_id, VISITOR, f"m{i}", None)
    await asyncio.gather(*(store.mark_read(conversation_id, VISITOR, s) for s in range(1, 11)))
    assert await store.read_mark(conversation_id, Role.VISITOR, "v1") == 10


async def test_queue_position_orders_by_waiting_time(store: Store) -> None:
    t0 = datetime(2026, 1, 5, 9, 0, 0, tzinfo=UTC)
    a = await new_conversation(store, "va")
    b = await new_conversation(store, "vb")
    c = await new_conversation(store, "vc")
    idle = await new_conversation(store, "vd")
    # Queued in an order different from their creation and waiting times.
    await queue(store, b, t0)
    await queue(store, a, t0 + timedelta(seconds=2))
    await queue(store, c, t0 + timedelta(milliseconds=1))
    positions = {}
    for name, conversation_id in (("a", a), ("b", b), ("c", c), ("idle", idle)):
        conversation = await store.get_conversation(conversation_id)
        assert conversation is not None
        positions[name] = await store.queue_position(conversation)
    assert positions == {"b": 1, "c": 2, "a": 3, "idle": None}
    assert [q.id for q in await store.queued()] == [b, c, a]

    # The first one leaves the queue: everyone moves up.
    assert await store.transition(
        b, from_states=[State.QUEUED], values={"state": State.ASSIGNED.value, "agent_id": "x"}
    )
    conversation_a = await store.get_conversation(a)
    conversation_c = await store.get_conversation(c)
    assert conversation_a is not None and conversation_c is not None
    assert await store.queue_position(conversation_c) == 1
    assert await store.queue_position(conversation_a) == 2
    assert [q.id for q in await store.queued()] == [c, a]


async def test_ensure_visitor_is_idempotent(store: Store) -> None:
    first = await store.ensure_visitor("v-9", "First name")
    second = await store.ensure_visitor("v-9", "Second name")
    assert second == first
    assert second.name == "First name"
    stored = await store.get_visitor("v-9")
    assert stored is not None
    assert (stored.id, stored.name) == ("v-9", "First name")
    assert stored.created_at == first.created_at
    # Concurrent first calls for a new id: one row, every caller gets it.
    racing = await asyncio.gather(*(store.ensure_visitor("v-x", f"n{i}") for i in range(10)))
    assert len({(v.id, v.name) for v in racing}) == 1
    created = await store.get_visitor("v-x")
    assert created is not None and created.name == racing[0].name


async def test_unknown_ids(store: Store) -> None:
    assert await store.get_visitor("missing") is None
    assert await store.get_conversation("missing") is None
    assert await store.messages_after("missing", 0, 10) == []
    assert await store.last_message("missing") is None
    assert await store.first_message("missing") is None
    assert await store.append_message("missing", VISITOR, "x", None) is None
    assert await store.transition("missing", values={"state": State.QUEUED.value}) is None
