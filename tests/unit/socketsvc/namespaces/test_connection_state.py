"""What a namespace keeps per connection: one small object, and an event budget only once the
connection has sent an event; rate limits and the connection gate work as before."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from socketsvc.namespaces.agent import AgentConnection, AgentNamespace
from socketsvc.namespaces.chat import ChatNamespace, VisitorConnection

from socketsvc.domain.errors import Unauthorized
from socketsvc.domain.limits import ConnectionGate
from socketsvc.domain.models import Visitor
from socketsvc.domain.tokens import AgentIdentity
from socketsvc.runtime.lifecycle import Lifecycle

VISITOR = Visitor("v1", "Visitor v1", datetime(2026, 1, 1, tzinfo=UTC))


def services() -> Any:
    settings = SimpleNamespace(
        message_rate=1.0, message_burst=2.0, max_text_length=4000, trusted_proxies=()
    )
    return SimpleNamespace(
        settings=settings,
        gate=ConnectionGate(attempts_per_minute=60, per_ip=10, total=100),
        lifecycle=Lifecycle(),
    )


async def ok(*args: Any) -> dict[str, Any]:
    return {}


async def test_an_idle_visitor_has_no_budget_until_its_first_event():
    chat = ChatNamespace(services())
    chat.connection_opened("s1", VisitorConnection("192.0.2.1", VISITOR, "c1", True))
    connection = chat.connection("s1")
    assert isinstance(connection, VisitorConnection)
    assert connection.budget is None
    assert not hasattr(connection, "__dict__")
    assert await chat._who("s1") == (VISITOR, "c1")

    outcomes = [(await chat._handle("message", ok, "s1", ("s1",)))[0] for _ in range(3)]
    assert outcomes == ["ok", "ok", "rate_limited"]  # MESSAGE_BURST 2, as before
    assert connection.budget is not None and connection.budget.strikes == 1


async def test_closing_forgets_the_connection_and_releases_its_address():
    namespace = ChatNamespace(services())
    gate = namespace.services.gate
    namespace.connection_opened("s1", VisitorConnection("192.0.2.1", VISITOR, "c1", True))
    namespace.connection_opened("s2", VisitorConnection("192.0.2.1", VISITOR, "c1", True))
    assert gate.open_total == 2
    namespace.connection_closed("s1")
    namespace.connection_closed("s1")  # twice: counted once
    assert gate.open_total == 1
    assert namespace.connection("s1") is None
    with pytest.raises(Unauthorized):
        await namespace._who("s1")
    namespace.connection_closed("s2")
    assert gate.open_total == 0


async def test_an_agent_connection_says_who_the_agent_is():
    agents = AgentNamespace(services())
    alice = AgentIdentity("alice", "Alice")
    agents.connection_opened("a1", AgentConnection("192.0.2.2", alice))
    assert await agents._who("a1") == alice
    with pytest.raises(Unauthorized):
        await agents._who("nobody")
