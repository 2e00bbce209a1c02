"""aiohttp: the frames of one batch of Engine.IO packets leave in one `transport.write`.

`_send_all` reaches through `ws._sock._writer.transport` (aiohttp's `WebSocketResponse` and its
`WebSocketWriter`, both private) and swaps the transport for a `_WriteBatch` while the frames are
built. Only `LeanSocket`'s writer (engineio_websocket.py) sends this way; on the stock path each
packet goes through python-engineio's `ws.send()`, one write per frame.
"""

from __future__ import annotations

import logging
from typing import Any

from socketsvc.transport.patches import Patch, Requirement

log = logging.getLogger("socketsvc.transport.server")

AIOHTTP = Requirement("aiohttp", "3.14", "3.15")

PATCH = Patch(
    name="aiohttp.write_batch",
    why="writes a batch of WebSocket frames in one system call",
    requires=(AIOHTTP,),
    upstream={
        "aiohttp._websocket.writer:WebSocketWriter._write_websocket_frame": "b677e4e11a7bdfb5",
        "aiohttp._websocket.writer:WebSocketWriter.send_frame": "7ab812cc70561f8e",
        "aiohttp.web_ws:WebSocketResponse.send_str": "3a66e80f63de2e61",
        "aiohttp.web_ws:WebSocketResponse.send_bytes": "2480cd19f37693e8",
    },
)


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
