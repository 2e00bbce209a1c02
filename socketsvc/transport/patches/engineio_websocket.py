"""python-engineio: `AsyncSocket.poll` and `_websocket_handler` without a task per wait.

`LeanSocket` carries copies of both, changed only in how they wait with a timeout and how the
writer sends a batch (see the class). On the stock path sockets keep python-engineio's methods.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from engineio import async_socket, exceptions
from engineio import packet as eio_packet

from socketsvc.runtime.tasks import CoarseWatchdog, Deadline, Watchdog
from socketsvc.runtime.wheel import wheel
from socketsvc.transport.patches import Patch
from socketsvc.transport.patches.engineio_polling import ENGINEIO, SOCKETIO

log = logging.getLogger("socketsvc.transport.server")

PATCH = Patch(
    name="engineio.websocket_handler",
    why="waits for WebSocket frames and outgoing packets without an asyncio task per wait, and"
    " schedules pings and those waits' timeouts on one shared timer wheel",
    requires=(ENGINEIO, SOCKETIO),
    upstream={
        "engineio.async_socket:AsyncSocket._websocket_handler": "27f120df4d717a24",
        "engineio.async_socket:AsyncSocket.poll": "826f58a9f3606db2",
        "engineio.async_socket:AsyncSocket.schedule_ping": "fe316639159cd70d",
        "engineio.async_socket:AsyncSocket._send_ping": "67db82a704ea49d0",
        "engineio.async_server:AsyncServer._upgrades": "040ebcdf64fbf1b3",
        "socketio.async_server:AsyncServer._engineio_server_class": "199c42bf149247e0",
    },
)

Sender = Callable[[Any, list[Any]], Awaitable[None]]


async def send_each(ws: Any, packets: list[Any]) -> None:
    """python-engineio's way: one `ws.send()` per packet."""
    for pkt in packets:
        await ws.send(pkt.encode())


class LeanSocket(async_socket.AsyncSocket):  # type: ignore[misc]
    """python-engineio's `AsyncSocket` without an asyncio task per packet on the WebSocket path.

    `poll()` and `_websocket_handler()` are python-engineio 4.15.1's, line for line, except for how
    they wait with a timeout, how the writer sends a batch of packets (the server's `send_packets`:
    `aiohttp_writer._send_all` where that patch applies, else `send_each`) and that a writer that
    fails on anything but a closed connection logs it. Upstream wraps each wait in
    `asyncio.wait_for()`, which on Python 3.11 runs the awaitable in a task of its own: per frame
    received, `ensure_future(websocket_wait())` plus `wait_for`'s timer, waiter future and
    done-callbacks, and per batch sent, a task for `queue.get()`. Here both waits run in the
    caller's task under a `Watchdog` (what `asyncio.timeout()` does, for less: no task, and one
    timer every ping_interval + ping_timeout for all the waits of the reader, and one for the
    writer's), with the same outcome: a receive that waits longer than ping_interval +
    ping_timeout ends the connection, as do a cancellation, a closed WebSocket and a frame over
    max_http_buffer_size; `poll()` raises `exceptions.QueueEmpty` on a timeout or a cancellation.
    The `wait_task.exception()` work-around for bpo-30508 goes with the task it was for. The
    reader's and writer's watchdogs, and the next PING (`schedule_ping()`, upstream a task per
    connection sleeping `ping_interval`), wait on the loop's `TimerWheel` (runtime/wheel.py:
    up to 0.1 s late, no loop timer each): 2.7 KiB less per idle connection in tracemalloc.

    It adds no attributes and keeps `AsyncSocket`'s layout, so that `EngineServer` can turn each
    new `AsyncSocket` into a `LeanSocket` by assigning `__class__`. On CPython 3.11 that gives the
    instance a real `__dict__` (64 bytes) in place of its inline attribute values, but an idle
    WebSocket connection no longer holds the tasks, frames, futures and timers of two
    `wait_for`s. What that is worth: bench/patches.py, figures in docs/operations.md.
    """

    # Set by BaseSocket.__init__; declared for mypy only (annotations create no attributes).
    connected: bool
    upgrading: bool
    upgraded: bool
    closing: bool
    closed: bool
    last_ping: float | None

    def schedule_ping(self) -> None:
        """Schedule the next PING `ping_interval` from now, as upstream, but on the loop's
        `TimerWheel` instead of in a task of its own that sleeps (a task, its coroutine, the
        sleep's future and a loop timer per connection, all the time)."""
        # only schedule a new ping if the previous ping wait cycle completed
        if self.last_ping:
            self.last_ping = None
            loop = asyncio.get_running_loop()
            wheel(loop).call_at(loop.time() + self.server.ping_interval, self._ping_due)

    def _ping_due(self) -> None:
        """Upstream's `_send_ping` after its sleep: `send()` with `last_ping` just set is
        `check_ping_timeout()` (true but for a closed socket), `queue.put()` (the queue is
        unbounded: `put_nowait`) and the log line."""
        if not self.closing and not self.closed:
            self.last_ping = time.time()
            self.queue.put_nowait(eio_packet.Packet(eio_packet.PING))
            self.server.logger.info("%s: Sending packet PING data None", self.sid)

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

        send: Sender = getattr(self.server, "send_packets", None) or send_each

        # start separate writer thread
        async def writer() -> None:
            watchdog = CoarseWatchdog(self.server.ping_interval + self.server.ping_timeout)
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
                        await send(ws, packets)
                    except (OSError, asyncio.CancelledError):
                        break  # the connection is gone (upstream breaks on anything)
                    except Exception:
                        # Not a closed connection: a bug here would otherwise end every
                        # WebSocket after its first batch without a word.
                        log.exception("WebSocket writer of %s failed; closing it", self.sid)
                        break
            finally:
                watchdog.close()
            await ws.close()

        writer_task = asyncio.ensure_future(writer())

        self.server.logger.info("%s: Upgrade to websocket successful", self.sid)

        watchdog = CoarseWatchdog(self.server.ping_interval + self.server.ping_timeout)
        try:
            while True:
                p = None
                try:
                    with watchdog:
                        p = await websocket_wait()
                except (TimeoutError, asyncio.CancelledError, OSError, ValueError):
                    # Upstream breaks here on anything: a timeout, a cancellation (without a
                    # task of its own there is no bpo-30508 to work around), a closed WebSocket
                    # (OSError), a frame over max_http_buffer_size (ValueError).
                    break
                except Exception:
                    log.exception("WebSocket reader of %s failed; closing it", self.sid)
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
