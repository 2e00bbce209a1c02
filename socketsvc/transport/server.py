"""The Socket.IO server class: python-socketio's, hardened where a public endpoint needs it and
lighter per connection."""

from __future__ import annotations

import asyncio
import binascii
import collections
import logging
import urllib.parse
from typing import Any

import engineio
import socketio
from engineio import async_socket, exceptions
from engineio import packet as eio_packet
from engineio import payload as eio_payload
from socketio import packet

from socketsvc.domain.errors import error_ack
from socketsvc.runtime.tasks import Deadline, Watchdog

log = logging.getLogger(__name__)

RESERVED_EVENTS = frozenset({"connect", "disconnect", "connect_error"})
"""Names python-socketio dispatches to lifecycle handlers; a client must not send them."""
MAX_ATTACHMENTS = 8
"""Binary attachments one packet may announce (each at most max_http_buffer_size)."""


class _Waiters(list[Any]):
    """The part of `collections.deque` that asyncio's `Queue` and `Event` use on their lists of
    waiting futures (append, popleft, remove, iteration), on a list: an empty deque allocates a
    64-slot block up front (760 bytes), an empty list 56, and for an Engine.IO socket these lists
    hold a future or two at most (its writer task, a closing `join()`)."""

    __slots__ = ()

    def popleft(self) -> Any:
        return self.pop(0)


_EMPTY: tuple[Any, ...] = ()


class LeanQueue(asyncio.Queue[Any]):
    """`asyncio.Queue` without its four preallocated deques, for Engine.IO sockets.

    Every connection has one queue of outgoing packets, and `asyncio.Queue` allocates four deques
    for it (items, getters, putters, and the waiters of its `join()` event): 3 KiB per idle
    connection, as much as a tenth of what one costs in all. Here the waiter lists are
    `_Waiters` and the items sit in a deque only while there are any (an idle socket's queue is
    empty between pings). The queue's own code, and so its behaviour, is asyncio's.
    """

    def __init__(self, maxsize: int = 0) -> None:
        super().__init__(maxsize)
        self._getters = _lean(getattr(self, "_getters", None))
        self._putters = _lean(getattr(self, "_putters", None))
        finished = getattr(self, "_finished", None)
        if finished is not None:
            finished._waiters = _lean(getattr(finished, "_waiters", None))

    def _init(self, maxsize: int) -> None:
        self._queue: collections.deque[Any] | tuple[Any, ...] = _EMPTY

    def _put(self, item: Any) -> None:
        queue = self._queue
        if isinstance(queue, tuple):
            queue = self._queue = collections.deque()
        queue.append(item)

    def _get(self) -> Any:
        queue = self._queue
        if isinstance(queue, tuple):  # asyncio only gets from a queue that is not empty
            raise IndexError("get from an empty queue")
        item = queue.popleft()
        if not queue:
            self._queue = _EMPTY
        return item


def _lean(waiters: Any) -> Any:
    """An empty `_Waiters` for an empty deque of waiters; anything else is kept as it is (a
    Python version whose asyncio holds its waiters differently keeps its own)."""
    if type(waiters) is collections.deque and not waiters:
        return _Waiters()
    return waiters


async def _send_all(ws: Any, packets: list[Any]) -> None:
    """Send Engine.IO packets as WebSocket frames, several at once in one write.

    A stored message goes out as two frames together (its `message` push and the ack), and
    every write to a TCP socket is a system call and a segment through the kernel's network stack
    on both sides. While the frames of one batch are sent, aiohttp's frame writer writes into a
    `_WriteBatch`, whose bytes then reach the transport in one write: the same frames, in the same
    order. python-engineio's `WebSocket.send()` also asks `inspect.iscoroutinefunction()` per
    frame; aiohttp's `send_str`/`send_bytes` are coroutines, so they are awaited directly.
    Where the aiohttp objects are not as expected, each packet goes through `ws.send()`.
    """
    response: Any = getattr(ws, "_sock", None)
    frames: Any = getattr(response, "_writer", None)
    transport = getattr(frames, "transport", None)
    if transport is None or not hasattr(response, "send_str"):
        for pkt in packets:
            await ws.send(pkt.encode())
        return
    batch = _WriteBatch(transport) if len(packets) > 1 else None
    if batch is not None:
        frames.transport = batch
    try:
        for pkt in packets:
            data = pkt.encode()
            if isinstance(data, str):
                await response.send_str(data)
            else:
                await response.send_bytes(data)
    finally:
        if batch is not None:
            frames.transport = transport
            batch.flush()


class _WriteBatch:
    """Stands in for a transport while frames are built: collects what is written."""

    __slots__ = ("_chunks", "_transport")

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        self._chunks.append(data)

    def is_closing(self) -> bool:
        closing: bool = self._transport.is_closing()
        return closing

    def flush(self) -> None:
        if self._chunks and not self._transport.is_closing():
            self._transport.write(b"".join(self._chunks))
        self._chunks.clear()


# -- long-polling POST bodies: see LeanSocket.handle_post_request ------------------------------

CLIENT_PACKET_TYPES = frozenset(
    {eio_packet.CLOSE, eio_packet.PONG, eio_packet.MESSAGE, eio_packet.UPGRADE}
)
"""The Engine.IO packet types `AsyncSocket.receive()` takes from a client; it raises
`UnknownPacketError` on any other."""
POLLING_PACKETS_PER_YIELD = 16
"""A long-polling payload is dispatched in runs of this many packets (upstream's limit for a whole
payload) with a yield to the event loop between runs, so that other connections are served and a
namespace's disconnect of a flooder (a background task) takes effect within the payload. Measured
on 64 KiB payloads of over-budget events: 11 to 15 refusals after the 30th (each logs a flood
warning), where dispatching without yields gave 190 to 3,000; those without database writes took
25 to 45 ms of CPU instead of 75 to 340."""


class StrictPayload(eio_payload.Payload):  # type: ignore[misc]
    """A long-polling payload decoded all or nothing, with no packet count limit.

    python-engineio 4.15.1's `Payload.decode()` refuses more than `max_decode_packets` (16, a class
    attribute) packets, while socket.io-client sends every packet queued since its last POST in
    one payload, bounded only by bytes; here the caller's byte limit is the only bound (N bytes
    hold at most N // 2 + 1 packets). Each packet is checked before any is used: a type that
    `receive()` refuses, an empty packet, or base64 that a strict decoder refuses (upstream's
    `b64decode()` skips characters outside the alphabet) makes `decode()` raise.
    """

    def decode(self, encoded_payload: str) -> None:
        self.packets = []
        if not encoded_payload:
            return
        if encoded_payload.startswith("d="):  # a JSONP form body, as upstream
            encoded_payload = urllib.parse.parse_qs(encoded_payload)["d"][0]
        packets = []
        for encoded in encoded_payload.split("\x1e"):
            if encoded.startswith("b"):
                binascii.a2b_base64(encoded[1:], strict_mode=True)
            pkt = eio_packet.Packet(encoded_packet=encoded)
            if pkt.packet_type not in CLIENT_PACKET_TYPES:
                raise ValueError(f"packet type {pkt.packet_type} from a client")
            packets.append(pkt)
        self.packets = packets


async def _read_body(environ: dict[str, Any], limit: int) -> bytes:
    """A POST's whole body, at most `limit` bytes: exactly `Content-Length` bytes (aiohttp's
    `read(n)` returns what has arrived so far), or, without one (chunked), up to its end."""
    stream = environ["wsgi.input"]
    if "CONTENT_LENGTH" in environ:
        length = int(environ["CONTENT_LENGTH"])
        if length > limit:
            raise ValueError("over max_http_buffer_size")
        # IncompleteReadError if the body ends short; aiohttp's empty stream raises it even for 0
        body: bytes = await stream.readexactly(length) if length else b""
        return body
    chunks = bytearray()
    while chunk := await stream.read(limit + 1 - len(chunks)):
        chunks += chunk
        if len(chunks) > limit:
            raise ValueError("over max_http_buffer_size")
    return bytes(chunks)


class LeanSocket(async_socket.AsyncSocket):  # type: ignore[misc]
    """python-engineio's `AsyncSocket` without an asyncio task per packet on the WebSocket path,
    and taking whole long-polling payloads of any packet count (`handle_post_request`).

    `poll()` and `_websocket_handler()` are python-engineio 4.15.1's, line for line, except for how
    they wait with a timeout and how the writer sends a batch of packets (`_send_all`). Upstream
    wraps each wait in `asyncio.wait_for()`, which on Python 3.11 runs the awaitable in a task of
    its own: per frame received, `ensure_future(websocket_wait())` plus `wait_for`'s timer, waiter
    future and done-callbacks, and per batch sent, a task for `queue.get()`; each costs extra trips
    through the event loop. Here both waits run in the caller's task under a `Watchdog` (what
    `asyncio.timeout()` does, for less: no task, and one timer every ping_interval + ping_timeout
    for all the waits of the reader, and one for the writer's), with the same outcome: a receive
    that waits longer than ping_interval + ping_timeout ends the connection, as do a cancellation, a
    closed WebSocket and a frame over max_http_buffer_size; `poll()` raises `exceptions.QueueEmpty`
    on a timeout or a cancellation. The `wait_task.exception()` work-around for bpo-30508 goes with
    the task it was for. Measured on an echo server (one frame in, ack and event out): 14k fewer CPU
    instructions per message, 2.8% (callgrind); in bench/cost.py's figures the gain is below the
    run-to-run noise.

    It adds no attributes and keeps `AsyncSocket`'s layout, so that `EngineServer` can turn each
    new `AsyncSocket` into a `LeanSocket` by assigning `__class__` (see there). On CPython 3.11
    that gives the instance a real `__dict__` (64 bytes) in place of its inline attribute values,
    but an idle WebSocket connection no longer holds the tasks, frames, futures and timers of two
    `wait_for`s: 2 KB less per connection in all (measured with tracemalloc).
    """

    # Set by BaseSocket.__init__; declared for mypy only (annotations create no attributes).
    connected: bool
    upgrading: bool
    upgraded: bool
    closing: bool
    closed: bool

    async def handle_post_request(self, environ: dict[str, Any]) -> None:
        """Take a long-polling POST: the whole body, bounded by bytes, decoded before any packet
        is dispatched; a body that cannot be taken fails the transport.

        python-engineio 4.15.1 reads `read(CONTENT_LENGTH)` (aiohttp may return fewer bytes, and
        a chunked body is ignored), refuses a payload of more than 16 packets with an exception
        that its POST branch logs with a traceback and answers 200 (the batch is gone, the session
        stays up), and dispatches packets until a bad one raises, after earlier ones took effect.
        Here the body is read whole up to `max_http_buffer_size` bytes, as the reference JS server
        bounds it, and decoded by `StrictPayload`; anything refused (too large, short, not UTF-8,
        a bad packet) is logged once and raised as an `EngineIOError`, on which the POST branch
        closes the session and answers 400, so the client reconnects and re-sends. Packets are
        dispatched until one closes the session (a client CLOSE, or `SocketServer` dropping it
        over a bad Socket.IO packet); the rest of the payload goes nowhere. Every
        POLLING_PACKETS_PER_YIELD packets the loop yields once (see there).
        """
        try:
            body = await _read_body(environ, self.server.max_http_buffer_size)
            packets = StrictPayload(encoded_payload=body.decode("utf-8")).packets
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"[:200]
            log.info("closing %s: refused a long-polling payload (%s)", self.sid, reason)
            # The POST branch answers 400 only for a session it still lists (else it fails with
            # UnboundLocalError); one closed and removed meanwhile has nothing left to refuse.
            if self.sid in self.server.sockets:
                raise exceptions.EngineIOError(reason) from exc
            return
        for i, pkt in enumerate(packets, 1):
            if self.closing or self.closed:
                break
            await self.receive(pkt)
            if i % POLLING_PACKETS_PER_YIELD == 0:
                await asyncio.sleep(0)

    async def poll(self, watchdog: Watchdog | None = None) -> list[Any]:
        """Wait for packets to send to the client (under `watchdog`, the WebSocket writer's)."""
        try:
            with watchdog or Deadline(self.server.ping_interval + self.server.ping_timeout):
                packets = [await self.queue.get()]
            self.queue.task_done()
        except (TimeoutError, asyncio.CancelledError):
            raise exceptions.QueueEmpty()  # noqa: B904 (as upstream)
        if packets == [None]:
            return []
        while True:
            try:
                pkt = self.queue.get_nowait()
                self.queue.task_done()
                if pkt is None:
                    self.queue.put_nowait(None)
                    break
                packets.append(pkt)
            except asyncio.QueueEmpty:
                break
        return packets

    async def _websocket_handler(self, ws: Any) -> None:
        """Engine.IO handler for websocket transport."""

        async def websocket_wait() -> Any:
            data = await ws.wait()
            if data and len(data) > self.server.max_http_buffer_size:
                raise ValueError("packet is too large")
            return data

        if self.connected:
            # the socket was already connected, so this is an upgrade
            self.upgrading = True  # hold packet sends during the upgrade

            try:
                pkt = await websocket_wait()
            except OSError:  # pragma: no cover
                return
            decoded_pkt = eio_packet.Packet(encoded_packet=pkt)
            if decoded_pkt.packet_type != eio_packet.PING or decoded_pkt.data != "probe":
                self.server.logger.info("%s: Failed websocket upgrade, no PING packet", self.sid)
                self.upgrading = False
                return
            await ws.send(eio_packet.Packet(eio_packet.PONG, data="probe").encode())
            await self.queue.put(eio_packet.Packet(eio_packet.NOOP))  # end poll

            try:
                pkt = await websocket_wait()
            except OSError:  # pragma: no cover
                self.upgrading = False
                return
            decoded_pkt = eio_packet.Packet(encoded_packet=pkt)
            if decoded_pkt.packet_type != eio_packet.UPGRADE:
                self.upgraded = False
                self.server.logger.info(
                    "%s: Failed websocket upgrade, expected UPGRADE packet, received %s instead.",
                    self.sid,
                    pkt,
                )
                self.upgrading = False
                return
            self.upgraded = True
            self.upgrading = False
        else:
            self.connected = True
            self.upgraded = True

        # start separate writer thread
        async def writer() -> None:
            watchdog = Watchdog(self.server.ping_interval + self.server.ping_timeout)
            try:
                while True:
                    packets = None
                    try:
                        packets = await self.poll(watchdog)
                    except exceptions.QueueEmpty:
                        break
                    if not packets:
                        # empty packet list returned -> connection closed
                        break
                    try:
                        await _send_all(ws, packets)
                    except BaseException:
                        break
            finally:
                watchdog.close()
            await ws.close()

        writer_task = asyncio.ensure_future(writer())

        self.server.logger.info("%s: Upgrade to websocket successful", self.sid)

        watchdog = Watchdog(self.server.ping_interval + self.server.ping_timeout)
        try:
            while True:
                p = None
                try:
                    with watchdog:
                        p = await websocket_wait()
                except BaseException:
                    # Upstream breaks here on anything: a timeout, a cancellation (without a
                    # task of its own there is no bpo-30508 to work around), OSError, ValueError.
                    break
                if p is None:
                    # connection closed by client
                    break
                pkt = eio_packet.Packet(encoded_packet=p)
                try:
                    await self.receive(pkt)
                except exceptions.UnknownPacketError:  # pragma: no cover
                    pass
                except exceptions.SocketIsClosedError:  # pragma: no cover
                    self.server.logger.info("Receive error -- socket is closed")
                    break
                except BaseException:  # pragma: no cover
                    # if we get an unexpected exception we log the error and exit
                    # the connection properly
                    self.server.logger.exception("Unknown receive error")
        finally:
            watchdog.close()

        await self.queue.put(None)  # unlock the writer task so it can exit
        await asyncio.wait_for(writer_task, timeout=None)
        await self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)


class EngineServer(engineio.AsyncServer):  # type: ignore[misc]
    """python-engineio's server whose sockets are `LeanSocket`s with a `LeanQueue` each.

    python-engineio hard-codes the socket class: `AsyncServer._handle_connect()` runs
    `s = async_socket.AsyncSocket(self, sid)`, stores it in `self.sockets[sid]`, then builds the
    OPEN packet with `self._upgrades(sid, transport)` before it uses `s` at all. `_upgrades()` is
    therefore where each new socket becomes a `LeanSocket` (`__class__` assignment: same layout,
    same attributes), without copying `_handle_connect()` (60 lines) or patching python-engineio's
    module for every server in the process. Should a later python-engineio stop calling
    `_upgrades()` there, sockets simply stay `AsyncSocket`s (slower, not wrong); a test checks it.
    """

    def create_queue(self, *args: Any, **kwargs: Any) -> asyncio.Queue[Any]:
        return LeanQueue(*args, **kwargs)

    def _upgrades(self, sid: str, transport: str) -> list[str]:
        sock = self.sockets.get(sid)
        if type(sock) is async_socket.AsyncSocket:
            sock.__class__ = LeanSocket
        upgrades: list[str] = super()._upgrades(sid, transport)
        return upgrades


class SocketServer(socketio.AsyncServer):  # type: ignore[misc]
    """`socketio.AsyncServer` with seven changes:

    - its Engine.IO server gives each socket a `LeanQueue`, 3 KiB smaller than `asyncio.Queue`;
    - and makes each socket a `LeanSocket`, which waits for WebSocket frames and outgoing
      packets without a task per packet;
    - and whose long-polling POSTs are bounded by bytes, not 16 packets, decoded all or nothing,
      and fail the transport (HTTP 400) when they cannot be decoded;
    - a departing polling client's held GET is answered at once (python-engineio would keep it
      open for ping_interval + ping_timeout after the client sent CLOSE);
    - client events named `connect`, `disconnect` or `connect_error` are dropped (they would run
      the lifecycle handlers: a second session, or limits lifted while the connection stays);
    - a binary packet may announce at most MAX_ATTACHMENTS attachments, and unannounced binary
      frames close the connection (python-socketio would buffer any number of them);
    - a packet that cannot be decoded closes the connection with one log line, as the reference
      server does, instead of a traceback per packet on a connection that stays open.
    """

    def _engineio_server_class(self) -> type[EngineServer]:
        return EngineServer

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        if not self._acceptable(eio_sid, data):
            log.info("closing %s: binary packet with too many or unexpected attachments", eio_sid)
            await self.drop(eio_sid)
            return
        try:
            await super()._handle_eio_message(eio_sid, data)
        except Exception as exc:
            log.info("closing %s: bad Socket.IO packet (%s)", eio_sid, type(exc).__name__)
            await self.drop(eio_sid)

    def _acceptable(self, eio_sid: str, data: Any) -> bool:
        """Binary packets may announce a few attachments; attachments must be announced."""
        if isinstance(data, bytes | bytearray):
            return eio_sid in self._binary_packet
        if isinstance(data, str) and data[:1] in ("5", "6"):
            count = data[1:].split("-", 1)[0]
            return count.isdigit() and int(count) <= MAX_ATTACHMENTS
        return True

    async def _handle_event(self, eio_sid: str, namespace: str, id: Any, data: Any) -> None:
        if isinstance(data, list) and data and data[0] in RESERVED_EVENTS:
            log.info("refusing a client event named %r from %s", data[0], eio_sid)
            if id is not None:
                # To a client these names are not events at all.
                error = error_ack("not_found", f"unknown event {data[0]!r}")
                ack = self.packet_class(packet.ACK, namespace=namespace, data=[error], id=id)
                await self._send_packet(eio_sid, ack)
            return
        await super()._handle_event(eio_sid, namespace, id, data)

    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any) -> None:
        await super()._handle_eio_disconnect(eio_sid, reason)
        sock = self.eio.sockets.get(eio_sid)
        if sock is not None and not sock.upgraded and reason == self.eio.reason.CLIENT_DISCONNECT:
            sock.queue.put_nowait(None)

    async def drop(self, eio_sid: str) -> None:
        """Close an Engine.IO session now, without waiting for the client to collect anything."""
        sock = self.eio.sockets.get(eio_sid)
        if sock is None:
            return
        await sock.close(wait=False, abort=True)
        sock.queue.put_nowait(None)
