"""The append path's parts: WAL fsync rounds, time-ordered message ids, SQLite's page size."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from socketsvc.storage.appends import WalSyncer, message_id
from socketsvc.storage.database import SQLITE_PAGE_SIZE
from socketsvc.storage.store import Store


async def test_wal_syncer_acknowledges_every_commit_after_an_fsync(tmp_path: Path) -> None:
    wal = tmp_path / "db-wal"
    wal.write_bytes(b"frames")
    syncer = WalSyncer(str(wal))
    try:
        first = syncer.after_commit()
        # Commits while an fsync runs wait for the next one: one round covers them all.
        later = [syncer.after_commit() for _ in range(5)]
        await asyncio.wait_for(asyncio.gather(first, *later), timeout=10)
        assert all(f.done() and f.exception() is None for f in [first, *later])
        await asyncio.wait_for(syncer.idle(), timeout=10)
        again = syncer.after_commit()
        await asyncio.wait_for(again, timeout=10)
    finally:
        await syncer.close()


async def test_wal_syncer_fails_the_commits_when_the_fsync_fails(tmp_path: Path) -> None:
    syncer = WalSyncer(str(tmp_path / "missing" / "db-wal"))
    try:
        durable = syncer.after_commit()
        with pytest.raises(FileNotFoundError):
            await asyncio.wait_for(durable, timeout=10)
        # The syncer is still usable: the next commit gets its own (failed) fsync.
        with pytest.raises(FileNotFoundError):
            await asyncio.wait_for(syncer.after_commit(), timeout=10)
    finally:
        await syncer.close()


async def test_message_ids_are_unique_and_sort_by_creation_time() -> None:
    ids = []
    for _ in range(5):
        ids.append(message_id())
        await asyncio.sleep(0.002)
    assert ids == sorted(ids)
    assert len({message_id() for _ in range(10_000)}) == 10_000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


async def test_a_new_sqlite_database_has_small_pages(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite3"
    store = await Store.open(f"sqlite:///{path}")
    await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA page_size").fetchone()[0] == SQLITE_PAGE_SIZE == 1024
