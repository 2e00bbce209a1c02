"""`BotRunner`: a reply the bot computed while the conversation was handed off is never posted."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY

from socketsvc.bots.echo_bot import EchoBot
from socketsvc.domain.conversations import Session
from socketsvc.domain.models import Role, State
from socketsvc.services import Services
from socketsvc.storage.store import Store
from tests.conftest import make_settings
from tests.support.broadcasting import RecordingBroadcaster

BOT_DELAY = 0.5


def suppressed() -> float:
    value = REGISTRY.get_sample_value("socketsvc_bot_replies_suppressed_total")
    return value or 0.0


@pytest.fixture
async def services(database_url: str, store: Store) -> AsyncIterator[Services]:
    built = Services.build(
        make_settings(database_url, BOT="echo"),
        store,
        RecordingBroadcaster(),
        EchoBot(delay=BOT_DELAY),
    )
    try:
        yield built
    finally:
        await built.tasks.drain(timeout=5.0)
        assert len(built.tasks) == 0


def recorder(services: Services) -> RecordingBroadcaster:
    broadcaster = services.conversations.broadcaster
    assert isinstance(broadcaster, RecordingBroadcaster)
    return broadcaster


async def start(services: Services) -> Session:
    """A new visitor whose conversation is stored (greeting only), as after a first write."""
    session = await services.conversations.open_session(None)
    conversation = await services.conversations.start(session.visitor)
    assert conversation.state == State.BOT and conversation.last_seq == 1
    return dataclasses.replace(session, conversation=conversation)


async def test_reply_computed_during_a_handoff_is_dropped(services: Services, store: Store):
    broadcast = recorder(services)
    session = await start(services)
    conversation_id = session.conversation_id
    before = suppressed()

    posted = await services.conversations.post_visitor_message(
        session.visitor, conversation_id, "c-1", "is anyone there?"
    )
    assert posted.seq == 2
    # The bot has checked the state and is "thinking" (typing) when the handoff happens.
    await broadcast.wait_for(lambda: broadcast.bot_typing() == [True])
    assert len(services.tasks) == 1
    queued = await services.routing.handoff(conversation_id, reason="test", by="visitor")
    assert queued.state == State.QUEUED
    handoff_seq = queued.last_seq
    assert handoff_seq == 3  # the system's "you are queued" message

    await broadcast.wait_for(lambda: broadcast.bot_typing() == [True, False], timeout=5 * BOT_DELAY)
    await services.tasks.drain(timeout=5.0)

    assert await store.messages_after(conversation_id, handoff_seq, 100) == []
    stored = await store.messages_after(conversation_id, 0, 100)
    assert [(m.seq, m.sender.role) for m in stored] == [
        (1, Role.BOT),  # the greeting
        (2, Role.VISITOR),
        (3, Role.SYSTEM),
    ]
    assert broadcast.bot_messages() == []
    assert suppressed() == before + 1
    conversation = await store.get_conversation(conversation_id)
    assert conversation is not None
    assert conversation.state == State.QUEUED and conversation.last_seq == 3


async def test_reply_without_handoff_is_stored_and_broadcast(services: Services, store: Store):
    # The control case: the same slow bot does answer when nothing interrupts it.
    broadcast = recorder(services)
    session = await start(services)
    conversation_id = session.conversation_id
    before = suppressed()

    await services.conversations.post_visitor_message(
        session.visitor, conversation_id, "c-1", "ping"
    )
    await services.tasks.drain(timeout=5 * BOT_DELAY)

    stored = await store.messages_after(conversation_id, 2, 100)
    assert [(m.seq, m.sender.role, m.text) for m in stored] == [(3, Role.BOT, "You said: ping")]
    assert [m["seq"] for m in broadcast.bot_messages()] == [3]
    assert broadcast.bot_messages()[0] == stored[0].to_dict()
    assert broadcast.bot_typing() == [True, False]
    assert suppressed() == before


async def test_message_sent_while_queued_gets_no_bot_reply(services: Services, store: Store):
    broadcast = recorder(services)
    session = await start(services)
    conversation_id = session.conversation_id
    await services.routing.handoff(conversation_id, reason=None, by="visitor")

    await services.conversations.post_visitor_message(
        session.visitor, conversation_id, "c-2", "still there?"
    )
    assert len(services.tasks) == 0  # the bot is not even scheduled: nothing can come later
    assert [m.sender.role for m in await store.messages_after(conversation_id, 0, 100)] == [
        Role.BOT,
        Role.SYSTEM,
        Role.VISITOR,
    ]
    assert broadcast.bot_messages() == []
    assert broadcast.bot_typing() == []


async def test_a_bot_slower_than_the_timeout_posts_nothing_and_counts_an_error(
    services: Services, store: Store
):
    broadcast = recorder(services)
    services.bot_runner.timeout = 0.1  # the bot takes BOT_DELAY (0.5 s)
    session = await start(services)
    conversation_id = session.conversation_id
    errors = REGISTRY.get_sample_value("socketsvc_bot_errors_total") or 0.0

    await services.conversations.post_visitor_message(
        session.visitor, conversation_id, "c-1", "ping"
    )
    await services.tasks.drain(timeout=5 * BOT_DELAY)

    assert REGISTRY.get_sample_value("socketsvc_bot_errors_total") == errors + 1
    assert await store.messages_after(conversation_id, 2, 100) == []
    assert broadcast.bot_messages() == [] and broadcast.bot_typing() == []
    # The conversation is still the bot's, and the next message is answered as usual.
    services.bot_runner.timeout = 5 * BOT_DELAY
    await services.conversations.post_visitor_message(
        session.visitor, conversation_id, "c-2", "again"
    )
    await services.tasks.drain(timeout=5 * BOT_DELAY)
    stored = await store.messages_after(conversation_id, 2, 100)
    assert [(m.seq, m.sender.role, m.text) for m in stored] == [
        (3, Role.VISITOR, "again"),
        (4, Role.BOT, "You said: again"),
    ]
