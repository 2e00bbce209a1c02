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
from socketsvc.storage.database import create_engine
from socketsvc.storage.tables import conversations, messages, metadata, read_marks, visitors


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

    @classmethod
    async def open(cls, database_url: str) -> Store:
        """Connect and create the schema if it is missing."""
        engine = create_engine(database_url)
        store = cls(engine)
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        return store

    async def close(self) -> None:
        await self.engine.dispose()

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
        """
        if client_id is not None:
            existing = await self.message_by_client_id(conversation_id, sender.role, client_id)
            if existing is not None:
                return Append(existing, created=False, conversation=None)
        now = utcnow()
        update = (
            conversations.update()
            .where(conversations.c.id == conversation_id)
            .values(**dict(values or {}), last_seq=conversations.c.last_seq + 1, updated_at=now)
            .returning(*conversations.c)
        )
        if only_in_states is not None:
            update = update.where(conversations.c.state.in_([s.value for s in only_in_states]))
        if where is not None:
            update = update.where(where)
        try:
            async with self.write() as conn:
                row = (await conn.execute(update)).first()
                if row is None:
                    return None
                conversation = _conversation(row._mapping)
                message = _new_message(
                    conversation_id, conversation.last_seq, sender, text, client_id, now
                )
                await conn.execute(messages.insert().values(**_message_row(message)))
        except IntegrityError:
            # A concurrent retry with the same client_id won; the rollback undid our seq.
            if client_id is None:
                raise
            existing = await self.message_by_client_id(conversation_id, sender.role, client_id)
            if existing is None:
                raise
            return Append(existing, created=False, conversation=None)
        return Append(message, created=True, conversation=conversation)

    async def message_by_client_id(
        self, conversation_id: str, role: Role, client_id: str
    ) -> Message | None:
        query = messages.select().where(
            messages.c.conversation_id == conversation_id,
            messages.c.sender_role == role.value,
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

    async def last_message(self, conversation_id: str) -> Message | None:
        query = (
            messages.select()
            .where(messages.c.conversation_id == conversation_id)
            .order_by(messages.c.seq.desc())
            .limit(1)
        )
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
