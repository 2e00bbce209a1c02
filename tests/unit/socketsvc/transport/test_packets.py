"""The server's packet class: text packets as before, bytes refused loudly, binary input kept."""

from __future__ import annotations

import pytest
from socketio import packet

from socketsvc.transport import codec as jsoncodec
from socketsvc.transport.packets import Packet


@pytest.fixture(autouse=True)
def codec() -> None:
    Packet.json = jsoncodec


def test_outgoing_packets_encode_exactly_like_python_socketios() -> None:
    data = ["message", {"seq": 2, "sender": {"role": "visitor"}, "tags": ["a", 1, None]}]
    ours = Packet(packet.EVENT, data=data, namespace="/chat", id=7).encode()
    theirs = packet.Packet(packet.EVENT, data=data, namespace="/chat", id=7).encode()
    assert (
        ours
        == theirs
        == '2/chat,7["message",{"seq":2,"sender":{"role":"visitor"},"tags":["a",1,null]}]'
    )


def test_bytes_in_an_outgoing_payload_raise_instead_of_being_sent() -> None:
    with pytest.raises(TypeError):
        Packet(packet.EVENT, data=["message", {"blob": b"\x00"}]).encode()


def test_incoming_binary_packets_still_decode_as_binary() -> None:
    incoming = Packet(encoded_packet='51-/chat,["upload",{"_placeholder":true,"num":0}]')
    assert incoming.packet_type == packet.BINARY_EVENT
    assert incoming.add_attachment(b"\x01\x02") is True
    assert incoming.data == ["upload", b"\x01\x02"]
