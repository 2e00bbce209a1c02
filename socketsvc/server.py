"""The Socket.IO server class, with one fix for long-polling clients that leave."""

from __future__ import annotations

from typing import Any

import socketio


class SocketServer(socketio.AsyncServer):  # type: ignore[misc]
    """`socketio.AsyncServer` that answers a departing polling client's held GET at once.

    python-engineio keeps a long-poll GET open for ping_interval + ping_timeout after the client
    sent CLOSE (the request only ends on its timeout). Releasing it frees the request, and any
    client still waiting on it, immediately.
    """

    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any) -> None:
        await super()._handle_eio_disconnect(eio_sid, reason)
        sock = self.eio.sockets.get(eio_sid)
        if sock is not None and not sock.upgraded:
            sock.queue.put_nowait(None)
