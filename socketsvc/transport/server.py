"""The Socket.IO server: python-socketio's, hardened where a public endpoint needs it and lighter
per connection.

What overrides a dependency's private API lives in `socketsvc.transport.patches`, each patch with
the versions it was tested on; `build_server()` puts together the classes of the patches that
apply (`patches.apply()`), and python-socketio's and python-engineio's stock classes for the rest.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any

import engineio
import socketio
from engineio import async_socket

from socketsvc.transport import patches
from socketsvc.transport.patches import Applied, aiohttp_writer, engineio_polling, socketio_server
from socketsvc.transport.patches.aiohttp_writer import _send_all
from socketsvc.transport.patches.engineio_polling import (
    CLIENT_PACKET_TYPES,
    POLLING_PACKETS_PER_YIELD,
    StrictPayload,
    StrictPostSocket,
)
from socketsvc.transport.patches.engineio_websocket import LeanSocket
from socketsvc.transport.patches.socketio_server import (
    MAX_ATTACHMENTS,
    RESERVED_EVENTS,
    HardenedServer,
)

__all__ = [
    "CLIENT_PACKET_TYPES",
    "MAX_ATTACHMENTS",
    "POLLING_PACKETS_PER_YIELD",
    "RESERVED_EVENTS",
    "EngineServer",
    "LeanEngineServer",
    "LeanQueue",
    "LeanSocket",
    "LeanStrictSocket",
    "SocketServer",
    "StrictPayload",
    "StrictPostSocket",
    "_send_all",
    "build_server",
]

log = logging.getLogger(__name__)


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


class LeanStrictSocket(LeanSocket, StrictPostSocket):
    """Both socket patches: `LeanSocket`'s WebSocket path and `StrictPostSocket`'s POSTs."""


def socket_class(applied: Applied) -> type[async_socket.AsyncSocket] | None:
    """The class new Engine.IO sockets get for the applied patches (None: python-engineio's)."""
    from socketsvc.transport.patches import engineio_websocket

    lean = engineio_websocket.PATCH in applied
    strict = engineio_polling.PATCH in applied
    if lean and strict:
        return LeanStrictSocket
    if lean:
        return LeanSocket
    if strict:
        return StrictPostSocket
    return None


class LeanEngineServer(engineio.AsyncServer):  # type: ignore[misc]
    """python-engineio's server whose sockets get a `LeanQueue` each (`create_queue` is the
    public hook python-engineio calls for every socket's queue)."""

    def create_queue(self, *args: Any, **kwargs: Any) -> asyncio.Queue[Any]:
        return LeanQueue(*args, **kwargs)


class EngineServer(LeanEngineServer):
    """`LeanEngineServer` whose sockets are of `socket_class` (see `socket_class()`).

    python-engineio hard-codes the socket class: `AsyncServer._handle_connect()` runs
    `s = async_socket.AsyncSocket(self, sid)`, stores it in `self.sockets[sid]`, then builds the
    OPEN packet with `self._upgrades(sid, transport)` before it uses `s` at all. `_upgrades()` is
    therefore where each new socket changes class (`__class__` assignment: same layout, same
    attributes), without copying `_handle_connect()` (60 lines) or patching python-engineio's
    module for every server in the process. Should a later python-engineio stop calling
    `_upgrades()` there, sockets simply stay `AsyncSocket`s (a test checks it, and the patches'
    source hashes cover both methods).
    """

    socket_class: type[async_socket.AsyncSocket] | None = None
    send_packets: Any = None
    """How `LeanSocket`'s writer sends a batch (`_send_all`; None: one `ws.send()` each)."""

    def _upgrades(self, sid: str, transport: str) -> list[str]:
        sock = self.sockets.get(sid)
        cls = self.socket_class
        if cls is not None and type(sock) is async_socket.AsyncSocket:
            sock.__class__ = cls
        upgrades: list[str] = super()._upgrades(sid, transport)
        return upgrades


class SocketServer(HardenedServer):
    """python-socketio's server with every patch that applies (`applied`, by default what
    `patches.apply()` finds): `HardenedServer`'s checks (patches/socketio_server.py), and an
    Engine.IO server whose sockets get a `LeanQueue` each (3 KiB smaller than `asyncio.Queue`)
    and, per patch, whole long-polling payloads bounded by bytes (`StrictPostSocket`) and
    WebSocket waits without a task each (`LeanSocket`) writing a batch in one write
    (`_send_all`)."""

    def __init__(self, *args: Any, applied: Applied | None = None, **kwargs: Any) -> None:
        self.applied = patches.apply() if applied is None else applied
        super().__init__(*args, **kwargs)
        if isinstance(self.eio, EngineServer):
            self.eio.socket_class = socket_class(self.applied)
            if aiohttp_writer.PATCH in self.applied:
                self.eio.send_packets = _send_all

    def _engineio_server_class(self) -> type[LeanEngineServer]:
        return EngineServer if socket_class(self.applied) is not None else LeanEngineServer


def build_server(applied: Applied | None = None, **options: Any) -> socketio.AsyncServer:
    """The Socket.IO server for `options`: a `SocketServer` where python-socketio is at a tested
    version, else python-socketio's own `AsyncServer` (the stock path; `patches.apply()` has
    logged why)."""
    applied = patches.apply() if applied is None else applied
    if socketio_server.PATCH not in applied:
        return socketio.AsyncServer(**options)
    return SocketServer(applied=applied, **options)
