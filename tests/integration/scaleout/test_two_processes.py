"""Two app instances sharing PostgreSQL and Redis: every flow crosses processes."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from socketsvc.tokens import TokenService
from tests.conftest import SECRET, AppServer, make_settings
from tests.support.chat_client import ChatClient

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
TOKENS = TokenService(SECRET, 3600)


@pytest.fixture
def postgres_url(database_url: str) -> str:
    if database_url.startswith("sqlite"):
        pytest.skip("several processes need PostgreSQL")
    return database_url


@pytest.fixture
async def pair(postgres_url: str) -> AsyncIterator[tuple[AppServer, AppServer]]:
    channel = f"socketsvc-test-{uuid.uuid4().hex[:8]}"
    servers = [
        AppServer(make_settings(postgres_url, REDIS_URL=REDIS_URL, REDIS_CHANNEL=channel))
        for _ in range(2)
    ]
    for server in servers:
        await server.start()
    try:
        yield servers[0], servers[1]
    finally:
        for server in servers:
            await server.stop()


async def ready(server: AppServer) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(server.url + "/readyz") as response:
        body: dict[str, Any] = await response.json()
        body["status_code"] = response.status
        return body


async def test_visitor_and_agent_on_different_processes(pair, clients):
    a, b = pair
    for _ in range(50):
        if (await ready(a))["status_code"] == 200 and (await ready(b))["status_code"] == 200:
            break
        await asyncio.sleep(0.2)
    assert (await ready(a))["checks"] == {
        "database": "ok",
        "redis": "ok",
        "pubsub_canary": "ok",
    }
    agent = ChatClient(b.url, namespace="/agent")
    clients.append(agent)
    await agent.connect({"token": TOKENS.mint_agent("alice", "Alice")})
    visitor = ChatClient(a.url)
    clients.append(visitor)
    await visitor.connect()
    await visitor.wait_for(lambda: visitor.of("session"))
    tab2 = ChatClient(b.url)
    clients.append(tab2)
    await tab2.connect({"visitor_token": visitor.session["visitor_token"]})
    cid = visitor.session["conversation_id"]

    sent = await visitor.send("hello from process A")
    await tab2.wait_message(lambda m: m["seq"] == sent["message"]["seq"])
    await visitor.call("handoff", {})
    await agent.wait_for(lambda: [c for c in agent.of("conversation") if c["state"] == "queued"])
    accepted = await agent.call("accept", {"conversation_id": cid})
    assert accepted["ok"]
    await visitor.wait_for(lambda: visitor.of("state")[-1]["state"] == "assigned")
    reply = await agent.call("message", {"conversation_id": cid, "client_id": "r1", "text": "hi!"})
    assert (await visitor.wait_message(lambda m: m["client_id"] == "r1")) == reply["message"]
    sent = await visitor.send("thanks")
    await agent.wait_message(lambda m: m["seq"] == sent["message"]["seq"])
    await agent.call("typing", {"conversation_id": cid, "typing": True})
    await visitor.wait_for(
        lambda: [t for t in visitor.of("typing") if t["sender"]["role"] == "agent"]
    )
