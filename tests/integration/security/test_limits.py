"""Abuse limits end to end: message and typing budgets, flood disconnects, connection limits per IP
and per process, and which address X-Forwarded-For is believed from.

Each test sets the limits it exercises explicitly (the suite's GENEROUS_LIMITS are overridden), and
prints `case -> result` lines.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from typing import Any

import aiohttp
import pytest
import socketio
from multidict import CIMultiDict

from socketsvc.keys import SERVICES, SIO
from tests.conftest import AppServer
from tests.support.chat_client import ChatClient
from tests.support.tokens import TOKENS
from tests.support.waiting import wait_for


async def visitor(server: AppServer, clients: list[ChatClient]) -> ChatClient:
    client = ChatClient(server.url)
    clients.append(client)
    await client.connect()
    await client.wait_for(lambda: client.of("session"), what="session")
    return client


async def attempt(
    server: AppServer,
    opened: list[socketio.AsyncClient],
    namespace: str = "/chat",
    headers: dict[str, str] | None = None,
) -> str:
    """Open a connection; `ok` (kept open, in `opened`) or the connect_error code."""
    sio = socketio.AsyncClient(reconnection=False)
    refused: list[Any] = []
    sio.on("connect_error", lambda data=None: refused.append(data), namespace=namespace)
    auth = {"token": TOKENS.mint_agent("limit-agent", "Limit")} if namespace == "/agent" else None
    try:
        await sio.connect(
            server.url,
            namespaces=[namespace],
            transports=["websocket"],
            headers=headers or {},
            auth=auth,
            wait_timeout=10,
        )
    except socketio.exceptions.ConnectionError:
        await sio.disconnect()
        assert refused, "refused without a connect_error"
        data = refused[-1]
        assert set(data) >= {"message", "data"}, data
        code: str = data["data"]["code"]
        if "retry_after_ms" in data["data"]:  # too many attempts: when the next would pass
            assert code == "rate_limited", data
            assert isinstance(data["data"]["retry_after_ms"], int), data
            assert data["data"]["retry_after_ms"] >= 1, data
        assert set(data["data"]) - {"retry_after_ms"} == {"code", "message"}, data
        return code
    opened.append(sio)
    return "ok"


async def close_all(opened: list[socketio.AsyncClient]) -> None:
    for sio in opened:
        await sio.disconnect()
    opened.clear()


async def abuse_disconnects(server: AppServer, namespace: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(server.url + "/metrics") as response:
        text = await response.text()
    series = f'socketsvc_abuse_disconnects_total{{namespace="{namespace}"}} '
    found = re.search("^" + re.escape(series) + r"(\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def show(case: str, result: Any) -> None:
    print(f"{case:60} -> {result}")


def code_of(ack: dict[str, Any]) -> str:
    return "ok" if ack["ok"] else str(ack["error"]["code"])


# -- per-connection budgets ------------------------------------------------------------------


async def test_message_burst_then_rate_limited_then_refilled(start_app, clients):
    """MESSAGE_BURST at once, then refusals until MESSAGE_RATE refills. The messages are sent one
    after another (each waits for its ack), so tokens refill while they are answered: on a loaded
    machine a burst of 8 took long enough for a sixth to pass. The bounds count those tokens."""
    server = await start_app(MESSAGE_RATE=2, MESSAGE_BURST=5)
    client = await visitor(server, clients)
    started = time.monotonic()
    burst = [code_of(await client.send(f"burst {i}")) for i in range(8)]
    refilled = int((time.monotonic() - started) * 2)  # MESSAGE_RATE=2 tokens/s meanwhile
    show("8 messages at once, MESSAGE_BURST=5", burst)
    accepted = burst.count("ok")
    assert 5 <= accepted <= 5 + refilled, (burst, refilled)
    assert burst == ["ok"] * accepted + ["rate_limited"] * (8 - accepted)
    refused = await client.send("one more")
    while refused["ok"]:  # a token refilled since the last refusal: spend it
        accepted += 1
        assert accepted <= 5 + int((time.monotonic() - started) * 2)
        refused = await client.send("one more")
    retry_after = refused["error"].pop("retry_after_ms")
    assert refused["error"] == {
        "code": "rate_limited",
        "message": "too many message events; slow down",
    }
    # Empty bucket at 2 tokens/s: the next token is at most 500 ms away.
    show("retry_after_ms of a refusal, MESSAGE_RATE=2", retry_after)
    assert isinstance(retry_after, int) and 1 <= retry_after <= 500
    await asyncio.sleep(1.1)  # MESSAGE_RATE=2: two tokens back
    started = time.monotonic()
    after = [code_of(await client.send(f"later {i}")) for i in range(3)]
    refilled = int((time.monotonic() - started) * 2 + 0.2)  # 0.2: the 1.1 s sleep's spare token
    show("3 messages 1.1 s later, MESSAGE_RATE=2", after)
    later = after.count("ok")
    assert 2 <= later <= 2 + refilled, (after, refilled)
    assert after == ["ok"] * later + ["rate_limited"] * (3 - later)
    # Refusals stored nothing: the conversation holds the accepted messages (and the bot's).
    synced = await client.call("sync", {"after_seq": 0, "limit": 500})
    texts = [m["text"] for m in synced["messages"] if m["sender"]["role"] == "visitor"]
    expected = [f"burst {i}" for i in range(burst.count("ok"))]
    expected += ["one more"] * (accepted - burst.count("ok"))
    expected += [f"later {i}" for i in range(later)]
    assert texts == expected
    assert client.sio.connected


async def test_a_budget_is_made_at_the_first_event_and_forgotten_at_disconnect(start_app, clients):
    server = await start_app(MESSAGE_RATE=1, MESSAGE_BURST=2)
    client = await visitor(server, clients)
    chat = server.app[SIO].namespace_handlers["/chat"]
    (connection,) = chat._connections.values()
    show("idle visitor: budget", connection.budget)
    assert connection.budget is None  # idle connections carry no buckets
    burst = [code_of(await client.send(f"m{i}")) for i in range(3)]
    show("3 messages at once, MESSAGE_BURST=2", burst)
    assert burst == ["ok", "ok", "rate_limited"]
    assert connection.budget is not None
    await client.sio.disconnect()
    await wait_for(lambda: not chat._connections, what="the connection to be forgotten")
    assert not chat._connections
    assert server.app[SERVICES].gate.open_total == 0


@pytest.mark.slow  # about 2 s of flooding
async def test_sustained_flooding_disconnects_the_client_and_is_counted(start_app, clients):
    server = await start_app(MESSAGE_RATE=1, MESSAGE_BURST=3)
    client = await visitor(server, clients)
    dropped = asyncio.Event()
    client.sio.on("disconnect", lambda *a: dropped.set(), namespace="/chat")
    before = await abuse_disconnects(server, "/chat")
    outcomes: list[str] = []
    for i in range(60):
        if dropped.is_set():
            break
        try:
            ack = await client.sio.call(
                "message", {"client_id": f"f-{i}", "text": "flood"}, namespace="/chat", timeout=2
            )
        except (socketio.exceptions.TimeoutError, socketio.exceptions.BadNamespaceError):
            break
        outcomes.append(code_of(ack))
    await asyncio.wait_for(dropped.wait(), 5)
    after = await abuse_disconnects(server, "/chat")
    refusals = outcomes.count("rate_limited")
    show(
        "flood, MESSAGE_BURST=3",
        f"{outcomes.count('ok')} ok, {refusals} rate_limited, then dropped",
    )
    show("socketsvc_abuse_disconnects_total{namespace=/chat}", f"{before} -> {after}")
    assert outcomes[:3] == ["ok"] * 3
    assert 30 <= refusals <= 31
    assert after == before + 1
    assert not client.sio.connected


async def test_refusals_interrupted_by_an_accepted_event_do_not_disconnect(start_app, clients):
    server = await start_app(MESSAGE_RATE=1, MESSAGE_BURST=1)
    client = await visitor(server, clients)
    assert code_of(await client.send("first")) == "ok"
    for _ in range(3):
        for i in range(25):  # 25 refusals in a row: under the 30 that disconnect
            assert code_of(await client.send(f"x{i}")) == "rate_limited"
        synced = await client.call("sync", {"after_seq": 0})  # accepted: the strikes reset
        assert synced["ok"]
    show("3 x (25 refused messages + 1 accepted sync)", "still connected")
    assert client.sio.connected


async def test_typing_is_throttled_separately(start_app, clients):
    server = await start_app(MESSAGE_RATE=100, MESSAGE_BURST=100)
    client = await visitor(server, clients)
    typing = [code_of(await client.call("typing", {"typing": i % 2 == 0})) for i in range(8)]
    show("8 typing events at once (typing burst 5)", typing)
    assert typing == ["ok"] * 5 + ["rate_limited"] * 3
    assert code_of(await client.send("messages are not affected")) == "ok"
    await asyncio.sleep(1.1)  # typing refills at 2/s
    assert code_of(await client.call("typing", {"typing": False})) == "ok"


async def test_agent_events_have_the_same_budgets(start_app, clients):
    server = await start_app(MESSAGE_RATE=1, MESSAGE_BURST=2)
    agent = ChatClient(server.url, namespace="/agent")
    clients.append(agent)
    await agent.connect({"token": TOKENS.mint_agent("busy", "Busy")})
    await agent.wait_for(lambda: agent.of("assigned"), what="snapshots")
    payload = {"conversation_id": uuid.uuid4().hex, "client_id": "a", "text": "hi"}
    codes = [code_of(await agent.call("message", payload)) for _ in range(4)]
    show("4 agent messages at once, MESSAGE_BURST=2", codes)
    assert codes == ["not_found", "not_found", "rate_limited", "rate_limited"]


# -- connection limits ------------------------------------------------------------------------


async def test_connect_rate_per_ip_is_refused_with_rate_limited(start_app):
    server = await start_app(CONNECT_RATE=3, MAX_CONNECTIONS_PER_IP=100)
    opened: list[socketio.AsyncClient] = []
    try:
        results = []
        for _ in range(5):
            results.append(await attempt(server, opened))
            await close_all(opened)  # closed at once: only the attempt rate matters
        show("5 connection attempts in a row, CONNECT_RATE=3/min", results)
        assert results == ["ok", "ok", "ok", "rate_limited", "rate_limited"]
        agent = await attempt(server, opened, "/agent")
        show("then an agent from the same address", agent)
        assert agent == "rate_limited"
    finally:
        await close_all(opened)


async def test_open_connections_per_ip_are_capped_and_released(start_app):
    server = await start_app(CONNECT_RATE=1000, MAX_CONNECTIONS_PER_IP=2)
    opened: list[socketio.AsyncClient] = []
    try:
        results = [await attempt(server, opened) for _ in range(2)]
        results.append(await attempt(server, opened, "/agent"))
        show("3 open connections (2 /chat, then /agent), MAX_CONNECTIONS_PER_IP=2", results)
        assert results == ["ok", "ok", "rate_limited"]
        await opened.pop().disconnect()
        gate = server.app[SERVICES].gate
        await wait_for(lambda: gate.open_total == 1, what="the gate to count the close")
        again = await attempt(server, opened)
        show("after one of them closed", again)
        assert again == "ok"
        assert server.app[SERVICES].gate.open_total == 2
    finally:
        await close_all(opened)
    await wait_for(lambda: server.app[SERVICES].gate.open_total == 0, what="every close counted")
    assert server.app[SERVICES].gate.open_total == 0


async def test_max_connections_in_total_is_refused_with_unavailable(start_app):
    server = await start_app(CONNECT_RATE=1000, MAX_CONNECTIONS_PER_IP=1000, MAX_CONNECTIONS=3)
    opened: list[socketio.AsyncClient] = []
    try:
        results = [await attempt(server, opened) for _ in range(2)]
        results.append(await attempt(server, opened, "/agent"))
        results.append(await attempt(server, opened))
        results.append(await attempt(server, opened, "/agent"))
        show("5 connections, MAX_CONNECTIONS=3", results)
        assert results == ["ok", "ok", "ok", "unavailable", "unavailable"]
    finally:
        await close_all(opened)


async def test_forwarded_for_is_ignored_from_an_untrusted_peer(start_app):
    server = await start_app(CONNECT_RATE=2, MAX_CONNECTIONS_PER_IP=100)
    opened: list[socketio.AsyncClient] = []
    try:
        results = []
        for i in range(3):
            results.append(
                await attempt(server, opened, headers={"X-Forwarded-For": f"10.0.0.{i}"})
            )
        show("3 attempts with X-Forwarded-For 10.0.0.0..2, no TRUSTED_PROXIES", results)
        assert results == ["ok", "ok", "rate_limited"]  # all keyed on 127.0.0.1
    finally:
        await close_all(opened)


async def test_forwarded_for_is_believed_from_a_trusted_proxy(start_app):
    server = await start_app(
        CONNECT_RATE=2, MAX_CONNECTIONS_PER_IP=100, TRUSTED_PROXIES="127.0.0.0/8, 10.0.0.0/8"
    )
    opened: list[socketio.AsyncClient] = []
    cases = [
        ("198.51.100.1", "ok"),
        ("198.51.100.1", "ok"),
        ("198.51.100.1", "rate_limited"),
        ("198.51.100.2", "ok"),  # another client behind the proxy: its own budget
        ("198.51.100.2", "ok"),
        ("198.51.100.2", "rate_limited"),
        ("203.0.113.9, 198.51.100.3", "ok"),  # the right-most untrusted hop counts
        ("198.51.100.3", "ok"),
        ("192.0.2.1, 198.51.100.3, 10.1.2.3", "rate_limited"),  # 10/8 is a trusted proxy
        ("192.0.2.77, 198.51.100.3", "rate_limited"),  # forging the left part does not help
    ]
    try:
        for forwarded, expected in cases:
            result = await attempt(server, opened, headers={"X-Forwarded-For": forwarded})
            show(f"X-Forwarded-For: {forwarded} (trusted peer)", result)
            assert result == expected, forwarded
            await close_all(opened)
    finally:
        await close_all(opened)


# -- findings ---------------------------------------------------------------------------------


async def _raw_chat(http: aiohttp.ClientSession, server: AppServer, **kwargs: Any) -> Any:
    url = server.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    ws = await http.ws_connect(url, **kwargs)
    assert (await ws.receive(timeout=5)).data.startswith("0{")
    await ws.send_str("40/chat,")
    reply = (await ws.receive(timeout=5)).data
    return ws, reply


async def _ack(ws: Any, ack_id: int) -> Any:
    prefix = f"43/chat,{ack_id}"
    while True:
        message = await ws.receive(timeout=5)
        if isinstance(message.data, str) and message.data.startswith(prefix):
            args = json.loads(message.data[len(prefix) :])
            return args[0] if args else None


async def test_a_client_sent_disconnect_event_does_not_lift_the_limits(start_app):
    server = await start_app(
        MESSAGE_RATE=0.1, MESSAGE_BURST=2, CONNECT_RATE=1000, MAX_CONNECTIONS_PER_IP=1
    )
    async with aiohttp.ClientSession() as http:
        ws, reply = await _raw_chat(http, server)
        assert reply.startswith("40/chat,")
        codes = []
        for i in range(1, 4):
            await ws.send_str(f'42/chat,{i}["message",{{"text":"m{i}"}}]')
            codes.append(code_of(await _ack(ws, i)))
        show("3 messages, MESSAGE_BURST=2", codes)
        assert codes == ["ok", "ok", "rate_limited"]
        await ws.send_str('42/chat,50["disconnect","forged"]')
        show("client event 'disconnect'", await _ack(ws, 50))
        after = []
        for i in range(51, 61):
            await ws.send_str(f'42/chat,{i}["message",{{"text":"m{i}"}}]')
            after.append(code_of(await _ack(ws, i)))
        show("10 more messages", after)
        second, second_reply = await _raw_chat(http, server)
        show("a second connection, MAX_CONNECTIONS_PER_IP=1", second_reply[:60])
        open_total = server.app[SERVICES].gate.open_total
        show("connections counted by the gate", open_total)
        await ws.close()
        await second.close()
    assert "ok" not in after
    assert second_reply.startswith("44/chat,")
    assert open_total == 1


async def test_a_forged_first_forwarded_for_line_does_not_pick_the_address(start_app):
    server = await start_app(
        CONNECT_RATE=2, MAX_CONNECTIONS_PER_IP=100, TRUSTED_PROXIES="127.0.0.1/32"
    )
    results = []
    async with aiohttp.ClientSession() as http:
        for i in range(3):
            headers = CIMultiDict(
                [("X-Forwarded-For", f"10.66.0.{i}"), ("X-Forwarded-For", "203.0.113.7")]
            )
            ws, reply = await _raw_chat(http, server, headers=headers)
            results.append("ok" if reply.startswith("40/chat,") else reply[:60])
            await ws.close()
    show("3 attempts from 203.0.113.7 (proxy's line) with forged first lines", results)
    assert results[2] != "ok"


@pytest.mark.xfail(
    strict=True,
    reason="BUG: MAX_CONNECTIONS_PER_IP, MAX_CONNECTIONS and CONNECT_RATE are enforced only in the "
    "namespaces' on_connect (namespaces/base.py admit_connection); Engine.IO connections that "
    "never join a namespace (each a WebSocket, a queue and tasks on the server) are not limited",
)
async def test_engineio_connections_are_limited_per_ip(start_app):
    server = await start_app(CONNECT_RATE=5, MAX_CONNECTIONS_PER_IP=3, MAX_CONNECTIONS=10)
    url = server.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    accepted = 0
    started = time.perf_counter()
    async with aiohttp.ClientSession() as http:
        sockets = []
        for _ in range(30):
            try:
                ws = await http.ws_connect(url)
            except aiohttp.WSServerHandshakeError:
                continue
            opened = await ws.receive(timeout=5)
            if opened.type == aiohttp.WSMsgType.TEXT and opened.data.startswith("0{"):
                accepted += 1
            sockets.append(ws)
        held = sum(1 for ws in sockets if not ws.closed)
        for ws in sockets:
            await ws.close()
    show(
        "30 Engine.IO WebSockets, MAX_CONNECTIONS_PER_IP=3, MAX_CONNECTIONS=10",
        f"{accepted} opened, {held} still open ({time.perf_counter() - started:.2f} s)",
    )
    assert accepted <= 10
