"""The background WAL checkpointer: commits no longer checkpoint, the checkpointer does."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from socketsvc.domain.models import Role, Sender
from socketsvc.storage.store import Store

VISITOR = Sender(Role.VISITOR, "v1", "Visitor v1")


def wal_pages(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size // 4096 if wal.exists() else 0


async def test_commits_leave_the_wal_to_the_checkpointer(tmp_path: Path) -> None:
    path = tmp_path / "wal.sqlite3"
    store = await Store.open(f"sqlite:///{path}")
    try:
        assert store._checkpointer is not None
        store._checkpointer.interval = 3600.0  # only the explicit checkpoints below
        await store.ensure_visitor("v1", "Visitor v1")
        created = await store.create_conversation("v1", (VISITOR, "hi"))
        # Far more than the 1,000 pages after which SQLite would checkpoint inside a commit.
        for i in range(300):
            await store.append_message(created.conversation.id, VISITOR, "x" * 20_000, f"c{i}")
        assert wal_pages(path) > 1_000
        busy, log_pages, moved = store._checkpointer.checkpoint()
        assert busy == 0 and moved == log_pages > 1_000
    finally:
        await store.close()
    # Closing truncates the log; everything is in the database file.
    assert wal_pages(path) == 0
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM messages").fetchone() == (301,)


async def test_the_wal_is_started_over_while_messages_keep_coming(tmp_path: Path) -> None:
    path = tmp_path / "busy.sqlite3"
    wal = path.with_name(path.name + "-wal")
    store = await Store.open(f"sqlite:///{path}")
    checkpointer = store._checkpointer
    assert checkpointer is not None
    checkpointer.interval = 3600.0  # only the explicit checkpoints below
    try:
        await store.ensure_visitor("v1", "Visitor v1")
        conversation_id = (await store.create_conversation("v1", None)).conversation.id
        written = 0
        stop = False
        wrote = asyncio.Event()

        async def keep_writing() -> None:
            nonlocal written
            while not stop:
                await store.append_message(conversation_id, VISITOR, "x" * 2_000, None)
                written += 1
                wrote.set()

        # Ten writers: a commit every millisecond or two, during every checkpoint.
        writers = [asyncio.create_task(keep_writing()) for _ in range(10)]
        completed = []
        try:
            for _ in range(8):
                before = written
                while written < before + 300:  # some 1 MB of log between checkpoints
                    wrote.clear()
                    await wrote.wait()
                completed.append(await checkpointer.run_once())
        finally:
            stop = True
            await asyncio.gather(*writers)
        # Each completing pass copied the whole log, so the next commit started it over: the
        # file holds about two intervals of writes, not everything written (8 MB or more).
        assert all(busy == 0 and moved == pages for busy, pages, moved in completed)
        assert wal.stat().st_size < 4_000_000, wal.stat().st_size
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM messages").fetchone() == (written,)
