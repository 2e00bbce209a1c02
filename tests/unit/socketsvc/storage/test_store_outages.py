"""`Store` when the database goes away: every way in answers `Unavailable`, logged once, and
the store is idempotent by client_id even when a commit's outcome is unknown.

Only `socketsvc.domain.errors` and the store are used here (not `storage.outages`): these are the
store's promises to the domain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from sqlalchemy.exc import OperationalError

from socketsvc.domain.errors import Unavailable
from socketsvc.domain.models import Role, Sender
from socketsvc.storage.presence import PresenceStore
from socketsvc.storage.store import Store
from tests.conftest import PG_ADMIN_URL

BOT = Sender(Role.BOT, "bot", "Bot")
VISITOR = Sender(Role.VISITOR, "v1", "Visitor v1")
AGENT = Sender(Role.AGENT, "a1", "Agent a1")


async def new_conversation(store: Store) -> str:
    await store.ensure_visitor("v1", "Visitor v1")
    created = await store.create_conversation("v1", (BOT, "Hello!"))
    return created.conversation.id


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.fixture(autouse=True)
def no_outage() -> None:
    """Start without an outage left over from another test (one record per process)."""
    with contextlib.suppress(ImportError):
        from socketsvc.storage.outages import OUTAGES

        OUTAGES.reset()


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_postgres_refusing_connections_is_unavailable_everywhere_and_logged_twice(
    store: Store, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    conversation_id = await new_conversation(store)
    first = await store.append_message(conversation_id, VISITOR, "before", "c-before")
    assert first is not None and first.created
    presence = PresenceStore(store, stale=15)
    name = database_url.rpartition("/")[2]
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        caplog.clear()
        operations = [
            store.ping(),
            store.get_conversation(conversation_id),
            store.messages_after(conversation_id, 0, 10),
            store.ensure_visitor("v2", "Visitor v2"),
            store.mark_read(conversation_id, VISITOR, 1),
            presence.online_count(),
            presence.heartbeat("node"),
            # the group commit: a batch of visitors' messages, and an agent's conditional one
            *(store.append_message(conversation_id, VISITOR, f"m{i}", f"c{i}") for i in range(10)),
            store.append_message(conversation_id, AGENT, "hi", "a1", agent_id="a1"),
        ]
        for _ in range(3):  # the first on dead pooled connections, then on refused new ones
            outcomes = await asyncio.gather(*operations, return_exceptions=True)
            assert all(isinstance(o, Unavailable) for o in outcomes), outcomes
            assert {o.to_dict()["code"] for o in outcomes if isinstance(o, Unavailable)} == {
                "unavailable"
            }
            operations = [
                store.ping(),
                store.append_message(conversation_id, VISITOR, "m0", "c0"),
            ]
        for operation in operations:
            operation.close()
        warned = warnings_of(caplog)
        assert len(warned) == 1, [r.getMessage() for r in warned]
        assert warned[0].getMessage().startswith("database outage: ")
        assert not any(r.exc_info for r in caplog.records)
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()

    again = await asyncio.gather(
        *(store.append_message(conversation_id, VISITOR, f"m{i}", f"c{i}") for i in range(10))
    )
    assert all(a is not None and a.created for a in again)
    assert [m.seq for m in await store.messages_after(conversation_id, 0, 100)] == list(
        range(1, 13)
    )
    warned = warnings_of(caplog)
    assert len(warned) == 2, [r.getMessage() for r in warned]
    assert warned[1].getMessage().startswith("database outage over after ")
    assert not any(r.exc_info for r in caplog.records)


class CuttingProxy:
    """A TCP proxy in front of PostgreSQL that withholds the answers on the connection that first
    sent a marker, so that a statement commits while its client never hears of it; `cut()` then
    drops every connection and refuses new ones until `refusing` is cleared."""

    def __init__(self, upstream: tuple[str, int], marker: bytes) -> None:
        self.upstream = upstream
        self.marker = marker
        self.marker_sent = asyncio.Event()
        self.refusing = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    def cut(self) -> None:
        self.refusing = True
        for writer in list(self._writers):
            writer.transport.abort()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self._writers |= {writer, up_writer}
        withheld = False

        async def to_server() -> None:
            nonlocal withheld
            while data := await reader.read(65536):
                up_writer.write(data)
                await up_writer.drain()
                if self.marker in data and not self.marker_sent.is_set():  # once
                    withheld = True
                    self.marker_sent.set()

        async def to_client() -> None:
            while data := await up_reader.read(65536):
                if not withheld:
                    writer.write(data)
                    await writer.drain()

        await asyncio.gather(to_server(), to_client(), return_exceptions=True)
        for end in (writer, up_writer):
            self._writers.discard(end)
            end.transport.abort()


@pytest.fixture
async def proxied(database_url: str) -> AsyncIterator[tuple[Store, CuttingProxy]]:
    parts = urlsplit(database_url)
    proxy = CuttingProxy((parts.hostname or "127.0.0.1", parts.port or 5432), b"lost-ack-1")
    port = await proxy.start()
    netloc = f"{parts.username}@127.0.0.1:{port}" if parts.username else f"127.0.0.1:{port}"
    store = await Store.open(urlunsplit(parts._replace(netloc=netloc)))
    try:
        yield store, proxy
    finally:
        await proxy.close()
        await store.close()


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_message_committed_as_the_database_went_away_is_stored_once(
    proxied: tuple[Store, CuttingProxy], database_url: str
) -> None:
    """The connection dies after the group commit's statement committed and before its answer
    came back: the caller gets `unavailable` (the outcome is unknown), and the client's retry
    with the same client_id gets the stored message, not a second one."""
    store, proxy = proxied
    conversation_id = await new_conversation(store)
    check = await asyncpg.connect(database_url)  # straight to PostgreSQL, not through the proxy
    try:
        sending = asyncio.ensure_future(
            store.append_message(conversation_id, VISITOR, "are you there?", "lost-ack-1")
        )
        await asyncio.wait_for(proxy.marker_sent.wait(), 10)
        for _ in range(100):
            if await check.fetchval("SELECT count(*) FROM messages WHERE client_id = 'lost-ack-1'"):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the statement never committed")
        assert not sending.done()  # committed, and its answer withheld
        proxy.cut()  # the database goes away before the answer arrives
        with pytest.raises(Unavailable):
            await asyncio.wait_for(sending, 15)

        proxy.refusing = False  # back: the client retries with the same client_id
        retry = await store.append_message(conversation_id, VISITOR, "are you there?", "lost-ack-1")
        rows = await check.fetch(
            "SELECT id, seq FROM messages WHERE client_id = 'lost-ack-1'",
        )
    finally:
        await check.close()
    assert retry is not None and not retry.created
    assert len(rows) == 1
    assert (retry.message.id, retry.message.seq) == (rows[0]["id"], rows[0]["seq"])
    assert rows[0]["seq"] == 2  # after the greeting


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_sqlite_locked_past_the_busy_timeout_is_unavailable_and_reads_go_on(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Another process holds SQLite's write lock for longer than a write waits
    (SQLITE_BUSY_TIMEOUT, 30 s; 0.2 s here): writes answer `unavailable`, reads go on (WAL), and
    the outage ends at the first write that succeeds."""
    caplog.set_level(logging.INFO)
    store = await Store.open(database_url, busy_timeout=0.2)
    holder = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        conversation_id = await new_conversation(store)
        holder.execute("BEGIN EXCLUSIVE")
        caplog.clear()
        with pytest.raises(Unavailable):
            await asyncio.wait_for(store.ensure_visitor("v2", "Visitor v2"), 10)
        appends = await asyncio.wait_for(
            asyncio.gather(
                *(
                    store.append_message(conversation_id, VISITOR, f"m{i}", f"c{i}")
                    for i in range(5)
                ),
                return_exceptions=True,
            ),
            10,
        )
        assert all(isinstance(a, Unavailable) for a in appends), appends
        conversation = await store.get_conversation(conversation_id)  # reads are not locked
        assert conversation is not None and conversation.last_seq == 1
        assert len(warnings_of(caplog)) == 1
        holder.execute("ROLLBACK")
        stored = await store.append_message(conversation_id, VISITOR, "m0", "c0")
        assert stored is not None and stored.created and stored.message.seq == 2
    finally:
        holder.close()
        await store.close()
    warned = [r.getMessage() for r in warnings_of(caplog)]
    assert len(warned) == 2, warned
    assert "SQLITE_BUSY" in warned[0] and "database is locked" in warned[0]
    assert warned[1].startswith("database outage over after ")
    assert not any(r.exc_info for r in caplog.records)


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_retry_after_an_outage_that_fails_strangely_is_still_unavailable(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The held connection dies under a batch (an outage), and the retries on a new connection
    fail with an error that is not recognisably one (seen once in a loaded suite run, answered
    `internal`). The order of those failures cannot be caused at will, so `_write_batch` is
    replaced: first an outage (a reset connection), then a RuntimeError for every retry. The
    caller gets `Unavailable` (its client retries by client_id), the strange error a WARNING."""
    conversation_id = await new_conversation(store)
    calls: list[int] = []

    async def failing(items: Any, held: Any = None) -> Any:
        calls.append(len(items))
        if len(calls) == 1:
            raise OperationalError("append", None, ConnectionResetError("reset by peer"))
        raise RuntimeError("not an outage anyone knows")

    monkeypatch.setattr(store, "_write_batch", failing)
    with caplog.at_level(logging.WARNING), pytest.raises(Unavailable):
        await store.append_message(conversation_id, VISITOR, "hello?", "strange-1")
    assert calls == [1, 1, 1]  # the batch, its retry, the item alone
    assert any("answered as the outage" in r.getMessage() for r in warnings_of(caplog))
