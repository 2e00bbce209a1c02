"""`IndexedRooms`: any sequence of connects, joins, leaves, room closes and disconnects leaves
the indexed manager with the same rooms and participants as python-socketio's own manager,
and a disconnect does not look at other clients' rooms."""

from __future__ import annotations

import itertools
from typing import Any

import socketio
from hypothesis import given, settings
from hypothesis import strategies as st
from socketio.base_manager import BaseManager

from socketsvc.transport.managers import LeanManager

NAMESPACES = ("/chat", "/agent")
ROOMS = ("conversation:a", "conversation:b", "agents", "agent:x")


class FakeServer:
    """What a manager asks of its server here: new sids."""

    def __init__(self) -> None:
        self._ids = itertools.count()
        self.eio = self
        self.packet_class = socketio.packet.Packet

    def generate_id(self) -> str:
        return f"sid{next(self._ids)}"


def manager(indexed: bool) -> Any:
    made = LeanManager() if indexed else socketio.AsyncManager()
    made.indexed_rooms = indexed
    made.set_server(FakeServer())
    return made


def connect(m: Any, eio_sid: str, namespace: str) -> str:
    """A client connected as python-socketio connects one (pre-connect, then connect)."""
    sid: str = BaseManager.pre_connect(m, eio_sid, namespace)
    BaseManager.connect(m, sid, namespace)
    return sid


def snapshot(m: Any) -> dict[str, dict[Any, dict[str, str]]]:
    """Namespace -> room -> participants, as python-socketio's public reads report them."""
    return {
        ns: {room: dict(m.get_participants(ns, room)) for room in rooms}
        for ns, rooms in m.rooms.items()
    }


operation = st.one_of(
    st.tuples(st.just("connect"), st.sampled_from(NAMESPACES)),
    st.tuples(st.just("enter"), st.integers(0, 7), st.sampled_from(ROOMS)),
    st.tuples(st.just("leave"), st.integers(0, 7), st.sampled_from(ROOMS)),
    st.tuples(st.just("close"), st.sampled_from(NAMESPACES), st.sampled_from(ROOMS)),
    st.tuples(st.just("disconnect"), st.integers(0, 7)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(operation, max_size=40))
def test_the_indexed_manager_matches_python_socketios(ops: list[tuple[Any, ...]]) -> None:
    stock, indexed = manager(False), manager(True)
    clients: list[tuple[str, str]] = []  # (sid, namespace), the same in both managers
    for op in ops:
        if op[0] == "connect":
            eio_sid = f"eio{len(clients)}"
            sids = {connect(m, eio_sid, op[1]) for m in (stock, indexed)}
            assert len(sids) == 1
            clients.append((sids.pop(), op[1]))
        elif op[0] in ("enter", "leave", "disconnect") and clients:
            sid, ns = clients[op[1] % len(clients)]
            for m in (stock, indexed):
                if op[0] == "enter":
                    if m.is_connected(sid, ns):
                        m.basic_enter_room(sid, ns, op[2])
                elif op[0] == "leave":
                    m.basic_leave_room(sid, ns, op[2])
                else:
                    m.basic_disconnect(sid, ns)
        elif op[0] == "close":
            for m in (stock, indexed):
                m.basic_close_room(op[2], op[1])
        assert snapshot(indexed) == snapshot(stock), op
        for sid, ns in clients:
            assert sorted(indexed.get_rooms(sid, ns)) == sorted(stock.get_rooms(sid, ns))
            assert indexed.sid_from_eio_sid(stock.eio_sid_from_sid(sid, ns), ns) == (
                stock.sid_from_eio_sid(stock.eio_sid_from_sid(sid, ns), ns)
            )
    for sid, ns in clients:
        for m in (stock, indexed):
            m.basic_disconnect(sid, ns)
    assert snapshot(indexed) == snapshot(stock) == {}
    assert indexed._joined() == {}  # nothing left in the index either


def test_a_disconnect_reads_only_the_clients_own_rooms() -> None:
    """10,000 other clients' rooms are not looked at: the namespace's rooms are not iterated
    (a mapping that refuses iteration stands in for them)."""
    m = manager(True)
    for i in range(10_000):
        sid = connect(m, f"eio{i}", "/chat")
        m.basic_enter_room(sid, "/chat", f"conversation:{i}")
    leaving = connect(m, "eio-leaving", "/chat")
    m.basic_enter_room(leaving, "/chat", "conversation:leaving")

    class NoScan(dict[Any, Any]):
        def __iter__(self) -> Any:
            raise AssertionError("the rooms were scanned")

        def items(self) -> Any:
            raise AssertionError("the rooms were scanned")

        def copy(self) -> Any:
            raise AssertionError("the rooms were scanned")

    m.rooms["/chat"] = NoScan(m.rooms["/chat"])
    m.basic_disconnect(leaving, "/chat")
    assert "conversation:leaving" not in m.rooms["/chat"]
    assert leaving not in m.rooms["/chat"][None]
    # Every room but None is a plain Room, read by python-socketio through `_fwdm`.
    assert type(m.rooms["/chat"]["conversation:7"]).__name__ == "Room"
    assert dict(m.get_participants("/chat", "conversation:7")) == {"sid7": "eio7"}
