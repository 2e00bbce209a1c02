"""Who may do what: visitors against each other's conversations, agents against conversations that
are not theirs, and every kind of bad token on both namespaces. Prints `case -> result` lines.

Origins (cross-site WebSocket hijacking) are in test_origins.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
import warnings
from typing import Any

import jwt
import pytest
import socketio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from socketsvc.domain.tokens import VISITOR_AUDIENCE, TokenService
from tests.conftest import SECRET, AppServer
from tests.support.chat_client import ChatClient
from tests.support.tokens import TOKENS

OTHER_SECRET = "another-secret-that-is-long-enough-0123456789"
CHAT_EVENTS = ("message", "typing", "read", "sync", "handoff")
AGENT_EVENTS = ("accept", "message", "typing", "read", "sync", "transfer", "release", "resolve")


def show(case: str, result: Any) -> None:
    print(f"{case:72} -> {result}")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(claims: dict[str, Any]) -> str:
    """An `alg: none` token."""
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{b64(json.dumps(claims).encode())}."


def hs256_with_key(claims: dict[str, Any], key: bytes) -> str:
    """HS256 by hand (PyJWT refuses to use a PEM public key as an HMAC secret: good for it)."""
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    signature = hmac.new(key, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64(signature)}"


def hs512(claims: dict[str, Any]) -> str:
    """HS512 with the service's secret (PyJWT warns that the key is short for SHA-512)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return jwt.encode(claims, SECRET, "HS512")


def tampered(token: str, **changes: Any) -> str:
    """The token with claims changed and the original signature kept."""
    header, body, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims.update(changes)
    return f"{header}.{b64(json.dumps(claims).encode())}.{signature}"


def agent_claims(**overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {"sub": "mallory", "name": "Mallory", "role": "agent"}
    claims["exp"] = int(time.time()) + 600
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def public_pem(key: Any) -> str:
    pem: bytes = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem.decode()


async def refusal(server: AppServer, namespace: str, auth: Any) -> str:
    """`ok` if the connection is accepted, else the code of its connect_error."""
    sio = socketio.AsyncClient(reconnection=False)
    errors: list[Any] = []
    sio.on("connect_error", lambda data=None: errors.append(data), namespace=namespace)
    try:
        await sio.connect(
            server.url, namespaces=[namespace], transports=["websocket"], auth=auth, wait_timeout=10
        )
    except socketio.exceptions.ConnectionError:
        await sio.disconnect()
        assert errors and set(errors[-1]["data"]) == {"code", "message"}, errors
        return str(errors[-1]["data"]["code"])
    await sio.disconnect()
    return "ok"


async def visitor(server: AppServer, clients: list[ChatClient], auth: Any = None) -> ChatClient:
    client = ChatClient(server.url)
    clients.append(client)
    await client.connect(auth)
    await client.wait_for(lambda: client.of("session"), what="session")
    await client.wait_message(lambda m: m["seq"] == 1)
    return client


async def agent(server: AppServer, clients: list[ChatClient], agent_id: str) -> ChatClient:
    client = ChatClient(server.url, namespace="/agent")
    clients.append(client)
    await client.connect({"token": TOKENS.mint_agent(agent_id, agent_id.title())})
    await client.wait_for(lambda: client.of("assigned"), what="snapshots")
    return client


# -- visitors ---------------------------------------------------------------------------------


async def test_visitor_cannot_reach_another_visitors_conversation(start_app, clients):
    server = await start_app(BOT="echo")
    a = await visitor(server, clients)
    b = await visitor(server, clients)
    a_cid, b_cid = a.session["conversation_id"], b.session["conversation_id"]
    assert a_cid != b_cid
    secret = f"B's secret {uuid.uuid4().hex}"
    assert (await b.send(secret))["ok"]
    await b.wait_message(lambda m: m["sender"]["role"] == "bot" and m["seq"] == 3)
    b_before = await b.call("sync", {"after_seq": 0})

    valid = {
        "message": {"client_id": "a-1", "text": "hello"},
        "typing": {"typing": True},
        "read": {"seq": 1},
        "sync": {"after_seq": 0},
        "handoff": {"reason": "help"},
    }
    for event in CHAT_EVENTS:
        ack = await a.call(event, {**valid[event], "conversation_id": b_cid})
        show(f"visitor A {event} with B's conversation_id", ack["error"]["code"])
        assert ack["ok"] is False and ack["error"]["code"] == "invalid"
        assert ack["error"]["fields"] == {"conversation_id": ["Unknown field."]}

    # Every /chat event acts on the connection's own conversation, whatever A sends.
    synced = await a.call("sync", {"after_seq": 0, "limit": 500})
    leaked = [m for m in synced["messages"] if m["conversation_id"] != a_cid or secret in m["text"]]
    show("visitor A sync after_seq 0", f"{len(synced['messages'])} messages, all A's")
    assert synced["ok"] and not leaked
    beyond = await a.call("read", {"seq": b_before["last_seq"] + 5})
    show("visitor A read seq beyond A's last (B's range)", beyond["error"]["code"])
    assert beyond["error"]["code"] == "invalid"
    assert (await a.call("typing", {"typing": True})) == {"ok": True}
    handoff = await a.call("handoff", {})
    show("visitor A handoff", handoff)
    assert handoff == {"ok": True, "state": "queued"}
    not_a_token = await refusal(server, "/chat", {"visitor_token": b.session["visitor_id"]})
    show("B's visitor id (not a token) as visitor_token", not_a_token)
    assert not_a_token == "unauthorized"

    b_after = await b.call("sync", {"after_seq": 0})
    show("visitor B's conversation after all that", f"{b_after['state']}, last_seq unchanged")
    assert b_after == b_before
    from_a = [
        (event, data)
        for event, data in b.events
        if isinstance(data, dict)
        and (
            data.get("conversation_id") == a_cid
            or (data.get("sender") or {}).get("id") == a.session["visitor_id"]
        )
    ]
    assert not from_a, from_a


# -- agents -----------------------------------------------------------------------------------


async def test_agent_acts_only_on_conversations_assigned_to_it(start_app, clients):
    server = await start_app()
    alice = await agent(server, clients, "alice")
    bob = await agent(server, clients, "bob")
    assigned_visitor = await visitor(server, clients)
    assigned = assigned_visitor.session["conversation_id"]
    assert (await assigned_visitor.call("handoff", {}))["state"] == "queued"
    assert (await alice.call("accept", {"conversation_id": assigned}))["ok"]
    queued_visitor = await visitor(server, clients)
    queued = queued_visitor.session["conversation_id"]
    assert (await queued_visitor.call("handoff", {}))["state"] == "queued"
    writer = await visitor(server, clients)
    assert (await writer.send("a question for the bot"))["ok"]
    with_bot = writer.session["conversation_id"]
    # A visitor who has not written: its conversation is only promised, agents cannot see it.
    promised = (await visitor(server, clients)).session["conversation_id"]
    before = await alice.call("sync", {"conversation_id": assigned, "after_seq": 0})

    def payload(event: str, cid: str) -> dict[str, Any]:
        return {
            "accept": {"conversation_id": cid},
            "message": {"conversation_id": cid, "client_id": "b-1", "text": "hi"},
            "typing": {"conversation_id": cid, "typing": True},
            "read": {"conversation_id": cid, "seq": 1},
            "sync": {"conversation_id": cid, "after_seq": 0},
            "transfer": {"conversation_id": cid, "agent_id": "bob"},
            "release": {"conversation_id": cid, "to": "queue"},
            "resolve": {"conversation_id": cid},
        }[event]

    expected = {
        "assigned to alice": (assigned, {"accept": "conflict"}, "forbidden"),
        "queued (nobody's yet)": (queued, {"accept": None}, "forbidden"),
        "with the bot": (with_bot, {"accept": "conflict"}, "forbidden"),
        "that does not exist": (uuid.uuid4().hex, {}, "not_found"),
        "promised, its visitor has not written": (promised, {}, "not_found"),
    }
    for label, (cid, special, default) in expected.items():
        for event in AGENT_EVENTS:
            if event == "accept" and label.startswith("queued"):
                continue  # the documented exception: checked last
            ack = await bob.call(event, payload(event, cid))
            result = "ok" if ack["ok"] else ack["error"]["code"]
            show(f"agent bob {event} on a conversation {label}", result)
            assert result == special.get(event, default), (label, event, ack)
    also = await bob.call("transfer", {"conversation_id": assigned, "agent_id": "nobody"})
    show("agent bob transfer alice's conversation to an unknown agent", also["error"]["code"])
    assert also["error"]["code"] == "forbidden"
    assert not bob.of("assigned")[0]["conversations"]

    accepted = await bob.call("accept", {"conversation_id": queued})
    show("agent bob accept a queued conversation (allowed)", "ok" if accepted["ok"] else accepted)
    assert accepted["ok"] and accepted["conversation"]["agent"]["id"] == "bob"
    for event in AGENT_EVENTS:
        ack = await alice.call(event, payload(event, queued))
        result = "ok" if ack["ok"] else ack["error"]["code"]
        show(f"agent alice {event} on bob's conversation", result)
        assert result == ("conflict" if event == "accept" else "forbidden"), event

    after = await alice.call("sync", {"conversation_id": assigned, "after_seq": 0})
    assert after == before, "bob changed alice's conversation"


# -- tokens -----------------------------------------------------------------------------------


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_bad_tokens_are_unauthorized_on_both_namespaces(start_app, clients):
    server = await start_app()
    v = await visitor(server, clients)
    visitor_id, good_visitor = v.session["visitor_id"], v.session["visitor_token"]
    good_agent = TOKENS.mint_agent("mallory", "Mallory")
    now = int(time.time())
    visitor_claims = {"sub": visitor_id, "aud": VISITOR_AUDIENCE, "iat": now, "exp": now + 600}

    chat_cases: dict[str, Any] = {
        "control: the visitor's own token": (good_visitor, "ok"),
        "expired": TokenService(SECRET, 60).mint_visitor(visitor_id, now=0),
        "signed with another secret": TokenService(OTHER_SECRET, 600).mint_visitor(visitor_id),
        "alg none": unsigned(visitor_claims),
        "alg none, no signature part": unsigned(visitor_claims)[:-1],
        "RS256 (HS256 expected)": jwt.encode(visitor_claims, RSA_KEY, "RS256"),
        "HS512 with the right secret (HS256 expected)": hs512(visitor_claims),
        "tampered subject, original signature": ".".join(
            ["someone-else", *good_visitor.split(".")[1:]]
        ),
        "control: a JWT visitor token of an earlier release": (
            jwt.encode(visitor_claims, SECRET, "HS256"),
            "ok",
        ),
        "earlier release's JWT, tampered subject": tampered(
            jwt.encode(visitor_claims, SECRET, "HS256"), sub="someone-else"
        ),
        "wrong audience": jwt.encode({**visitor_claims, "aud": "other"}, SECRET, "HS256"),
        "no audience": jwt.encode(
            {k: v for k, v in visitor_claims.items() if k != "aud"}, SECRET, "HS256"
        ),
        "no expiry": jwt.encode(
            {k: v for k, v in visitor_claims.items() if k != "exp"}, SECRET, "HS256"
        ),
        "an agent token": good_agent,
        "not a JWT": "not-a-token",
        "8 KB of junk": "a." * 4200,
        "a number": 42,
    }
    for case, token in chat_cases.items():
        token, expected = token if isinstance(token, tuple) else (token, "unauthorized")
        result = await refusal(server, "/chat", {"visitor_token": token})
        show(f"/chat visitor_token: {case}", result)
        assert result == expected, case

    agent_cases: dict[str, Any] = {
        "control: a valid agent token": (good_agent, "ok"),
        "expired": jwt.encode(agent_claims(exp=now - 3600), SECRET, "HS256"),
        "signed with another secret": TokenService(OTHER_SECRET, 600).mint_agent("m", "M"),
        "alg none": unsigned(agent_claims()),
        "RS256 (HS256 configured)": jwt.encode(agent_claims(), RSA_KEY, "RS256"),
        "ES256 (HS256 configured)": jwt.encode(agent_claims(), EC_KEY, "ES256"),
        "HS512 with the right secret": hs512(agent_claims()),
        "tampered subject, original signature": tampered(good_agent, sub="alice"),
        "tampered role, original signature": tampered(
            TokenService(SECRET, 60).mint_agent("m", "M"), role="admin"
        ),
        "role visitor": jwt.encode(agent_claims(role="visitor"), SECRET, "HS256"),
        "no role": jwt.encode(agent_claims(role=None), SECRET, "HS256"),
        "no name": jwt.encode(agent_claims(name=None), SECRET, "HS256"),
        "no expiry": jwt.encode(agent_claims(exp=None), SECRET, "HS256"),
        "a visitor token": good_visitor,
        "a visitor token under `visitor_token`": None,
        "no auth at all": None,
    }
    for case, token in agent_cases.items():
        token, expected = token if isinstance(token, tuple) else (token, "unauthorized")
        if case.startswith("a visitor token under"):
            auth: Any = {"visitor_token": good_visitor}
        elif case == "no auth at all":
            auth = None
        else:
            auth = {"token": token}
        result = await refusal(server, "/agent", auth)
        show(f"/agent token: {case}", result)
        assert result == expected, case


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_algorithm_confusion_is_refused_when_a_public_key_is_configured(start_app):
    pem = public_pem(RSA_KEY)
    server = await start_app(AGENT_JWT_PUBLIC_KEY=pem)
    cases = {
        "control: RS256 signed with the configured key": (
            jwt.encode(agent_claims(), RSA_KEY, "RS256"),
            "ok",
        ),
        "HS256 signed with the public key PEM as secret": hs256_with_key(
            agent_claims(), pem.encode()
        ),
        "HS256 signed with the PEM, no trailing newline": hs256_with_key(
            agent_claims(), pem.strip().encode()
        ),
        "HS256 signed with SOCKETSVC_SECRET": TOKENS.mint_agent("m", "M"),
        "RS256 signed with another key": jwt.encode(agent_claims(), OTHER_RSA_KEY, "RS256"),
        "PS256 signed with the configured key": jwt.encode(agent_claims(), RSA_KEY, "PS256"),
        "alg none": unsigned(agent_claims()),
    }
    for case, token in cases.items():
        token, expected = token if isinstance(token, tuple) else (token, "unauthorized")
        result = await refusal(server, "/agent", {"token": token})
        show(f"/agent with AGENT_JWT_PUBLIC_KEY (RS256): {case}", result)
        assert result == expected, case


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_issuer_and_audience_are_enforced_when_configured(start_app):
    iss, aud = "https://idp.example.com/", "socketsvc-agents"
    server = await start_app(AGENT_JWT_ISSUER=iss, AGENT_JWT_AUDIENCE=aud)
    cases = {
        "control: right iss and aud": (agent_claims(iss=iss, aud=aud), "ok"),
        "control: aud list containing ours": (agent_claims(iss=iss, aud=["x", aud]), "ok"),
        "wrong issuer": agent_claims(iss="https://evil.example.com/", aud=aud),
        "issuer with another trailing slash": agent_claims(iss=iss.rstrip("/"), aud=aud),
        "no issuer": agent_claims(aud=aud),
        "wrong audience": agent_claims(iss=iss, aud="other-service"),
        "no audience": agent_claims(iss=iss),
        "visitor audience": agent_claims(iss=iss, aud=VISITOR_AUDIENCE),
    }
    for case, claims in cases.items():
        claims, expected = claims if isinstance(claims, tuple) else (claims, "unauthorized")
        result = await refusal(server, "/agent", {"token": jwt.encode(claims, SECRET, "HS256")})
        show(f"/agent with AGENT_JWT_ISSUER/AUDIENCE: {case}", result)
        assert result == expected, case
    minted = TokenService(SECRET, 60, _keys(iss, aud)).mint_agent("m", "M")
    assert await refusal(server, "/agent", {"token": minted}) == "ok"


def _keys(iss: str, aud: str) -> Any:
    from socketsvc.domain.tokens import AgentKeys

    return AgentKeys(issuer=iss, audience=aud)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_agent_tokens_are_minted_over_http_only_in_dev_mode(start_app):
    import aiohttp

    for dev_mode, expected in (("0", "refused"), ("1", "minted")):
        server = await start_app(DEV_MODE=dev_mode)
        async with (
            aiohttp.ClientSession() as http,
            http.post(server.url + "/dev/agent-token", json={"id": "eve", "name": "Eve"}) as r,
        ):
            body = await r.text()
            status = r.status
        result = "minted" if status == 200 and "token" in body else "refused"
        show(f"POST /dev/agent-token with DEV_MODE={dev_mode}", f"HTTP {status}: {result}")
        assert result == expected
        if dev_mode == "0":
            assert status in (404, 405)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_visitor_tokens_live_for_visitor_token_ttl(start_app, clients):
    server = await start_app(VISITOR_TOKEN_TTL=120)
    v = await visitor(server, clients)
    assert (
        TokenService(SECRET, 120).verify_visitor(v.session["visitor_token"])
        == (v.session["visitor_id"])
    )
    almost = TokenService(SECRET, 120).mint_visitor(v.session["visitor_id"], now=time.time() - 100)
    assert await refusal(server, "/chat", {"visitor_token": almost}) == "ok"
    show("visitor token issued 100 s ago with VISITOR_TOKEN_TTL=120", "ok")
    stale = TokenService(SECRET, 120).mint_visitor(v.session["visitor_id"], now=time.time() - 3600)
    assert await refusal(server, "/chat", {"visitor_token": stale}) == "unauthorized"
