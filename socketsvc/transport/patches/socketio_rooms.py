"""python-socketio: the manager's `basic_enter_room`, `basic_leave_room` and `basic_disconnect`,
with an index of the rooms each client joined (`IndexedRooms`).

python-socketio keeps `rooms[namespace][room]` = a `bidict` of sid -> eio_sid and, when a client
disconnects, scans every room of the namespace for it. Every connection has a room of its own
(its sid) and every visitor the room of its conversation, so a namespace with n connections has
about 2n rooms and n disconnects at once (a node lost, a deploy) cost O(n^2): 10,000 visitors
dropping scanned 20,000 rooms each, some 200 million bidict lookups, before the process could
take their reconnections (bench/run.py scenario e). Here a disconnect leaves the rooms the
client is in from the index. Rooms other than the namespace's table of connected clients (the
`None` room, whose inverse python-socketio reads through `_invm` and whose duplicate check
`pre_connect` relies on) are plain dicts: a `bidict` per room costs about 270 bytes more, and
python-socketio reads those rooms only through `_fwdm` (`get_participants`), `in`, `len`, item
assignment and deletion. On the stock path the manager is python-socketio's, scanning.
"""

from __future__ import annotations

from typing import Any

from bidict import bidict

from socketsvc.transport.patches import Patch
from socketsvc.transport.patches.engineio_polling import SOCKETIO

PATCH = Patch(
    name="socketio.indexed_rooms",
    why=(
        "leaves a disconnecting client's rooms through an index instead of scanning every room "
        "of the namespace (O(n^2) in a reconnect storm), and keeps rooms in plain dicts"
    ),
    requires=(SOCKETIO,),
    upstream={
        "socketio.base_manager:BaseManager.basic_enter_room": "3f509586d2d7f47e",
        "socketio.base_manager:BaseManager.basic_leave_room": "e27f3eea06d1c6a6",
        "socketio.base_manager:BaseManager.basic_disconnect": "2933b50bc4b2ea7b",
        "socketio.base_manager:BaseManager.get_participants": "7d78ad681c95de5b",
        "socketio.base_manager:BaseManager.__init__": "bfee992d912fe9a4",
    },
)


class Room(dict[str, str]):
    """A room's members, sid -> eio_sid, read by python-socketio like its bidicts' forward
    mapping (`_fwdm`)."""

    __slots__ = ()

    @property
    def _fwdm(self) -> Room:
        return self


class IndexedRooms:
    """A mixin for a `socketio` manager: rooms entered through `basic_enter_room` are indexed
    per (namespace, sid) while `indexed_rooms` is True (set where the patch applies)."""

    indexed_rooms = False
    rooms: dict[Any, dict[Any, Any]]
    callbacks: dict[str, Any]
    pending_connect: dict[str, list[str]]
    pending_disconnect: dict[str, list[str]]

    def _joined(self) -> dict[tuple[str, str], list[Any]]:
        """(namespace, sid) -> the rooms the client entered besides `None` and its sid room."""
        index: dict[tuple[str, str], list[Any]] | None = self.__dict__.get("_room_index")
        if index is None:
            index = self.__dict__["_room_index"] = {}
        return index

    def basic_enter_room(
        self, sid: str, namespace: str, room: Any, eio_sid: str | None = None
    ) -> None:
        if not self.indexed_rooms:
            super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)  # type: ignore[misc]
            return
        # python-socketio's checks and structure, a Room instead of a bidict for every room
        # but None.
        if eio_sid is None and namespace not in self.rooms:
            raise ValueError("sid is not connected to requested namespace")
        if sid != room and self.is_sid_room(namespace, room):  # type: ignore[attr-defined]
            raise ValueError("cannot enter a sid room")
        rooms = self.rooms.setdefault(namespace, {})
        members = rooms.get(room)
        if members is None:
            members = rooms[room] = bidict() if room is None else Room()
        if eio_sid is None:
            eio_sid = rooms[None][sid]
        members[sid] = eio_sid
        if room is not None and room != sid:
            joined = self._joined().setdefault((namespace, sid), [])
            if room not in joined:
                joined.append(room)

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        super().basic_leave_room(sid, namespace, room)  # type: ignore[misc]
        if not self.indexed_rooms or room is None or room == sid:
            return
        index = self._joined()
        joined = index.get((namespace, sid))
        if joined is not None and room in joined:
            joined.remove(room)
            if not joined:
                del index[(namespace, sid)]

    def basic_disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        if not self.indexed_rooms:
            super().basic_disconnect(sid, namespace, **kwargs)  # type: ignore[misc]
            return
        if namespace not in self.rooms:
            return
        for room in (*self._joined().pop((namespace, sid), ()), sid, None):
            members = self.rooms.get(namespace, {}).get(room)
            if members is not None and sid in members:
                self.basic_leave_room(sid, namespace, room)
        # The rest as python-socketio does it.
        if sid in self.callbacks:
            del self.callbacks[sid]
        if namespace in self.pending_connect and sid in self.pending_connect[namespace]:
            self.pending_connect[namespace].remove(sid)
            if len(self.pending_connect[namespace]) == 0:  # pragma: no branch
                del self.pending_connect[namespace]
        if namespace in self.pending_disconnect and sid in self.pending_disconnect[namespace]:
            self.pending_disconnect[namespace].remove(sid)
            if len(self.pending_disconnect[namespace]) == 0:
                del self.pending_disconnect[namespace]
