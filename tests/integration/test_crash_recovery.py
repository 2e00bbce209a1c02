"""The real process: SIGKILL mid-conversation loses no acknowledged message; SIGTERM exits cleanly.

Runs `python -m socketsvc` as a subprocess (the `live_server` fixture) over SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio

from tests.conftest import SECRET, ServiceProcess
from tests.support.chat_client import ChatClient

KILL_AFTER_ACKS = 20


async def connect(url: str, clients: list[ChatClient], auth: Any = None) -> ChatClient:
    client = ChatClient(url, transports=["websocket"])
    clients.append(client)
    await client.connect(auth)
    await client.wait_for(lambda: client.of("session"), what="session")
    return client


def on_disconnect(client: ChatClient) -> asyncio.Event:
    """An event set when the client loses its connection."""
    gone = asyncio.Event()
    client.sio.on("disconnect", lambda *_: gone.set(), namespace=client.namespace)
    return gone


async def send_unless_gone(
    client: ChatClient, client_id: str, text: str, gone: asyncio.Event, timeout: float = 10.0
) -> dict[str, Any] | None:
    """Send one message; its ack, or None when the connection dies before the ack arrives."""
    acked: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def on_ack(*args: Any) -> None:
        if not acked.done():
            acked.set_result(args[0] if args else None)

    try:
        await client.sio.emit(
            "message",
            {"client_id": client_id, "text": text},
            namespace=client.namespace,
            callback=on_ack,
        )
    except socketio.exceptions.SocketIOError:
        return None
    dead = asyncio.ensure_future(gone.wait())
    try:
        await asyncio.wait({acked, dead}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        dead.cancel()
    if acked.done():
        result: dict[str, Any] = acked.result()
        return result
    assert gone.is_set(), "no ack and no disconnect: the server hung"
    return None


async def sync_all(client: ChatClient) -> tuple[list[dict[str, Any]], int]:
    """Every stored message of the client's conversation (paged, 500 at a time), and last_seq."""
    stored: list[dict[str, Any]] = []
    while True:
        after = stored[-1]["seq"] if stored else 0
        page = await client.call("sync", {"after_seq": after, "limit": 500})
        assert page["ok"] is True, page
        stored.extend(page["messages"])
        if not page["messages"] or stored[-1]["seq"] >= page["last_seq"]:
            return stored, page["last_seq"]


@pytest.mark.slow  # about 3 s, the service as a process
async def test_sigkill_loses_no_acknowledged_message(
    live_server: ServiceProcess, clients: list[ChatClient]
) -> None:
    first = await connect(live_server.url, clients)
    session = first.session
    gone = on_disconnect(first)
    sent: list[str] = []
    acked: list[dict[str, Any]] = []
    enough = asyncio.Event()

    async def send_until_the_server_dies() -> None:
        i = 0
        while True:
            client_id = f"crash-{i}"
            sent.append(client_id)
            ack = await send_unless_gone(first, client_id, f"crash test message {i}", gone)
            if ack is None:
                return
            assert ack["ok"] is True, ack
            assert ack["message"]["client_id"] == client_id
            acked.append(ack["message"])
            if len(acked) >= KILL_AFTER_ACKS:
                enough.set()
            i += 1

    sender = asyncio.create_task(send_until_the_server_dies())
    await asyncio.wait_for(enough.wait(), timeout=30)
    live_server.kill()  # SIGKILL while the sender keeps going
    await asyncio.wait_for(sender, timeout=15)
    assert gone.is_set()
    acked_ids = {m["client_id"] for m in acked}
    in_flight = [c for c in sent if c not in acked_ids]
    assert len(in_flight) <= 1  # only the send the kill interrupted
    assert len(acked) >= KILL_AFTER_ACKS
    assert [m["seq"] for m in acked] == sorted(m["seq"] for m in acked)

    await asyncio.to_thread(live_server.start, live_server.port)
    second = await connect(
        live_server.url, clients, auth={"visitor_token": session["visitor_token"]}
    )
    resumed = second.session
    assert resumed["visitor_id"] == session["visitor_id"]
    assert resumed["conversation_id"] == session["conversation_id"]

    stored, last_seq = await sync_all(second)
    assert second.messages() == []  # no new greeting was pushed on resume
    seqs = [m["seq"] for m in stored]
    assert seqs == list(range(1, last_seq + 1))  # gapless from 1, no repeats
    assert resumed["last_seq"] == last_seq
    assert stored[0]["sender"]["role"] == "bot"
    assert all(m["conversation_id"] == session["conversation_id"] for m in stored)

    by_id = Counter(m["id"] for m in stored)
    visitor_messages = [m for m in stored if m["sender"]["role"] == "visitor"]
    by_client_id = Counter(m["client_id"] for m in visitor_messages)
    stored_by_id = {m["id"]: m for m in stored}
    for message in acked:
        assert by_id[message["id"]] == 1, message
        assert by_client_id[message["client_id"]] == 1, message
        assert stored_by_id[message["id"]] == message  # same seq, text and timestamp
    for client_id in in_flight:
        assert by_client_id[client_id] <= 1
    assert set(by_client_id) <= set(sent)
    recovered = sum(by_client_id[c] for c in sent)
    print(
        f"\n[{live_server.env['DATABASE_URL'].split(':')[0]}] sent={len(sent)} "
        f"acked={len(acked)} recovered={recovered} (in-flight stored: "
        f"{sum(by_client_id[c] for c in in_flight)}/{len(in_flight)}), last_seq={last_seq}"
    )

    after = await second.send("back after the crash", client_id="after-crash")
    assert after["ok"] is True, after
    assert after["message"]["seq"] == last_seq + 1
    assert after["message"]["sender"]["id"] == session["visitor_id"]

    # Retrying the interrupted send is safe: it ends up stored exactly once.
    for client_id in in_flight:
        text = f"crash test message {sent.index(client_id)}"
        retried = await second.send(text, client_id=client_id)
        assert retried["ok"] is True, retried
        before = [m for m in visitor_messages if m["client_id"] == client_id]
        if before:
            assert retried["message"] == before[0]
    final, final_last = await sync_all(second)
    assert [m["seq"] for m in final] == list(range(1, final_last + 1))
    final_counts = Counter(m["client_id"] for m in final if m["sender"]["role"] == "visitor")
    for client_id in [*sent, "after-crash"]:
        assert final_counts[client_id] == 1, client_id


@pytest.mark.slow  # about 1.5 s, the service as a process
async def test_sigterm_exits_0_promptly_with_a_client_connected(
    live_server: ServiceProcess, clients: list[ChatClient]
) -> None:
    client = await connect(live_server.url, clients)
    gone = on_disconnect(client)
    ack = await client.send("still here")
    assert ack["ok"] is True
    assert client.sio.connected

    started = time.monotonic()
    code = await asyncio.to_thread(live_server.stop)
    elapsed = time.monotonic() - started
    assert code == 0, "".join(live_server.log[-20:])
    assert elapsed < 10, f"SIGTERM took {elapsed:.1f} s"
    await asyncio.wait_for(gone.wait(), timeout=5)


@pytest.mark.slow  # about 1.5 s, the service as a process
async def test_sigterm_closes_the_websocket_of_a_browser_like_client(tmp_path: Path) -> None:
    service = ServiceProcess(
        {"DATABASE_URL": f"sqlite:///{tmp_path / 'chat.sqlite3'}", "SOCKETSVC_SECRET": SECRET},
        cwd=tmp_path,
    )
    service.start()
    try:
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(f"{service.url}/socket.io/?EIO=4&transport=websocket")
            assert (await ws.receive_str()).startswith("0{")  # Engine.IO OPEN
            await ws.send_str("40/chat,")  # Socket.IO CONNECT to /chat, no auth
            assert (await ws.receive_str()).startswith("40/chat,")
            assert service.proc is not None
            service.proc.send_signal(signal.SIGTERM)
            started = time.monotonic()
            # Like socket.io-client 4.x over WebSocket: the connection ends when the server
            # closes the WebSocket. No Engine.IO CLOSE packet comes first: clients would take it
            # as being sent away and (python-socketio's) not reconnect.
            received: list[Any] = []
            try:
                async with asyncio.timeout(3.0):
                    while True:
                        frame = await ws.receive()
                        if frame.type in (
                            aiohttp.WSMsgType.CLOSE,
                            aiohttp.WSMsgType.CLOSING,
                            aiohttp.WSMsgType.CLOSED,
                            aiohttp.WSMsgType.ERROR,
                        ):
                            break
                        received.append(frame.data)
            except TimeoutError:
                raise AssertionError(
                    f"WebSocket still open 3 s after SIGTERM; received {received}"
                ) from None
            assert "1" not in received  # a transport close, not a server disconnect
            code = await asyncio.to_thread(service.proc.wait, 10.0)
            assert code == 0
            assert time.monotonic() - started < 10.0
    finally:
        service.kill()
