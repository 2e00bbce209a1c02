"""A page view costs no database write: a visitor who connects and leaves (new, or resuming with
the token of a visitor who never wrote) leaves every table as it was; its first message stores
the greeting and the message; on SQLite and PostgreSQL, over WebSocket and long-polling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from socketsvc.storage.database import create_engine
from socketsvc.storage.tables import metadata
from tests.conftest import AppServer
from tests.support.chat_client import ChatClient


async def table_counts(url: str) -> dict[str, int]:
    """Rows per table of the schema."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return {
                table.name: int(
                    (await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one()
                )
                for table in metadata.sorted_tables
            }
    finally:
        await engine.dispose()


def sqlite_files(url: str) -> dict[str, int]:
    """Bytes of the SQLite database and its WAL: a commit appends to the WAL."""
    path = Path(url.removeprefix("sqlite:///"))
    return {p.name: p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists()}


async def visit(server: AppServer, transport: str, auth: Any = None) -> dict[str, Any]:
    """Connect, wait for the session and the greeting, and leave; the session."""
    client = ChatClient(server.url, transports=[transport])
    try:
        await client.connect(auth)
        await client.wait_for(lambda: client.of("session"), what="session")
        greeting = await client.wait_message(lambda m: m["seq"] == 1)
        assert greeting["sender"]["role"] == "bot"
        # What a widget does on load: tell the service the greeting was seen, sync.
        assert await client.call("read", {"seq": 1}) == {"ok": True}
        synced = await client.call("sync", {"after_seq": 0})
        assert synced["ok"] and synced["messages"] == [] and synced["started"] is False
        assert await client.call("typing", {"typing": True}) == {"ok": True}
        session: dict[str, Any] = client.of("session")[0]
        return session
    finally:
        await client.close()


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_connect_and_leave_writes_no_row(
    app_server: AppServer, database_url: str, transport: str
) -> None:
    # The schema exists and one visitor has written (so the tables are not trivially empty).
    writer = ChatClient(app_server.url)
    await writer.connect()
    await writer.wait_for(lambda: writer.of("session"), what="session")
    assert (await writer.send("how do I run the tests?"))["ok"]
    await writer.wait_message(lambda m: m["seq"] == 3)
    await writer.close()
    before = await table_counts(database_url)
    files = sqlite_files(database_url) if database_url.startswith("sqlite") else None

    new = await visit(app_server, transport)
    assert new["started"] is False and new["last_seq"] == 0
    again = await visit(app_server, transport, {"visitor_token": new["visitor_token"]})
    assert again["visitor_id"] == new["visitor_id"]
    assert again["conversation_id"] == new["conversation_id"] and again["started"] is False

    after = await table_counts(database_url)
    print(f"\n{database_url.split(':')[0]} {transport}: rows before {before}, after {after}")
    assert after == before
    assert before["conversations"] == 1 and before["messages"] == 3
    if files is not None:
        assert sqlite_files(database_url) == files, "a commit reached the WAL"

    # The first message of that visitor stores its visitor, conversation, greeting, message.
    back = ChatClient(app_server.url, transports=[transport])
    try:
        await back.connect({"visitor_token": again["visitor_token"]})
        await back.wait_for(lambda: back.of("session"), what="session")
        greeting = await back.wait_message(lambda m: m["seq"] == 1)
        sent = await back.send("and how do I scale it?")
        assert sent["ok"] and sent["message"]["seq"] == 2
        synced = await back.call("sync", {"after_seq": 0})
        assert synced["started"] is True
        assert [m["id"] for m in synced["messages"][:2]] == [greeting["id"], sent["message"]["id"]]
    finally:
        await back.close()
    stored = await table_counts(database_url)
    assert stored["visitors"] == before["visitors"] + 1
    assert stored["conversations"] == before["conversations"] + 1


async def test_asking_for_a_human_before_writing_stores_the_conversation_queued(
    app_server: AppServer, database_url: str
) -> None:
    before = await table_counts(database_url)
    client = ChatClient(app_server.url)
    try:
        await client.connect()
        await client.wait_for(lambda: client.of("session"), what="session")
        ack = await client.call("handoff", {"reason": "just a human please"})
        assert ack == {"ok": True, "state": "queued"}
        synced = await client.call("sync", {"after_seq": 0})
        assert synced["state"] == "queued" and synced["started"] is True
        assert [m["sender"]["role"] for m in synced["messages"]] == ["bot", "system"]
    finally:
        await client.close()
    after = await table_counts(database_url)
    assert after["conversations"] == before["conversations"] + 1
