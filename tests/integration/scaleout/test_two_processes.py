"""Two app instances sharing PostgreSQL and Redis: every flow crosses processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import socketio
from aiohttp import web
from redis import asyncio as aioredis

from socketsvc.keys import SIO
from socketsvc.transport.broadcast import SocketIOBroadcaster
from socketsvc.transport.managers import LeanManager
from tests.conftest import AppServer, make_settings
from tests.support.chat_client import ChatClient
from tests.support.serving import serving
from tests.support.tokens import TOKENS

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


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


# -- one Redis message per conversation event ---------------------------------------------------


class ChannelTap:
    """A Redis subscriber of its own on the app's channel: every message published there."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.redis = aioredis.Redis.from_url(REDIS_URL)
        self.pubsub = self.redis.pubsub()
        self.messages: list[dict[str, Any]] = []
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ChannelTap:
        await self.pubsub.subscribe(self.channel)
        while True:  # subscribed once Redis confirms it
            confirmation = await self.pubsub.get_message(timeout=1.0)
            if confirmation is not None and confirmation["type"] == "subscribe":
                break
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        async for message in self.pubsub.listen():
            if message["type"] == "message":
                self.messages.append(json.loads(message["data"]))

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self.pubsub.aclose()
        await self.redis.aclose()

    def emits(self, event: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("method") == "emit" and m.get("event") == event]

    async def settle(self, event: str, count: int) -> list[dict[str, Any]]:
        """The `event` emits once `count` have come, and after a little while for any extra."""
        for _ in range(100):
            if len(self.emits(event)) >= count:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        return self.emits(event)


async def wait_ready(*servers: AppServer) -> None:
    for _ in range(50):
        if all([(await ready(server))["status_code"] == 200 for server in servers]):
            return
        await asyncio.sleep(0.2)
    raise AssertionError("not ready: " + ", ".join(str(await ready(s)) for s in servers))


async def subscribers(channel: str, count: int) -> None:
    """Wait until `count` connections listen on `channel`."""
    redis = aioredis.Redis.from_url(REDIS_URL)
    try:
        for _ in range(100):
            [(_, listening)] = await redis.pubsub_numsub(channel)
            if listening >= count:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{listening} subscribers on {channel}, expected {count}")
    finally:
        await redis.aclose()


async def assigned_conversation(
    a: AppServer, b: AppServer, clients: list[ChatClient]
) -> tuple[ChatClient, ChatClient, ChatClient, str]:
    """A visitor on A with a second tab on B, assigned to agent alice on B (A and B may be the
    same process)."""
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
    cid: str = visitor.session["conversation_id"]
    await visitor.call("handoff", {})
    await agent.wait_for(lambda: [c for c in agent.of("conversation") if c["state"] == "queued"])
    assert (await agent.call("accept", {"conversation_id": cid}))["ok"]
    await tab2.wait_for(lambda: tab2.of("state")[-1]["state"] == "assigned")
    return visitor, tab2, agent, cid


async def test_a_message_to_an_assigned_conversation_is_one_redis_publish(pair, clients):
    a, b = pair
    await wait_ready(a, b)
    visitor, tab2, agent, cid = await assigned_conversation(a, b, clients)
    async with ChannelTap(a.settings.redis_channel) as tap:
        acks = [await visitor.send(f"message {i}") for i in range(5)]
        for ack in acks:
            seq = ack["message"]["seq"]
            assert await tab2.wait_message(lambda m, seq=seq: m["seq"] == seq) == ack["message"]
            assert await agent.wait_message(lambda m, seq=seq: m["seq"] == seq) == ack["message"]
        published = await tap.settle("message", len(acks))
    assert len(published) == len(acks)  # one each, not one per room
    for message, ack in zip(published, acks, strict=True):
        assert message["data"] == [ack["message"]]
        assert message["targets"] == [["/chat", f"conversation:{cid}"], ["/agent", "agent:alice"]]
        # What a process of an older release reads: a plain emit to the visitor's room.
        assert (message["namespace"], message["room"]) == ("/chat", f"conversation:{cid}")


async def test_the_origin_of_an_event_to_both_rooms_is_skipped_on_every_process(pair, clients):
    a, b = pair
    await wait_ready(a, b)
    visitor, tab2, agent, cid = await assigned_conversation(a, b, clients)
    agent_tab2 = ChatClient(a.url, namespace="/agent")
    clients.append(agent_tab2)
    await agent_tab2.connect({"token": TOKENS.mint_agent("alice", "Alice")})
    await agent.call("typing", {"conversation_id": cid, "typing": True})
    for client in (visitor, tab2, agent_tab2):
        await client.wait_for(lambda c=client: c.of("typing"), what="typing")
    # The origin (agent, on B) got no echo: a later message reaches it, the typing did not.
    reply = await agent_tab2.call(
        "message", {"conversation_id": cid, "client_id": "after", "text": "after"}
    )
    assert reply["ok"]
    await agent.wait_message(lambda m: m["client_id"] == "after")
    assert agent.of("typing") == []


async def test_a_plain_emit_from_an_older_process_is_still_delivered(pair, clients):
    a, b = pair
    await wait_ready(a, b)
    visitor = ChatClient(a.url)
    clients.append(visitor)
    await visitor.connect()
    await visitor.wait_for(lambda: visitor.of("session"))
    tab2 = ChatClient(b.url)
    clients.append(tab2)
    await tab2.connect({"visitor_token": visitor.session["visitor_token"]})
    cid = visitor.session["conversation_id"]
    payload = {"conversation_id": cid, "seq": 99, "client_id": "legacy", "text": "from before"}
    legacy = {  # python-socketio 5.18's AsyncPubSubManager.emit, as published by the old release
        "method": "emit",
        "event": "message",
        "data": [payload],
        "binary": False,
        "namespace": "/chat",
        "room": f"conversation:{cid}",
        "skip_sid": None,
        "callback": None,
        "host_id": "an-older-process",
    }
    redis = aioredis.Redis.from_url(REDIS_URL)
    try:
        await redis.publish(a.settings.redis_channel, json.dumps(legacy))
    finally:
        await redis.aclose()
    for client in (visitor, tab2):
        assert await client.wait_message(lambda m: m["client_id"] == "legacy") == payload


async def test_an_older_process_delivers_the_first_target_of_a_joint_emit(pair, clients):
    a, b = pair
    await wait_ready(a, b)
    channel = a.settings.redis_channel
    old = socketio.AsyncServer(
        async_mode="aiohttp",
        client_manager=socketio.AsyncRedisManager(REDIS_URL, channel=channel),
        logger=False,
        engineio_logger=False,
    )

    async def join(sid: str, environ: Any, auth: Any) -> None:
        await old.enter_room(sid, auth["room"], namespace="/chat")

    old.on("connect", join, namespace="/chat")
    app = web.Application()
    old.attach(app)
    try:
        async with serving(app) as url:
            visitor = ChatClient(url)
            clients.append(visitor)
            await visitor.connect({"room": "conversation:c-old"})
            await subscribers(channel, 3)  # A, B and the old process
            payload = {"conversation_id": "c-old", "seq": 1, "client_id": "joint", "text": "hi"}
            await SocketIOBroadcaster(a.app[SIO]).to_conversation(
                "c-old", "alice", "message", payload
            )
            assert await visitor.wait_message(lambda m: m["client_id"] == "joint") == payload
            await visitor.close()
    finally:
        manager = old.manager
        manager.thread.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await manager.thread
        await manager.pubsub.aclose()
        await manager.redis.aclose()


async def test_without_redis_a_message_reaches_the_visitor_and_the_agent(start_app, clients):
    server = await start_app()
    assert type(server.app[SIO].manager) is LeanManager
    visitor, tab2, agent, cid = await assigned_conversation(server, server, clients)
    sent = await visitor.send("to the agent")
    assert await agent.wait_message(lambda m: m["seq"] == sent["message"]["seq"]) == sent["message"]
    assert await tab2.wait_message(lambda m: m["seq"] == sent["message"]["seq"]) == sent["message"]
    reply = await agent.call("message", {"conversation_id": cid, "client_id": "r", "text": "hi"})
    for client in (visitor, tab2):
        assert await client.wait_message(lambda m: m["client_id"] == "r") == reply["message"]
