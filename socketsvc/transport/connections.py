"""The `socketsvc_connections` gauge, counted from the live server at each scrape."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import socketio
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from socketsvc.transport import rooms

NAMESPACES = (rooms.CHAT, rooms.AGENT, rooms.BOT)


class ConnectionCollector(Collector):
    """Open Socket.IO connections of this process by namespace and current transport."""

    def __init__(self, sio: socketio.AsyncServer) -> None:
        self.sio = sio

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "socketsvc_connections",
            "Open Socket.IO connections by namespace and current transport",
            labels=["namespace", "transport"],
        )
        counts: Counter[tuple[str, str]] = Counter()
        manager = self.sio.manager
        for namespace in NAMESPACES:
            if namespace not in manager.rooms:
                continue
            for _sid, eio_sid in manager.get_participants(namespace, None):
                sock = self.sio.eio.sockets.get(eio_sid)
                if sock is None or sock.closed:
                    continue
                counts[(namespace, "websocket" if sock.upgraded else "polling")] += 1
        for namespace in NAMESPACES:
            for transport in ("polling", "websocket"):
                family.add_metric([namespace, transport], counts[(namespace, transport)])
        yield family
