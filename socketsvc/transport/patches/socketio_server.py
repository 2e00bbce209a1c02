"""python-socketio: `AsyncServer._handle_eio_message`, `_handle_event` and
`_handle_eio_disconnect` hardened for a public endpoint (`HardenedServer`).

Each override does its check and then calls python-socketio's method; they use its private
`_binary_packet` (the binary packets being assembled) and `_send_packet`. On the stock path the
server is python-socketio's class with none of them: reserved event names, unannounced binary
attachments and undecodable packets are then handled as python-socketio handles them.
"""

from __future__ import annotations

import logging
from typing import Any

import socketio
from socketio import packet

from socketsvc.domain.errors import error_ack
from socketsvc.transport.patches import Patch
from socketsvc.transport.patches.engineio_polling import SOCKETIO

log = logging.getLogger("socketsvc.transport.server")

PATCH = Patch(
    name="socketio.server_hardening",
    why=(
        "refuses client events named connect/disconnect/connect_error, bounds binary "
        "attachments, closes a connection on an undecodable packet, answers a departing "
        "polling client's held GET at once"
    ),
    requires=(SOCKETIO,),
    upstream={
        "socketio.async_server:AsyncServer._handle_eio_message": "bef50fc0e1635921",
        "socketio.async_server:AsyncServer._handle_event": "65178105ef8b593d",
        "socketio.async_server:AsyncServer._handle_eio_disconnect": "9344593148b66fd9",
        "socketio.async_server:AsyncServer._send_packet": "a00022b42c1c29e9",
    },
)

RESERVED_EVENTS = frozenset({"connect", "disconnect", "connect_error"})
"""Names python-socketio dispatches to lifecycle handlers; a client must not send them."""
MAX_ATTACHMENTS = 8
"""Binary attachments one packet may announce (each at most max_http_buffer_size)."""


class HardenedServer(socketio.AsyncServer):  # type: ignore[misc]
    """`socketio.AsyncServer` with four changes:

    - a departing polling client's held GET is answered at once (python-engineio would keep it
      open for ping_interval + ping_timeout after the client sent CLOSE);
    - client events named `connect`, `disconnect` or `connect_error` are dropped (they would run
      the lifecycle handlers: a second session, or limits lifted while the connection stays);
    - a binary packet may announce at most MAX_ATTACHMENTS attachments, and unannounced binary
      frames close the connection (python-socketio would buffer any number of them);
    - a packet that cannot be decoded closes the connection with one log line, as the reference
      server does, instead of a traceback per packet on a connection that stays open.
    """

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
