"""The LLM bot (`BOT=openai`) end to end: the app in-process, visitors and agents over real
Socket.IO connections, and a local OpenAI-compatible server started in the test
(tests/support/llm_server.py). No model can run here; that server follows the real wire format
of `/v1/chat/completions` with `stream: true` (server-sent events, `data: {chunk}` lines,
`data: [DONE]`), so the bot's HTTP client, SSE parser and streaming are all the real ones."""

from __future__ import annotations

import itertools
import re
import socket
from typing import Any

import aiohttp
import pytest

from socketsvc.bots.kb_bot import KnowledgeBaseBot
from socketsvc.bots.knowledge import load_default_knowledge_base
from socketsvc.bots.openai_bot import UNAVAILABLE
from socketsvc.domain.tokens import TokenService
from tests.conftest import SECRET, AppServer
from tests.support.chat_client import ChatClient
from tests.support.llm_server import ANSWER, LLMServer, llm_server

TOKENS = TokenService(SECRET, 3600)
KB = load_default_knowledge_base()


async def start_llm_app(start_app: Any, server: LLMServer | None, **env: Any) -> AppServer:
    base = server.base_url if server is not None else f"http://127.0.0.1:{_closed_port()}/v1"
    app: AppServer = await start_app(
        BOT="openai", LLM_BASE_URL=base, LLM_MODEL="local-model", LLM_API_KEY="sk-test", **env
    )
    return app


async def visitor(app: AppServer, clients: list[ChatClient], auth: Any = None) -> ChatClient:
    client = ChatClient(app.url)
    clients.append(client)
    await client.connect(auth)
    await client.wait_for(lambda: client.of("session"), what="session")
    return client


async def agent(app: AppServer, clients: list[ChatClient], agent_id: str = "ada") -> ChatClient:
    client = ChatClient(app.url, namespace="/agent")
    clients.append(client)
    await client.connect({"token": TOKENS.mint_agent(agent_id, "Ada")})
    await client.wait_for(lambda: client.of("assigned"), what="assigned snapshot")
    return client


def bot_messages(client: ChatClient, after_seq: int) -> list[dict[str, Any]]:
    return [m for m in client.messages() if m["sender"]["role"] == "bot" and m["seq"] > after_seq]


async def llm_errors(app: AppServer, kind: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(app.url + "/metrics") as response:
        text = await response.text()
    found = re.search(rf'^socketsvc_llm_errors_total{{kind="{kind}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # closed again: connecting to it is refused


async def test_reply_grows_in_deltas_then_is_stored_once(start_app, clients):
    async with llm_server() as server:
        app = await start_llm_app(start_app, server)
        client = await visitor(app, clients)
        ack = await client.send("what is socketsvc")
        asked = ack["message"]["seq"]
        stored = await client.wait_message(
            lambda m: m["sender"]["role"] == "bot" and m["seq"] > asked
        )

    deltas = client.of("message_delta")
    assert len(deltas) >= 3, deltas
    texts = [d["text"] for d in deltas]
    print(f"deltas: {len(deltas)}; draft text lengths: {[len(t) for t in texts]}")
    assert all(a != b and b.startswith(a) for a, b in itertools.pairwise(texts))  # cumulative
    assert {d["draft_id"] for d in deltas} == {stored["draft_id"]}
    assert all(d["sender"]["role"] == "bot" and "discarded" not in d for d in deltas)
    assert stored["text"] == "".join(ANSWER).strip() and stored["seq"] == asked + 1
    order = [e for e, _ in client.events if e in ("message_delta", "message")]
    assert order[-1] == "message"  # every delta came before the stored message

    synced = await client.call("sync", {"after_seq": asked})
    assert [(m["seq"], m["text"]) for m in synced["messages"]] == [(stored["seq"], stored["text"])]
    assert "draft_id" not in synced["messages"][0]  # a draft is a live thing only
    assert synced["last_seq"] == stored["seq"]
    await client.close()
    back = await visitor(app, clients, {"visitor_token": client.session["visitor_token"]})
    resynced = await back.call("sync", {"after_seq": 0})
    assert [m["text"] for m in resynced["messages"] if m["sender"]["role"] == "bot"][-1:] == [
        stored["text"]
    ]  # a reconnecting client gets the stored reply through sync

    (request,) = server.requests
    assert request["stream"] is True and request["model"] == "local-model"
    assert request["tools"][0]["function"]["name"] == "handoff"
    system = request["messages"][0]
    best = KnowledgeBaseBot(KB).match("what is socketsvc")
    assert best is not None and system["role"] == "system"
    assert best.intent.answer in system["content"]  # the retrieval context
    assert request["messages"][-1] == {"role": "user", "content": "what is socketsvc"}
    assert server.headers[0]["Authorization"] == "Bearer sk-test"


async def test_handoff_mid_stream_stores_nothing_and_the_agent_gets_it(start_app, clients):
    async with llm_server(delay=0.2, pieces=[f"word{i} " for i in range(30)]) as server:
        app = await start_llm_app(start_app, server)
        ada = await agent(app, clients)
        client = await visitor(app, clients)
        cid = client.session["conversation_id"]
        asked = (await client.send("tell me everything"))["message"]["seq"]
        await client.wait_for(lambda: len(client.of("message_delta")) >= 1, what="a first delta")
        assert (await client.call("handoff", {}))["state"] == "queued"
        accepted = await ada.call("accept", {"conversation_id": cid})
        assert accepted["ok"] is True, accepted
        last = await client.wait_for(
            lambda: [d for d in client.of("message_delta") if d.get("discarded")],
            what="the discarded draft",
        )
        await client.wait_for(lambda: server.cut_short == 1, what="the stream closed early")
        await client.barrier()

    assert (
        last[0]["text"] == "" and last[0]["draft_id"] == client.of("message_delta")[0]["draft_id"]
    )
    drafts = len(client.of("message_delta")) - 1
    print(f"deltas before the handoff: {drafts}; pieces sent: {server.sent}/30")
    assert server.sent < 30  # the generation was stopped, not read to the end
    assert bot_messages(client, asked) == []
    synced = await client.call("sync", {"after_seq": 0})
    assert [
        m for m in synced["messages"] if m["sender"]["role"] == "bot" and m["seq"] > asked
    ] == []
    assert synced["state"] == "assigned" and synced["agent"]["id"] == "ada"
    assert [m["text"] for m in accepted["messages"]][-1] == "Ada joined the chat."


async def test_handoff_tool_call_queues_the_conversation(start_app, clients):
    async with llm_server(mode="handoff") as server:
        app = await start_llm_app(start_app, server)
        ada = await agent(app, clients)
        client = await visitor(app, clients)
        cid = client.session["conversation_id"]
        asked = (await client.send("can I talk to a person"))["message"]["seq"]
        await client.wait_for(
            lambda: any(s["state"] == "queued" for s in client.of("state")), what="queued"
        )
        summary = await ada.wait_for(
            lambda: [c for c in ada.of("conversation") if c["conversation_id"] == cid],
            what="the agents told",
        )
    reply = bot_messages(client, asked)
    assert [m["text"] for m in reply] == [KB.handoff_reply]
    assert summary[0]["state"] == "queued"
    system = client.messages()[-1]
    assert system["sender"]["role"] == "system" and system["seq"] == reply[0]["seq"] + 1


@pytest.mark.parametrize(
    ("mode", "kind"),
    [("http500", "http"), ("malformed", "malformed"), ("cut", "malformed"), ("refused", "connect")],
)
async def test_a_failing_endpoint_gives_the_fallback_and_counts(start_app, clients, mode, kind):
    async with llm_server(mode=mode, delay=0.05) as server:
        app = await start_llm_app(start_app, None if mode == "refused" else server)
        before = await llm_errors(app, kind)
        client = await visitor(app, clients)
        asked = (await client.send("what is socketsvc"))["message"]["seq"]
        fallback = await client.wait_message(
            lambda m: m["sender"]["role"] == "bot" and m["seq"] > asked
        )
        after = await llm_errors(app, kind)
        print(f'{mode}: socketsvc_llm_errors_total{{kind="{kind}"}} {before} -> {after}')
        assert after == before + 1
        await client.barrier()

    assert fallback["text"] == f"{UNAVAILABLE} {KB.offer_human}"
    assert "draft_id" not in fallback
    deltas = client.of("message_delta")
    if deltas:  # part of the answer streamed before the failure: that draft is dropped
        assert deltas[-1]["discarded"] is True and len({d["draft_id"] for d in deltas}) == 1
    assert mode not in ("malformed", "cut") or deltas  # those failed mid-stream
    assert len(bot_messages(client, asked)) == 1


@pytest.mark.slow
async def test_a_timeout_gives_the_fallback_and_yes_hands_off(start_app, clients):
    async with llm_server(delay=3.0) as server:
        app = await start_llm_app(start_app, server, LLM_TIMEOUT=1)
        before = await llm_errors(app, "timeout")
        client = await visitor(app, clients)
        asked = (await client.send("what is socketsvc"))["message"]["seq"]
        fallback = await client.wait_message(
            lambda m: m["sender"]["role"] == "bot" and m["seq"] > asked
        )
        assert fallback["text"].startswith(UNAVAILABLE)
        assert await llm_errors(app, "timeout") == before + 1
        await client.send("yes")
        await client.wait_for(
            lambda: any(s["state"] == "queued" for s in client.of("state")), what="queued"
        )
    assert bot_messages(client, fallback["seq"])[0]["text"] == KB.handoff_reply
    assert len(server.requests) == 1  # the "yes" was answered without the model
