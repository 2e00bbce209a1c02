"""The storage interface: every read and write of durable state goes through `Store`.

Numbering: a message's `seq` comes from `conversations.last_seq`, incremented by the same
UPDATE that may also change the conversation's state, in the transaction that inserts the
message. On PostgreSQL that UPDATE locks the row, so appends to one conversation serialise and
a rolled-back append leaves no gap. SQLite allows one writer at a time; this process serialises
its writers with a lock so that no transaction fails on a lock upgrade.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from socketsvc.models import Conversation, Message, Role, Sender, State, Visitor, utcnow
from socketsvc.storage.database import create_engine, create_sync_sqlite_engine
from socketsvc.storage.tables import conversations, messages, metadata, read_marks, visitors

MAX_BATCH = 256


@dataclass
class _PendingAppend:
    conversation_id: str
    sender: Sender
    text: str
    client_id: str | None
    only_in_states: tuple[State, ...] | None
    values: dict[str, Any]
    where: sa.ColumnElement[bool] | None
    future: asyncio.Future[Append | None]

    @property
    def key(self) -> tuple[str, str, str, str] | None:
        """Retries are matched per conversation and sender (role and id)."""
        if self.client_id is None:
            return None
        return (self.conversation_id, self.sender.role.value, self.sender.id, self.client_id)


@dataclass(frozen=True)
class Transition:
    """The result of a conditional change: the conversation after it, and the messages added."""

    conversation: Conversation
    messages: list[Message]


@dataclass(frozen=True)
class Append:
    """The result of storing one message; `created` is False for a repeated `client_id`."""

    message: Message
    created: bool
    conversation: Conversation | None


class Store:
    """Durable conversations, messages and read marks."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        self._pending: list[_PendingAppend] = []
        self._flushers = 0
        # SQLite has one writer at a time; PostgreSQL commits several batches in parallel.
        self._max_flushers = 1 if self.is_sqlite else 4
        self._flush_tasks: set[asyncio.Task[None]] = set()
        self._sync_engine: sa.Engine | None = None

    @classmethod
    async def open(cls, database_url: str) -> Store:
        """Connect and create the schema if it is missing."""
        engine = create_engine(database_url)
        store = cls(engine)
        if store.is_sqlite:
            store._sync_engine = create_sync_sqlite_engine(database_url)
        async with engine.begin() as conn:
            if not store.is_sqlite:
                # Processes starting together must not race to create the same tables.
                await conn.execute(sa.text("SELECT pg_advisory_xact_lock(7460113)"))
            await conn.run_sync(metadata.create_all)
        return store

    async def close(self) -> None:
        if self._flush_tasks:
            await asyncio.wait(set(self._flush_tasks), timeout=5.0)
        await self.engine.dispose()
        if self._sync_engine is not None:
            self._sync_engine.dispose()

    async def ping(self) -> None:
        """Raise if the database cannot answer a trivial query."""
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction, committed (and on SQLite fsynced) when the block ends."""
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock, self.engine.begin() as conn:
            yield conn

    # visitors -------------------------------------------------------------------------------

    async def ensure_visitor(self, visitor_id: str, name: str) -> Visitor:
        """The visitor with this id, created if it is not stored yet."""
        existing = await self.get_visitor(visitor_id)
        if existing is not None:
            return existing
        now = utcnow()
        try:
            async with self.write() as conn:
                await conn.execute(
                    visitors.insert().values(id=visitor_id, name=name, created_at=now)
                )
        except IntegrityError:
            found = await self.get_visitor(visitor_id)
            if found is None:
                raise
            return found
        return Visitor(visitor_id, name, now)

    async def get_visitor(self, visitor_id: str) -> Visitor | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(visitors.select().where(visitors.c.id == visitor_id))).first()
        return None if row is None else Visitor(row.id, row.name, _aware(row.created_at))

    # conversations --------------------------------------------------------------------------

    async def create_conversation(
        self,
        visitor_id: str,
        greeting: tuple[Sender, str] | None = None,
        conversation_id: str | None = None,
    ) -> Transition:
        """A new conversation in the `bot` state, with its greeting stored as seq 1."""
        now = utcnow()
        conversation_id = conversation_id or new_id()
        values = {
            "id": conversation_id,
            "visitor_id": visitor_id,
            "state": State.BOT.value,
            "last_seq": 1 if greeting is not None else 0,
            "bot_fallbacks": 0,
            "human_offered": False,
            "created_at": now,
            "updated_at": now,
        }
        stored: list[Message] = []
        async with self.write() as conn:
            await conn.execute(conversations.insert().values(**values))
            if greeting is not None:
                message = _new_message(conversation_id, 1, greeting[0], greeting[1], None, now)
                await conn.execute(messages.insert().values(**_message_row(message)))
                stored.append(message)
        conversation = await self.get_conversation(conversation_id)
        assert conversation is not None
        return Transition(conversation, stored)

    async def get_conversation(self, conversation_id: str) -> Conversation | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    conversations.select().where(conversations.c.id == conversation_id)
                )
            ).first()
        return None if row is None else _conversation(row._mapping)

    async def current_conversation(self, visitor_id: str) -> Conversation | None:
        """The visitor's most recent conversation."""
        query = (
            conversations.select()
            .where(conversations.c.visitor_id == visitor_id)
            .order_by(conversations.c.created_at.desc())
            .limit(1)
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _conversation(row._mapping)

    async def transition(
        self,
        conversation_id: str,
        *,
        from_states: Iterable[State] | None = None,
        values: Mapping[str, Any] | None = None,
        add: Sequence[tuple[Sender, str]] = (),
        where: sa.ColumnElement[bool] | None = None,
    ) -> Transition | None:
        """Atomically change a conversation and append messages to it.

        Applies only while the conversation is in one of `from_states` (and `where` holds);
        returns None, changing nothing, otherwise.
        """
        now = utcnow()
        update = (
            conversations.update()
            .where(conversations.c.id == conversation_id)
            .values(**dict(values or {}), updated_at=now)
            .returning(*conversations.c)
        )
        if add:
            update = update.values(last_seq=conversations.c.last_seq + len(add))
        if from_states is not None:
            update = update.where(conversations.c.state.in_([s.value for s in from_states]))
        if where is not None:
            update = update.where(where)
        async with self.write() as conn:
            row = (await conn.execute(update)).first()
            if row is None:
                return None
            conversation = _conversation(row._mapping)
            first = conversation.last_seq - len(add) + 1
            stored = [
                _new_message(conversation_id, first + i, sender, text, None, now)
                for i, (sender, text) in enumerate(add)
            ]
            if stored:
                await conn.execute(messages.insert(), [_message_row(m) for m in stored])
        return Transition(conversation, stored)

    # messages -------------------------------------------------------------------------------

    async def append_message(
        self,
        conversation_id: str,
        sender: Sender,
        text: str,
        client_id: str | None,
        *,
        only_in_states: Iterable[State] | None = None,
        values: Mapping[str, Any] | None = None,
        where: sa.ColumnElement[bool] | None = None,
    ) -> Append | None:
        """Store one message; a repeated `client_id` returns the stored one, adding nothing.

        With `only_in_states` (and `where`), stores nothing and returns None unless the
        conversation is in one of those states at the moment of the write (the bot uses this to
        stay silent, agents to write only while the conversation is theirs).

        Appends that arrive while a commit is in flight are stored together in the next
        transaction (group commit); each caller still returns only after its commit.
        """
        item = _PendingAppend(
            conversation_id,
            sender,
            text,
            client_id,
            None if only_in_states is None else tuple(only_in_states),
            dict(values or {}),
            where,
            asyncio.get_running_loop().create_future(),
        )
        self._pending.append(item)
        if self._flushers < self._max_flushers:
            self._flushers += 1
            task = asyncio.get_running_loop().create_task(self._flush())
            self._flush_tasks.add(task)
            task.add_done_callback(self._flush_tasks.discard)
        return await asyncio.shield(item.future)

    async def _flush(self) -> None:
        """Store pending appends in batches until none are left."""
        try:
            while self._pending:
                batch = self._pending[:MAX_BATCH]
                del self._pending[:MAX_BATCH]
                try:
                    results = await self._append_batch(batch)
                except Exception:
                    # One bad item (or a client_id raced in by another process) spoils the
                    # whole transaction: redo the items one by one, each with its own outcome.
                    for item in batch:
                        await self._append_alone(item)
                    continue
                for item, result in zip(batch, results, strict=True):
                    if not item.future.done():
                        item.future.set_result(result)
        finally:
            self._flushers -= 1

    async def _append_alone(self, item: _PendingAppend) -> None:
        try:
            result = (await self._append_batch([item]))[0]
        except IntegrityError as exc:
            existing = None
            if item.client_id is not None:
                existing = await self.message_by_client_id(
                    item.conversation_id, item.sender, item.client_id
                )
            if existing is None:
                item.future.set_exception(exc)
                return
            result = Append(existing, created=False, conversation=None)
        except Exception as exc:
            item.future.set_exception(exc)
            return
        item.future.set_result(result)

    async def _append_batch(self, items: Sequence[_PendingAppend]) -> list[Append | None]:
        """Store many appends in one transaction (see `_append_batch_sync`).

        On SQLite the whole batch runs in one call on a worker thread with the stdlib driver,
        instead of one thread hop per statement through aiosqlite.
        """
        if self._sync_engine is not None:
            assert self._write_lock is not None
            async with self._write_lock:
                return await asyncio.to_thread(self._sqlite_batch, items)
        async with self.engine.begin() as conn:
            return await conn.run_sync(_append_batch_sync, items)

    def _sqlite_batch(self, items: Sequence[_PendingAppend]) -> list[Append | None]:
        assert self._sync_engine is not None
        with self._sync_engine.begin() as conn:
            return _append_batch_sync(conn, items)

    async def message_by_client_id(
        self, conversation_id: str, sender: Sender, client_id: str
    ) -> Message | None:
        """The message this sender stored with this client_id, if any."""
        query = messages.select().where(
            messages.c.conversation_id == conversation_id,
            messages.c.sender_role == sender.role.value,
            messages.c.sender_id == sender.id,
            messages.c.client_id == client_id,
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _message(row._mapping)

    async def messages_after(
        self, conversation_id: str, after_seq: int, limit: int
    ) -> list[Message]:
        """Up to `limit` messages with seq > after_seq, in seq order."""
        query = (
            messages.select()
            .where(messages.c.conversation_id == conversation_id, messages.c.seq > after_seq)
            .order_by(messages.c.seq)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_message(row._mapping) for row in rows]

    async def last_message(self, conversation_id: str, role: Role | None = None) -> Message | None:
        """The conversation's latest message (of `role`, when given)."""
        query = (
            messages.select()
            .where(messages.c.conversation_id == conversation_id)
            .order_by(messages.c.seq.desc())
            .limit(1)
        )
        if role is not None:
            query = query.where(messages.c.sender_role == role.value)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _message(row._mapping)

    # read marks and queue -------------------------------------------------------------------

    async def mark_read(self, conversation_id: str, reader: Sender, seq: int) -> int:
        """Raise the reader's read mark to `seq` (never lower it); return the mark now stored."""
        now = utcnow()
        key = (
            (read_marks.c.conversation_id == conversation_id)
            & (read_marks.c.reader_role == reader.role.value)
            & (read_marks.c.reader_id == reader.id)
        )
        for _ in range(2):
            try:
                async with self.write() as conn:
                    current = (
                        await conn.execute(sa.select(read_marks.c.seq).where(key))
                    ).scalar_one_or_none()
                    if current is None:
                        await conn.execute(
                            read_marks.insert().values(
                                conversation_id=conversation_id,
                                reader_role=reader.role.value,
                                reader_id=reader.id,
                                seq=seq,
                                updated_at=now,
                            )
                        )
                        return seq
                    if seq > current:
                        await conn.execute(
                            read_marks.update()
                            .where(key, read_marks.c.seq < seq)
                            .values(seq=seq, updated_at=now)
                        )
                        return seq
                    return int(current)
            except IntegrityError:
                continue  # a concurrent first mark was inserted; read it again
        raise RuntimeError("read mark kept conflicting")

    async def read_marks(self, conversation_id: str) -> list[tuple[str, str, int]]:
        """(role, reader id, seq) of everyone who marked the conversation read."""
        query = (
            sa.select(read_marks.c.reader_role, read_marks.c.reader_id, read_marks.c.seq)
            .where(read_marks.c.conversation_id == conversation_id)
            .order_by(read_marks.c.reader_role, read_marks.c.reader_id)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]

    async def read_mark(self, conversation_id: str, role: Role, reader_id: str) -> int:
        query = sa.select(read_marks.c.seq).where(
            read_marks.c.conversation_id == conversation_id,
            read_marks.c.reader_role == role.value,
            read_marks.c.reader_id == reader_id,
        )
        async with self.engine.connect() as conn:
            value = (await conn.execute(query)).scalar_one_or_none()
        return int(value or 0)

    async def queue_position(self, conversation: Conversation) -> int | None:
        """1 for the conversation waiting longest, None when it is not queued."""
        if conversation.state != State.QUEUED or conversation.queued_at is None:
            return None
        query = sa.select(sa.func.count()).where(
            conversations.c.state == State.QUEUED.value,
            sa.or_(
                conversations.c.queued_at < conversation.queued_at,
                sa.and_(
                    conversations.c.queued_at == conversation.queued_at,
                    conversations.c.id <= conversation.id,
                ),
            ),
        )
        async with self.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def queue_length(self) -> int:
        query = sa.select(sa.func.count()).where(conversations.c.state == State.QUEUED.value)
        async with self.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def queued(self) -> list[Conversation]:
        """Conversations waiting for an agent, longest-waiting first."""
        query = (
            conversations.select()
            .where(conversations.c.state == State.QUEUED.value)
            .order_by(conversations.c.queued_at, conversations.c.id)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_conversation(row._mapping) for row in rows]

    async def assigned_to(self, agent_id: str) -> list[Conversation]:
        query = (
            conversations.select()
            .where(
                conversations.c.state == State.ASSIGNED.value,
                conversations.c.agent_id == agent_id,
            )
            .order_by(conversations.c.updated_at)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_conversation(row._mapping) for row in rows]


def new_id() -> str:
    return uuid.uuid4().hex


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _new_message(
    conversation_id: str,
    seq: int,
    sender: Sender,
    text: str,
    client_id: str | None,
    now: datetime,
) -> Message:
    return Message(new_id(), conversation_id, seq, client_id, sender, text, now)


def _message_row(message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "conversation_id": message.conversation_id,
        "seq": message.seq,
        "client_id": message.client_id,
        "sender_role": message.sender.role.value,
        "sender_id": message.sender.id,
        "sender_name": message.sender.name,
        "text": message.text,
        "created_at": message.created_at,
    }


def _message(row: sa.RowMapping) -> Message:
    return Message(
        id=row["id"],
        conversation_id=row["conversation_id"],
        seq=row["seq"],
        client_id=row["client_id"],
        sender=Sender(Role(row["sender_role"]), row["sender_id"], row["sender_name"]),
        text=row["text"],
        created_at=_aware(row["created_at"]),
    )


def _conversation(row: sa.RowMapping) -> Conversation:
    queued_at = row["queued_at"]
    return Conversation(
        id=row["id"],
        visitor_id=row["visitor_id"],
        state=State(row["state"]),
        last_seq=row["last_seq"],
        agent_id=row["agent_id"],
        agent_name=row["agent_name"],
        queued_at=None if queued_at is None else _aware(queued_at),
        bot_fallbacks=row["bot_fallbacks"],
        human_offered=bool(row["human_offered"]),
        created_at=_aware(row["created_at"]),
        updated_at=_aware(row["updated_at"]),
    )


def _append_batch_sync(conn: sa.Connection, items: Sequence[_PendingAppend]) -> list[Append | None]:
    """One transaction for many appends: a dedupe query, an UPDATE per message, one INSERT."""
    now = utcnow()
    results: list[Append | None] = []
    rows: list[dict[str, Any]] = []
    stored = _stored_client_ids(conn, items)
    for item in items:
        key = item.key
        if key is not None and key in stored:
            results.append(Append(stored[key], created=False, conversation=None))
            continue
        update = (
            conversations.update()
            .where(conversations.c.id == item.conversation_id)
            .values(**item.values, last_seq=conversations.c.last_seq + 1, updated_at=now)
            .returning(*conversations.c)
        )
        if item.only_in_states is not None:
            update = update.where(conversations.c.state.in_([s.value for s in item.only_in_states]))
        if item.where is not None:
            update = update.where(item.where)
        row = conn.execute(update).first()
        if row is None:
            results.append(None)
            continue
        conversation = _conversation(row._mapping)
        message = _new_message(
            item.conversation_id, conversation.last_seq, item.sender, item.text, item.client_id, now
        )
        rows.append(_message_row(message))
        results.append(Append(message, created=True, conversation=conversation))
        if key is not None:
            stored[key] = message  # a retry inside the same batch
    if rows:
        conn.execute(messages.insert(), rows)
    return results


def _stored_client_ids(
    conn: sa.Connection, items: Sequence[_PendingAppend]
) -> dict[tuple[str, str, str, str], Message]:
    keys = {item.key for item in items if item.key is not None}
    if not keys:
        return {}
    columns = sa.tuple_(
        messages.c.conversation_id,
        messages.c.sender_role,
        messages.c.sender_id,
        messages.c.client_id,
    )
    found = conn.execute(messages.select().where(columns.in_(list(keys)))).all()
    return {
        (row.conversation_id, row.sender_role, row.sender_id, row.client_id): _message(row._mapping)
        for row in found
    }
