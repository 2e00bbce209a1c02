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
