"""Retention (RETENTION_DAYS) over a real store, with a fake clock: only resolved conversations
last changed before the cutoff go, with their messages and read marks, batch by batch."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from socketsvc.domain.models import Role, Sender, State
from socketsvc.domain.privacy import PrivacyService
from socketsvc.runtime import metrics
from socketsvc.storage.privacy import PrivacyStore
from socketsvc.storage.store import Store
from socketsvc.storage.tables import conversations, messages, read_marks, visitors
from tests.support.tokens import TOKENS

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
BOT = Sender(Role.BOT, "bot", "Bot")


async def conversation(store: Store, visitor_id: str, state: State, age: timedelta) -> str:
    """A conversation with a greeting, a visitor message and the visitor's read mark, put in
    `state` and last changed `age` before NOW."""
    await store.ensure_visitor(visitor_id, f"Visitor {visitor_id}")
    cid = (await store.create_conversation(visitor_id, (BOT, "Hello!"))).conversation.id
    visitor = Sender(Role.VISITOR, visitor_id, f"Visitor {visitor_id}")
    assert await store.append_message(cid, visitor, "hi", "c1") is not None
    await store.mark_read(cid, visitor, 2)
    async with store.write() as conn:
        await conn.execute(
            conversations.update()
            .where(conversations.c.id == cid)
            .values(state=state.value, updated_at=NOW - age)
        )
    return cid


async def rows(store: Store, table: sa.Table, cid: str) -> int:
    column = table.c.id if table is conversations else table.c.conversation_id
    async with store.read() as conn:
        count = (
            await conn.execute(sa.select(sa.func.count()).select_from(table).where(column == cid))
        ).scalar_one()
    return int(count)


async def test_resolved_conversations_older_than_the_retention_go_in_batches(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    day = timedelta(days=1)
    old = [await conversation(store, f"old{i}", State.RESOLVED, 31 * day) for i in range(5)]
    # 29 days and 23 hours: inside the 30 days, kept
    recent = await conversation(store, "recent", State.RESOLVED, 30 * day - timedelta(hours=1))
    unresolved = [
        await conversation(store, f"open-{state.value}", state, 400 * day)
        for state in (State.BOT, State.QUEUED, State.ASSIGNED)
    ]
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    service = PrivacyService(
        PrivacyStore(store), TOKENS, 30, batch=2, pause=0.25, now=lambda: NOW, sleep=sleep
    )
    before = metrics.RETENTION_DELETED._value.get()
    with caplog.at_level(logging.INFO, logger="socketsvc.domain.privacy"):
        totals = await service.purge()
    print(f"\nretention run: {totals}; pauses {pauses}")
    assert totals == {"conversations": 5, "messages": 10, "read_marks": 5, "batches": 3}
    assert pauses == [0.25, 0.25]  # between batches 1-2 and 2-3, not after the last
    assert metrics.RETENTION_DELETED._value.get() - before == 5
    lines = [r.getMessage() for r in caplog.records if "retention" in r.getMessage()]
    assert len(lines) == 1 and "deleted 5 conversations, 10 messages, 5 read marks" in lines[0]
    for cid in old:
        for table in (conversations, messages, read_marks):
            assert await rows(store, table, cid) == 0, (table.name, cid)
    for cid in [recent, *unresolved]:
        assert await rows(store, conversations, cid) == 1
        assert await rows(store, messages, cid) == 2
        assert await rows(store, read_marks, cid) == 1
    # Visitor rows stay (they hold no chat content; `visitor delete` erases them).
    async with store.read() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(visitors))).scalar() == 9
    # A second run finds nothing: one batch, nothing deleted.
    assert (await service.purge())["conversations"] == 0


async def test_retention_off_deletes_nothing_and_runs_no_task(store: Store) -> None:
    cid = await conversation(store, "v", State.RESOLVED, timedelta(days=10_000))
    calls: list[float] = []

    async def sleep(seconds: float) -> None:
        calls.append(seconds)

    service = PrivacyService(PrivacyStore(store), TOKENS, 0, now=lambda: NOW, sleep=sleep)
    assert not service.retention_enabled
    assert (await service.purge())["conversations"] == 0
    await service.run()  # returns at once
    assert calls == []
    assert await rows(store, conversations, cid) == 1


async def test_the_task_runs_shortly_after_start_then_every_interval(store: Store) -> None:
    await conversation(store, "v", State.RESOLVED, timedelta(days=40))
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 3:
            raise asyncio.CancelledError

    service = PrivacyService(PrivacyStore(store), TOKENS, 30, now=lambda: NOW, sleep=sleep)
    with pytest.raises(asyncio.CancelledError):
        await service.run(first_delay=60.0, interval=3600.0)
    assert sleeps == [60.0, 3600.0, 3600.0]
    async with store.read() as conn:
        left = (await conn.execute(sa.select(sa.func.count()).select_from(conversations))).scalar()
    assert left == 0
