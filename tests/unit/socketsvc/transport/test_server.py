"""LeanQueue, the packet queue of every Engine.IO socket: asyncio.Queue's behaviour, less memory;
and LeanSocket, python-engineio's socket without a task per WebSocket packet, over real
connections."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import engineio
import pytest
import socketio
from aiohttp import web
from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet
from engineio import payload as eio_payload
from engineio.async_drivers import aiohttp as aiohttp_driver

from socketsvc.runtime.wheel import wheel
from socketsvc.transport import patches
from socketsvc.transport.patches import Applied
from socketsvc.transport.patches.engineio_websocket import send_each
from socketsvc.transport.server import (
    EngineServer,
    LeanEngineServer,
    LeanQueue,
    LeanSocket,
    LeanStrictSocket,
    SocketServer,
    StrictPayload,
    StrictPostSocket,
    _send_all,
    build_server,
)
from tests.support.serving import serving as serving_app


def test_items_come_out_in_order_and_an_empty_queue_holds_no_deque():
    queue = LeanQueue()
    assert queue.empty() and queue.qsize() == 0
    for item in ("a", "b", None):
        queue.put_nowait(item)
    assert queue.qsize() == 3 and not queue.empty()
    assert [queue.get_nowait() for _ in range(3)] == ["a", "b", None]
    assert queue.empty()
    assert queue._queue == ()  # the deque is dropped once drained
    with pytest.raises(asyncio.QueueEmpty):
        queue.get_nowait()
    queue.put_nowait("c")
    assert queue.get_nowait() == "c"


async def test_a_waiting_get_is_woken_by_a_put():
    queue = LeanQueue()
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert not getter.done()
    await queue.put("packet")
    assert await asyncio.wait_for(getter, 1) == "packet"
    assert not queue._getters


async def test_a_get_that_times_out_leaves_nothing_behind():
    queue = LeanQueue()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(queue.get(), 0.01)
    assert not queue._getters
    queue.put_nowait(1)
    assert await asyncio.wait_for(queue.get(), 1) == 1


async def test_join_waits_for_task_done():
    queue = LeanQueue()
    await queue.join()  # nothing queued: returns at once
    queue.put_nowait("x")
    joined = asyncio.create_task(queue.join())
    await asyncio.sleep(0)
    assert not joined.done()
    queue.get_nowait()
    queue.task_done()
    await asyncio.wait_for(joined, 1)
    with pytest.raises(ValueError):
        queue.task_done()


async def test_a_bounded_queue_still_blocks_puts():
    queue = LeanQueue(maxsize=1)
    queue.put_nowait(1)
    with pytest.raises(asyncio.QueueFull):
        queue.put_nowait(2)
    putter = asyncio.create_task(queue.put(2))
    await asyncio.sleep(0)
    assert not putter.done()
    assert queue.get_nowait() == 1
    await asyncio.wait_for(putter, 1)
    assert queue.get_nowait() == 2


async def test_a_queue_costs_a_fraction_of_asyncio_queue():
    def cost(factory: type[asyncio.Queue[object]]) -> float:
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            queues = [factory() for _ in range(500)]
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        assert len(queues) == 500
        return (after - before) / 500

    lean, plain = cost(LeanQueue), cost(asyncio.Queue)
    print(f"LeanQueue {lean:.0f} B, asyncio.Queue {plain:.0f} B")
    assert lean < 1024 < plain


def test_every_engineio_socket_gets_a_lean_queue():
    server = SocketServer(async_mode="aiohttp")
    assert isinstance(server.eio, EngineServer)
    assert isinstance(server.eio.create_queue(), LeanQueue)


def by_name(*names: str) -> Applied:
    return Applied.of(p for p in patches.registry() if p.name in names)


HARDENING, POLLING = "socketio.server_hardening", "engineio.polling_payload"
HANDLER, BATCH = "engineio.websocket_handler", "aiohttp.write_batch"


@pytest.mark.parametrize(
    ("names", "engine", "sockets", "batched"),
    [
        ((HARDENING, POLLING, HANDLER, BATCH), EngineServer, LeanStrictSocket, True),
        ((HARDENING, POLLING, HANDLER), EngineServer, LeanStrictSocket, False),
        ((HARDENING, POLLING), EngineServer, StrictPostSocket, False),
        ((HARDENING, HANDLER, BATCH), EngineServer, LeanSocket, True),
        ((HARDENING,), LeanEngineServer, None, False),
    ],
)
def test_the_classes_are_those_of_the_applied_patches(names, engine, sockets, batched):
    server = build_server(by_name(*names), async_mode="aiohttp")
    assert type(server) is SocketServer
    assert type(server.eio) is engine
    assert getattr(server.eio, "socket_class", None) is sockets
    assert (getattr(server.eio, "send_packets", None) is _send_all) is batched


def test_without_the_socketio_patch_the_server_is_python_socketios_own():
    server = build_server(by_name(POLLING, HANDLER, BATCH), async_mode="aiohttp")
    assert type(server) is socketio.AsyncServer
    assert type(server.eio) is engineio.AsyncServer


# -- LeanSocket.poll() ----------------------------------------------------------------------


def lean_socket(ping_interval: float = 5, ping_timeout: float = 5) -> LeanSocket:
    server = EngineServer(
        async_mode="aiohttp", ping_interval=ping_interval, ping_timeout=ping_timeout
    )
    return LeanSocket(server, "sid")


async def test_poll_returns_the_queued_packets_as_one_batch():
    sock = lean_socket()
    assert isinstance(sock.queue, LeanQueue)
    packets = [eio_packet.Packet(eio_packet.MESSAGE, data=str(i)) for i in range(3)]
    for pkt in packets:
        sock.queue.put_nowait(pkt)
    assert await sock.poll() == packets
    sock.queue.put_nowait(None)
    assert await sock.poll() == []
    await asyncio.wait_for(sock.queue.join(), 1)  # every packet marked done


async def test_poll_stops_at_the_end_marker_and_keeps_it():
    sock = lean_socket()
    first = eio_packet.Packet(eio_packet.MESSAGE, data="last")
    sock.queue.put_nowait(first)
    sock.queue.put_nowait(None)
    assert await sock.poll() == [first]
    assert await sock.poll() == []


async def test_poll_raises_queue_empty_after_ping_interval_plus_timeout():
    sock = lean_socket(ping_interval=0.05, ping_timeout=0.05)
    started = time.monotonic()
    with pytest.raises(eio_exceptions.QueueEmpty):
        await sock.poll()
    assert 0.09 < time.monotonic() - started < 1
    assert not sock.queue._getters


async def test_a_cancelled_poll_raises_queue_empty():
    sock = lean_socket()
    poll = asyncio.create_task(sock.poll())
    await asyncio.sleep(0.01)
    poll.cancel()
    with pytest.raises(eio_exceptions.QueueEmpty):
        await poll


# -- LeanSocket, over real connections ------------------------------------------------------

CLOSED_TYPES = (
    aiohttp.WSMsgType.CLOSE,
    aiohttp.WSMsgType.CLOSING,
    aiohttp.WSMsgType.CLOSED,
    aiohttp.WSMsgType.ERROR,
)


@contextlib.asynccontextmanager
async def serving(
    server_class: type[socketio.AsyncServer] = SocketServer, **options: Any
) -> AsyncIterator[tuple[Any, str]]:
    """A Socket.IO server with an `echo` event (acked, and emitted back as `echoed`) on an
    ephemeral port; no service task, so only the sockets themselves time connections out."""
    sio = server_class(async_mode="aiohttp", async_handlers=False, monitor_clients=False, **options)

    @sio.on("echo")  # type: ignore[misc]
    async def echo(sid: str, data: Any) -> Any:
        await sio.emit("echoed", data, to=sid)
        return data

    app = web.Application()
    sio.attach(app)
    async with serving_app(app) as url:
        try:
            yield sio, url
        finally:
            await sio.shutdown()


async def open_websocket(
    http: aiohttp.ClientSession, url: str
) -> tuple[aiohttp.ClientWebSocketResponse, str]:
    """A raw Engine.IO WebSocket (no Socket.IO namespace yet) and its sid."""
    ws = await http.ws_connect(f"{url}/socket.io/?EIO=4&transport=websocket", max_msg_size=0)
    opened = await ws.receive(timeout=5)
    assert opened.type == aiohttp.WSMsgType.TEXT and opened.data.startswith("0{")
    return ws, json.loads(opened.data[1:])["sid"]


async def connect_namespace(ws: aiohttp.ClientWebSocketResponse) -> None:
    await ws.send_str("40")
    connected = await ws.receive(timeout=5)
    assert connected.type == aiohttp.WSMsgType.TEXT and connected.data.startswith("40{")


async def test_websocket_and_polling_sockets_are_lean_sockets():
    async with serving() as (sio, url), aiohttp.ClientSession() as http:
        ws, ws_sid = await open_websocket(http, url)
        async with http.get(f"{url}/socket.io/?EIO=4&transport=polling") as response:
            assert response.status == 200
            polling_sid = json.loads((await response.text())[1:])["sid"]
        assert type(sio.eio.sockets[ws_sid]) is LeanStrictSocket
        assert type(sio.eio.sockets[polling_sid]) is LeanStrictSocket
        await ws.close()


def waiting_tasks() -> list[str]:
    """The tasks python-engineio's own `AsyncSocket` keeps per idle WebSocket connection."""
    names = []
    for task in asyncio.all_tasks():
        name = task.get_coro().__qualname__  # type: ignore[union-attr]
        if name in ("AsyncSocket._websocket_handler.<locals>.websocket_wait", "Queue.get"):
            names.append(name)
    return names


@pytest.mark.parametrize(
    ("server_class", "per_connection"), [(SocketServer, 0), (socketio.AsyncServer, 2)]
)
async def test_an_idle_websocket_holds_no_task_for_its_waits(server_class, per_connection):
    """socketio.AsyncServer, python-engineio's socket, is the control: a task for the frame it
    waits for and one for the queue's `get()`."""
    async with serving(server_class) as (_, url), aiohttp.ClientSession() as http:
        sockets = [await open_websocket(http, url) for _ in range(5)]
        for ws, _ in sockets:
            await connect_namespace(ws)
        await asyncio.sleep(0.1)  # every writer back in poll(), every reader in receive
        assert len(waiting_tasks()) == 5 * per_connection
        for ws, _ in sockets:
            await ws.close()


async def read_until_closed(
    ws: aiohttp.ClientWebSocketResponse, seconds: float, pong: bool = True
) -> list[str]:
    """The text frames received until the server closes the connection (or `seconds` pass),
    answering each PING with a PONG if `pong`."""
    frames: list[str] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = await ws.receive(timeout=left)
        except TimeoutError:
            break
        if message.type in CLOSED_TYPES:
            frames.append("<closed>")
            break
        frames.append(message.data)
        if message.data == "2" and pong:
            await ws.send_str("3")
    return frames


@pytest.mark.slow
async def test_a_client_that_stops_answering_pings_is_closed_after_interval_plus_timeout():
    async with (
        serving(ping_interval=1.0, ping_timeout=0.5) as (sio, url),
        aiohttp.ClientSession() as http,
    ):
        started = time.monotonic()
        silent, sid = await open_websocket(http, url)
        lively, _ = await open_websocket(http, url)

        async def until_silent_is_closed() -> tuple[list[str], float]:
            frames = await read_until_closed(silent, 4.0, pong=False)
            return frames, time.monotonic() - started

        (silent_frames, closed_after), lively_frames = await asyncio.gather(
            until_silent_is_closed(), read_until_closed(lively, 2.7)
        )
        # The silent client's last frame reached the server at 0 s (the handshake), so the
        # server's receive gives up at 1.5 s; its writer, idle since the ping at 1 s, would only
        # give up at 2.5 s.
        assert silent_frames == ["2", "<closed>"]
        assert 1.2 < closed_after < 2.45, closed_after
        assert sid not in sio.eio.sockets or sio.eio.sockets[sid].closed
        # The other client answers every ping: two in 2.7 s, and it is still connected.
        assert lively_frames == ["2", "2"]
        assert not lively.closed
        await lively.close()


async def test_pings_come_from_the_timer_wheel_not_a_task_per_connection():
    """Each ping cycle upstream is a task sleeping ping_interval; LeanSocket schedules it on the
    loop's TimerWheel: pings still arrive every interval, and no `_send_ping` task exists."""
    async with (
        serving(ping_interval=0.3, ping_timeout=5) as (sio, url),
        aiohttp.ClientSession() as http,
    ):
        sockets = [await open_websocket(http, url) for _ in range(5)]
        assert all(isinstance(sio.eio.sockets[sid], LeanSocket) for _, sid in sockets)
        frames = await asyncio.gather(*(read_until_closed(ws, 1.0) for ws, _ in sockets))
        assert all(f[:2] == ["2", "2"] for f in frames), frames  # pinged about every 0.3 s
        ping_tasks = [t for t in asyncio.all_tasks() if "_send_ping" in repr(t.get_coro())]
        assert ping_tasks == []
        assert len(wheel()) >= len(sockets)  # each socket's next ping, and its watchdogs
        for ws, _ in sockets:
            await ws.close()


async def test_a_frame_over_max_http_buffer_size_closes_the_connection():
    async with (
        serving(max_http_buffer_size=1000) as (sio, url),
        aiohttp.ClientSession() as http,
    ):
        ws, sid = await open_websocket(http, url)
        await connect_namespace(ws)
        prefix = '421["echo","'
        # aiohttp (max_msg_size=max_http_buffer_size) already refuses a frame of exactly 1000
        text = "x" * (999 - len(prefix) - 2)
        await ws.send_str(f'{prefix}{text}"]')
        replies = [(await ws.receive(timeout=5)).data for _ in range(2)]
        assert replies == [f'42["echoed","{text}"]', f'431["{text}"]']

        await ws.send_str(f'{prefix}{text}xx"]')
        assert await read_until_closed(ws, 5.0) == ["<closed>"]
        for _ in range(50):
            if sid not in sio.eio.sockets or sio.eio.sockets[sid].closed:
                break
            await asyncio.sleep(0.02)
        assert sid not in sio.eio.sockets or sio.eio.sockets[sid].closed


async def test_many_messages_round_trip_in_order_over_a_websocket():
    async with serving() as (sio, url), aiohttp.ClientSession() as http:
        ws, sid = await open_websocket(http, url)
        await connect_namespace(ws)
        assert type(sio.eio.sockets[sid]) is LeanStrictSocket
        count = 2000
        for i in range(count):  # all sent before any is read: the server batches its replies
            await ws.send_str(f'42["echo",{i}]')
        received = []
        while len(received) < count:
            message = await ws.receive(timeout=5)
            assert message.type == aiohttp.WSMsgType.TEXT, message
            event, number = json.loads(message.data[2:])
            assert event == "echoed"
            received.append(number)
        assert received == list(range(count))
        await ws.close()


async def test_polling_upgrades_to_websocket_and_both_carry_messages():
    async with serving() as (sio, url):
        client = socketio.AsyncClient(reconnection=False)
        await client.connect(url, transports=["polling", "websocket"], wait_timeout=10)
        try:
            assert client.transport() == "websocket"
            sock = sio.eio.sockets[client.eio.sid]
            assert type(sock) is LeanStrictSocket and sock.upgraded and not sock.upgrading
            for i in range(20):
                assert await client.call("echo", {"n": i}, timeout=5) == {"n": i}
        finally:
            await client.disconnect()

        polling = socketio.AsyncClient(reconnection=False)
        await polling.connect(url, transports=["polling"], wait_timeout=10)
        try:
            assert polling.transport() == "polling"
            assert type(sio.eio.sockets[polling.eio.sid]) is LeanStrictSocket
            for i in range(20):
                assert await polling.call("echo", [i, "x"], timeout=5) == [i, "x"]
        finally:
            await polling.disconnect()


class _EngineWebSocket(aiohttp_driver.WebSocket):  # type: ignore[misc]
    """python-engineio's aiohttp `WebSocket` around `response`, noting what passes its send()."""

    def __init__(self, response: web.WebSocketResponse) -> None:
        super().__init__(handler=None, server=None)
        self._sock = response
        self.sent: list[Any] = []

    async def send(self, message: Any) -> None:
        self.sent.append(message)
        await super().send(message)


@pytest.mark.parametrize("compress", [True, False])
async def test_a_batch_of_packets_reaches_the_transport_as_one_write_of_all_its_frames(compress):
    writes: list[int] = []
    done = asyncio.Event()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        response = web.WebSocketResponse(compress=compress)
        await response.prepare(request)
        transport = response._writer.transport
        real_write = transport.write

        def counted(data: bytes) -> None:
            writes.append(len(data))
            real_write(data)

        transport.write = counted  # the real transport, watched
        ws = _EngineWebSocket(response)
        packets = [
            eio_packet.Packet(eio_packet.MESSAGE, data='2["message",{"seq":2}]'),
            eio_packet.Packet(eio_packet.MESSAGE, data="3" + "1" * 200 + '[{"ok":true}]'),
            eio_packet.Packet(eio_packet.MESSAGE, data=b"\x01\x02"),
        ]
        await _send_all(ws, packets)
        assert ws.sent == [], "every frame went past python-engineio's send()"
        assert response._writer.transport is transport
        assert len(writes) == 1
        await _send_all(ws, packets[:1])  # a single packet is written as it is
        assert len(writes) == 2
        await done.wait()
        await response.close()
        return response

    app = web.Application()
    app.router.add_get("/ws", handler)
    async with (
        serving_app(app) as url,
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{url}/ws", compress=15 if compress else 0) as ws,
    ):
        frames = [await ws.receive(timeout=5) for _ in range(4)]
        done.set()
    assert [(f.type, f.data) for f in frames] == [
        (aiohttp.WSMsgType.TEXT, '42["message",{"seq":2}]'),
        (aiohttp.WSMsgType.TEXT, "43" + "1" * 200 + '[{"ok":true}]'),
        (aiohttp.WSMsgType.BINARY, b"\x01\x02"),  # Engine.IO v4: binary as it is
        (aiohttp.WSMsgType.TEXT, '42["message",{"seq":2}]'),
    ]


async def test_a_writer_that_fails_on_anything_but_a_closed_connection_says_so(caplog):
    """A bug in the batch writer (here: it raises) closes the WebSocket with a logged
    traceback, not silently (upstream's writer breaks on any exception without a word)."""

    async def broken(ws: Any, packets: list[Any]) -> None:
        if any(p.packet_type == eio_packet.MESSAGE for p in packets):  # after the OPEN packet
            raise AttributeError("'WebSocketWriter' object has no attribute 'transport'")
        await send_each(ws, packets)

    async with serving() as (sio, url), aiohttp.ClientSession() as http:
        sio.eio.send_packets = broken
        ws, sid = await open_websocket(http, url)
        await ws.send_str("40")  # the CONNECT answer goes through the writer
        frames = await read_until_closed(ws, 5)
    assert frames == ["<closed>"]
    failures = [r for r in caplog.records if "WebSocket writer of" in r.getMessage()]
    assert len(failures) == 1 and failures[0].levelno == logging.ERROR
    assert failures[0].exc_info is not None and sid in failures[0].getMessage()


async def test_a_closed_connection_ends_the_writer_quietly(caplog):
    async def gone(ws: Any, packets: list[Any]) -> None:
        if any(p.packet_type == eio_packet.MESSAGE for p in packets):
            raise ConnectionResetError("Cannot write to closing transport")
        await send_each(ws, packets)

    async with serving() as (sio, url), aiohttp.ClientSession() as http:
        sio.eio.send_packets = gone
        ws, _ = await open_websocket(http, url)
        await ws.send_str("40")
        assert await read_until_closed(ws, 5) == ["<closed>"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_without_aiohttps_frame_writer_each_packet_goes_through_send():
    class Plain:
        def __init__(self) -> None:
            self.sent: list[Any] = []

        async def send(self, message: Any) -> None:
            self.sent.append(message)

    ws = Plain()
    await _send_all(
        ws, [eio_packet.Packet(eio_packet.MESSAGE, data="a"), eio_packet.Packet(eio_packet.PING)]
    )
    assert ws.sent == ["4a", "2"]


# -- LeanSocket.handle_post_request (long-polling payloads) ----------------------------------


class _Body:
    """`environ['wsgi.input']`: aiohttp's `StreamReader.readexactly()` over a fixed body."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def readexactly(self, n: int) -> bytes:
        if n > len(self.data):
            raise asyncio.IncompleteReadError(self.data, n)
        chunk, self.data = self.data[:n], self.data[n:]
        return chunk


async def test_a_refused_post_raises_engineio_error_only_while_the_session_is_listed(caplog):
    """The integration tests see the 400; here, the case they cannot reach: a session closed and
    removed while its POST body was read. python-engineio's POST branch sets its 400 response
    only for a session it still lists (otherwise UnboundLocalError, a 500 with a traceback), so
    the override refuses such a body quietly. Upstream's global packet limit is left alone."""
    server = EngineServer(async_mode="aiohttp")
    sock = StrictPostSocket(server, "sid")
    caplog.set_level(logging.INFO, logger="socketsvc.transport.server")

    def environ(body: bytes) -> dict[str, Any]:
        return {"CONTENT_LENGTH": str(len(body)), "wsgi.input": _Body(body)}

    sock.server.sockets["sid"] = sock
    with pytest.raises(eio_exceptions.EngineIOError):
        await sock.handle_post_request(environ(b"4x\x1e9"))  # 9: no packet type
    del sock.server.sockets["sid"]
    assert await sock.handle_post_request(environ(b"4x\x1e9")) is None
    short = {"CONTENT_LENGTH": "10", "wsgi.input": _Body(b"3")}
    assert await sock.handle_post_request(short) is None
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3 and all("refused a long-polling payload" in line for line in lines)
    assert "IncompleteReadError" in lines[2]
    assert eio_payload.Payload.max_decode_packets == 16
    assert len(StrictPayload(encoded_payload="\x1e".join(["3"] * 32768)).packets) == 32768
