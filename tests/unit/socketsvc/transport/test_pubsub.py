"""`RedisManager` against the real Redis at 127.0.0.1:6379 (a channel of its own per test): two
managers hear each other, each hears its own canary, and an unreachable Redis neither blocks
nor breaks an emit."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import socketio
from aiohttp import web
from prometheus_client import REGISTRY
from redis import asyncio as aioredis

from socketsvc.transport.pubsub import RedisManager
from tests.support.chat_client import ChatClient
from tests.support.cluster import free_port
from tests.support.serving import serving
from tests.support.waiting import wait_for

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
NAMESPACE = "/t"


class Node:
    """One process's Socket.IO server on a `RedisManager`, served on a loopback port; a client
    connecting with `{"room": name}` joins that room."""

    def __init__(self, manager: RedisManager) -> None:
        self.manager = manager
        self.sio = socketio.AsyncServer(
            async_mode="aiohttp", client_manager=manager, logger=False, engineio_logger=False
        )
        self.sio.on("connect", self._join, namespace=NAMESPACE)
        self.app = web.Application()
        self.sio.attach(self.app)
        self.url = ""
        self.clients: list[ChatClient] = []

    async def _join(self, sid: str, environ: Any, auth: Any) -> None:
        await self.sio.enter_room(sid, auth["room"], namespace=NAMESPACE)

    def start_listening(self) -> None:
        # As the app does at start: subscribe now rather than on the first connection.
        self.sio.manager_initialized = True
        self.manager.initialize()

    async def client(self, room: str) -> ChatClient:
        client = ChatClient(self.url, namespace=NAMESPACE)
        self.clients.append(client)
        await client.connect({"room": room})
        return client


@asynccontextmanager
async def node(url: str, channel: str, socket_timeout: float = 2.0) -> AsyncIterator[Node]:
    running = Node(RedisManager(url, channel=channel, socket_timeout=socket_timeout))
    async with serving(running.app) as base:
        running.url = base
        running.start_listening()
        try:
            yield running
        finally:
            for client in running.clients:
                await client.close()
            await running.manager.close()


@pytest.fixture
def channel() -> str:
    return f"socketsvc-unit-{uuid.uuid4().hex[:12]}"


async def subscribers(channel: str) -> int:
    redis = aioredis.Redis.from_url(REDIS_URL)
    try:
        [(_, listening)] = await redis.pubsub_numsub(channel)
        return int(listening)
    finally:
        await redis.aclose()


def publish_failures() -> float:
    return REGISTRY.get_sample_value("socketsvc_redis_publish_failures_total") or 0.0


async def subscribed(channel: str, count: int) -> bool:
    return await subscribers(channel) >= count


async def test_an_emit_on_one_process_reaches_the_other_once(channel: str):
    async with node(REDIS_URL, channel) as a, node(REDIS_URL, channel) as b:
        await wait_for(lambda: subscribed(channel, 2), what="both subscriptions", timeout=15)
        on_a = await a.client("room-1")
        on_b = await b.client("room-1")
        other_a = await a.client("room-2")
        other_b = await b.client("room-2")

        await a.sio.emit("message", {"n": 1}, room="room-1", namespace=NAMESPACE)
        await b.sio.emit("message", {"n": 2}, room="room-1", namespace=NAMESPACE)
        for client in (on_a, on_b):
            await client.wait_for(lambda c=client: len(c.messages()) == 2, what="both emits")
        # A barrier each way: once these arrive, both subscriptions have handled everything
        # published before, so a duplicate would be here by now.
        await a.sio.emit("message", {"n": 3}, room="room-2", namespace=NAMESPACE)
        await b.sio.emit("message", {"n": 4}, room="room-2", namespace=NAMESPACE)
        for client in (other_a, other_b):
            await client.wait_for(lambda c=client: len(c.messages()) == 2, what="the barrier")
        for client in (on_a, on_b):
            assert sorted(m["n"] for m in client.messages()) == [1, 2]  # each once, no echo
        for client in (other_a, other_b):
            assert sorted(m["n"] for m in client.messages()) == [3, 4]


async def test_a_joint_emit_to_two_rooms_is_one_publish_delivered_to_both(channel: str):
    tap = aioredis.Redis.from_url(REDIS_URL)
    pubsub = tap.pubsub()
    await pubsub.subscribe(channel)
    try:
        async with node(REDIS_URL, channel) as a, node(REDIS_URL, channel) as b:
            await wait_for(lambda: subscribed(channel, 3), what="subscriptions", timeout=15)
            first = await b.client("room-1")
            second = await b.client("room-2")
            here = await a.client("room-2")
            await a.manager.emit_to_rooms(
                "message", {"n": 1}, [(NAMESPACE, "room-1"), (NAMESPACE, "room-2")]
            )
            for client in (first, second, here):
                assert (await client.wait_message(lambda m: m["n"] == 1)) == {"n": 1}
            # A marker published after B got the message: A's publishes came before it.
            await tap.publish(channel, "barrier")
            emits = []
            deadline = time.monotonic() + 10
            while True:
                assert time.monotonic() < deadline, "the barrier never came"
                got = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if got is None:
                    continue
                if got["data"] == b"barrier":
                    break
                if json.loads(got["data"]).get("method") == "emit":
                    emits.append(json.loads(got["data"]))
            assert len(emits) == 1
            assert emits[0]["targets"] == [[NAMESPACE, "room-1"], [NAMESPACE, "room-2"]]
    finally:
        await pubsub.aclose()
        await tap.aclose()


async def test_each_process_hears_its_own_canary_and_not_the_others(channel: str):
    async with node(REDIS_URL, channel) as a, node(REDIS_URL, channel) as b:
        await wait_for(lambda: subscribed(channel, 2), what="both subscriptions", timeout=15)
        on_b = await b.client("room-1")
        assert a.manager.canary_ok is False and b.manager.canary_ok is False  # not heard yet
        await a.manager.send_canary()
        await wait_for(lambda: a.manager.canary_ok, what="the canary of A", timeout=10)
        # A barrier: an emit A publishes after its canary reaches B after B handled the canary.
        await a.sio.emit("message", {"n": 1}, room="room-1", namespace=NAMESPACE)
        await on_b.wait_message(lambda m: m["n"] == 1)
        assert b.manager.canary_heard_at == 0.0 and b.manager.canary_ok is False
        await b.manager.send_canary()
        await wait_for(lambda: b.manager.canary_ok, what="the canary of B", timeout=10)
        await a.manager.ping()


async def test_with_redis_unreachable_emits_return_deliver_locally_and_count_the_drops(
    channel: str,
):
    unreachable = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    before = publish_failures()
    async with node(unreachable, channel, socket_timeout=0.5) as lonely:
        with pytest.raises(Exception):  # noqa: B017 - redis' ConnectionError or OSError
            await lonely.manager.ping()
        local = await lonely.client("room-1")
        started = time.monotonic()
        await lonely.sio.emit("message", {"n": 1}, room="room-1", namespace=NAMESPACE)
        assert time.monotonic() - started < 0.5  # queued, never waiting for Redis
        assert await local.wait_message(lambda m: m["n"] == 1) == {"n": 1}
        # Tried twice, then dropped and counted.
        await wait_for(lambda: publish_failures() >= before + 1, what="the drop", timeout=10)
        await lonely.manager.send_canary()
        await wait_for(lambda: publish_failures() >= before + 2, what="the canary drop")
        assert lonely.manager.canary_ok is False
