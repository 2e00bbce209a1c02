"""The Socket.IO packet class the server uses: python-socketio's, without the binary scan.

python-socketio asks every packet it builds whether its data holds bytes, to choose a binary
packet type, by walking the whole payload (a list per nested dict or list) on every emit and
ack: a few percent of the service's CPU per message. socketsvc never sends bytes: every
payload it emits is built from strings, numbers, booleans, dicts and lists (client text is
validated as text). Should bytes ever reach an emit, the JSON codec raises TypeError instead of
sending something wrong. Incoming binary packets are unaffected: their type comes from the wire.
"""

from __future__ import annotations

from typing import Any

from socketio import packet


class Packet(packet.Packet):  # type: ignore[misc]
    @classmethod
    def data_is_binary(cls, data: Any) -> bool:
        return False
