"""python-engineio: long-polling POST bodies bounded by bytes, not by 16 packets (a bug fix).

`StrictPostSocket.handle_post_request` replaces `AsyncSocket.handle_post_request` and decodes
with `StrictPayload` instead of `Payload.decode`; `EngineServer._upgrades` (server.py) is where a
new socket becomes one, and python-socketio's `AsyncServer._engineio_server_class` where the
server gets that `EngineServer`. On the stock path python-engineio's own POST handling runs,
with its limit of 16 packets per payload (socket.io-client's larger batches are then dropped).
"""

from __future__ import annotations

import asyncio
import binascii
import logging
import urllib.parse
from typing import Any

from engineio import async_socket, exceptions
from engineio import packet as eio_packet
from engineio import payload as eio_payload

from socketsvc.transport.patches import Patch, Requirement

log = logging.getLogger("socketsvc.transport.server")

ENGINEIO = Requirement("python-engineio", "4.11", "4.16")
SOCKETIO = Requirement("python-socketio", "5.12", "5.19")
"""For `AsyncServer._engineio_server_class`, the hook that installs the Engine.IO server class;
and python-socketio 5.12 is the first to pass disconnect reasons (`reason`) on."""

PATCH = Patch(
    name="engineio.polling_payload",
    why=(
        "bounds long-polling payloads by bytes, not 16 packets (python-engineio answers 200 and "
        "drops a larger batch)"
    ),
    requires=(ENGINEIO, SOCKETIO),
    upstream={
        "engineio.async_socket:AsyncSocket.handle_post_request": "82dca119a261a959",
        "engineio.payload:Payload.decode": "9c7975664d815d3d",
        "engineio.async_server:AsyncServer._upgrades": "040ebcdf64fbf1b3",
        "engineio.async_server:AsyncServer._handle_connect": "5bd7edc1d1ae115a",
        "socketio.async_server:AsyncServer._engineio_server_class": "199c42bf149247e0",
    },
)

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


class StrictPostSocket(async_socket.AsyncSocket):  # type: ignore[misc]
    """python-engineio's `AsyncSocket` taking whole long-polling payloads of any packet count.

    It adds no attributes and keeps `AsyncSocket`'s layout, so that `EngineServer` can turn each
    new `AsyncSocket` into one by assigning `__class__`.
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
