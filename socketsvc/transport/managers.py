"""The client manager without Redis, and the local delivery every manager here shares.

python-socketio's `AsyncManager.emit` sends to each recipient from a task of its own and then
`asyncio.wait`s for all of them. Sending to an Engine.IO socket only puts the packet on the
socket's (unbounded) queue, so here the packet is encoded once and handed to each recipient in
turn, without tasks, through python-engineio's public `AsyncServer.send_packet` (what
python-socketio's private `_send_eio_packet` calls). Everything else (callbacks, `skip_sid`, how
`data` becomes arguments, an unknown namespace) is python-socketio's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import socketio
from engineio import packet as eio_packet
from socketio import packet

from socketsvc.transport.patches.socketio_rooms import IndexedRooms

log = logging.getLogger(__name__)

Target = tuple[str, str]
"""A (namespace, room) pair to emit to."""


class LeanManager(IndexedRooms, socketio.AsyncManager):  # type: ignore[misc]
    """`socketio.AsyncManager` whose emits without a callback send directly, in sequence, and
    whose rooms are indexed per client where the patch `socketio.indexed_rooms` applies (the
    app sets `indexed_rooms`).

    `pubsub.RedisManager` puts this class after python-socketio's pub/sub manager in its bases,
    so the local half of every emit it handles (its own, and those from other processes) comes
    here too.
    """

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: Any = None,
        **kwargs: Any,
    ) -> None:
        room = to or room
        if namespace not in self.rooms:
            return
        if callback:
            # Each recipient needs its own ack id: python-socketio's way.
            await super().emit(
                event, data, namespace, room=room, skip_sid=skip_sid, callback=callback
            )
            return
        if isinstance(data, tuple):
            args = list(data)
        elif data is not None:
            args = [data]
        else:
            args = []
        skip = skip_sid if isinstance(skip_sid, list) else [skip_sid]
        encoded = self.server.packet_class(
            packet.EVENT, namespace=namespace, data=[event, *args]
        ).encode()
        if not isinstance(encoded, list):
            encoded = [encoded]
        eio_packets = [eio_packet.Packet(eio_packet.MESSAGE, p) for p in encoded]
        # get_participants iterates over a copy, so a recipient that disconnects while a send
        # below runs (a ping timeout closes the socket and runs the disconnect handler) cannot
        # break the loop.
        send_packet = self.server.eio.send_packet
        for sid, eio_sid in self.get_participants(namespace, room):
            if sid in skip:
                continue
            for eio_pkt in eio_packets:
                try:
                    await send_packet(eio_sid, eio_pkt)
                except Exception:
                    # python-socketio's task for this recipient would have failed on its own,
                    # unseen by the emit; the others still get the packet.
                    log.warning("could not send %r to %s", event, eio_sid, exc_info=True)
                    break

    async def emit_to_rooms(
        self, event: str, data: Any, targets: Sequence[Target], skip_sid: Any = None
    ) -> None:
        """Emit the same event to several (namespace, room) targets: here, one emit each."""
        for namespace, room in targets:
            await self.emit(event, data, namespace, room=room, skip_sid=skip_sid)
