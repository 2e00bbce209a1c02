"""Identity tokens from the host site (IDENTITY_SECRET) and agent JWTs verified with a public key
(AGENT_JWT_PUBLIC_KEY, RS256 or ES256, as PEM or @path). Prints `case -> result` lines."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import jwt
import pytest
import socketio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.conftest import ROOT, SECRET, AppServer
from tests.support.chat_client import ChatClient
from tests.support.tokens import TOKENS

IDENTITY_SECRET = "host-site-identity-secret-0123456789-abcdef"
OTHER_SECRET = "some-other-secret-0123456789-0123456789-xyz"
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def show(case: str, result: Any) -> None:
    print(f"{case:64} -> {result}")


def identity(
    sub: Any = "user-42", secret: str = IDENTITY_SECRET, alg: str = "HS256", **claims: Any
) -> str:
    body: dict[str, Any] = {"sub": sub, "exp": int(time.time()) + 600, **claims}
    body = {k: v for k, v in body.items() if v is not None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # HS512 with a short key
        return jwt.encode(body, secret, alg)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def agent_claims(**overrides: Any) -> dict[str, Any]:
    claims = {"sub": "kim", "name": "Kim", "role": "agent", "exp": int(time.time()) + 600}
    claims.update(overrides)
    return claims


def public_pem(key: Any) -> str:
    pem: bytes = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem.decode()


async def connect(server: AppServer, namespace: str, auth: Any) -> tuple[str, ChatClient | None]:
    """("ok", client) or (connect_error code, None)."""
    client = ChatClient(server.url, namespace=namespace)
    try:
        await client.connect(auth)
    except socketio.exceptions.ConnectionError:
        await client.close()
        return str(client.connect_error["data"]["code"]), None
    first = "session" if namespace == "/chat" else "assigned"
    await client.wait_for(lambda: client.of(first), what=first)
    return "ok", client


# -- identity ---------------------------------------------------------------------------------


async def test_a_signed_identity_is_one_visitor_on_every_device(start_app, clients):
    server = await start_app(IDENTITY_SECRET=IDENTITY_SECRET)
    token = identity(name="Ada Lovelace", email="ada@example.com")
    result, phone = await connect(server, "/chat", {"identity": token})
    assert result == "ok" and phone is not None
    clients.append(phone)
    await phone.wait_message(lambda m: m["seq"] == 1)
    # Another device: no visitor token, a freshly minted identity for the same user.
    result, laptop = await connect(server, "/chat", {"identity": identity(name="Ada Lovelace")})
    assert result == "ok" and laptop is not None
    clients.append(laptop)
    expected_id = "u-" + hashlib.sha256(b"user-42").hexdigest()[:40]
    for device, client in (("phone", phone), ("laptop", laptop)):
        session = client.session
        show(
            f"identity user-42 on the {device}", (session["visitor_id"], session["conversation_id"])
        )
        assert session["visitor_id"] == expected_id
    assert phone.session["conversation_id"] == laptop.session["conversation_id"]
    # Nothing is stored until the user writes: both devices are greeted, with the same message.
    greeting = await laptop.wait_message(lambda m: m["seq"] == 1)
    show("greeting pushed to the laptop (nothing stored yet)", greeting["id"])
    assert greeting["id"] == phone.messages()[0]["id"]

    sent = await phone.send("sent from the phone")
    show("name on the message sent from the phone", sent["message"]["sender"]["name"])
    assert sent["message"]["sender"] == {
        "role": "visitor",
        "id": expected_id,
        "name": "Ada Lovelace",
    }
    seen = await laptop.wait_message(lambda m: m["id"] == sent["message"]["id"])
    show("the laptop receives it", seen["text"])
    synced = await laptop.call("sync", {"after_seq": 0})
    assert sent["message"]["id"] in [m["id"] for m in synced["messages"]]
    seqs = [m["seq"] for m in synced["messages"]]
    assert seqs == list(range(1, len(seqs) + 1)) and seqs[-1] <= synced["last_seq"]

    result, other = await connect(server, "/chat", {"identity": identity("user-43")})
    assert result == "ok" and other is not None
    clients.append(other)
    show("identity user-43", other.session["visitor_id"])
    assert other.session["visitor_id"] != expected_id
    assert other.session["conversation_id"] != phone.session["conversation_id"]
    # The visitor token the session hands out resumes the same user without the identity.
    result, resumed = await connect(
        server, "/chat", {"visitor_token": laptop.session["visitor_token"]}
    )
    assert result == "ok" and resumed is not None
    clients.append(resumed)
    assert resumed.session["visitor_id"] == expected_id


@sqlite_only
async def test_bad_identities_are_unauthorized(start_app, clients):
    server = await start_app(IDENTITY_SECRET=IDENTITY_SECRET)
    good = identity()
    header, _body, signature = good.split(".")
    forged_body = b64(json.dumps({"sub": "admin", "exp": int(time.time()) + 600}).encode())
    visitor_token = TOKENS.mint_visitor("u-" + hashlib.sha256(b"user-42").hexdigest()[:40])
    cases: dict[str, Any] = {
        "control: a good identity": ({"identity": good}, "ok"),
        "tampered subject, original signature": {"identity": f"{header}.{forged_body}.{signature}"},
        "expired": {"identity": identity(exp=int(time.time()) - 3600)},
        "no expiry": {"identity": identity(exp=None)},
        "signed with another secret": {"identity": identity(secret=OTHER_SECRET)},
        "signed with SOCKETSVC_SECRET": {"identity": identity(secret=SECRET)},
        "HS512 with the identity secret": {"identity": identity(alg="HS512")},
        "alg none": {"identity": jwt.encode({"sub": "user-42", "exp": 2**31}, None, "none")},
        "a visitor token for that user": {"identity": visitor_token},
        "no subject": {"identity": identity(sub=None)},
        "a number as subject": {"identity": identity(sub=42)},
        "a 201-character subject": {"identity": identity(sub="u" * 201)},
        "identity is not a string": {"identity": {"sub": "user-42"}},
    }
    for case, auth in cases.items():
        auth, expected = auth if isinstance(auth, tuple) else (auth, "unauthorized")
        result, client = await connect(server, "/chat", auth)
        if client is not None:
            clients.append(client)
        show(f"/chat identity: {case}", result)
        assert result == expected, case


@sqlite_only
async def test_identity_is_refused_when_identity_secret_is_unset(start_app, clients):
    server = await start_app()
    for case, token in {
        "signed with some secret": identity(),
        "signed with SOCKETSVC_SECRET": identity(secret=SECRET),
    }.items():
        result, _ = await connect(server, "/chat", {"identity": token})
        show(f"/chat identity without IDENTITY_SECRET: {case}", result)
        assert result == "unauthorized"
    result, client = await connect(server, "/chat", {"identity": ""})
    show("/chat with an empty identity (treated as absent)", result)
    assert result == "ok" and client is not None
    clients.append(client)


# -- agent keys -------------------------------------------------------------------------------


@sqlite_only
async def test_rs256_agent_key_given_as_pem(start_app, clients):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    server = await start_app(AGENT_JWT_PUBLIC_KEY=public_pem(key))
    cases = {
        "control: RS256 signed with the key": (jwt.encode(agent_claims(), key, "RS256"), "ok"),
        "RS256 signed with another key": jwt.encode(agent_claims(), other, "RS256"),
        "RS256, expired": jwt.encode(agent_claims(exp=int(time.time()) - 3600), key, "RS256"),
        "RS256 with role visitor": jwt.encode(agent_claims(role="visitor"), key, "RS256"),
        "HS256 minted with SOCKETSVC_SECRET": TOKENS.mint_agent("kim", "Kim"),
    }
    for case, token in cases.items():
        token, expected = token if isinstance(token, tuple) else (token, "unauthorized")
        result, client = await connect(server, "/agent", {"token": token})
        if client is not None:
            clients.append(client)
        show(f"/agent, AGENT_JWT_PUBLIC_KEY=<RSA PEM>: {case}", result)
        assert result == expected, case


@sqlite_only
async def test_es256_agent_key_given_as_a_path(start_app, clients, tmp_path: Path):
    key = ec.generate_private_key(ec.SECP256R1())
    other = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "agents.pub.pem"
    path.write_text(public_pem(key))
    server = await start_app(AGENT_JWT_ALGORITHM="ES256", AGENT_JWT_PUBLIC_KEY=f"@{path}")
    cases = {
        "control: ES256 signed with the key": (jwt.encode(agent_claims(), key, "ES256"), "ok"),
        "ES256 signed with another key": jwt.encode(agent_claims(), other, "ES256"),
        "RS256": jwt.encode(agent_claims(), rsa_key, "RS256"),
        "HS256 minted with SOCKETSVC_SECRET": TOKENS.mint_agent("kim", "Kim"),
        "HS256 signed with the PEM file's text": _hs256(agent_claims(), path.read_bytes()),
    }
    for case, token in cases.items():
        token, expected = token if isinstance(token, tuple) else (token, "unauthorized")
        result, client = await connect(server, "/agent", {"token": token})
        if client is not None:
            clients.append(client)
        show(f"/agent, AGENT_JWT_PUBLIC_KEY=@path (ES256): {case}", result)
        assert result == expected, case


def _hs256(claims: dict[str, Any], key: bytes) -> str:
    import hmac

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    digest = hmac.new(key, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64(digest)}"


def _token_command(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {
        **os.environ,
        "SOCKETSVC_SECRET": SECRET,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "socketsvc", "token", "agent", "--id", "kim", "--name", "Kim"],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow  # about 3 s of CLI processes
def test_token_command_refuses_to_mint_when_a_public_key_is_configured(tmp_path: Path):
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "agents.pub.pem"
    path.write_text(public_pem(key))
    control = _token_command(tmp_path)
    show("socketsvc token agent (HS256)", f"exit {control.returncode}")
    assert control.returncode == 0
    assert TOKENS.verify_agent(control.stdout.strip()).id == "kim"
    for case, env in {
        "AGENT_JWT_PUBLIC_KEY=<PEM>": {"AGENT_JWT_PUBLIC_KEY": public_pem(key)},
        "AGENT_JWT_PUBLIC_KEY=@path, ES256": {
            "AGENT_JWT_PUBLIC_KEY": f"@{path}",
            "AGENT_JWT_ALGORITHM": "ES256",
        },
    }.items():
        refused = _token_command(tmp_path, **env)
        show(f"socketsvc token agent with {case}", f"exit {refused.returncode}")
        assert refused.returncode == 2
        assert refused.stdout == ""
        assert "AGENT_JWT_PUBLIC_KEY" in refused.stderr
