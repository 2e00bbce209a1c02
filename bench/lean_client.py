"""A lean Engine.IO v4 / Socket.IO v5 client for load generation.

python-socketio's client is too heavy to hold 10,000 connections from one core, so this speaks
the wire protocol directly:

- WebSocket: ``GET /socket.io/?EIO=4&transport=websocket`` (aiohttp), read ``0{...}`` (OPEN),
  send ``40/chat,{auth}``, wait for ``40/chat,{"sid"}`` (or ``44/chat,{error}``), answer each
  Engine.IO ping ``2`` with ``3``, parse ``42/chat,[event, data]`` events and
  ``43/chat,<id>[args]`` acks, emit ``42/chat,<id>["message",{...}]``.
- Long-polling: the same packets over ``GET``/``POST`` ``/socket.io/?EIO=4&transport=polling``,
  several packets per body separated by ``\\x1e``; one GET held at a time and one POST in flight at
  a time (Node's engine.io refuses overlapping POSTs), later sends are batched.

Acks go to a callback (``emit(..., on_ack=cb)``) so the load path allocates no futures; `call()`
returns an awaitable ack for the control path (handoff, accept).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp

AckCallback = Callable[[Any], None]
EventCallback = Callable[["BaseSocket", str, Any], None]
_TEXT = int(aiohttp.WSMsgType.TEXT)
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


_OK_PREFIXES = ('[{"ok":true', '[{"ok": true')


def ack_ok(ack: Any) -> tuple[bool, str | None]:
    """(ok, error code) of an ack: a parsed ``{"ok": ...}`` or, with `raw_acks`, its JSON text.

    The load path only looks at the prefix of the text: socketsvc, python-socketio and Node
    all put `ok` first. Anything else is parsed."""
    if isinstance(ack, str):
        if ack.startswith(_OK_PREFIXES):
            return True, None
        try:
            args = json.loads(ack)
        except ValueError:
            return False, "unparseable"
        ack = args[0] if args else None
    if isinstance(ack, dict) and ack.get("ok") is True:
        return True, None
    error = ack.get("error") if isinstance(ack, dict) else None
    return False, str(error.get("code")) if isinstance(error, dict) else "bad ack"


class ConnectRefused(Exception):
    """The namespace refused the connection (``44``): ``data`` is the server's reason."""

    def __init__(self, data: Any) -> None:
        super().__init__(f"connect_error: {data}")
        self.data = data


class BaseSocket:
    """Engine.IO session + one Socket.IO namespace; the transport is supplied by subclasses."""

    def __init__(
        self,
        base_url: str,
        namespace: str = "/chat",
        auth: dict[str, Any] | None = None,
        on_event: EventCallback | None = None,
        on_ping: Callable[[BaseSocket, float], None] | None = None,
        on_close: Callable[[BaseSocket], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.namespace = namespace
        self.auth = auth
        self.on_event = on_event
        self.on_ping = on_ping
        self.on_close = on_close
        self.eio_sid = ""
        self.sid = ""
        self.ping_interval = 25.0
        self.ping_timeout = 20.0
        self.opened_at = 0.0
        self.connected = False
        self.closed = False
        self.session: Any = None
        """The payload of the first ``session`` event (socketsvc and both reference servers)."""
        self._wait_event = "session"
        self.raw_acks = False
        """True: ack callbacks get the ack's JSON text (``[{...}]``) unparsed; see `ack_ok`."""
        self._next_id = 0
        self._acks: dict[int, AckCallback] = {}
        self._connected: asyncio.Future[Any] | None = None
        self._session: asyncio.Future[Any] | None = None
        self._prefix = f"42{namespace}," if namespace != "/" else "42"
        self.events_received = 0

    # -- sending ---------------------------------------------------------------------------

    def _send(self, text: str) -> None:
        raise NotImplementedError

    def emit(self, event: str, data: Any, on_ack: AckCallback | None = None) -> int:
        """Send an event; with `on_ack`, ask for an ack and call it with the ack's first arg."""
        if on_ack is None:
            self._send(self._prefix + _dumps([event, data]))
            return -1
        self._next_id += 1
        ack_id = self._next_id
        self._acks[ack_id] = on_ack
        self._send(f"{self._prefix}{ack_id}{_dumps([event, data])}")
        return ack_id

    def emit_encoded(self, args_json: str, on_ack: AckCallback) -> int:
        """`emit` with the ``[event, data]`` array already encoded (the load path's template)."""
        self._next_id += 1
        ack_id = self._next_id
        self._acks[ack_id] = on_ack
        self._send(f"{self._prefix}{ack_id}{args_json}")
        return ack_id

    async def call(self, event: str, data: Any, timeout: float = 30.0) -> Any:
        """Emit and wait for the ack."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def done(value: Any) -> None:
            if isinstance(value, str):  # raw_acks: parse here
                args = json.loads(value)
                value = args[0] if args else None
            if not future.done():
                future.set_result(value)

        self.emit(event, data, done)
        return await asyncio.wait_for(future, timeout)

    # -- receiving -------------------------------------------------------------------------

    def _on_eio_packet(self, text: str, now: float) -> None:
        kind = text[:1]
        if kind == "4":
            self._on_sio_packet(text[1:])
        elif kind == "2":
            self._send("3")
            if self.on_ping is not None:
                self.on_ping(self, now)
        elif kind == "0":
            info = json.loads(text[1:])
            self.eio_sid = info["sid"]
            self.ping_interval = info["pingInterval"] / 1000.0
            self.ping_timeout = info["pingTimeout"] / 1000.0
            self.opened_at = now
        elif kind == "1":
            self._lost()

    def _on_sio_packet(self, text: str) -> None:
        kind = text[:1]
        rest = text[1:]
        if rest.startswith("/"):
            comma = rest.find(",")
            if comma < 0:
                namespace, rest = rest, ""
            else:
                namespace, rest = rest[:comma], rest[comma + 1 :]
            if namespace != self.namespace:
                return
        i = 0
        while i < len(rest) and rest[i].isdigit():
            i += 1
        ack_id = int(rest[:i]) if i else None
        body = rest[i:]
        if kind == "3":
            callback = self._acks.pop(ack_id, None) if ack_id is not None else None
            if callback is not None:
                if self.raw_acks:
                    callback(body)
                else:
                    args = json.loads(body)
                    callback(args[0] if args else None)
        elif kind == "2":
            self.events_received += 1
            if self.on_event is None and self.session is not None and self._session_done():
                return  # nobody listens: skip parsing (a load run does not read pushes)
            args = json.loads(body)
            event = args[0]
            data = args[1] if len(args) > 1 else None
            if event == "session" and self.session is None:
                self.session = data
            if event == self._wait_event and self._session and not self._session.done():
                self._session.set_result(data)
            if self.on_event is not None:
                self.on_event(self, event, data)
        elif kind == "0":
            self.connected = True
            self.sid = json.loads(body).get("sid", "") if body else ""
            if self._connected is not None and not self._connected.done():
                self._connected.set_result(self.sid)
        elif kind == "4":
            error = json.loads(body) if body else None
            for future in (self._connected, self._session):
                if future is not None and not future.done():
                    future.set_exception(ConnectRefused(error))
        elif kind == "1":
            self._lost()

    def _lost(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.connected = False
        for future in (self._connected, self._session):
            if future is not None and not future.done():
                future.set_exception(ConnectionError("connection closed"))
        if self.on_close is not None:
            self.on_close(self)

    async def _join_namespace(self, wait_event: str | None, timeout: float) -> None:
        """Send CONNECT for the namespace; wait for its acceptance and then for `wait_event`
        (``session`` on /chat; socketsvc's /agent ends its greeting with ``assigned``)."""
        loop = asyncio.get_running_loop()
        self._connected = loop.create_future()
        self._wait_event = wait_event or ""
        self._session = loop.create_future() if wait_event else None
        packet = "40" if self.namespace == "/" else f"40{self.namespace},"
        if self.auth is not None:
            packet += _dumps(self.auth)
        self._send(packet)
        await asyncio.wait_for(self._connected, timeout)
        if self._session is not None:
            await asyncio.wait_for(self._session, timeout)

    def _session_done(self) -> bool:
        return self._session is None or self._session.done()

    @property
    def pending_acks(self) -> int:
        return len(self._acks)


class WebSocketClient(BaseSocket):
    """One Socket.IO connection over a WebSocket (no polling, no upgrade)."""

    ws: aiohttp.ClientWebSocketResponse | None = None
    _reader: asyncio.Task[None] | None = None

    async def connect(
        self,
        http: aiohttp.ClientSession,
        wait_event: str | None = "session",
        timeout: float = 30.0,
    ) -> None:
        """Open the WebSocket, join the namespace and wait for `wait_event` (``session``)."""
        url = self.base_url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
        self.ws = await http.ws_connect(url, autoping=True, max_msg_size=0, timeout=timeout)
        first = await asyncio.wait_for(self.ws.receive(), timeout)
        if first.type != aiohttp.WSMsgType.TEXT or not first.data.startswith("0"):
            raise ConnectionError(f"unexpected Engine.IO open packet: {first!r}")
        self._on_eio_packet(first.data, time.monotonic())
        self._reader = asyncio.create_task(self._read())
        await self._join_namespace(wait_event, timeout)

    def _send(self, text: str) -> None:
        ws = self.ws
        if ws is None or ws.closed:
            return
        # `send_str` is a coroutine (a task per send at 20k msgs/s costs the generator a third
        # of its core); its uncompressed path only writes one masked frame to the transport, so
        # do that synchronously. The transport buffers whatever the kernel does not take.
        writer = getattr(ws, "_writer", None)
        if writer is not None:
            try:
                writer._write_websocket_frame(text.encode(), _TEXT, 0)
            except Exception:
                self._lost()
            return
        task = asyncio.ensure_future(ws.send_str(text))  # pragma: no cover - other aiohttp
        task.add_done_callback(_ignore_result)

    async def _read(self) -> None:
        ws = self.ws
        assert ws is not None
        on_packet = self._on_eio_packet
        monotonic = time.monotonic
        try:
            while True:
                msg = await ws.receive()
                if msg.type == aiohttp.WSMsgType.TEXT:
                    on_packet(msg.data, monotonic())
                elif msg.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSING,
                    aiohttp.WSMsgType.CLOSED,
                    aiohttp.WSMsgType.ERROR,
                ):
                    break
        except (asyncio.CancelledError, Exception):
            pass
        finally:
            self._lost()

    async def close(self) -> None:
        if self.ws is not None and not self.ws.closed:
            with contextlib.suppress(Exception):
                await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
        self.closed = True

    def abort(self) -> None:
        """Drop the TCP connection without a closing handshake (fast teardown of thousands)."""
        self.closed = True
        if self._reader is not None:
            self._reader.cancel()
        ws = self.ws
        if ws is not None:
            response = getattr(ws, "_response", None)
            connection = getattr(response, "connection", None) if response else None
            if connection is not None and connection.transport is not None:
                connection.transport.abort()


class PollingClient(BaseSocket):
    """One Socket.IO connection over Engine.IO long-polling only."""

    http: aiohttp.ClientSession | None = None
    _poller: asyncio.Task[None] | None = None
    _posting: asyncio.Task[None] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._outbox: list[str] = []
        self._url = ""
        self.polls = 0
        self.posts = 0

    async def connect(
        self,
        http: aiohttp.ClientSession,
        wait_event: str | None = "session",
        timeout: float = 30.0,
    ) -> None:
        self.http = http
        base = self.base_url + "/socket.io/?EIO=4&transport=polling"
        async with http.get(base, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            body = await resp.text()
            if resp.status != 200 or not body.startswith("0"):
                raise ConnectionError(f"polling handshake failed: {resp.status} {body[:200]}")
        now = time.monotonic()
        for packet in body.split("\x1e"):
            self._on_eio_packet(packet, now)
        self._url = f"{base}&sid={self.eio_sid}"
        self._poller = asyncio.create_task(self._poll())
        await self._join_namespace(wait_event, timeout)

    def _send(self, text: str) -> None:
        if self.closed:
            return
        self._outbox.append(text)
        if self._posting is None:
            self._posting = asyncio.create_task(self._post())

    async def _post(self) -> None:
        assert self.http is not None
        try:
            while self._outbox and not self.closed:
                body, self._outbox = "\x1e".join(self._outbox), []
                self.posts += 1
                async with self.http.post(
                    self._url,
                    data=body.encode(),
                    headers={"Content-Type": "text/plain;charset=UTF-8"},
                ) as resp:
                    await resp.read()
                    if resp.status != 200:
                        self._lost()
        except (asyncio.CancelledError, Exception):
            self._lost()
        finally:
            self._posting = None

    async def _poll(self) -> None:
        assert self.http is not None
        timeout = aiohttp.ClientTimeout(total=self.ping_interval + self.ping_timeout + 10)
        try:
            while not self.closed:
                async with self.http.get(self._url, timeout=timeout) as resp:
                    body = await resp.text()
                    if resp.status != 200:
                        break
                self.polls += 1
                now = time.monotonic()
                for packet in body.split("\x1e"):
                    if packet:
                        self._on_eio_packet(packet, now)
        except (asyncio.CancelledError, Exception):
            pass
        finally:
            self._lost()

    async def close(self) -> None:
        if not self.closed and self.http is not None:
            with contextlib.suppress(Exception):
                async with self.http.post(self._url, data=b"1") as resp:
                    await resp.read()
        self.closed = True
        for task in (self._poller, self._posting):
            if task is not None:
                task.cancel()

    def abort(self) -> None:
        self.closed = True
        for task in (self._poller, self._posting):
            if task is not None:
                task.cancel()


def _ignore_result(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


def new_http(limit: int = 0) -> aiohttp.ClientSession:
    """A client session for thousands of connections to one loopback server."""
    connector = aiohttp.TCPConnector(limit=limit, force_close=False, enable_cleanup_closed=False)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None))
