"""/agent end to end: queue, accept races, chat both ways, transfer, release, resolve, grace."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import jwt
import pytest
import socketio

from socketsvc.domain.tokens import TokenService
from tests.conftest import SECRET, AppServer
from tests.support.chat_client import ChatClient
from tests.support.tokens import TOKENS


async def visitor(server: AppServer, clients: list[ChatClient]) -> ChatClient:
    client = ChatClient(server.url)
    clients.append(client)
    await client.connect()
    await client.wait_for(lambda: client.of("session"), what="session")
    await client.wait_message(lambda m: m["seq"] == 1)
    return client


async def agent(
    server: AppServer, clients: list[ChatClient], agent_id: str, name: str
) -> ChatClient:
    client = ChatClient(server.url, namespace="/agent")
    clients.append(client)
    await client.connect({"token": TOKENS.mint_agent(agent_id, name)})
    await client.wait_for(lambda: client.of("assigned"), what="snapshots")
    return client


def conversation_id(client: ChatClient) -> str:
    value: str = client.session["conversation_id"]
    return value


async def queued(server: AppServer, clients: list[ChatClient]) -> tuple[ChatClient, str]:
    v = await visitor(server, clients)
    assert (await v.call("handoff", {}))["state"] == "queued"
    return v, conversation_id(v)


async def test_full_flow_bot_queue_accept_chat_transfer_release_resolve_reopen(app_server, clients):
    alice = await agent(app_server, clients, "alice", "Alice")
    bob = await agent(app_server, clients, "bob", "Bob")
    assert alice.of("queue")[0] == {"conversations": [], "max_text_length": 4000}
    v = await visitor(app_server, clients)
    cid = conversation_id(v)
    await v.send("what is socketsvc")
    await v.wait_message(lambda m: m["sender"]["role"] == "bot" and m["seq"] == 3)

    # handoff: the visitor learns its position, every agent sees the conversation queued
    assert await v.call("handoff", {"reason": "help"}) == {"ok": True, "state": "queued"}
    state = await v.wait_for(lambda: [s for s in v.of("state") if s["state"] == "queued"])
    assert state[0]["queue_position"] == 1
    system = await v.wait_message(lambda m: m["sender"]["role"] == "system")
    assert "next in line" in system["text"]
    for a in (alice, bob):
        summary = await a.wait_for(
            lambda a=a: [c for c in a.of("conversation") if c["state"] == "queued"]
        )
        assert summary[0]["conversation_id"] == cid
        assert summary[0]["visitor"]["id"] == v.session["visitor_id"]
        assert summary[0]["waiting_since"].endswith("Z")

    # accept: Alice wins, Bob gets conflict; the visitor sees Alice join
    ack = await alice.call("accept", {"conversation_id": cid})
    assert ack["ok"] is True and ack["conversation"]["state"] == "assigned"
    assert ack["conversation"]["agent"] == {"id": "alice", "name": "Alice"}
    assert [m["seq"] for m in ack["messages"]] == list(range(1, len(ack["messages"]) + 1))
    assert (await bob.call("accept", {"conversation_id": cid}))["error"]["code"] == "conflict"
    assigned = await v.wait_for(lambda: [s for s in v.of("state") if s["state"] == "assigned"])
    assert assigned[0]["agent"] == {"id": "alice", "name": "Alice"}
    await v.wait_message(lambda m: m["text"] == "Alice joined the chat.")

    # messages, typing and read receipts both ways
    sent = await v.send("my order is late")
    got = await alice.wait_message(lambda m: m["seq"] == sent["message"]["seq"])
    assert got["sender"]["role"] == "visitor"
    reply = await alice.call(
        "message", {"conversation_id": cid, "client_id": "a-1", "text": "Let me check."}
    )
    assert reply["ok"] and reply["message"]["seq"] == sent["message"]["seq"] + 1
    assert (await v.wait_message(lambda m: m["client_id"] == "a-1"))["sender"]["name"] == "Alice"
    again = await alice.call(
        "message", {"conversation_id": cid, "client_id": "a-1", "text": "Let me check."}
    )
    assert again == reply
    assert await alice.call("typing", {"conversation_id": cid, "typing": True}) == {"ok": True}
    await v.wait_for(lambda: [t for t in v.of("typing") if t["sender"]["role"] == "agent"])
    assert await v.call("typing", {"typing": True}) == {"ok": True}
    await alice.wait_for(
        lambda: [t for t in alice.of("typing") if t["sender"]["role"] == "visitor"]
    )
    assert await v.call("read", {"seq": reply["message"]["seq"]}) == {"ok": True}
    await alice.wait_for(lambda: [r for r in alice.of("read") if r["reader"]["role"] == "visitor"])
    ack = await alice.call("read", {"conversation_id": cid, "seq": sent["message"]["seq"]})
    assert ack == {"ok": True}
    receipt = await v.wait_for(lambda: [r for r in v.of("read") if r["reader"]["role"] == "agent"])
    assert receipt[0]["reader"] == {"role": "agent", "id": "alice"}
    assert not [e for e, d in bob.events if e == "message" and d["conversation_id"] == cid]

    # transfer to Bob: Alice loses it, Bob gets it, the visitor sees Bob
    ack = await alice.call("transfer", {"conversation_id": cid, "agent_id": "bob"})
    assert ack["ok"] and ack["conversation"]["agent"]["id"] == "bob"
    await bob.wait_for(
        lambda: [c for c in bob.of("conversation") if c.get("agent", {}).get("id") == "bob"]
    )
    await v.wait_for(lambda: [s for s in v.of("state") if s.get("agent", {}).get("id") == "bob"])
    denied = await alice.call("message", {"conversation_id": cid, "client_id": "a-2", "text": "hi"})
    assert denied["error"]["code"] == "forbidden"
    sent = await v.send("thanks Bob")
    await bob.wait_message(lambda m: m["seq"] == sent["message"]["seq"])
    synced = await bob.call("sync", {"conversation_id": cid, "after_seq": 0})
    assert [m["seq"] for m in synced["messages"]] == list(range(1, synced["last_seq"] + 1))

    # release to the bot: the bot answers again
    ack = await bob.call("release", {"conversation_id": cid, "to": "bot"})
    assert ack["ok"] and ack["conversation"]["state"] == "bot"
    await v.wait_for(lambda: v.of("state")[-1]["state"] == "bot")
    sent = await v.send("how do I run the tests")
    bot_reply = await v.wait_message(
        lambda m: m["seq"] > sent["message"]["seq"] and m["sender"]["role"] == "bot"
    )
    assert "make test" in bot_reply["text"]

    # queue again, Bob accepts, resolves; the visitor writes again: reopened with the bot
    await v.call("handoff", {})
    assert (await bob.call("accept", {"conversation_id": cid}))["ok"]
    ack = await bob.call("resolve", {"conversation_id": cid})
    assert ack["ok"] and ack["conversation"]["state"] == "resolved"
    await v.wait_for(lambda: v.of("state")[-1]["state"] == "resolved")
    last_seq = (await v.call("sync", {"after_seq": 0}))["last_seq"]
    sent = await v.send("one more question: what is socketsvc")
    assert sent["message"]["seq"] == last_seq + 1
    assert sent["message"]["conversation_id"] == cid
    await v.wait_for(lambda: v.of("state")[-1]["state"] == "bot")
    await v.wait_message(
        lambda m: m["seq"] > sent["message"]["seq"] and m["sender"]["role"] == "bot"
    )


@pytest.mark.slow  # about 6 s; the rule itself: tests/unit/socketsvc/domain/test_routing.py
async def test_accept_race_exactly_one_winner_for_each_of_100_conversations(app_server, clients):
    alice = await agent(app_server, clients, "alice", "Alice")
    bob = await agent(app_server, clients, "bob", "Bob")
    visitors = await asyncio.gather(*(queued(app_server, clients) for _ in range(100)))
    winners: dict[str, str] = {}
    for _, cid in visitors:
        a, b = await asyncio.gather(
            alice.call("accept", {"conversation_id": cid}),
            bob.call("accept", {"conversation_id": cid}),
        )
        results = sorted([a["ok"], b["ok"]])
        assert results == [False, True], (a, b)
        loser = b if a["ok"] else a
        assert loser["error"]["code"] == "conflict"
        winners[cid] = "alice" if a["ok"] else "bob"
    print(
        f"race: alice won {list(winners.values()).count('alice')}, bob won "
        f"{list(winners.values()).count('bob')}, conflicts {len(winners)}"
    )
    for v, _ in visitors:  # every accept's events have reached each visitor
        await v.barrier()
    for v, cid in visitors:
        agents_seen = {s["agent"]["id"] for s in v.of("state") if "agent" in s}
        assert agents_seen == {winners[cid]}
        joined = [m for m in v.messages() if m["text"].endswith("joined the chat.")]
        assert len(joined) == 1


async def test_bot_never_answers_after_handoff_even_when_slow(start_app, clients):
    server = await start_app(BOT="echo", BOT_DELAY="1.0")
    v = await visitor(server, clients)
    sent = await v.send("are you a bot?")
    await v.wait_for(lambda: [t for t in v.of("typing") if t["typing"]], what="bot typing")
    assert (await v.call("handoff", {}))["state"] == "queued"
    # The bot's turn ends with its typing off (its reply, if stored, is published right after).
    await v.wait_for(
        lambda: [t for t in v.of("typing") if t["sender"]["role"] == "bot" and not t["typing"]],
        what="the end of the bot's turn",
    )
    await v.barrier()
    after = [m for m in v.messages() if m["seq"] > sent["message"]["seq"]]
    assert [m["sender"]["role"] for m in after] == ["system"]
    synced = await v.call("sync", {"after_seq": 0})
    assert not [m for m in synced["messages"] if m["sender"]["role"] == "bot" and m["seq"] > 1]


@pytest.mark.slow  # about 5 s of grace periods
async def test_grace_period_requeues_absent_agents_and_spares_returning_ones(start_app, clients):
    server = await start_app(AGENT_GRACE_SECONDS="1.5")
    alice = await agent(server, clients, "alice", "Alice")
    v1, c1 = await queued(server, clients)
    assert (await alice.call("accept", {"conversation_id": c1}))["ok"]

    # back within the grace period: nothing changes
    await alice.close()
    await asyncio.sleep(0.5)  # away for a while (the behaviour), shorter than the grace
    alice2 = await agent(server, clients, "alice", "Alice")
    assert [c["conversation_id"] for c in alice2.of("assigned")[0]["conversations"]] == [c1]
    await asyncio.sleep(2.5)  # past the grace (1.5 s) while connected: the behaviour
    await v1.barrier()
    assert v1.of("state")[-1]["state"] == "assigned"

    # gone for longer: requeued with a system message
    await alice2.close()
    started = time.monotonic()
    await v1.wait_for(lambda: v1.of("state")[-1]["state"] == "queued", timeout=15)
    assert time.monotonic() - started >= 1.0
    notice = await v1.wait_message(lambda m: "was disconnected" in m["text"])
    assert notice["sender"]["role"] == "system" and "Alice" in notice["text"]


async def test_agent_acts_only_on_its_own_conversations(app_server, clients):
    alice = await agent(app_server, clients, "alice", "Alice")
    bob = await agent(app_server, clients, "bob", "Bob")
    v, cid = await queued(app_server, clients)
    assert (await alice.call("accept", {"conversation_id": cid}))["ok"]
    attempts = {
        "message": {"conversation_id": cid, "client_id": "x", "text": "hi"},
        "typing": {"conversation_id": cid, "typing": True},
        "read": {"conversation_id": cid, "seq": 1},
        "sync": {"conversation_id": cid, "after_seq": 0},
        "transfer": {"conversation_id": cid, "agent_id": "alice"},
        "release": {"conversation_id": cid, "to": "queue"},
        "resolve": {"conversation_id": cid},
    }
    for event, payload in attempts.items():
        ack = await bob.call(event, payload)
        print(f"bob {event} on alice's conversation -> {ack['error']['code']}")
        assert ack["error"]["code"] == "forbidden", event
    missing = await bob.call("accept", {"conversation_id": "nope"})
    assert missing["error"]["code"] == "not_found"
    assert v.of("state")[-1]["agent"]["id"] == "alice"


def _refused(server: AppServer, clients: list[ChatClient]) -> Any:
    async def attempt(auth: Any) -> Any:
        client = ChatClient(server.url, namespace="/agent")
        clients.append(client)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await client.connect(auth)
        return client.connect_error

    return attempt


async def test_agent_handshake_refusals(app_server, clients):
    attempt = _refused(app_server, clients)
    v = await visitor(app_server, clients)
    now = int(time.time())
    cases = {
        "no auth": None,
        "visitor token": {"token": v.session["visitor_token"]},
        "expired": {
            "token": jwt.encode(
                {"sub": "a", "name": "A", "role": "agent", "exp": now - 120}, SECRET, "HS256"
            )
        },
        "other secret": {"token": TokenService("x" * 40, 60).mint_agent("a", "A")},
        "alg none": {
            "token": jwt.encode(
                {"sub": "a", "name": "A", "role": "agent", "exp": now + 60}, None, "none"
            )
        },
        "wrong role": {
            "token": jwt.encode(
                {"sub": "a", "name": "A", "role": "admin", "exp": now + 60}, SECRET, "HS256"
            )
        },
        "no exp": {
            "token": jwt.encode({"sub": "a", "name": "A", "role": "agent"}, SECRET, "HS256")
        },
        "garbage": {"token": "abc.def.ghi"},
    }
    for case, auth in cases.items():
        error = await attempt(auth)
        print(f"{case} -> {error}")
        assert error["data"]["code"] == "unauthorized", case


BAD_AGENT_PAYLOADS: dict[str, list[tuple[str, Any]]] = {
    "accept": [
        ("missing", {}),
        ("wrong type", {"conversation_id": 5}),
        ("unknown", {"conversation_id": "c", "x": 1}),
    ],
    "message": [
        ("missing text", {"conversation_id": "c", "client_id": "m"}),
        ("wrong type", {"conversation_id": "c", "text": ["a"]}),
        ("unknown", {"conversation_id": "c", "text": "a", "x": 1}),
    ],
    "typing": [
        ("missing", {"conversation_id": "c"}),
        ("wrong type", {"conversation_id": "c", "typing": "no"}),
    ],
    "read": [
        ("missing", {"conversation_id": "c"}),
        ("wrong type", {"conversation_id": "c", "seq": "1"}),
    ],
    "sync": [
        ("missing", {"conversation_id": "c"}),
        ("wrong type", {"conversation_id": "c", "after_seq": None}),
    ],
    "transfer": [
        ("missing", {"conversation_id": "c"}),
        ("wrong type", {"conversation_id": "c", "agent_id": 1}),
    ],
    "release": [
        ("missing", {"conversation_id": "c"}),
        ("bad value", {"conversation_id": "c", "to": "trash"}),
    ],
    "resolve": [("missing", {}), ("unknown", {"conversation_id": "c", "why": "x"})],
    "availability": [("missing", {}), ("bad value", {"status": "busy"})],
}


async def test_bad_agent_payloads_get_invalid(app_server, clients):
    alice = await agent(app_server, clients, "alice", "Alice")
    for event, cases in BAD_AGENT_PAYLOADS.items():
        for case, payload in cases:
            ack = await alice.call(event, payload)
            assert ack["ok"] is False and ack["error"]["code"] == "invalid", (event, case, ack)
    too_long = await alice.call("message", {"conversation_id": "c", "text": "x" * 4001})
    assert too_long["error"]["code"] == "too_large"
    assert await alice.call("availability", {"status": "away"}) == {"ok": True}


async def test_retries_are_matched_per_sender_not_per_role(app_server, clients):
    alice = await agent(app_server, clients, "alice", "Alice")
    bob = await agent(app_server, clients, "bob", "Bob")
    _, cid = await queued(app_server, clients)
    assert (await alice.call("accept", {"conversation_id": cid}))["ok"]
    first = await alice.call("message", {"conversation_id": cid, "client_id": "k", "text": "A"})
    assert first["ok"]
    assert (await alice.call("transfer", {"conversation_id": cid, "agent_id": "bob"}))["ok"]
    # Bob picks the same client_id: a new message of his, not Alice's message back
    own = await bob.call("message", {"conversation_id": cid, "client_id": "k", "text": "B"})
    assert own["ok"] and own["message"]["sender"]["id"] == "bob"
    assert own["message"]["seq"] > first["message"]["seq"]
    # Alice retrying her own send gets her first ack, and reads nothing of Bob's
    assert await alice.call("message", {"conversation_id": cid, "client_id": "k", "text": "A"}) == (
        first
    )


async def test_a_retry_after_resolve_does_not_reopen(app_server, clients):
    alice = await agent(app_server, clients, "alice", "Alice")
    v, cid = await queued(app_server, clients)
    sent = await v.send("before", client_id="early")
    assert (await alice.call("accept", {"conversation_id": cid}))["ok"]
    assert (await alice.call("resolve", {"conversation_id": cid}))["ok"]
    await v.wait_for(lambda: v.of("state")[-1]["state"] == "resolved")
    states = len(v.of("state"))
    assert await v.send("before", client_id="early") == sent
    await v.barrier()
    assert len(v.of("state")) == states
    assert (await v.call("sync", {"after_seq": 0}))["state"] == "resolved"


async def test_session_and_sync_carry_agent_queue_position_and_read_marks(app_server, clients):
    alice = await agent(app_server, clients, "alice", "Alice")
    v, cid = await queued(app_server, clients)
    token = v.session["visitor_token"]
    again = await visitor_with_token(app_server, clients, token)
    assert again.session["state"] == "queued" and again.session["queue_position"] == 1
    summary = (await alice.call("accept", {"conversation_id": cid}))["conversation"]
    assert "last_visitor_message" not in summary  # the visitor has not written yet
    sent = await v.send("hello agent")
    assert (await alice.call("read", {"conversation_id": cid, "seq": sent["message"]["seq"]}))["ok"]
    third = await visitor_with_token(app_server, clients, token)
    assert third.session["agent"] == {"id": "alice", "name": "Alice"}
    assert {"reader": {"role": "agent", "id": "alice"}, "seq": sent["message"]["seq"]} in (
        third.session["read"]
    )
    synced = await third.call("sync", {"after_seq": 0})
    assert synced["agent"]["id"] == "alice" and synced["read"] == third.session["read"]
    snapshot = await agent(app_server, clients, "alice", "Alice")
    mine = snapshot.of("assigned")[0]["conversations"][0]
    assert mine["last_visitor_message"]["text"] == "hello agent"


async def test_queue_cards_carry_the_visitors_first_question_and_the_text_limit(start_app, clients):
    server = await start_app(BOT="kb", MAX_TEXT_LENGTH="300")
    alice = await agent(server, clients, "alice", "Alice")
    # the agent learns the service's limit from its first snapshot (as a visitor from `session`)
    assert alice.of("queue")[0] == {"conversations": [], "max_text_length": 300}

    asking = await visitor(server, clients)
    await asking.send("Where is my parcel #1234?")
    await asking.send("hello? anyone")
    assert (await asking.call("handoff", {}))["ok"]
    long_first = await visitor(server, clients)
    await long_first.send("é" * 250)
    assert (await long_first.call("handoff", {}))["ok"]
    _, silent = await queued(server, clients)  # asked for a human before writing anything

    def queued_event(cid: str) -> dict[str, Any]:
        found = [c for c in alice.of("conversation") if c["conversation_id"] == cid]
        return found[0] if found and found[0]["state"] == "queued" else {}

    event = await alice.wait_for(lambda: queued_event(conversation_id(asking)))
    assert event["first_text"] == "Where is my parcel #1234?"
    assert event["last_visitor_message"]["text"] == "hello? anyone"
    cut = await alice.wait_for(lambda: queued_event(conversation_id(long_first)))
    assert cut["first_text"] == "é" * 200 + "…"  # 200 characters, then an ellipsis
    assert "first_text" not in await alice.wait_for(lambda: queued_event(silent))

    # a later snapshot has them too, in queue order
    bob = await agent(server, clients, "bob", "Bob")
    snapshot = bob.of("queue")[0]
    assert snapshot["max_text_length"] == 300
    assert [(c["queue_position"], c.get("first_text")) for c in snapshot["conversations"]] == [
        (1, "Where is my parcel #1234?"),
        (2, "é" * 200 + "…"),
        (3, None),
    ]
    # only queue cards carry it: an accepted conversation's Summary has the history instead
    accepted = await bob.call("accept", {"conversation_id": conversation_id(asking)})
    assert accepted["ok"] and "first_text" not in accepted["conversation"]


async def visitor_with_token(
    server: AppServer, clients: list[ChatClient], token: str
) -> ChatClient:
    client = ChatClient(server.url)
    clients.append(client)
    await client.connect({"visitor_token": token})
    await client.wait_for(lambda: client.of("session"), what="session")
    return client
