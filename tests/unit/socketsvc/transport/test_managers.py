"""LeanManager: python-socketio's local emit without a task per recipient, against a real server
(aiohttp on an ephemeral port) and real python-socketio clients."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import socketio
from aiohttp import web
from socketio.async_pubsub_manager import AsyncPubSubManager

from socketsvc.transport.managers import LeanManager
from socketsvc.transport.pubsub import RedisManager
from socketsvc.transport.server import SocketServer
from tests.support.serving import serving


class Served:
    def __init__(self, sio: SocketServer, manager: LeanManager, url: str) -> None:
        self.sio = sio
        self.manager = manager
        self.url = url


class Client:
    """Joins `room` in `namespace` and records the arguments of every `ev` and `mark` event."""

    def __init__(self, url: str, room: str, namespace: str = "/chat") -> None:
        self.url = url
        self.room = room
        self.namespace = namespace
        self.sio = socketio.AsyncClient(reconnection=False)
        self.got: list[tuple[str, tuple[Any, ...]]] = []
        self.sio.on("ev", self._record("ev"), namespace=namespace)
        self.sio.on("mark", self._record("mark"), namespace=namespace)
        self.sio.on("ping", lambda *args: ["pong", *args], namespace=namespace)

    def _record(self, name: str) -> Callable[..., None]:
        def record(*args: Any) -> None:
            self.got.append((name, args))

        return record

    async def connect(self) -> None:
        await self.sio.connect(
            self.url,
            namespaces=[self.namespace],
            transports=["websocket"],
            auth={"room": self.room},
            wait_timeout=10,
        )

    @property
    def sid(self) -> str:
        sid = self.sio.get_sid(self.namespace)
        assert sid is not None
        return sid

    def of(self, name: str) -> list[tuple[Any, ...]]:
        return [args for event, args in self.got if event == name]

    async def wait(self, name: str, count: int = 1, timeout: float = 5.0) -> list[tuple[Any, ...]]:
        deadline = time.monotonic() + timeout
        while len(self.of(name)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.room}: no {count} x {name!r}; got {self.got}")
            await asyncio.sleep(0.01)
        return self.of(name)


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    manager = LeanManager()
    sio = SocketServer(
        async_mode="aiohttp", client_manager=manager, logger=False, engineio_logger=False
    )

    def joiner(namespace: str) -> Callable[..., Any]:
        async def connect(sid: str, environ: Any, auth: Any) -> None:
            await sio.enter_room(sid, auth["room"], namespace=namespace)

        return connect

    for namespace in ("/chat", "/agent"):
        sio.on("connect", joiner(namespace), namespace=namespace)
    app = web.Application()
    sio.attach(app)
    async with serving(app) as url:
        yield Served(sio, manager, url)


@pytest.fixture
async def connect(served: Served) -> AsyncIterator[Callable[..., Any]]:
    opened: list[Client] = []

    async def open_client(room: str, namespace: str = "/chat") -> Client:
        client = Client(served.url, room, namespace)
        await client.connect()
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        with contextlib.suppress(Exception):
            await client.sio.disconnect()


def count_tasks(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    created: list[object] = []
    real = asyncio.create_task

    def counting(coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        created.append(coro)
        return real(coro, **kwargs)

    monkeypatch.setattr(asyncio, "create_task", counting)
    return created


async def test_a_room_gets_one_packet_each_without_a_task_per_recipient(
    served, connect, monkeypatch
):
    members = [await connect("room-1") for _ in range(3)]
    outsider = await connect("room-2")
    created = count_tasks(monkeypatch)
    await served.manager.emit("ev", {"n": 1}, "/chat", room="room-1", skip_sid=members[0].sid)
    await served.manager.emit("ev", {"n": 2}, "/chat", room="room-1")
    assert created == []
    monkeypatch.undo()
    for member in members[1:]:
        assert await member.wait("ev", 2) == [({"n": 1},), ({"n": 2},)]
    assert await members[0].wait("ev") == [({"n": 2},)]
    await served.manager.emit("mark", None, "/chat", room="room-2")
    await outsider.wait("mark")
    assert outsider.of("ev") == []


async def test_arguments_are_made_as_python_socketio_makes_them(served, connect):
    client = await connect("room-1")
    await served.manager.emit("ev", (1, "two", [3]), "/chat", room="room-1")
    await served.manager.emit("ev", [1, 2], "/chat", room="room-1")
    await served.manager.emit("ev", None, "/chat", room="room-1")
    await served.manager.emit("ev", b"\x00\x01", "/chat", to="room-1")
    assert await client.wait("ev", 4) == [(1, "two", [3]), ([1, 2],), (), (b"\x00\x01",)]


async def test_a_skip_list_and_a_list_of_rooms(served, connect):
    a, b, c = await connect("r1"), await connect("r2"), await connect("r3")
    await served.manager.emit("ev", "x", "/chat", room=["r1", "r2", "r3"], skip_sid=[a.sid, c.sid])
    assert await b.wait("ev") == [("x",)]
    await served.manager.emit("mark", None, "/chat", room=["r1", "r3"])
    await a.wait("mark")
    await c.wait("mark")
    assert a.of("ev") == [] and c.of("ev") == []


async def test_an_unknown_namespace_is_ignored(served, connect):
    await connect("r1")
    await served.manager.emit("ev", "x", "/nowhere", room="r1")


async def test_callbacks_still_get_the_answer(served, connect):
    client = await connect("r1")
    answer = await served.sio.call("ping", {"q": 1}, to=client.sid, namespace="/chat", timeout=5)
    assert answer == ["pong", {"q": 1}]


async def test_a_member_whose_socket_is_gone_does_not_stop_the_emit(served, connect):
    gone, stays = await connect("r1"), await connect("r1")
    eio_sid = served.manager.eio_sid_from_sid(gone.sid, "/chat")
    sock = served.sio.eio.sockets.pop(eio_sid)  # closed, not yet out of the room
    try:
        await served.manager.emit("ev", "x", "/chat", room="r1")
    finally:
        served.sio.eio.sockets[eio_sid] = sock
    assert await stays.wait("ev") == [("x",)]
    await served.manager.emit("mark", None, "/chat", room=gone.sid)
    await gone.wait("mark")
    assert gone.of("ev") == []


async def test_a_send_that_fails_is_logged_and_the_others_still_get_theirs(
    served, connect, monkeypatch, caplog
):
    first, second = await connect("r1"), await connect("r1")
    broken = served.manager.eio_sid_from_sid(first.sid, "/chat")
    send = served.sio.eio.send_packet

    async def failing(eio_sid: str, pkt: Any) -> None:
        if eio_sid == broken:
            raise ConnectionResetError("socket closed meanwhile")
        await send(eio_sid, pkt)

    monkeypatch.setattr(served.sio.eio, "send_packet", failing)
    with caplog.at_level(logging.WARNING, logger="socketsvc.transport.managers"):
        await served.manager.emit("ev", "x", "/chat", room="r1")
    assert await second.wait("ev") == [("x",)]
    assert "socket closed meanwhile" in caplog.text


async def test_emit_to_rooms_reaches_every_target(served, connect):
    visitor = await connect("conversation:1")
    agent = await connect("agent:7", namespace="/agent")
    other = await connect("agent:8", namespace="/agent")
    await served.manager.emit_to_rooms(
        "ev", {"n": 1}, [("/chat", "conversation:1"), ("/agent", "agent:7")]
    )
    assert await visitor.wait("ev") == [({"n": 1},)]
    assert await agent.wait("ev") == [({"n": 1},)]
    await served.manager.emit("mark", None, "/agent", room="agent:8")
    await other.wait("mark")
    assert other.of("ev") == []


def test_the_redis_manager_delivers_locally_through_the_lean_emit():
    mro = RedisManager.__mro__
    assert mro.index(AsyncPubSubManager) < mro.index(LeanManager)
    assert mro.index(LeanManager) < mro.index(socketio.AsyncManager)
