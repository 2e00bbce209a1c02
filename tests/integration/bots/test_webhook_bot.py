"""The webhook bot (`BOT=webhook`) end to end: the app in-process on an ephemeral port, visitors
and agents over real Socket.IO connections, and a webhook receiver that is a real aiohttp server
on another ephemeral port (tests/support/webhook_receiver.py). Nothing of the HTTP path is
mocked: the bot's aiohttp client posts, the receiver checks what a real one would."""

from __future__ import annotations

import importlib.util
import itertools
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from socketsvc.bots.kb_bot import KnowledgeBaseBot
from socketsvc.bots.knowledge import load_default_knowledge_base
from socketsvc.bots.webhook_bot import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify,
)
from socketsvc.domain.tokens import TokenService
from socketsvc.keys import SERVICES
from tests.conftest import SECRET, AppServer
from tests.support.chat_client import ChatClient
from tests.support.serving import serving
from tests.support.webhook_receiver import Receiver, Reply, receiver

HOOK_SECRET = "whsec-integration-0123456789"
TOKENS = TokenService(SECRET, 3600)
KB = load_default_knowledge_base()
OPENED, RESOLVED, CREATED = "conversation.opened", "conversation.resolved", "message.created"
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def answering(created: Any, other: Reply | None = None) -> Any:
    """A script: `created(seen)` for message.created, `other` (a 204) for notifications."""

    def script(event: str, seen: int) -> Reply:
        if event == CREATED:
            result: Reply = created(seen)
            return result
        return other or Reply(204)

    return script


async def start_webhook_app(start_app: Any, hook: Receiver, **env: Any) -> AppServer:
    app: AppServer = await start_app(
        BOT="webhook", BOT_WEBHOOK_URL=hook.url, BOT_WEBHOOK_SECRET=HOOK_SECRET, **env
    )
    return app


async def visitor(app: AppServer, clients: list[ChatClient]) -> ChatClient:
    client = ChatClient(app.url)
    clients.append(client)
    await client.connect()
    await client.wait_for(lambda: client.of("session"), what="session")
    return client


async def agent(app: AppServer, clients: list[ChatClient], agent_id: str = "ada") -> ChatClient:
    client = ChatClient(app.url, namespace="/agent")
    clients.append(client)
    await client.connect({"token": TOKENS.mint_agent(agent_id, "Ada")})
    await client.wait_for(lambda: client.of("assigned"), what="assigned snapshot")
    return client


def bot_messages(messages: list[dict[str, Any]], after_seq: int) -> list[dict[str, Any]]:
    return [m for m in messages if m["sender"]["role"] == "bot" and m["seq"] > after_seq]


async def metric(app: AppServer, name: str, **labels: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(app.url + "/metrics") as response:
        text = await response.text()
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        found = re.match(rf"^{name}{{(.*)}} (\S+)$", line)
        if found and ",".join(sorted(found.group(1).split(","))) == wanted:
            return float(found.group(2))
    return 0.0


def signed(request: Any) -> bool:
    return verify(
        HOOK_SECRET,
        request.headers.get(TIMESTAMP_HEADER),
        request.body,
        request.headers.get(SIGNATURE_HEADER),
    )


async def test_reply_in_the_body_is_signed_stored_and_delivered(start_app, clients):
    async with receiver(
        answering(lambda seen: Reply(200, {"reply": "Hello from the hook!"}))
    ) as hook:
        app = await start_webhook_app(start_app, hook)
        client = await visitor(app, clients)
        cid = client.session["conversation_id"]
        await client.barrier()
        assert hook.requests == []  # a connect only promises the conversation: nothing sent
        ack = await client.send("hello there", client_id="visitor-msg-1")
        asked = ack["message"]
        reply = await client.wait_message(
            lambda m: m["sender"]["role"] == "bot" and m["seq"] > asked["seq"]
        )
        (opened,) = await hook.wait_for(OPENED)
        (created,) = hook.of(CREATED)

    assert reply["text"] == "Hello from the hook!" and reply["seq"] == asked["seq"] + 1
    assert reply["client_id"] == f"webhook:{asked['id']}"
    # The signature checks out with the secret, and with nothing else.
    for request in (opened, created):
        assert request.headers["Content-Type"] == "application/json"
        assert signed(request)
        assert not verify(
            "wrong-secret-0123456789",
            request.headers[TIMESTAMP_HEADER],
            request.body,
            request.headers[SIGNATURE_HEADER],
        )
        assert abs(int(request.headers[TIMESTAMP_HEADER]) - time.time()) < 60
    print(
        f"signature {created.headers[SIGNATURE_HEADER][:20]}... verifies with the secret: "
        f"{signed(created)}; with another: False"
    )
    body = created.json
    assert body["event"] == CREATED and body["id"] == asked["id"]
    assert created.headers[DELIVERY_HEADER] == asked["id"]
    assert body["message"]["text"] == "hello there"
    assert body["message"]["client_id"] == "visitor-msg-1"
    assert body["message"]["seq"] == asked["seq"] and body["message"]["sender"]["role"] == "visitor"
    assert body["conversation"]["id"] == cid and body["conversation"]["status"] == "bot"
    assert [m["seq"] for m in body["recent"]] == [1]  # the greeting, stored with the message
    assert body["recent"][0]["sender"]["role"] == "bot"
    assert body["visitor"]["id"] == client.session["visitor_id"]
    opened_body = opened.json
    assert (
        opened_body["conversation"]["id"] == cid and opened_body["conversation"]["status"] == "bot"
    )
    assert opened_body["visitor"]["id"] == client.session["visitor_id"]
    assert opened_body["visitor"]["name"].startswith("Visitor ")
    assert opened_body["id"] != body["id"] and "message" not in opened_body

    synced = await client.call("sync", {"after_seq": 0})
    assert [m["text"] for m in bot_messages(synced["messages"], asked["seq"])] == [
        "Hello from the hook!"
    ]


async def test_a_500_is_retried_and_the_replies_are_stored_once(start_app, clients):
    def created(seen: int) -> Reply:
        if seen < 2:
            return Reply(500, {"error": "try again"})
        return Reply(200, {"replies": ["First part.", "Second part."]})

    async with receiver(answering(created)) as hook:
        app = await start_webhook_app(start_app, hook, BOT_WEBHOOK_RETRIES=3)
        retries_before = await metric(app, "socketsvc_webhook_retries_total", reason="http_5xx")
        client = await visitor(app, clients)
        cid = client.session["conversation_id"]
        asked = (await client.send("is anyone there"))["message"]
        await client.wait_for(
            lambda: len(bot_messages(client.messages(), asked["seq"])) == 2, what="both replies"
        )
        attempts = hook.of(CREATED)
        retries = await metric(app, "socketsvc_webhook_retries_total", reason="http_5xx")

        # The same visitor message answered again (a redelivery): the receiver answers again,
        # and the store keeps the first replies (their client_ids come from the delivery id).
        services = app.app[SERVICES]
        conversation = await services.store.get_conversation(cid)
        (message,) = await services.store.messages_after(cid, asked["seq"] - 1, 1)
        assert conversation is not None and message.id == asked["id"]
        again = await services.bot_runner.answer(conversation, message)
        await client.barrier()

    assert len(attempts) == 3
    assert [r.headers["X-Socketsvc-Attempt"] for r in attempts] == ["1", "2", "3"]
    assert {r.headers[DELIVERY_HEADER] for r in attempts} == {asked["id"]}  # stable
    assert len({r.body for r in attempts}) == 1  # the same body; each attempt signed anew
    assert all(signed(r) for r in attempts)
    gaps = [round(b.at - a.at, 3) for a, b in itertools.pairwise(attempts)]
    print(f"attempts: {len(attempts)} (statuses 500, 500, 200); gaps between them: {gaps} s")
    print(f"socketsvc_webhook_retries_total{{reason=http_5xx}}: {retries_before} -> {retries}")
    assert retries == retries_before + 2
    assert all(gap >= 0.1 for gap in gaps)  # a backoff, not a hammering
    assert len(hook.of(CREATED)) == 4 and again is not None
    replies = bot_messages(client.messages(), asked["seq"])
    assert [m["text"] for m in replies] == ["First part.", "Second part."]  # published once
    assert [m["client_id"] for m in replies] == [
        f"webhook:{asked['id']}",
        f"webhook:{asked['id']}:1",
    ]
    synced = await client.call("sync", {"after_seq": asked["seq"]})
    assert [m["text"] for m in synced["messages"]] == ["First part.", "Second part."]


@pytest.mark.slow
async def test_a_receiver_too_slow_gets_the_kb_fallback(start_app, clients):
    async with receiver(
        answering(lambda seen: Reply(200, {"reply": "too late"}, sleep=3.0))
    ) as hook:
        app = await start_webhook_app(
            start_app,
            hook,
            BOT_TIMEOUT="1.5",
            BOT_WEBHOOK_ATTEMPT_TIMEOUT="0.4",
            BOT_WEBHOOK_RETRIES="5",
            BOT_FALLBACK="kb",
        )
        failed_before = await metric(
            app, "socketsvc_webhook_deliveries_total", event=CREATED, outcome="failed"
        )
        client = await visitor(app, clients)
        started = time.monotonic()
        asked = (await client.send("what is socketsvc"))["message"]
        reply = await client.wait_message(
            lambda m: m["sender"]["role"] == "bot" and m["seq"] > asked["seq"]
        )
        took = time.monotonic() - started
        failed = await metric(
            app, "socketsvc_webhook_deliveries_total", event=CREATED, outcome="failed"
        )
        attempts = len(hook.of(CREATED))
        await client.barrier()

    best = KnowledgeBaseBot(KB).match("what is socketsvc")
    assert best is not None and reply["text"] == best.intent.answer
    print(
        f"timeouts: {attempts} attempts of 0.4 s within BOT_TIMEOUT 1.5 s; "
        f"kb fallback after {took:.2f} s"
    )
    assert 2 <= attempts <= 4
    assert 1.0 <= took < 2.5
    assert failed == failed_before + 1
    assert [m["text"] for m in bot_messages(client.messages(), asked["seq"])] == [reply["text"]]


@SQLITE_ONLY
async def test_no_answer_with_fallback_queue_queues_the_conversation(start_app, clients):
    unavailable = Reply(503, {"error": "down"}, headers={"Retry-After": "0"})
    async with receiver(answering(lambda seen: unavailable)) as hook:
        app = await start_webhook_app(
            start_app, hook, BOT_FALLBACK="queue", BOT_WEBHOOK_RETRIES="1", BOT_TIMEOUT="3"
        )
        client = await visitor(app, clients)
        asked = (await client.send("hello?"))["message"]
        await client.wait_for(
            lambda: any(s["state"] == "queued" for s in client.of("state")), what="queued"
        )
        await client.barrier()

    assert len(hook.of(CREATED)) == 2  # one retry
    assert bot_messages(client.messages(), asked["seq"]) == []  # the bot said nothing
    assert client.messages()[-1]["sender"]["role"] == "system"


async def test_a_4xx_is_not_retried_and_gets_the_fallback(start_app, clients):
    async with receiver(answering(lambda seen: Reply(400, {"error": "bad request"}))) as hook:
        app = await start_webhook_app(start_app, hook, BOT_WEBHOOK_RETRIES="3")
        rejected_before = await metric(
            app, "socketsvc_webhook_deliveries_total", event=CREATED, outcome="rejected"
        )
        client = await visitor(app, clients)
        asked = (await client.send("what is socketsvc"))["message"]
        reply = await client.wait_message(
            lambda m: m["sender"]["role"] == "bot" and m["seq"] > asked["seq"]
        )
        rejected = await metric(
            app, "socketsvc_webhook_deliveries_total", event=CREATED, outcome="rejected"
        )
        await client.barrier()

    assert len(hook.of(CREATED)) == 1
    print(f"HTTP 400: {len(hook.of(CREATED))} attempt; fallback reply from the kb bot")
    best = KnowledgeBaseBot(KB).match("what is socketsvc")
    assert best is not None and reply["text"] == best.intent.answer
    assert rejected == rejected_before + 1


@SQLITE_ONLY
async def test_202_means_nothing_to_say(start_app, clients):
    async with receiver(answering(lambda seen: Reply(202))) as hook:
        app = await start_webhook_app(start_app, hook)
        client = await visitor(app, clients)
        asked = (await client.send("just saying"))["message"]
        await hook.wait_for(CREATED)
        await hook.wait_for(OPENED)
        accepted = await metric(
            app, "socketsvc_webhook_deliveries_total", event=CREATED, outcome="accepted"
        )
        await client.barrier()
        synced = await client.call("sync", {"after_seq": 0})

    assert accepted >= 1
    assert bot_messages(synced["messages"], asked["seq"]) == []
    assert synced["state"] == "bot"


async def test_handoff_from_the_body_then_resolved_is_sent(start_app, clients):
    handoff = {
        "reply": "Let me get you a person.",
        "handoff": {"reason": "refund", "summary": "Wants a refund for order 42"},
    }
    async with receiver(answering(lambda seen: Reply(200, handoff))) as hook:
        app = await start_webhook_app(start_app, hook)
        ada = await agent(app, clients)
        client = await visitor(app, clients)
        cid = client.session["conversation_id"]
        asked = (await client.send("I want my money back"))["message"]
        await client.wait_for(
            lambda: any(s["state"] == "queued" for s in client.of("state")), what="queued"
        )
        await hook.wait_for(OPENED)
        assert hook.of(RESOLVED) == []
        accepted = await ada.call("accept", {"conversation_id": cid})
        assert accepted["ok"] is True, accepted
        resolved = await ada.call("resolve", {"conversation_id": cid})
        assert resolved["ok"] is True, resolved
        (notification,) = await hook.wait_for(RESOLVED)

    texts = [m["text"] for m in client.messages() if m["seq"] > asked["seq"]]
    assert texts[0] == "Let me get you a person."
    assert "Bot handoff (refund): Wants a refund for order 42" in texts
    assert signed(notification)
    body = notification.json
    assert body["conversation"]["id"] == cid and body["conversation"]["status"] == "resolved"
    assert body["visitor"]["id"] == client.session["visitor_id"]
    # opened and created are sent independently (either may arrive first); resolved last.
    assert sorted(r.event for r in hook.requests[:2]) == [OPENED, CREATED]
    assert [r.event for r in hook.requests[2:]] == [RESOLVED]


def _example() -> Any:
    path = Path(__file__).resolve().parents[3] / "docs" / "examples" / "webhook_receiver.py"
    spec = importlib.util.spec_from_file_location("webhook_receiver_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@SQLITE_ONLY
@pytest.mark.parametrize("secret", [HOOK_SECRET, "not-the-receivers-secret"])
async def test_the_documented_receiver_checks_the_signature(start_app, clients, secret):
    """docs/examples/webhook_receiver.py, the receiver of docs/webhook-bot.md: it answers when
    socketsvc signs with its secret, and refuses (401, so the kb fallback answers) otherwise."""
    async with serving(_example().make_app(HOOK_SECRET.encode())) as url:
        app = await start_app(
            BOT="webhook", BOT_WEBHOOK_URL=url + "/socketsvc", BOT_WEBHOOK_SECRET=secret
        )
        client = await visitor(app, clients)
        asked = (await client.send("what is socketsvc"))["message"]
        reply = await client.wait_message(
            lambda m: m["sender"]["role"] == "bot" and m["seq"] > asked["seq"]
        )
        await client.barrier()

    best = KnowledgeBaseBot(KB).match("what is socketsvc")
    assert best is not None
    expected = "You said: what is socketsvc" if secret == HOOK_SECRET else best.intent.answer
    same = "same" if secret == HOOK_SECRET else "wrong"
    print(f"documented receiver, the app signing with the {same} secret: {reply['text'][:40]!r}")
    assert reply["text"] == expected
