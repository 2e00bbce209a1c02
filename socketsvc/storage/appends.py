"""Group-committed message appends, spoken to the database driver itself (sqlite3, asyncpg).

Every chat message is one of these, so this is the service's hot path. SQLAlchemy Core costs
several times the SQL itself per statement here (compile-cache lookups, coercions, result
processing, greenlet hops on asyncpg), so a batch runs fixed SQL strings on the DBAPI
connection, prepared once by the driver. Everything else in `Store` stays on SQLAlchemy; the
schema is still `tables.py`, and values are stored exactly as SQLAlchemy stores them.

One batch is one transaction. On SQLite: one conditional `UPDATE ... RETURNING` per message that
numbers it (and may change the conversation), and one INSERT of all new rows. On PostgreSQL a
batch of plain appends (visitors' messages) is a single statement that numbers and inserts them
all; other batches look up their `client_id`s, then number and insert as on SQLite.

A plain append's retry of a message stored by an earlier batch is not looked up beforehand
(conditional appends are, on both databases, so that an agent's retry after a transfer still
gets its stored message): it fails the INSERT on the unique `client_id` index, the transaction
changes nothing, and `Store` redoes that batch one append at a time, answering the retry with the
stored message. Retries are rare; a lookup would cost every batch a query.
"""

from __future__ import annotations

import asyncio
import os
import queue
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import asyncpg

from socketsvc.domain.models import Append, Conversation, Message, Role, Sender, State

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
    return Message(message_id(), conversation_id, seq, client_id, sender, text, now)


def message_id() -> str:
    """32 hex digits, like a UUID's, that start with the time in milliseconds.

    New messages' ids sort after older ones, so the primary-key index grows at its end: a batch
    changes one page there, not one page at a random place per message (on SQLite each changed
    page is written to the WAL, on PostgreSQL the first change after a checkpoint writes the whole
    page). 80 random bits keep ids unique and unguessable.
    """
    return f"{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"


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
        self.store(index, message, conversation)

    def store(self, index: int, message: Message, conversation: Conversation) -> None:
        """`message` is item `index`'s new row, stored with the conversation as it was then."""
        self.rows.append(message)
        self.results[index] = Append(message, created=True, conversation=conversation)
        key = self.items[index].key
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


_SQLITE_LOOKUP = (
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

    def __init__(self, path: str, pragmas: Callable[[Any, Any], None], busy_timeout: float) -> None:
        self._conn = sqlite3.connect(
            path, timeout=30, check_same_thread=False, isolation_level=None
        )
        pragmas(self._conn, None)
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=0")
        self._busy_timeout_ms = round(busy_timeout * 1000)
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
        self._conn.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        finally:
            self._conn.execute("PRAGMA busy_timeout=0")

    def _append(
        self, conn: sqlite3.Connection, items: Sequence[PendingAppend], now: datetime
    ) -> list[Append | None]:
        # Plain appends are not looked up: a message stored by an earlier batch (a client's
        # retry) fails the INSERT on the unique index, the batch rolls back, and the store redoes
        # it one append at a time, where a failed insert is answered with the stored message.
        # A conditional append is looked up first: its retry must get the stored message even
        # when the condition no longer holds (an agent's retry after a transfer).
        stored: dict[Key, Message] = {}
        for key in {item.key for item in items if item.key is not None and item.shape != PLAIN}:
            row = conn.execute(_SQLITE_LOOKUP, key).fetchone()
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
    call has finished (or fails with its OSError). The thread takes requests from a
    `queue.SimpleQueue` and hands results back with `call_soon_threadsafe`: a round costs one
    wake-up each way, not an executor's futures, callbacks and task (a third of a round's CPU
    at one message per commit).
    """

    def __init__(self, wal_path: str) -> None:
        self._path = wal_path
        self._fd: int | None = None
        self._waiting: list[asyncio.Future[None]] = []
        """Commits since the running fsync started: the next fsync covers them."""
        self._covered: list[asyncio.Future[None]] = []
        self._round: asyncio.Future[None] | None = None
        """Done when the running fsync has finished; None while none runs."""
        self._requests: queue.SimpleQueue[asyncio.AbstractEventLoop | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    async def idle(self) -> None:
        """Wait until no fsync is in flight.

        Committing while an fsync runs gains nothing (the commit needs the next fsync anyway),
        so the store waits here and then commits everything that arrived meanwhile as one
        batch: one commit and one fsync per round, however many messages.
        """
        if self._round is not None:
            await asyncio.shield(self._round)

    def after_commit(self) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        durable: asyncio.Future[None] = loop.create_future()
        self._waiting.append(durable)
        if self._round is None:
            self._start(loop)
        return durable

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._covered, self._waiting = self._waiting, []
        self._round = loop.create_future()
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="wal-fsync", daemon=True)
            self._thread.start()
        self._requests.put(loop)

    def _serve(self) -> None:
        while (loop := self._requests.get()) is not None:
            error: OSError | None = None
            try:
                self._sync()
            except OSError as exc:
                error = exc
            try:
                loop.call_soon_threadsafe(self._finished, loop, error)
            except RuntimeError:  # the loop is closed: nobody waits any more
                return

    def _finished(self, loop: asyncio.AbstractEventLoop, error: OSError | None) -> None:
        covered, self._covered = self._covered, []
        for durable in covered:
            if durable.done():
                continue
            if error is None:
                durable.set_result(None)
            else:
                durable.set_exception(error)
        finished, self._round = self._round, None
        if finished is not None:
            finished.set_result(None)
        if self._waiting:
            self._start(loop)

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
        while self._round is not None:
            await asyncio.shield(self._round)
        if self._thread is not None:
            self._requests.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None
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
_PG_PLAIN = (
    "WITH numbered AS ("
    " UPDATE conversations AS c SET last_seq = c.last_seq + k.n, updated_at = $3"
    " FROM unnest($1::varchar[], $2::int[]) AS k(id, n) WHERE c.id = k.id"
    " RETURNING " + ", ".join("c." + column for column in CONVERSATION_COLUMNS) + ", k.n"
    "), inserted AS ("
    f" INSERT INTO messages ({', '.join(MESSAGE_COLUMNS)})"
    " SELECT m.id, m.conversation_id, nb.last_seq - nb.n + m.ordinal, m.client_id, m.role,"
    " m.sender_id, m.sender_name, m.text, $3"
    " FROM unnest($4::varchar[], $5::varchar[], $6::int[], $7::varchar[], $8::varchar[],"
    " $9::varchar[], $10::varchar[], $11::text[])"
    " AS m(id, conversation_id, ordinal, client_id, role, sender_id, sender_name, text)"
    " JOIN numbered AS nb ON nb.id = m.conversation_id"
    ") SELECT " + ", ".join(CONVERSATION_COLUMNS) + " FROM numbered"
)
_PG_UPDATE_SQL: dict[tuple[tuple[str, ...], int, bool], str] = {}


def _pg_moment(value: datetime) -> datetime:
    return value


async def pg_append(
    conn: asyncpg.Connection, items: Sequence[PendingAppend], now: datetime
) -> list[Append | None]:
    """One batch in one transaction on an asyncpg connection.

    A batch of plain appends (visitors' messages, the usual case) is one statement, so one
    round trip (`_pg_plain_batch`); other batches take BEGIN, the `client_id` lookup, the
    numbering (one UPDATE per message), one INSERT, COMMIT.
    """
    if all(item.shape == PLAIN for item in items):
        return await _pg_plain_batch(conn, items, now)
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


async def _pg_plain_batch(
    conn: asyncpg.Connection, items: Sequence[PendingAppend], now: datetime
) -> list[Append | None]:
    """Number and insert a batch of unconditional appends in one statement (`_PG_PLAIN`).

    The UPDATE gives a conversation with n new messages last_seq + n, and the INSERT numbers
    its messages last_seq - n + 1 ... last_seq in arrival order; the statement is its own
    transaction. There is no `client_id` lookup: a message stored by an earlier batch (a
    client's retry) makes the INSERT fail on the unique index, the statement changes nothing,
    and the store redoes the batch one append at a time, where a failed insert is answered with
    the stored message. A retry inside the batch gets the first one's message.
    """
    batch = _Batch(items, {})
    order = batch.order()
    fresh: list[int] = []
    seen: set[Key] = set()
    for index in order:
        key = items[index].key
        if key is not None:
            if key in seen:
                continue  # a retry within the batch: answered below
            seen.add(key)
        fresh.append(index)
    counts = Counter(items[index].conversation_id for index in fresh)
    ordinals: list[int] = []
    taken: Counter[str] = Counter()
    for index in fresh:
        taken[items[index].conversation_id] += 1
        ordinals.append(taken[items[index].conversation_id])
    ids = [message_id() for _ in fresh]
    fresh_items = [items[index] for index in fresh]
    conversation_ids = sorted(counts)
    rows = await conn.fetch(
        _PG_PLAIN,
        conversation_ids,
        [counts[i] for i in conversation_ids],
        now,
        ids,
        [item.conversation_id for item in fresh_items],
        ordinals,
        [item.client_id for item in fresh_items],
        [item.sender.role.value for item in fresh_items],
        [item.sender.id for item in fresh_items],
        [item.sender.name for item in fresh_items],
        [item.text for item in fresh_items],
    )
    after = {row[0]: conversation_from_row(row, _pg_moment) for row in rows}
    for position, index in enumerate(fresh):
        item = items[index]
        conversation = after.get(item.conversation_id)
        if conversation is None:
            continue  # no such conversation: nothing stored, the result stays None
        seq = conversation.last_seq - counts[item.conversation_id] + ordinals[position]
        message = Message(
            ids[position], item.conversation_id, seq, item.client_id, item.sender, item.text, now
        )
        if seq != conversation.last_seq:  # not the conversation's last message of the batch
            conversation = replace(conversation, last_seq=seq)
        batch.store(index, message, conversation)
    for index in order:
        if batch.results[index] is None:
            batch.duplicate(index)
    return batch.results
