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
import functools
import logging
import sqlite3
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from socketsvc.domain.errors import VisitorErased
from socketsvc.domain.models import (
    SYSTEM,
    Append,
    Conversation,
    Message,
    Returning,
    Role,
    Sender,
    State,
    Transition,
    Visitor,
    new_id,
    utcnow,
)
from socketsvc.runtime import metrics
from socketsvc.settings import DEFAULT_COMMIT_DELAY, sqlite_path
from socketsvc.storage import schema
from socketsvc.storage.appends import (
    PendingAppend,
    SqliteAppender,
    check_values,
    new_message,
    pg_append,
)
from socketsvc.storage.checkpoints import WalCheckpointer
from socketsvc.storage.database import (
    DEFAULT_SQLITE_BUSY_TIMEOUT,
    create_engine,
    sqlite_pragmas,
)
from socketsvc.storage.lookups import Busy, PgLookups, SqliteLookups
from socketsvc.storage.outages import OUTAGES, describe, is_outage
from socketsvc.storage.pacing import CommitPacer
from socketsvc.storage.tables import (
    conversations,
    erased_visitors,
    messages,
    read_marks,
    visitors,
)

log = logging.getLogger(__name__)

MAX_BATCH = 256

__all__ = ["Append", "Store", "Transition", "new_id"]


class Store:
    """Durable conversations, messages and read marks."""

    def __init__(self, engine: AsyncEngine, commit_delay: float = DEFAULT_COMMIT_DELAY) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        self._pending: list[PendingAppend] = []
        self._flushers = 0
        # One batch at a time on both: the messages that arrive while a batch is being stored
        # form the next one, so a busy process writes fewer, larger transactions.
        self._max_flushers = 1
        self._flush_tasks: set[asyncio.Task[None]] = set()
        self.pacer = CommitPacer(commit_delay)
        self._sqlite: SqliteAppender | None = None
        self._checkpointer: WalCheckpointer | None = None
        self._sqlite_lookups: SqliteLookups | None = None
        self._pg_lookups = PgLookups()
        self._append_conn: AsyncConnection | None = None
        """PostgreSQL: the pooled connection message batches run on, kept between batches
        (checking a connection out of the pool and back in costs more than a batch: the pool
        rolls back on every check-in); dropped after an error."""
        self.schema: schema.Outcome | None = None
        """What `open` found and did to the schema."""

    @classmethod
    async def open(
        cls,
        database_url: str,
        commit_delay: float = DEFAULT_COMMIT_DELAY,
        busy_timeout: float = DEFAULT_SQLITE_BUSY_TIMEOUT,
    ) -> Store:
        """Connect and check the schema (`schema.prepare`: SQLite is migrated, PostgreSQL's
        empty database created, a schema this code cannot serve raises `SchemaError`);
        `commit_delay`: see `CommitPacer`;
        `busy_timeout`: how long SQLite waits for another process's lock."""
        engine = create_engine(database_url, busy_timeout)
        store = cls(engine, commit_delay)
        if store.is_sqlite:
            path = str(sqlite_path(database_url))
            store._sqlite = SqliteAppender(path, sqlite_pragmas, busy_timeout)
            store._sqlite_lookups = SqliteLookups(path)
            assert store._write_lock is not None
            store._checkpointer = WalCheckpointer(path, store._write_lock)
        try:
            async with engine.begin() as conn:
                # Under a PostgreSQL advisory lock: processes starting together take turns.
                store.schema = await schema.prepare(
                    conn, "start-sqlite" if store.is_sqlite else "start-postgres"
                )
        except BaseException:
            await store.close()
            raise
        if store._checkpointer is not None:
            store._checkpointer.start()
        return store

    async def close(self) -> None:
        if self._flush_tasks:
            await asyncio.wait(set(self._flush_tasks), timeout=5.0)
        await self._drop_append_conn()
        await self._pg_lookups.close()
        await self.engine.dispose()
        if self._sqlite is not None:
            await self._sqlite.close()
        if self._sqlite_lookups is not None:
            self._sqlite_lookups.close()
        if self._checkpointer is not None:
            await self._checkpointer.close()

    async def ping(self) -> None:
        """Raise (`Unavailable` in an outage) if the database cannot answer a trivial query."""
        async with self.read() as conn:
            await conn.execute(sa.text("SELECT 1"))

    # Every way into the database runs in `OUTAGES.guard`: a connection-level failure (the
    # database down, refusing or locked) comes out as `StorageUnavailable`, logged once per
    # outage (storage/outages.py); any other error is raised as it is.

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A pooled connection for reads (nothing is committed)."""
        with OUTAGES.guard("read"):
            async with self.engine.connect() as conn:
                yield conn

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction, committed (and on SQLite fsynced) when the block ends."""
        with OUTAGES.guard("write"):
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
        async with self.read() as conn:
            row = (await conn.execute(visitors.select().where(visitors.c.id == visitor_id))).first()
        return None if row is None else Visitor(row.id, row.name, _aware(row.created_at))

    # conversations --------------------------------------------------------------------------

    async def create_conversation(
        self,
        visitor_id: str,
        greeting: tuple[Sender, str] | None = None,
        conversation_id: str | None = None,
        *,
        new_visitor_name: str | None = None,
    ) -> Transition:
        """A new conversation in the `bot` state, with its greeting stored as seq 1.

        With `new_visitor_name`, the visitor row is inserted in the same transaction (a new
        visitor's handshake is then one commit).
        """
        now = utcnow()
        conversation = Conversation(
            id=conversation_id or new_id(),
            visitor_id=visitor_id,
            state=State.BOT,
            last_seq=1 if greeting is not None else 0,
            agent_id=None,
            agent_name=None,
            queued_at=None,
            bot_fallbacks=0,
            human_offered=False,
            created_at=now,
            updated_at=now,
        )
        row = {
            "id": conversation.id,
            "visitor_id": visitor_id,
            "state": conversation.state.value,
            "last_seq": conversation.last_seq,
            "bot_fallbacks": 0,
            "human_offered": False,
            "created_at": now,
            "updated_at": now,
        }
        stored: list[Message] = []
        async with self.write() as conn:
            if new_visitor_name is not None:
                await conn.execute(
                    visitors.insert().values(id=visitor_id, name=new_visitor_name, created_at=now)
                )
            await conn.execute(conversations.insert().values(**row))
            if greeting is not None:
                message = new_message(conversation.id, 1, greeting[0], greeting[1], None, now)
                await conn.execute(messages.insert().values(**_message_row(message)))
                stored.append(message)
        _count_stored(stored)
        return Transition(conversation, stored)

    async def returning_visitor(self, visitor_id: str) -> Returning:
        """What a reconnecting visitor's handshake needs, in one statement (storage/lookups)."""
        if self._sqlite_lookups is not None:
            with OUTAGES.guard("read"):
                try:
                    return self._sqlite_lookups.read(visitor_id)
                except Busy:
                    pass  # locked for a moment: the pooled path waits off the loop
                except sqlite3.OperationalError as exc:
                    raise OperationalError("lookup", None, exc) from exc
            return await self._returning_pooled(visitor_id)
        with OUTAGES.guard("read"):
            try:
                return await self._pg_lookups.read(self.engine, visitor_id)
            except Exception as exc:
                if is_outage(exc) and not isinstance(exc, OperationalError):
                    raise OperationalError("lookup", None, exc) from exc
                raise

    async def sync_read(
        self, conversation_id: str, after_seq: int, limit: int
    ) -> tuple[list[Message], Returning]:
        """Up to `limit` messages after `after_seq`, then the conversation as it is after them
        (`Returning.conversation` None: no such conversation), its read marks and queue
        position: what `sync` answers, in two statements (storage/lookups)."""
        if self._sqlite_lookups is not None:
            with OUTAGES.guard("read"):
                try:
                    return self._sqlite_lookups.sync(conversation_id, after_seq, limit)
                except Busy:
                    pass
                except sqlite3.OperationalError as exc:
                    raise OperationalError("lookup", None, exc) from exc
            found = await self.messages_after(conversation_id, after_seq, limit)
            conversation = await self.get_conversation(conversation_id)
            if conversation is None:
                return found, Returning(False, None, [], None)
            return found, Returning(
                False,
                conversation,
                await self.read_marks(conversation.id),
                await self.queue_position(conversation),
            )
        with OUTAGES.guard("read"):
            try:
                return await self._pg_lookups.sync(self.engine, conversation_id, after_seq, limit)
            except Exception as exc:
                if is_outage(exc) and not isinstance(exc, OperationalError):
                    raise OperationalError("lookup", None, exc) from exc
                raise

    async def _returning_pooled(self, visitor_id: str) -> Returning:
        erased = sa.select(erased_visitors.c.id).where(erased_visitors.c.id == visitor_id)
        async with self.read() as conn:
            if (await conn.execute(erased)).first() is not None:
                return Returning(True, None, [], None)
            row = (await conn.execute(_current_query(visitor_id))).first()
        if row is None:
            return Returning(False, None, [], None)
        conversation = _conversation(row._mapping)
        return Returning(
            False,
            conversation,
            await self.read_marks(conversation.id),
            await self.queue_position(conversation),
        )

    async def start_conversation(
        self,
        visitor: Visitor,
        greeting: Message,
        first: tuple[Sender, str, str | None] | None = None,
    ) -> Transition | None:
        """Store a conversation that was only promised so far: its visitor (if new), the
        conversation `greeting.conversation_id` in the `bot` state, the greeting as seq 1 and
        `first` (sender, text, client_id), if given, as seq 2, in one transaction.

        None, changing nothing, if that conversation exists already (another connection of the
        visitor started it); `VisitorErased` if the visitor was erased.
        """
        now = utcnow()
        stored = [
            Message(
                greeting.id, greeting.conversation_id, 1, None, greeting.sender, greeting.text, now
            )
        ]
        if first is not None:
            sender, text, client_id = first
            stored.append(new_message(greeting.conversation_id, 2, sender, text, client_id, now))
        conversation = Conversation(
            id=greeting.conversation_id,
            visitor_id=visitor.id,
            state=State.BOT,
            last_seq=len(stored),
            agent_id=None,
            agent_name=None,
            queued_at=None,
            bot_fallbacks=0,
            human_offered=False,
            created_at=now,
            updated_at=now,
        )
        try:
            async with self.write() as conn:
                erased = sa.select(erased_visitors.c.id).where(erased_visitors.c.id == visitor.id)
                if (await conn.execute(erased)).first() is not None:
                    raise VisitorErased()
                known = sa.select(visitors.c.id).where(visitors.c.id == visitor.id)
                if (await conn.execute(known)).first() is None:
                    await conn.execute(
                        visitors.insert().values(id=visitor.id, name=visitor.name, created_at=now)
                    )
                await conn.execute(
                    conversations.insert().values(
                        id=conversation.id,
                        visitor_id=visitor.id,
                        state=conversation.state.value,
                        last_seq=conversation.last_seq,
                        bot_fallbacks=0,
                        human_offered=False,
                        created_at=now,
                        updated_at=now,
                    )
                )
                await conn.execute(messages.insert(), [_message_row(m) for m in stored])
        except IntegrityError:
            # The conversation (or, for a visitor's first write on two processes at once, the
            # visitor) was inserted meanwhile: the caller appends to it instead.
            if await self.get_conversation(greeting.conversation_id) is not None:
                return None
            raise
        _count_stored(stored)
        return Transition(conversation, stored)

    async def get_conversation(self, conversation_id: str) -> Conversation | None:
        async with self.read() as conn:
            row = (
                await conn.execute(
                    conversations.select().where(conversations.c.id == conversation_id)
                )
            ).first()
        return None if row is None else _conversation(row._mapping)

    async def current_conversation(self, visitor_id: str) -> Conversation | None:
        """The visitor's most recent conversation."""
        async with self.read() as conn:
            row = (await conn.execute(_current_query(visitor_id))).first()
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
                new_message(conversation_id, first + i, sender, text, None, now)
                for i, (sender, text) in enumerate(add)
            ]
            if stored:
                await conn.execute(messages.insert(), [_message_row(m) for m in stored])
        _count_stored(stored)
        return Transition(conversation, stored)

    # named transitions: the ones the domain makes ------------------------------------------
    #
    # Each is one atomic, conditional UPDATE (the conversation must be in one of the states,
    # and assigned to the agent where one is named) plus the system note it adds; None when the
    # condition did not hold, changing nothing. The domain decides when; the columns are ours.

    async def queue(
        self,
        conversation_id: str,
        note: str,
        *,
        from_states: Collection[State],
        assigned_to: str | None = None,
        after: Sequence[str] = (),
    ) -> Transition | None:
        """To the queue, waiting from now, without an agent and with the bot's counters reset;
        `after`: more system notes after `note` (a bot's handoff summary)."""
        values = {
            "state": State.QUEUED.value,
            "queued_at": utcnow(),
            "agent_id": None,
            "agent_name": None,
            "bot_fallbacks": 0,
            "human_offered": False,
        }
        if after:
            return await self.transition(
                conversation_id,
                from_states=from_states,
                values=values,
                add=[(SYSTEM, text) for text in (note, *after)],
                where=None if assigned_to is None else conversations.c.agent_id == assigned_to,
            )
        return await self._named(conversation_id, from_states, assigned_to, values, note)

    async def accept(
        self, conversation_id: str, agent_id: str, agent_name: str, note: str
    ) -> Transition | None:
        """A queued conversation assigned to the agent (exactly one caller wins)."""
        values = {
            "state": State.ASSIGNED.value,
            "agent_id": agent_id,
            "agent_name": agent_name,
            "queued_at": None,
        }
        return await self._named(conversation_id, (State.QUEUED,), None, values, note)

    async def transfer(
        self, conversation_id: str, from_agent_id: str, to_agent_id: str, to_name: str, note: str
    ) -> Transition | None:
        """A conversation assigned to `from_agent_id` assigned to another agent."""
        values = {"agent_id": to_agent_id, "agent_name": to_name}
        return await self._named(conversation_id, (State.ASSIGNED,), from_agent_id, values, note)

    async def to_bot(
        self,
        conversation_id: str,
        note: str | None,
        *,
        from_states: Collection[State],
        assigned_to: str | None = None,
    ) -> Transition | None:
        """Back to the bot, without an agent and with a fresh fallback count."""
        values = {
            "state": State.BOT.value,
            "agent_id": None,
            "agent_name": None,
            "bot_fallbacks": 0,
            "human_offered": False,
        }
        return await self._named(conversation_id, from_states, assigned_to, values, note)

    async def resolve(self, conversation_id: str, agent_id: str, note: str) -> Transition | None:
        """A conversation assigned to the agent, resolved."""
        values = {"state": State.RESOLVED.value, "agent_id": None, "agent_name": None}
        return await self._named(conversation_id, (State.ASSIGNED,), agent_id, values, note)

    async def resolve_from_bot(self, conversation_id: str, note: str) -> Transition | None:
        """A conversation with the bot, resolved by it."""
        values = {"state": State.RESOLVED.value, "bot_fallbacks": 0, "human_offered": False}
        return await self._named(conversation_id, (State.BOT,), None, values, note)

    async def _named(
        self,
        conversation_id: str,
        from_states: Collection[State],
        assigned_to: str | None,
        values: dict[str, Any],
        note: str | None,
    ) -> Transition | None:
        return await self.transition(
            conversation_id,
            from_states=from_states,
            values=values,
            add=[] if note is None else [(SYSTEM, note)],
            where=None if assigned_to is None else conversations.c.agent_id == assigned_to,
        )

    # messages -------------------------------------------------------------------------------

    async def append_message(
        self,
        conversation_id: str,
        sender: Sender,
        text: str,
        client_id: str | None,
        *,
        only_in_states: Iterable[State] | None = None,
        agent_id: str | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> Append | None:
        """Store one message; a repeated `client_id` returns the stored one, adding nothing.

        With `only_in_states` (and `agent_id`: only while assigned to that agent), stores
        nothing and returns None unless the conversation is in one of those states at the moment
        of the write (the bot uses this to stay silent, agents to write only while the
        conversation is theirs). `values` are conversation columns to set in the same write.

        Appends that arrive while a commit is in flight are stored together in the next
        transaction (group commit); each caller still returns only after its commit.
        """
        changes = dict(values or {})
        check_values(changes)
        loop = asyncio.get_running_loop()
        item = PendingAppend(
            conversation_id,
            sender,
            text,
            client_id,
            None if only_in_states is None else tuple(s.value for s in only_in_states),
            agent_id,
            changes,
            loop.create_future(),
        )
        self._pending.append(item)
        if self._flushers < self._max_flushers:
            self._flushers += 1
            task = loop.create_task(self._flush())
            self._flush_tasks.add(task)
            task.add_done_callback(self._flush_tasks.discard)
        # A caller cancelled while waiting cancels only its future: the batch still stores the
        # message (and skips the cancelled future).
        with OUTAGES.guard("write"):
            return await item.future

    async def append_agent_message(
        self, conversation_id: str, agent: Sender, text: str, client_id: str | None
    ) -> Append | None:
        """An agent's message, stored only while the conversation is assigned to that agent."""
        return await self.append_message(
            conversation_id,
            agent,
            text,
            client_id,
            only_in_states=(State.ASSIGNED,),
            agent_id=agent.id,
        )

    async def append_bot_reply(
        self,
        conversation_id: str,
        bot: Sender,
        text: str,
        *,
        bot_fallbacks: int,
        human_offered: bool,
    ) -> Append | None:
        """The bot's reply, stored only while the conversation is with the bot, with the bot's
        counters (fallbacks in a row, whether a human was offered) in the same write."""
        return await self.append_message(
            conversation_id,
            bot,
            text,
            None,
            only_in_states=(State.BOT,),
            values={"bot_fallbacks": bot_fallbacks, "human_offered": human_offered},
        )

    async def append_bot_message(
        self,
        conversation_id: str,
        bot: Sender,
        text: str,
        client_id: str,
        *,
        bot_fallbacks: int,
        human_offered: bool,
    ) -> Append | None:
        """An external bot's reply (idempotent by `client_id`), stored only while the
        conversation is with the bot, with the bot's counters in the same write."""
        return await self.append_message(
            conversation_id,
            bot,
            text,
            client_id,
            only_in_states=(State.BOT,),
            values={"bot_fallbacks": bot_fallbacks, "human_offered": human_offered},
        )

    async def _flush(self) -> None:
        """Store pending appends in batches until none are left."""
        try:
            while self._pending:
                if self._sqlite is not None:
                    await self._sqlite.syncer.idle()
                await self.pacer.wait()
                batch = self._pending[:MAX_BATCH]
                del self._pending[:MAX_BATCH]
                metrics.APPEND_BATCHES.inc()
                held = None
                try:
                    if self._sqlite is None:
                        if self._append_conn is None:
                            self._append_conn = await self.engine.connect()
                        held = self._append_conn
                    results, durable = await self._write_batch(batch, held)
                except Exception as exc:
                    await self._drop_append_conn()
                    if is_outage(exc):
                        if held is None:
                            # No connection to be had (or SQLite itself failed): every item
                            # would fail the same way, each after its own wait.
                            _settle_all(batch, [None] * len(batch), exc)
                            continue
                        # The held connection died (the database went away, or only the
                        # connection did, e.g. while idle): one try on a new connection tells.
                        # If the batch had committed before the connection died, that try
                        # fails on the unique client_id index and is redone item by item below,
                        # answering each message with the stored one (a message sent without a
                        # client_id cannot be recognised so: it would be stored again).
                        try:
                            results, durable = await self._write_batch(batch)
                        except Exception as again:
                            if is_outage(again):
                                _settle_all(batch, [None] * len(batch), again)
                                continue
                            for item in batch:
                                await self._append_alone(item, outage=exc)
                            continue
                    else:
                        # One bad item (or a client_id raced in by another process) spoils the
                        # whole transaction: redo the items one by one, each with its own
                        # outcome.
                        for item in batch:
                            await self._append_alone(item)
                        continue
                if durable is None:
                    _settle_all(batch, results, None)
                else:
                    # SQLite: the batch is committed; its callers get it once it is on disk.
                    durable.add_done_callback(
                        functools.partial(_settle_when_durable, batch, results)
                    )
        finally:
            self._flushers -= 1

    async def _drop_append_conn(self) -> None:
        conn, self._append_conn = self._append_conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _append_alone(self, item: PendingAppend, outage: Exception | None = None) -> None:
        """Store one append on its own, settling its future with the outcome.

        `outage`: the batch first failed because the database went away. A failure here that
        is not an integrity error is then answered as that outage (`unavailable`: the client
        retries with its client_id), logged at WARNING with what it was: in a suite run
        under load, one such retry failed in a way `is_outage` did not know and was answered
        `internal`.
        """
        try:
            results, durable = await self._write_batch([item])
            if durable is not None:
                await durable
            result = results[0]
        except IntegrityError as exc:
            existing = None
            if item.client_id is not None:
                try:
                    existing = await self.message_by_client_id(
                        item.conversation_id, item.sender, item.client_id
                    )
                except Exception as failure:  # e.g. Unavailable: the database went away
                    _settle(item.future, failure)
                    return
            if existing is None:
                _settle(item.future, exc)
                return
            result = Append(existing, created=False, conversation=None)
        except Exception as exc:
            if outage is not None and not is_outage(exc):
                log.warning(
                    "an append retried after a database outage failed with %s; answered as the"
                    " outage",
                    describe(exc),
                    exc_info=exc,
                )
                exc = outage
            _settle(item.future, exc)
            return
        _settle(item.future, result)

    async def _write_batch(
        self, items: Sequence[PendingAppend], held: AsyncConnection | None = None
    ) -> tuple[list[Append | None], asyncio.Future[None] | None]:
        """Store many appends in one transaction, on the driver (see `appends`).

        Returns the results and, on SQLite, a future done once they are on disk (None when the
        commit itself was durable). Driver errors come out as SQLAlchemy's `IntegrityError` /
        `OperationalError`, like those of every other query.
        """
        now = utcnow()
        if self._sqlite is not None:
            assert self._write_lock is not None
            async with self._write_lock:
                try:
                    return await self._sqlite.append(items, now)
                except sqlite3.IntegrityError as exc:
                    raise IntegrityError("append", None, exc) from exc
                except sqlite3.OperationalError as exc:
                    raise OperationalError("append", None, exc) from exc
        if held is not None:
            return await self._pg_batch(held, items, now), None
        async with self.engine.connect() as conn:
            return await self._pg_batch(conn, items, now), None

    @staticmethod
    async def _pg_batch(
        conn: AsyncConnection, items: Sequence[PendingAppend], now: datetime
    ) -> list[Append | None]:
        raw = await conn.get_raw_connection()
        try:
            return await pg_append(raw.driver_connection, items, now)
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise IntegrityError("append", None, exc) from exc
        except Exception as exc:
            if not is_outage(exc):
                raise
            with contextlib.suppress(Exception):
                await conn.invalidate()
            raise OperationalError("append", None, exc) from exc

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
        async with self.read() as conn:
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
        async with self.read() as conn:
            rows = (await conn.execute(query)).all()
        return [_message(row._mapping) for row in rows]

    async def last_message(self, conversation_id: str, role: Role | None = None) -> Message | None:
        """The conversation's latest message (of `role`, when given)."""
        return await self._end_message(conversation_id, role, messages.c.seq.desc())

    async def first_message(self, conversation_id: str, role: Role | None = None) -> Message | None:
        """The conversation's earliest message (of `role`, when given)."""
        return await self._end_message(conversation_id, role, messages.c.seq.asc())

    async def _end_message(
        self, conversation_id: str, role: Role | None, order: Any
    ) -> Message | None:
        query = (
            messages.select()
            .where(messages.c.conversation_id == conversation_id)
            .order_by(order)
            .limit(1)
        )
        if role is not None:
            query = query.where(messages.c.sender_role == role.value)
        async with self.read() as conn:
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
        async with self.read() as conn:
            rows = (await conn.execute(query)).all()
        return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]

    async def read_mark(self, conversation_id: str, role: Role, reader_id: str) -> int:
        query = sa.select(read_marks.c.seq).where(
            read_marks.c.conversation_id == conversation_id,
            read_marks.c.reader_role == role.value,
            read_marks.c.reader_id == reader_id,
        )
        async with self.read() as conn:
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
        async with self.read() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def queue_length(self) -> int:
        query = sa.select(sa.func.count()).where(conversations.c.state == State.QUEUED.value)
        async with self.read() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def queued(self) -> list[Conversation]:
        """Conversations waiting for an agent, longest-waiting first."""
        query = (
            conversations.select()
            .where(conversations.c.state == State.QUEUED.value)
            .order_by(conversations.c.queued_at, conversations.c.id)
        )
        async with self.read() as conn:
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
        async with self.read() as conn:
            rows = (await conn.execute(query)).all()
        return [_conversation(row._mapping) for row in rows]


def _current_query(visitor_id: str) -> sa.Select[Any]:
    """The visitor's most recent conversation (index `ix_conversations_visitor`)."""
    return (
        conversations.select()
        .where(conversations.c.visitor_id == visitor_id)
        .order_by(conversations.c.created_at.desc())
        .limit(1)
    )


def _settle_all(
    items: Sequence[PendingAppend], results: Sequence[Append | None], error: Exception | None
) -> None:
    for item, result in zip(items, results, strict=True):
        _settle(item.future, result if error is None else error)


def _settle_when_durable(
    items: Sequence[PendingAppend], results: Sequence[Append | None], durable: asyncio.Future[None]
) -> None:
    """Hand out a batch's results once its fsync is done (or an error if the fsync failed)."""
    error: Exception | None = None
    if durable.cancelled():
        error = OperationalError("append", None, OSError("the durability wait was cancelled"))
    else:
        failure = durable.exception()
        if failure is not None:
            error = OperationalError("append", None, failure)
    _settle_all(items, results, error)


def _settle(future: asyncio.Future[Append | None], outcome: Append | Exception | None) -> None:
    """Resolve a caller's future, unless the caller was cancelled meanwhile (a message stored
    for a cancelled caller is stored all the same, and counted)."""
    if isinstance(outcome, Append) and outcome.created:
        _count_stored([outcome.message])
    if future.done():
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _count_stored(stored: Iterable[Message]) -> None:
    """`socketsvc_messages_stored_total`, counted where messages are committed: here only."""
    for message in stored:
        metrics.stored(message.sender.role.value).inc()


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


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
