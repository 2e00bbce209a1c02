"""`ConversationService` over a real SQLite store: sessions, idempotent messages, seq order,
sync, read marks and the bot's turn, with what each publishes."""

from __future__ import annotations

import asyncio

import pytest

from socketsvc.bots.base import BotContext, BotReply
from socketsvc.domain.conversations import promised_conversation_id
from socketsvc.domain.errors import Forbidden, Invalid, NotFound, Unauthorized
from socketsvc.domain.models import Role, Sender, State
from tests.support.domain import Domain, open_domain
from tests.support.tokens import TOKENS, visitor_token


def room(conversation_id: str) -> str:
    return f"conversation:{conversation_id}"


# sessions -----------------------------------------------------------------------------------


async def test_a_new_session_greets_and_stores_nothing(domain: Domain, store: object):
    session = await domain.conversations.open_session(None)
    assert session.resumed is False and session.conversation is None
    assert session.conversation_id == promised_conversation_id(session.visitor.id)
    assert session.greeting is not None and session.greeting.seq == 1
    assert session.greeting.conversation_id == session.conversation_id
    assert session.greeting.sender.role == Role.BOT
    assert session.greeting.text == "Echo bot here: I repeat what you say."
    assert TOKENS.verify_visitor(session.token) == session.visitor.id
    assert session.to_dict() == {
        "visitor_token": session.token,
        "visitor_id": session.visitor.id,
        "conversation_id": session.conversation_id,
        "state": "bot",
        "last_seq": 0,
        "started": False,
        "read": [],
    }
    assert await domain.services.store.get_conversation(session.conversation_id) is None
    assert await domain.services.store.get_visitor(session.visitor.id) is None
    # Its own sync is empty (not `not_found`); anyone else's is `not_found`.
    synced = await domain.conversations.sync(
        session.conversation_id, 0, 10, promised_to=session.visitor.id
    )
    assert synced.to_dict() == {
        "messages": [],
        "state": "bot",
        "last_seq": 0,
        "started": False,
        "read": [],
    }
    with pytest.raises(NotFound):
        await domain.conversations.sync(session.conversation_id, 0, 10, promised_to="someone")
    # The greeting is not published: the namespace sends it to the new connection only.
    assert domain.broadcast.published == []


async def test_the_first_message_stores_the_greeting_then_the_message(domain: Domain):
    session = await domain.page_view()
    cid = session.conversation_id
    assert session.greeting is not None
    message = await domain.conversations.post_visitor_message(
        session.visitor, cid, "k-1", "hello", started=False
    )
    await domain.settle()
    assert message.seq == 2 and message.conversation_id == cid
    synced = await domain.conversations.sync(cid, 0, 10)
    assert synced.started is True
    assert [(m.seq, m.id, m.sender.role, m.text) for m in synced.messages] == [
        (1, session.greeting.id, Role.BOT, session.greeting.text),
        (2, message.id, Role.VISITOR, "hello"),
        (3, synced.messages[2].id, Role.BOT, "You said: hello"),  # the echo bot
    ]
    visitor = await domain.services.store.get_visitor(session.visitor.id)
    assert visitor is not None and visitor.name == session.visitor.name
    # The greeting was not published (the visitor was shown it); the message and reply were.
    assert [m["seq"] for m in domain.broadcast.to(room(cid), "message")] == [2, 3]
    # A retry of the first message (its connection still thinks nothing is stored) returns it.
    retry = await domain.conversations.post_visitor_message(
        session.visitor, cid, "k-1", "hello", started=False
    )
    assert retry == message


async def test_first_messages_from_two_tabs_at_once_start_one_conversation(domain: Domain):
    session = await domain.page_view()
    domain.services.conversations.on_visitor_message = None
    posted = await asyncio.gather(
        *(
            domain.conversations.post_visitor_message(
                session.visitor, session.conversation_id, f"c-{i}", f"m{i}", started=False
            )
            for i in range(5)
        )
    )
    assert sorted(m.seq for m in posted) == [2, 3, 4, 5, 6]
    synced = await domain.conversations.sync(session.conversation_id, 0, 100)
    assert [m.seq for m in synced.messages] == [1, 2, 3, 4, 5, 6]
    assert synced.messages[0].sender.role == Role.BOT


async def test_a_token_resumes_the_same_visitor_and_conversation_without_a_second_greeting(
    domain: Domain,
):
    first = await domain.page_view()
    await domain.conversations.post_visitor_message(
        first.visitor, first.conversation_id, "c", "hi", started=False
    )
    await domain.settle()
    again = await domain.conversations.open_session(first.token)
    assert again.resumed is True and again.greeting is None
    assert again.visitor.id == first.visitor.id
    assert again.conversation is not None and again.conversation.id == first.conversation_id
    assert again.conversation.last_seq == 3  # greeting, "hi", the bot's echo
    assert again.to_dict()["started"] is True
    assert TOKENS.verify_visitor(again.token) == first.visitor.id


async def test_a_visitor_who_never_wrote_resumes_greeted_again_with_the_same_ids(domain: Domain):
    first = await domain.page_view()
    again = await domain.conversations.open_session(first.token)
    assert again.resumed is True and again.conversation is None
    assert again.conversation_id == first.conversation_id
    assert again.greeting is not None and first.greeting is not None
    assert again.greeting.id == first.greeting.id and again.greeting.seq == 1
    assert await domain.services.store.get_visitor(first.visitor.id) is None


async def test_a_visitor_with_a_conversation_of_an_older_release_resumes_it(domain: Domain):
    """Releases before this one stored a conversation (with a random id) at connect."""
    store = domain.services.store
    await store.ensure_visitor("v-old", "Visitor v-ol")
    made = await store.create_conversation("v-old", None, "0123456789abcdef0123456789abcdef")
    session = await domain.conversations.open_session(visitor_token("v-old"))
    assert session.conversation is not None
    assert session.conversation_id == made.conversation.id and session.greeting is None


async def test_typing_and_reading_the_greeting_before_the_first_message_store_nothing(
    domain: Domain,
):
    session = await domain.page_view()
    conversation = await domain.conversations.conversation_of(
        session.visitor.id, session.conversation_id
    )
    assert conversation is None
    sender = Sender(Role.VISITOR, session.visitor.id, session.visitor.name)
    await domain.conversations.typing(conversation, sender, True)
    assert await domain.conversations.mark_read(conversation, sender, 1) == 1
    with pytest.raises(Invalid):
        await domain.conversations.mark_read(conversation, sender, 2)
    assert domain.broadcast.published == []
    assert await domain.services.store.get_conversation(session.conversation_id) is None
    # Someone else's promised conversation is not found.
    with pytest.raises(NotFound):
        await domain.conversations.conversation_of("another", session.conversation_id)


@pytest.mark.parametrize(
    "token",
    [
        "not-a-token",
        42,
        visitor_token("v-1", now=0),  # expired long ago
        TOKENS.mint_agent("a-1", "Alice"),  # an agent token is not a visitor token
    ],
    ids=["garbage", "not-a-string", "expired", "agent-token"],
)
async def test_a_bad_token_is_unauthorized_and_creates_nothing(domain: Domain, token: object):
    with pytest.raises(Unauthorized):
        await domain.conversations.open_session(token)
    assert domain.broadcast.published == []


# messages -----------------------------------------------------------------------------------


async def test_a_message_is_stored_published_once_and_a_retry_by_client_id_returns_it(
    domain: Domain,
):
    session = await domain.visitor()
    cid = session.conversation.id
    first = await domain.conversations.post_visitor_message(session.visitor, cid, "k-1", "hello")
    await domain.settle()
    assert first.seq == 2 and first.client_id == "k-1" and first.sender.role == Role.VISITOR
    published = domain.broadcast.to(room(cid), "message")
    assert [m["seq"] for m in published] == [2, 3]  # the message, then the bot's echo
    assert published[0] == first.to_dict()

    domain.broadcast.clear()
    retry = await domain.conversations.post_visitor_message(session.visitor, cid, "k-1", "hello")
    await domain.settle()
    assert retry == first
    assert domain.broadcast.published == []  # no echo of the retry, no second bot turn
    synced = await domain.conversations.sync(cid, 0, 100)
    assert [m.seq for m in synced.messages] == [1, 2, 3] and synced.last_seq == 3

    # Another client_id is another message, even with the same text.
    other = await domain.conversations.post_visitor_message(session.visitor, cid, "k-2", "hello")
    assert other.seq == 4


async def test_concurrent_messages_get_gapless_seqs_in_call_order(domain: Domain):
    session = await domain.visitor()
    cid = session.conversation.id
    domain.services.conversations.on_visitor_message = None  # no bot turns in between
    posted = await asyncio.gather(
        *(
            domain.conversations.post_visitor_message(session.visitor, cid, f"c-{i}", f"m{i}")
            for i in range(30)
        )
    )
    assert [m.seq for m in posted] == list(range(2, 32))
    assert [m["seq"] for m in domain.broadcast.to(room(cid), "message")] == list(range(2, 32))
    synced = await domain.conversations.sync(cid, 0, 100)
    assert [m.text for m in synced.messages[1:]] == [f"m{i}" for i in range(30)]


async def test_sync_returns_the_messages_after_a_seq_up_to_a_limit(domain: Domain):
    session = await domain.visitor()
    cid = session.conversation.id
    domain.services.conversations.on_visitor_message = None
    for i in range(5):
        await domain.conversations.post_visitor_message(session.visitor, cid, f"c-{i}", f"m{i}")
    # seqs: 1 greeting, 2..6 the visitor's
    page = await domain.conversations.sync(cid, 2, 2)
    assert [m.seq for m in page.messages] == [3, 4]
    assert page.last_seq == 6 and page.state == State.BOT
    assert [m.seq for m in (await domain.conversations.sync(cid, 4, 100)).messages] == [5, 6]
    assert (await domain.conversations.sync(cid, 6, 100)).messages == []
    assert page.to_dict()["messages"] == [m.to_dict() for m in page.messages]
    with pytest.raises(NotFound):
        await domain.conversations.sync("no-such-conversation", 0, 10)


async def test_only_the_owner_gets_its_conversation(domain: Domain):
    mine = await domain.visitor()
    theirs = await domain.visitor()
    got = await domain.conversations.conversation_of(mine.visitor.id, mine.conversation.id)
    assert got.id == mine.conversation.id
    with pytest.raises(Forbidden):
        await domain.conversations.conversation_of(mine.visitor.id, theirs.conversation.id)
    with pytest.raises(NotFound):
        await domain.conversations.conversation_of(mine.visitor.id, "no-such-conversation")


# read marks ---------------------------------------------------------------------------------


async def test_read_marks_only_move_forward_and_a_step_back_is_not_published(domain: Domain):
    session = await domain.visitor()
    cid = session.conversation.id
    domain.services.conversations.on_visitor_message = None
    for i in range(3):
        await domain.conversations.post_visitor_message(session.visitor, cid, f"c-{i}", f"m{i}")
    conversation = await domain.conversations.conversation_of(session.visitor.id, cid)
    assert conversation.last_seq == 4
    agent = Sender(Role.AGENT, "alice", "Alice")
    domain.broadcast.clear()

    assert await domain.conversations.mark_read(conversation, agent, 3) == 3
    assert await domain.conversations.mark_read(conversation, agent, 2) == 3  # not backwards
    assert await domain.conversations.mark_read(conversation, agent, 3) == 3  # told again
    assert await domain.conversations.mark_read(conversation, agent, 4) == 4
    assert [r["seq"] for r in domain.broadcast.to(room(cid), "read")] == [3, 3, 4]
    assert domain.broadcast.to(room(cid), "read")[0] == {
        "conversation_id": cid,
        "reader": {"role": "agent", "id": "alice"},
        "seq": 3,
    }
    with pytest.raises(Invalid):
        await domain.conversations.mark_read(conversation, agent, 5)  # beyond the last message
    context = (await domain.conversations.sync(cid, 0, 1)).context
    assert context.read == [{"reader": {"role": "agent", "id": "alice"}, "seq": 4}]
    resumed = await domain.conversations.open_session(session.token)
    assert resumed.context.read == context.read


async def test_typing_goes_to_the_conversation_without_the_originating_connection(
    domain: Domain,
):
    session = await domain.visitor()
    conversation = session.conversation
    sender = Sender(Role.VISITOR, session.visitor.id, session.visitor.name)
    await domain.conversations.typing(conversation, sender, True, origin="sid-1")
    [published] = domain.broadcast.published
    assert published.target == room(conversation.id) and published.skip == "sid-1"
    assert published.event == "typing"
    assert published.data == {
        "conversation_id": conversation.id,
        "sender": sender.to_dict(),
        "typing": True,
    }


# the bot's turn -----------------------------------------------------------------------------


async def test_the_bot_answers_each_message_after_it_with_a_typing_pair(domain: Domain):
    session = await domain.visitor()
    cid = session.conversation.id
    await domain.conversations.post_visitor_message(session.visitor, cid, "c-1", "ping")
    await domain.settle()
    assert domain.broadcast.bot_typing() == [True, False]
    [reply] = domain.broadcast.bot_messages()
    assert reply["seq"] == 3 and reply["text"] == "You said: ping"
    assert reply["sender"] == {"role": "bot", "id": "bot", "name": "Echo"}
    order = [(p.event, p.data.get("seq")) for p in domain.broadcast.published]
    assert order == [("message", 2), ("typing", None), ("typing", None), ("message", 3)]


class HandoffBot:
    """Answers once and asks for a human (as the kb bot does when the visitor says yes)."""

    name = "Handoff"

    async def greeting(self, ctx: BotContext) -> str:
        return "Hi."

    async def reply(self, ctx: BotContext, text: str) -> BotReply:
        return BotReply(text="Connecting you to a person.", matched=True, handoff=True)

    async def close(self) -> None:
        pass


async def test_a_bot_reply_asking_for_a_human_queues_the_conversation(sqlite_url: str):
    async with open_domain(sqlite_url, bot=HandoffBot()) as domain:
        session = await domain.visitor()
        cid = session.conversation.id
        await domain.conversations.post_visitor_message(session.visitor, cid, "c-1", "a human")
        await domain.settle()
        synced = await domain.conversations.sync(cid, 0, 100)
        assert synced.state == State.QUEUED
        assert [(m.seq, m.sender.role) for m in synced.messages] == [
            (1, Role.BOT),
            (2, Role.VISITOR),
            (3, Role.BOT),
            (4, Role.SYSTEM),
        ]
        assert synced.messages[2].text == "Connecting you to a person."
        assert domain.broadcast.to(room(cid), "state")[-1]["state"] == "queued"
        # Queued: the bot is silent from now on.
        domain.broadcast.clear()
        await domain.conversations.post_visitor_message(session.visitor, cid, "c-2", "hello?")
        await domain.settle()
        assert domain.broadcast.bot_messages() == [] and domain.broadcast.bot_typing() == []
