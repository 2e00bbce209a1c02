"""The Socket.IO server class: python-socketio's, hardened where a public endpoint needs it and
lighter per connection."""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any

import engineio
import socketio
from socketio import packet

from socketsvc.errors import error_ack

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


class EngineServer(engineio.AsyncServer):  # type: ignore[misc]
    """python-engineio's server with `LeanQueue` as every socket's packet queue."""

    def create_queue(self, *args: Any, **kwargs: Any) -> asyncio.Queue[Any]:
        return LeanQueue(*args, **kwargs)


class SocketServer(socketio.AsyncServer):  # type: ignore[misc]
    """`socketio.AsyncServer` with five changes:

    - its Engine.IO server gives each socket a `LeanQueue`, 3 KiB smaller than `asyncio.Queue`;
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
