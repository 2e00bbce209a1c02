"""A visitor's personal data end to end, on SQLite and PostgreSQL: `socketsvc visitor delete`
leaves no row of it in any table and its token is refused; the HTTP export/erase endpoints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import aiohttp
import pytest
import socketio
import sqlalchemy as sa

from socketsvc.settings import SETTINGS
from socketsvc.storage.database import create_engine
from socketsvc.storage.tables import metadata
from tests.conftest import AppServer
from tests.support.chat_client import ChatClient
from tests.support.tokens import SECRET, TOKENS

ADMIN = "admin-token-0123456789abcdef-0123456789"
TABLES = {
    "visitors",
    "conversations",
    "messages",
    "read_marks",
    "agents",
    "agent_connections",
    "erased_visitors",
    "bot_deliveries",
}
ERASED = {**dict.fromkeys(TABLES, 0), "erased_visitors": 1}
"""What is left of an erased visitor: its id as an erasure marker, nothing else."""


async def visitor(server: AppServer, clients: list[ChatClient], auth: Any = None) -> ChatClient:
    client = ChatClient(server.url)
    clients.append(client)
    await client.connect(auth)
    await client.wait_for(lambda: client.of("session"), what="session")
    if auth is None:
        await client.wait_message(lambda m: m["seq"] == 1)
    return client


async def agent(server: AppServer, clients: list[ChatClient]) -> ChatClient:
    client = ChatClient(server.url, namespace="/agent")
    clients.append(client)
    await client.connect({"token": TOKENS.mint_agent("alice", "Alice")})
    await client.wait_for(lambda: client.of("assigned"), what="snapshots")
    return client


async def chat(server: AppServer, clients: list[ChatClient], alice: ChatClient) -> ChatClient:
    """A visitor with a resolved conversation: visitor, bot and agent messages, both read
    marks."""
    v = await visitor(server, clients)
    cid = v.session["conversation_id"]
    await v.send("my order is late")
    assert (await v.call("handoff", {}))["state"] == "queued"
    assert (await alice.call("accept", {"conversation_id": cid}))["ok"]
    sent = await alice.call(
        "message", {"conversation_id": cid, "client_id": f"a-{cid}", "text": "on it"}
    )
    seq = sent["message"]["seq"]
    assert await v.call("read", {"seq": seq}) == {"ok": True}
    assert (await alice.call("read", {"conversation_id": cid, "seq": seq}))["ok"]
    assert (await alice.call("resolve", {"conversation_id": cid}))["ok"]
    await v.wait_for(lambda: [s for s in v.of("state") if s["state"] == "resolved"])
    return v


async def references(url: str, visitor_id: str) -> dict[str, int]:
    """Per table, the rows with any column holding the visitor's id or one of its
    conversations' ids (every table of the schema, every string column)."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            ids = {visitor_id}
            ids |= {
                row[0]
                for row in await conn.execute(
                    sa.text("SELECT id FROM conversations WHERE visitor_id = :v"), {"v": visitor_id}
                )
            }
            tables = set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))
            assert tables - {"alembic_version"} == TABLES == set(metadata.tables)
            counts: dict[str, int] = {}
            for table in metadata.sorted_tables:
                columns = [c for c in table.c if isinstance(c.type, sa.String)]
                condition = sa.or_(*(c.in_(sorted(ids)) for c in columns))
                query = sa.select(sa.func.count()).select_from(table).where(condition)
                counts[table.name] = int((await conn.execute(query)).scalar_one())
            return counts
    finally:
        await engine.dispose()


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    names = {s.env for s in SETTINGS}
    env = {k: v for k, v in os.environ.items() if k not in names}
    env.update(DATABASE_URL=url, SOCKETSVC_SECRET=SECRET)
    return subprocess.run(
        [sys.executable, "-m", "socketsvc", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow  # runs the CLI as a process
async def test_visitor_delete_leaves_no_row_of_it_and_its_token_is_refused(
    database_url: str, start_app: Any, clients: list[ChatClient]
) -> None:
    server = await start_app(BOT="echo")
    alice = await agent(server, clients)
    a = await chat(server, clients, alice)
    b = await chat(server, clients, alice)
    a_id, b_id = a.session["visitor_id"], b.session["visitor_id"]
    a_token, b_token = a.session["visitor_token"], b.session["visitor_token"]
    await a.close()
    before_a = await references(database_url, a_id)
    before_b = await references(database_url, b_id)
    print(f"\nbefore: visitor A {before_a}\n        visitor B {before_b}")
    assert before_a["visitors"] == 1 and before_a["conversations"] == 1
    assert before_a["messages"] >= 5 and before_a["read_marks"] == 2

    done = cli(database_url, "visitor", "delete", a_id)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    print(f"socketsvc visitor delete: {report}")
    assert report["deleted"]["conversations"] == 1 and report["deleted"]["visitors"] == 1
    assert report["deleted"]["messages"] == before_a["messages"]

    after_a = await references(database_url, a_id)
    print(f"after:  visitor A {after_a}")
    assert after_a == ERASED
    assert await references(database_url, b_id) == before_b  # the other visitor untouched

    refused = ChatClient(server.url)
    clients.append(refused)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await refused.connect({"visitor_token": a_token})
    assert refused.connect_error["data"]["code"] == "unauthorized"
    print(f"A's token at connect: connect_error {refused.connect_error['data']}")
    assert await references(database_url, a_id) == after_a  # not re-created

    await b.close()
    resumed = await visitor(server, clients, {"visitor_token": b_token})
    assert resumed.session["visitor_id"] == b_id
    synced = await resumed.call("sync", {"after_seq": 0})
    assert [m["text"] for m in synced["messages"] if m["sender"]["role"] != "system"][:2] == [
        synced["messages"][0]["text"],
        "my order is late",
    ]
    assert cli(database_url, "visitor", "delete", a_id).returncode == 1  # already gone


async def test_http_export_and_erase(
    database_url: str, start_app: Any, clients: list[ChatClient]
) -> None:
    server = await start_app(BOT="echo", ADMIN_TOKEN=ADMIN)
    alice = await agent(server, clients)
    v = await chat(server, clients, alice)
    vid = v.session["visitor_id"]
    other_tab = await visitor(server, clients, {"visitor_token": v.session["visitor_token"]})
    url = f"{server.url}/api/visitors/{vid}"
    good = {"Authorization": f"Bearer {ADMIN}"}
    async with aiohttp.ClientSession() as http:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": ADMIN},
            {"Authorization": f"Basic {ADMIN}"},
            {"Authorization": f"Bearer {TOKENS.mint_agent('alice', 'Alice')}"},
        ):
            for method in ("GET", "DELETE"):
                async with http.request(method, url, headers=headers) as response:
                    assert response.status == 401, (method, headers)
                    assert (await response.json())["error"] == "unauthorized"
        async with http.get(f"{server.url}/api/visitors/nobody", headers=good) as response:
            assert response.status == 404
        async with http.get(url, headers=good) as response:
            assert response.status == 200
            export = await response.json()
        assert export["visitor"]["id"] == vid
        (resolved,) = export["conversations"]
        assert resolved["state"] == "resolved"
        assert {"role": "agent", "id": "alice", "name": "Alice"} in [
            m["sender"] for m in resolved["messages"]
        ]
        texts = [m["text"] for m in resolved["messages"]]
        assert "my order is late" in texts and "on it" in texts
        assert [m["seq"] for m in resolved["messages"]] == list(
            range(1, len(resolved["messages"]) + 1)
        )
        assert {(r["role"], r["id"]) for r in resolved["read_marks"]} == {
            ("visitor", vid),
            ("agent", "alice"),
        }
        for key in ("created_at", "updated_at"):
            assert resolved[key].endswith("+00:00")
        async with http.delete(url, headers=good) as response:
            assert response.status == 200
            assert (await response.json())["deleted"]["conversations"] == 1
        async with http.get(url, headers=good) as response:
            assert response.status == 404
        async with http.delete(url, headers=good) as response:
            assert response.status == 404
    assert await references(database_url, vid) == ERASED
    # A tab still open when the visitor was erased cannot bring it back by writing.
    refused = await other_tab.send("are you still there?")
    assert refused["ok"] is False and refused["error"]["code"] == "unauthorized", refused
    assert await references(database_url, vid) == ERASED


async def test_without_admin_token_the_endpoints_refuse(
    database_url: str, start_app: Any, clients: list[ChatClient]
) -> None:
    server = await start_app(BOT="echo")
    v = await visitor(server, clients)
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{server.url}/api/visitors/{v.session['visitor_id']}",
            headers={"Authorization": "Bearer anything"},
        ) as response,
    ):
        assert response.status == 401
        assert (await response.json())["message"] == "ADMIN_TOKEN is not set"


async def test_the_retention_task_runs_only_with_retention_days(
    database_url: str, start_app: Any
) -> None:
    import asyncio

    def running() -> list[str]:
        return [t.get_name() for t in asyncio.all_tasks() if t.get_name() == "retention"]

    await start_app(BOT="echo")
    assert running() == []
    await start_app(BOT="echo", RETENTION_DAYS=30)
    assert running() == ["retention"]
