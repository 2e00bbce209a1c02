"""`PresenceService.agents_online`: counted from the shared database, and this process's visitors
told (`availability`) exactly when it changes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from socketsvc.bots.echo_bot import EchoBot
from socketsvc.domain.tokens import AgentIdentity
from socketsvc.services import Services
from socketsvc.storage.store import Store
from tests.conftest import make_settings
from tests.support.broadcasting import RecordingBroadcaster


@pytest.fixture
async def services(database_url: str, store: Store) -> AsyncIterator[Services]:
    yield Services.build(
        make_settings(database_url, BOT="echo"), store, RecordingBroadcaster(), EchoBot()
    )


def availability(services: Services) -> list[bool]:
    broadcaster = services.presence.broadcaster
    assert isinstance(broadcaster, RecordingBroadcaster)
    return [
        data["agents_online"]
        for target, event, data in broadcaster.calls
        if target == "visitors" and event == "availability"
    ]


async def test_availability_follows_agents_connecting_going_away_and_leaving(services: Services):
    presence = services.presence
    ada, bob = AgentIdentity("ada", "Ada"), AgentIdentity("bob", "Bob")
    assert presence.agents_online is False
    await presence.tick()
    assert availability(services) == []  # nobody online, as assumed: nothing to tell

    await presence.connected(ada, "sid-ada")
    assert presence.agents_online is True
    assert availability(services) == [True]
    await presence.connected(bob, "sid-bob")
    await presence.tick()
    assert availability(services) == [True]  # still online: no repeat

    await presence.set_status(ada, "away")
    assert availability(services) == [True]  # Bob is still there
    await presence.disconnected("sid-bob")
    assert presence.agents_online is False
    assert availability(services) == [True, False]

    await presence.set_status(ada, "online")
    assert availability(services) == [True, False, True]
    await presence.disconnected("sid-ada")
    assert availability(services) == [True, False, True, False]


async def test_another_process_agent_is_seen_at_the_next_tick(services: Services, store: Store):
    # An agent connected through another process: only its database rows are shared.
    await services.presence.store.connected("eve", "Eve", "sid-elsewhere", "other-node")
    await services.presence.store.heartbeat("other-node")
    assert services.presence.agents_online is False
    await services.presence.tick()
    assert services.presence.agents_online is True
    assert availability(services) == [True]


async def assigned_conversation(services: Services, agent: AgentIdentity) -> str:
    session = await services.conversations.open_session(None)
    conversation = await services.conversations.start(session.visitor)
    await services.routing.handoff(conversation.id, reason=None, by="visitor")
    await services.routing.accept(agent, conversation.id)
    return conversation.id


async def state_of(services: Services, conversation_id: str) -> str:
    return (await services.conversations.sync(conversation_id, 0, 1)).state.value


async def test_a_disconnected_agent_keeps_its_chats_within_the_grace_and_loses_them_after(
    services: Services,
):
    presence = services.presence
    ada = AgentIdentity("ada", "Ada")
    await presence.connected(ada, "sid-1")
    cid = await assigned_conversation(services, ada)

    await presence.disconnected("sid-1")
    presence.grace = 3600.0  # still within it
    assert await presence.tick() == 0
    assert await state_of(services, cid) == "assigned"

    # Back (a new connection) before the grace is over: nothing to requeue, even past it.
    await presence.connected(ada, "sid-2")
    presence.grace = 0.0
    assert await presence.tick() == 0
    assert await state_of(services, cid) == "assigned"

    await presence.disconnected("sid-2")
    assert await presence.tick() == 1  # gone past the grace: back to the queue
    assert await state_of(services, cid) == "queued"
    assert await presence.tick() == 0


async def test_an_away_agent_keeps_its_chats_but_makes_no_one_available(services: Services):
    presence = services.presence
    ada = AgentIdentity("ada", "Ada")
    await presence.connected(ada, "sid-ada")
    cid = await assigned_conversation(services, ada)
    await presence.set_status(ada, "away")
    presence.grace = 0.0
    assert await presence.tick() == 0  # connected: nothing is requeued
    assert await state_of(services, cid) == "assigned"
    assert presence.agents_online is False
    assert availability(services) == [True, False]


async def test_closing_forgets_this_process_connections_for_every_process(services: Services):
    presence = services.presence
    await presence.connected(AgentIdentity("ada", "Ada"), "sid-ada")
    assert presence.agents_online is True
    await presence.close()
    await presence.refresh()
    assert presence.agents_online is False
    assert availability(services) == [True, False]
