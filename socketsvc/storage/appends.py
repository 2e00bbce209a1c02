"""Group-committed message appends, spoken to the database driver itself (sqlite3, asyncpg).

Every chat message is one of these, so this is the service's hot path. SQLAlchemy Core costs
several times the SQL itself per statement here (compile-cache lookups, coercions, result
processing, greenlet hops on asyncpg), so a batch runs fixed SQL strings on the DBAPI
connection, prepared once by the driver. Everything else in `Store` stays on SQLAlchemy; the
schema is still `tables.py`, and values are stored exactly as SQLAlchemy stores them.

One batch is one transaction: a `client_id` lookup for the whole batch, one conditional
`UPDATE ... RETURNING` per message that numbers it (and may change the conversation), and one
INSERT of all new rows.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import asyncpg

from socketsvc.models import Conversation, Message, Role, Sender, State

CONVERSATION_COLUMNS = (
    "id",
    "visitor_id",
    "state",
    "last_seq",
    "agent_id",
    "agent_name",
    "queued_at",
    "bot_fallbacks",
    "human_offered",
    "created_at",
    "updated_at",
)
MESSAGE_COLUMNS = (
    "id",
    "conversation_id",
    "seq",
    "client_id",
    "sender_role",
    "sender_id",
    "sender_name",
    "text",
    "created_at",
)
SETTABLE = frozenset(
    {"state", "agent_id", "agent_name", "queued_at", "bot_fallbacks", "human_offered"}
)
"""Conversation columns an append may change along with numbering the message."""

Key = tuple[str, str, str, str]
PLAIN: tuple[tuple[str, ...], int, bool] = ((), -1, False)
"""The shape of an unconditional append that changes no column (a visitor's message)."""


@dataclass(frozen=True)
class Append:
    """The result of storing one message; `created` is False for a repeated `client_id`."""

    message: Message
    created: bool
    conversation: Conversation | None


@dataclass(slots=True)
class PendingAppend:
    """One message waiting for the next batch, and the future its caller awaits."""

    conversation_id: str
    sender: Sender
    text: str
    client_id: str | None
    only_in_states: tuple[str, ...] | None
    agent_id: str | None
    values: dict[str, Any]
    future: asyncio.Future[Append | None]

    @property
    def key(self) -> Key | None:
        """Retries are matched per conversation and sender (role and id)."""
        if self.client_id is None:
            return None
        return (self.conversation_id, self.sender.role.value, self.sender.id, self.client_id)

    @property
    def shape(self) -> tuple[tuple[str, ...], int, bool]:
        """What the UPDATE statement depends on (the SQL text is cached per shape)."""
        states = -1 if self.only_in_states is None else len(self.only_in_states)
        return tuple(self.values), states, self.agent_id is not None

    def update_params(self, now: Any) -> list[Any]:
        params = [*self.values.values(), now, self.conversation_id]
        if self.only_in_states is not None:
            params.extend(self.only_in_states)
        if self.agent_id is not None:
            params.append(self.agent_id)
        return params


def check_values(values: dict[str, Any]) -> None:
    unknown = set(values) - SETTABLE
    if unknown:
        raise ValueError(f"an append cannot set {sorted(unknown)}")


def update_sql(shape: tuple[tuple[str, ...], int, bool], mark: Callable[[int], str]) -> str:
    """The numbering UPDATE for one shape; `mark(n)` is the driver's n-th placeholder."""
    columns, states, by_agent = shape
    n = 0

    def next_mark() -> str:
        nonlocal n
        n += 1
        return mark(n)

    sets = [f"{column} = {next_mark()}" for column in columns]
    sets += ["last_seq = last_seq + 1", f"updated_at = {next_mark()}"]
    sql = f"UPDATE conversations SET {', '.join(sets)} WHERE id = {next_mark()}"
    if states >= 0:
        sql += f" AND state IN ({', '.join(next_mark() for _ in range(states))})"
    if by_agent:
        sql += f" AND agent_id = {next_mark()}"
    return sql + " RETURNING " + ", ".join(CONVERSATION_COLUMNS)


def new_message(
    conversation_id: str,
    seq: int,
    sender: Sender,
    text: str,
    client_id: str | None,
    now: datetime,
) -> Message:
    """A message about to be stored, with a fresh id."""
    return Message(uuid.uuid4().hex, conversation_id, seq, client_id, sender, text, now)


def message_values(message: Message, stamp: Any) -> tuple[Any, ...]:
    sender = message.sender
    return (
        message.id,
        message.conversation_id,
        message.seq,
        message.client_id,
        sender.role.value,
        sender.id,
        sender.name,
        message.text,
        stamp,
    )


def message_from_row(row: Sequence[Any], moment: Callable[[Any], datetime]) -> Message:
    return Message(
        id=row[0],
        conversation_id=row[1],
        seq=row[2],
        client_id=row[3],
        sender=Sender(Role(row[4]), row[5], row[6]),
        text=row[7],
        created_at=moment(row[8]),
    )


def conversation_from_row(row: Sequence[Any], moment: Callable[[Any], datetime]) -> Conversation:
    return Conversation(
        id=row[0],
        visitor_id=row[1],
        state=State(row[2]),
        last_seq=row[3],
        agent_id=row[4],
        agent_name=row[5],
        queued_at=None if row[6] is None else moment(row[6]),
        bot_fallbacks=row[7],
        human_offered=bool(row[8]),
        created_at=moment(row[9]),
        updated_at=moment(row[10]),
    )


class _Batch:
    """The driver-neutral part: walks the items in order and collects rows and results."""

    def __init__(self, items: Sequence[PendingAppend], stored: dict[Key, Message]) -> None:
        self.items = items
        self.stored = stored
        self.results: list[Append | None] = [None] * len(items)
        self.rows: list[Message] = []

    def order(self) -> list[int]:
        """Items by conversation (stable, so one conversation keeps arrival order): concurrent
        batches then lock conversation rows in the same order and cannot deadlock."""
        return sorted(range(len(self.items)), key=lambda i: self.items[i].conversation_id)

    def duplicate(self, index: int) -> bool:
        key = self.items[index].key
        if key is not None and key in self.stored:
            self.results[index] = Append(self.stored[key], created=False, conversation=None)
            return True
        return False

    def numbered(self, index: int, conversation: Conversation, now: datetime) -> None:
        item = self.items[index]
        message = new_message(
            item.conversation_id, conversation.last_seq, item.sender, item.text, item.client_id, now
        )
        self.rows.append(message)
        self.results[index] = Append(message, created=True, conversation=conversation)
        key = item.key
        if key is not None:
            self.stored[key] = message  # a retry inside the same batch


# SQLite --------------------------------------------------------------------------------------


def sqlite_stamp(moment: datetime) -> str:
    """A UTC datetime as SQLAlchemy's SQLite dialect stores it."""
    if moment.utcoffset():
        moment = moment.astimezone(UTC)
    return moment.replace(tzinfo=None).isoformat(" ", "microseconds")


def sqlite_moment(value: Any) -> datetime:
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


_SQLITE_DEDUPE = (
    f"SELECT {', '.join(MESSAGE_COLUMNS)} FROM messages WHERE conversation_id = ?"
    " AND sender_role = ? AND sender_id = ? AND client_id = ?"
)
_SQLITE_INSERT = (
    f"INSERT INTO messages ({', '.join(MESSAGE_COLUMNS)})"
    f" VALUES ({', '.join('?' for _ in MESSAGE_COLUMNS)})"
)


class SqliteAppender:
    """Runs batches on one stdlib sqlite3 connection; the caller holds the store's write lock.

    Group commit at the fsync: a batch's statements and its COMMIT run on the event loop's
    thread with `synchronous=NORMAL` (COMMIT appends to the WAL without waiting for the disk, a
    few dozen microseconds in SQLite's page cache), and the batch is durable, and returned to
    its callers, once an fdatasync of the WAL that started after its COMMIT has finished
    (`WalSyncer`, on its own thread). While one fsync runs, the next batches commit, and one
    fsync then covers them all. Acknowledged therefore still means on disk, as with
    `synchronous=FULL`, but the loop never hands the GIL to a worker thread per batch (a
    hand-over costs more than the batch) and never waits for the disk itself.

    Taking SQLite's write lock never waits on the loop's thread: if another connection holds
    it, the wait happens on a worker thread.
    """

    def __init__(self, path: str, pragmas: Callable[[Any, Any], None]) -> None:
        self._conn = sqlite3.connect(
            path, timeout=30, check_same_thread=False, isolation_level=None
        )
        pragmas(self._conn, None)
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=0")
        self._sql: dict[tuple[tuple[str, ...], int, bool], str] = {}
        self.syncer = WalSyncer(path + "-wal")

    async def close(self) -> None:
        await self.syncer.close()
        self._conn.close()

    async def append(
        self, items: Sequence[PendingAppend], now: datetime
    ) -> tuple[list[Append | None], asyncio.Future[None]]:
        """Store and commit a batch; returns its results and a future that is done once the
        batch is on disk (the results must not be handed out before)."""
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            await asyncio.to_thread(self._begin_waiting)
        try:
            results = self._append(conn, items, now)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return results, self.syncer.after_commit()

    def _begin_waiting(self) -> None:
        self._conn.execute("PRAGMA busy_timeout=30000")
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        finally:
            self._conn.execute("PRAGMA busy_timeout=0")

    def _append(
        self, conn: sqlite3.Connection, items: Sequence[PendingAppend], now: datetime
    ) -> list[Append | None]:
        stored: dict[Key, Message] = {}
        for key in {item.key for item in items if item.key is not None}:
            row = conn.execute(_SQLITE_DEDUPE, key).fetchone()
            if row is not None:
                stored[key] = message_from_row(row, sqlite_moment)
        batch = _Batch(items, stored)
        stamp = sqlite_stamp(now)
        for index in batch.order():
            if batch.duplicate(index):
                continue
            item = items[index]
            sql = self._sql.get(item.shape)
            if sql is None:
                sql = self._sql[item.shape] = update_sql(item.shape, lambda _: "?")
            params = item.update_params(stamp)
            if item.values:
                params = [sqlite_stamp(v) if isinstance(v, datetime) else v for v in params]
            row = conn.execute(sql, params).fetchone()
            if row is not None:
                batch.numbered(index, conversation_from_row(row, sqlite_moment), now)
        if batch.rows:
            conn.executemany(_SQLITE_INSERT, [message_values(m, stamp) for m in batch.rows])
        return batch.results


class WalSyncer:
    """fdatasyncs a WAL file on a thread of its own, for every commit made since the last one.

    `after_commit()` returns a future that is done when an fdatasync that started after the
    call has finished (or fails with its OSError).
    """

    def __init__(self, wal_path: str) -> None:
        self._path = wal_path
        self._fd: int | None = None
        self._waiting: list[asyncio.Future[None]] = []
        self._task: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wal-fsync")

    async def idle(self) -> None:
        """Wait until no fsync is in flight.

        Committing while an fsync runs gains nothing (the commit needs the next fsync anyway),
        so the store waits here and then commits everything that arrived meanwhile as one
        batch: one commit and one fsync per round, however many messages.
        """
        if self._task is not None and not self._task.done():
            await asyncio.wait([self._task])

    def after_commit(self) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        durable: asyncio.Future[None] = loop.create_future()
        self._waiting.append(durable)
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run(), name="wal-fsync")
        return durable

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting:
            waiting, self._waiting = self._waiting, []
            try:
                await asyncio.shield(loop.run_in_executor(self._thread, self._sync))
            except OSError as exc:
                for durable in waiting:
                    if not durable.done():
                        durable.set_exception(exc)
                continue
            for durable in waiting:
                if not durable.done():
                    durable.set_result(None)

    def _sync(self) -> None:
        if self._fd is None:
            self._fd = os.open(self._path, os.O_RDONLY)
            directory = os.open(os.path.dirname(self._path) or ".", os.O_RDONLY)
            try:
                os.fsync(directory)  # the WAL file's own directory entry
            finally:
                os.close(directory)
        os.fdatasync(self._fd)

    async def close(self) -> None:
        if self._task is not None:
            await asyncio.wait([self._task])
        self._thread.shutdown(wait=True)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# PostgreSQL ----------------------------------------------------------------------------------

_PG_DEDUPE = (
    f"SELECT {', '.join('m.' + c for c in MESSAGE_COLUMNS)} FROM messages m"
    " JOIN unnest($1::varchar[], $2::varchar[], $3::varchar[], $4::varchar[])"
    " AS k(conversation_id, sender_role, sender_id, client_id)"
    " ON m.conversation_id = k.conversation_id AND m.sender_role = k.sender_role"
    " AND m.sender_id = k.sender_id AND m.client_id = k.client_id"
)
_PG_INSERT = (
    f"INSERT INTO messages ({', '.join(MESSAGE_COLUMNS)}) SELECT * FROM unnest("
    "$1::varchar[], $2::varchar[], $3::int[], $4::varchar[], $5::varchar[], $6::varchar[],"
    " $7::varchar[], $8::text[], $9::timestamptz[])"
)
_PG_NUMBER_TOGETHER = (
    "UPDATE conversations AS c SET last_seq = c.last_seq + k.n, updated_at = $3"
    " FROM unnest($1::varchar[], $2::int[]) AS k(id, n) WHERE c.id = k.id"
    " RETURNING " + ", ".join("c." + column for column in CONVERSATION_COLUMNS)
)
_PG_UPDATE_SQL: dict[tuple[tuple[str, ...], int, bool], str] = {}


def _pg_moment(value: datetime) -> datetime:
    return value


async def pg_append(
    conn: asyncpg.Connection, items: Sequence[PendingAppend], now: datetime
) -> list[Append | None]:
    """One batch in one transaction on an asyncpg connection.

    Round trips: BEGIN, the `client_id` lookup, the numbering (one UPDATE for a batch of plain
    appends, else one per message), one INSERT, COMMIT.
    """
    async with conn.transaction():
        stored: dict[Key, Message] = {}
        keys = list({item.key for item in items if item.key is not None})
        if keys:
            for row in await conn.fetch(_PG_DEDUPE, *map(list, zip(*keys, strict=True))):
                message = message_from_row(row, _pg_moment)
                stored[
                    (
                        message.conversation_id,
                        message.sender.role.value,
                        message.sender.id,
                        message.client_id or "",
                    )
                ] = message
        batch = _Batch(items, stored)
        if len(items) > 1 and all(item.shape == PLAIN for item in items):
            await _pg_number_together(conn, batch, now)
        else:
            for index in batch.order():
                if batch.duplicate(index):
                    continue
                item = items[index]
                sql = _PG_UPDATE_SQL.get(item.shape)
                if sql is None:
                    sql = _PG_UPDATE_SQL[item.shape] = update_sql(item.shape, lambda n: f"${n}")
                row = await conn.fetchrow(sql, *item.update_params(now))
                if row is not None:
                    batch.numbered(index, conversation_from_row(row, _pg_moment), now)
        if batch.rows:
            columns = zip(*(message_values(m, now) for m in batch.rows), strict=True)
            await conn.execute(_PG_INSERT, *map(list, columns))
    return batch.results


async def _pg_number_together(conn: asyncpg.Connection, batch: _Batch, now: datetime) -> None:
    """Number a batch of unconditional appends with one UPDATE of all their conversations.

    A conversation with n new messages gets last_seq + n; its messages take the n numbers in
    arrival order, each with the conversation as it was right after that message.
    """
    items = batch.items
    order = batch.order()
    fresh: list[int] = []
    seen: set[Key] = set()
    for index in order:
        key = items[index].key
        if key is not None:
            if key in batch.stored or key in seen:
                continue  # a retry: answered with the stored message below
            seen.add(key)
        fresh.append(index)
    counts = Counter(items[index].conversation_id for index in fresh)
    ids = sorted(counts)
    rows = await conn.fetch(_PG_NUMBER_TOGETHER, ids, [counts[i] for i in ids], now)
    after = {row[0]: conversation_from_row(row, _pg_moment) for row in rows}
    taken: Counter[str] = Counter()
    for index in fresh:
        conversation_id = items[index].conversation_id
        conversation = after.get(conversation_id)
        if conversation is None:
            continue  # no such conversation: the result stays None
        seq = conversation.last_seq - counts[conversation_id] + 1 + taken[conversation_id]
        taken[conversation_id] += 1
        batch.numbered(index, replace(conversation, last_seq=seq), now)
    for index in order:
        if batch.results[index] is None:
            batch.duplicate(index)
