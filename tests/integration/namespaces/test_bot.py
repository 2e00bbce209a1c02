"""`/bot` (namespaces/bot.py, domain/bot_dispatch.py): external bot workers answer visitors.

The app runs in the test's loop on each database; workers and visitors are python-socketio
clients. The Node workers (docs/examples/bot-worker.mjs) are driven by tests/e2e.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import socketio
import sqlalchemy as sa

from socketsvc.keys import SERVICES, STORE
from socketsvc.storage.tables import bot_deliveries, messages
from tests.support.chat_client import ChatClient
from tests.support.tokens import TOKENS

ROOT = Path(__file__).resolve().parents[3]
KEY = "helper-key-0123456789"
SETTINGS = {
    "BOT": "workers:helper",
    "BOT_KEYS": f"helper:{KEY},other:other-key-0123456789",
    "BOT_TIMEOUT": "30",
    "BOT_REDELIVERY_TIMEOUT": "30",
}


async def _worker(server: Any, clients: list[ChatClient], **auth: Any) -> ChatClient:
    worker = ChatClient(server.url, namespace="/bot")
    clients.append(worker)
    await worker.connect({"bot": "helper", "key": KEY, **auth})
    await worker.wait_for(lambda: worker.of("ready"), what="ready")
    return worker


async def _visitor(server: Any, clients: list[ChatClient], text: str) -> tuple[ChatClient, str]:
    visitor = ChatClient(server.url)
    clients.append(visitor)
    await visitor.connect()
    await visitor.wait_for(lambda: visitor.of("session"), what="session")
    ack = await visitor.send(text)
    assert ack["ok"], ack
    return visitor, ack["message"]["conversation_id"]


async def _bot_rows(server: Any, conversation_id: str) -> list[tuple[str, str]]:
    """The worker-bot's stored messages (not the built-in bot's greeting)."""
    query = sa.select(messages.c.sender_name, messages.c.text).where(
        messages.c.conversation_id == conversation_id,
        messages.c.sender_role == "bot",
        messages.c.sender_name == "helper",
    )
    async with server.app[STORE].read() as conn:
        return [(r[0], r[1]) for r in (await conn.execute(query.order_by(messages.c.seq))).all()]


async def _delivery(worker: ChatClient, index: int = 0) -> dict[str, Any]:
    found: list[dict[str, Any]] = await worker.wait_for(
        lambda: len(worker.of("visitor_message")) > index and worker.of("visitor_message"),
        what="a visitor_message",
    )
    return found[index]


async def test_bad_credentials_are_refused_with_connect_error(start_app, clients):
    server = await start_app(**SETTINGS)
    cases: list[tuple[Any, str]] = [
        (None, "unauthorized"),
        ({"bot": "helper"}, "unauthorized"),
        ({"bot": "helper", "key": "wrong-key-0123456789"}, "unauthorized"),
        ({"bot": "helper", "key": "other-key-0123456789"}, "unauthorized"),
        ({"bot": "helper", "token": TOKENS.mint_agent("a1", "Ann")}, "unauthorized"),
        ({"bot": "helper", "token": TOKENS.mint_bot("other")}, "unauthorized"),
        ({"bot": "other", "key": "other-key-0123456789"}, "forbidden"),
        ({"bot": "helper", "key": KEY, "capacity": 0}, "unauthorized"),
    ]
    for auth, code in cases:
        worker = ChatClient(server.url, namespace="/bot")
        clients.append(worker)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await worker.connect(auth)
        print(f"{auth} -> {worker.connect_error}")
        assert worker.connect_error["data"]["code"] == code, (auth, worker.connect_error)
    ok = await _worker(server, clients, key=None, token=TOKENS.mint_bot("helper"))
    assert ok.of("ready")[0]["bot"] == "helper"


async def test_a_worker_answers_with_context_and_its_reply_is_idempotent(start_app, clients):
    server = await start_app(**SETTINGS)
    worker = await _worker(server, clients)
    visitor, conversation_id = await _visitor(server, clients, "Where is my order?")
    delivery = await _delivery(worker)
    assert delivery["conversation_id"] == conversation_id
    assert delivery["attempt"] == 1
    assert delivery["message"]["text"] == "Where is my order?"
    assert delivery["history"][-1]["id"] == delivery["message"]["id"]
    assert delivery["visitor"]["name"].startswith("Visitor ")
    assert delivery["conversation"]["state"] == "bot"
    assert delivery["conversation"]["bot_fallbacks"] == 0
    reply = {"delivery_id": delivery["delivery_id"], "client_id": "r1", "text": "On its way."}
    first = await worker.call("message", {**reply, "matched": False})
    again = await worker.call("message", {**reply, "matched": False})
    assert first["ok"] and again["ok"], (first, again)
    assert again["message"]["id"] == first["message"]["id"]
    await visitor.wait_message(lambda m: m["text"] == "On its way.")
    assert await _bot_rows(server, conversation_id) == [("helper", "On its way.")]
    # The next message carries the fallback counter the reply set.
    await visitor.send("And when?")
    second = await _delivery(worker, 1)
    assert second["conversation"]["bot_fallbacks"] == 1
    typing = await worker.call("typing", {"delivery_id": second["delivery_id"], "typing": True})
    assert typing == {"ok": True}
    await visitor.wait_for(lambda: any(t["typing"] for t in visitor.of("typing")), what="typing")
    assert await worker.call("done", {"delivery_id": second["delivery_id"]}) == {"ok": True}


async def test_a_reply_after_handoff_is_refused_and_nothing_is_stored(start_app, clients):
    server = await start_app(**SETTINGS)
    worker = await _worker(server, clients)
    visitor, conversation_id = await _visitor(server, clients, "hello")
    delivery = await _delivery(worker)
    handed = await visitor.call("handoff", {"reason": "wants a human"})
    assert handed["state"] == "queued"
    late = await worker.call(
        "message", {"delivery_id": delivery["delivery_id"], "text": "Too late"}
    )
    assert late["ok"] is False and late["error"]["code"] == "conflict", late
    assert await _bot_rows(server, conversation_id) == []


async def test_a_worker_hands_off_with_a_summary_for_the_agent(start_app, clients):
    server = await start_app(**SETTINGS)
    worker = await _worker(server, clients)
    agent = ChatClient(server.url, namespace="/agent")
    clients.append(agent)
    await agent.connect({"token": TOKENS.mint_agent("ann", "Ann")})
    _, conversation_id = await _visitor(server, clients, "my card was charged twice")
    delivery = await _delivery(worker)
    ack = await worker.call(
        "handoff",
        {
            "delivery_id": delivery["delivery_id"],
            "reason": "billing",
            "summary": "Charged twice for order 1234.",
        },
    )
    assert ack == {"ok": True, "state": "queued"}
    summary = await agent.wait_for(
        lambda: next(
            (
                c
                for c in agent.of("conversation")
                if c["conversation_id"] == conversation_id and c["state"] == "queued"
            ),
            None,
        ),
        what="the queued conversation",
    )
    assert summary["last_message"]["text"] == "Bot handoff (billing): Charged twice for order 1234."
    late = await worker.call("message", {"delivery_id": delivery["delivery_id"], "text": "x"})
    assert late["error"]["code"] == "conflict"


async def test_a_worker_resolves(start_app, clients):
    server = await start_app(**SETTINGS)
    worker = await _worker(server, clients)
    visitor, _ = await _visitor(server, clients, "bye")
    delivery = await _delivery(worker)
    ack = await worker.call("resolve", {"delivery_id": delivery["delivery_id"]})
    assert ack == {"ok": True, "state": "resolved"}
    await visitor.wait_for(
        lambda: any(s["state"] == "resolved" for s in visitor.of("state")), what="resolved"
    )


async def test_invalid_payloads_get_the_error_ack(start_app, clients):
    server = await start_app(**SETTINGS)
    worker = await _worker(server, clients)
    await _visitor(server, clients, "hello")
    delivery_id = (await _delivery(worker))["delivery_id"]
    cases: list[tuple[str, Any, str]] = [
        ("message", {"text": "no delivery"}, "invalid"),
        ("message", {"delivery_id": delivery_id, "text": "   "}, "invalid"),
        ("message", {"delivery_id": delivery_id, "text": "x", "extra": 1}, "invalid"),
        ("message", {"delivery_id": delivery_id, "text": "x" * 5000}, "too_large"),
        ("message", "not an object", "invalid"),
        ("message", {"delivery_id": "nope", "text": "x"}, "conflict"),
        ("typing", {"delivery_id": delivery_id, "typing": "yes"}, "invalid"),
        ("handoff", {"delivery_id": delivery_id, "summary": 3}, "invalid"),
        ("done", {}, "invalid"),
        ("dance", {}, "not_found"),
    ]
    for event, payload, code in cases:
        ack = await worker.call(event, payload)
        assert ack["ok"] is False and ack["error"]["code"] == code, (event, payload, ack)
    # Nothing changed: the delivery is still the worker's to answer.
    ok = await worker.call("message", {"delivery_id": delivery_id, "text": "fine"})
    assert ok["ok"], ok


async def test_an_unanswered_delivery_goes_to_another_worker_once(start_app, clients):
    server = await start_app(**{**SETTINGS, "BOT_REDELIVERY_TIMEOUT": "1"})
    slow = await _worker(server, clients, capacity=1)
    _, conversation_id = await _visitor(server, clients, "anyone?")
    first = await _delivery(slow)
    other = await _worker(server, clients, capacity=1)
    again = await _delivery(other)
    assert again["delivery_id"] == first["delivery_id"] and again["attempt"] == 2
    answer = {"delivery_id": again["delivery_id"], "client_id": "reply", "text": "Here."}
    assert (await other.call("message", answer))["ok"]
    late = await slow.call("message", {**answer, "text": "Me too."})
    assert late["ok"] is False and late["error"]["code"] == "conflict"
    assert await _bot_rows(server, conversation_id) == [("helper", "Here.")]


async def test_a_disconnected_worker_s_delivery_goes_to_another(start_app, clients):
    server = await start_app(**SETTINGS)
    gone = await _worker(server, clients)
    _, conversation_id = await _visitor(server, clients, "hi")
    first = await _delivery(gone)
    other = await _worker(server, clients)
    await gone.close()
    again = await _delivery(other)
    assert again["delivery_id"] == first["delivery_id"]
    reply = {"delivery_id": again["delivery_id"], "text": "Hello!"}
    assert (await other.call("message", reply))["ok"]
    assert await _bot_rows(server, conversation_id) == [("helper", "Hello!")]


@pytest.mark.parametrize("fallback", ["kb", "queue"])
async def test_without_a_worker_the_fallback_answers_after_bot_timeout(
    start_app, clients, fallback
):
    server = await start_app(**{**SETTINGS, "BOT_TIMEOUT": "0.2", "BOT_FALLBACK": fallback})
    visitor, conversation_id = await _visitor(server, clients, "How do I get a visitor token?")
    if fallback == "kb":
        # seq 1 is the greeting, 2 the visitor's message.
        reply = await visitor.wait_message(lambda m: m["sender"]["role"] == "bot" and m["seq"] > 2)
        assert reply["sender"]["name"] == "Sockety"  # the built-in kb bot
        assert await _bot_rows(server, conversation_id) == []
    else:
        await visitor.wait_for(
            lambda: any(s["state"] == "queued" for s in visitor.of("state")), what="queued"
        )
        await asyncio.sleep(0.2)
        assert await _bot_rows(server, conversation_id) == []
        assert not [m for m in visitor.messages() if m["seq"] > 2 and m["sender"]["role"] == "bot"]


@pytest.mark.slow
async def test_the_python_example_worker_answers_and_hands_off(start_app, clients, tmp_path):
    """docs/examples/bot_worker.py, as docs/writing-a-bot.md runs it."""
    server = await start_app(**SETTINGS)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "docs" / "examples" / "bot_worker.py"),
        env={**os.environ, "SOCKETSVC_URL": server.url, "BOT_NAME": "helper", "BOT_KEY": KEY},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 15)
        assert line.startswith(b"ready"), line
        visitor, conversation_id = await _visitor(server, clients, "hello there")
        await visitor.wait_message(lambda m: m["text"] == "You said: hello there")
        await visitor.send("can I talk to a human?")
        await visitor.wait_for(
            lambda: any(s["state"] == "queued" for s in visitor.of("state")), what="queued"
        )
        note = await visitor.wait_message(lambda m: m["text"].startswith("Bot handoff"))
        assert (
            note["text"] == "Bot handoff (visitor asked): The visitor wrote: can I talk to a human?"
        )
        assert await _bot_rows(server, conversation_id) == [("helper", "You said: hello there")]
    finally:
        proc.kill()
        await proc.wait()


async def test_erasing_a_visitor_deletes_its_deliveries(start_app, clients):
    server = await start_app(**SETTINGS)
    worker = await _worker(server, clients)
    visitor, conversation_id = await _visitor(server, clients, "forget me")
    await _delivery(worker)
    await server.app[SERVICES].privacy.erase(visitor.session["visitor_id"])
    query = sa.select(sa.func.count()).where(bot_deliveries.c.conversation_id == conversation_id)
    async with server.app[STORE].read() as conn:
        assert (await conn.execute(query)).scalar_one() == 0


async def test_without_an_external_bot_workers_are_refused(app_server, clients):
    worker = ChatClient(app_server.url, namespace="/bot")
    clients.append(worker)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await worker.connect({"bot": "helper", "token": TOKENS.mint_bot("helper")})
    assert worker.connect_error["data"]["code"] == "forbidden"
