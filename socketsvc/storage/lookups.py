"""The read of a reconnecting visitor's handshake, in one statement on a connection of its own.

After a deploy or a lost node every visitor reconnects at once, and each handshake reads the
erasure marker, the visitor's latest conversation, its read marks and its queue position. Four
queries through SQLAlchemy's pool cost several times the rest of the handshake; this is one
statement on the driver:

- SQLite: a stdlib `sqlite3` connection of its own, read-only (`query_only`), run on the event
  loop's thread as the appender's statements are (an indexed lookup in SQLite's page cache takes
  tens of microseconds; a worker thread hand-over costs more). `busy_timeout` 0: should a read
  ever find the database locked (WAL readers normally never wait), `SqliteLookups.read` raises
  `Busy` and the store falls back to its pooled connections, so the loop never waits.
- PostgreSQL: up to `LOOKUP_CONNECTIONS` asyncpg connections held between lookups (a pool
  check-out and check-in, with its rollback, costs more than the lookup), one lookup at a time
  on each; a connection is dropped after an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from socketsvc.domain.models import Message, Returning, State
from socketsvc.storage.appends import (
    CONVERSATION_COLUMNS,
    MESSAGE_COLUMNS,
    conversation_from_row,
    message_from_row,
    sqlite_moment,
)

_COLUMNS = ", ".join(f"c.{name}" for name in CONVERSATION_COLUMNS)
_QUEUED = State.QUEUED.value
LOOKUP_CONNECTIONS = 4
"""PostgreSQL connections the lookups hold at most (the pool's size is the settings')."""


def _statement(erased: str, marks: str, suffix: str, mark: str, latest: str) -> str:
    """The lookup: the erasure marker `erased`, the conversation `latest` picks, its read
    marks aggregated by `marks`, and its queue position."""
    return f"""
SELECT {erased},
       {_COLUMNS},
       (SELECT {marks} FROM read_marks WHERE conversation_id = c.id){suffix},
       CASE WHEN c.state = '{_QUEUED}' AND c.queued_at IS NOT NULL THEN
         (SELECT count(*) FROM conversations q WHERE q.state = '{_QUEUED}'
            AND (q.queued_at < c.queued_at OR (q.queued_at = c.queued_at AND q.id <= c.id)))
       END
  FROM (SELECT 1) AS one
  LEFT JOIN (SELECT * FROM conversations WHERE {latest}) AS c ON {mark}
"""


_SQLITE_MARKS = "json_group_array(json_array(reader_role, reader_id, seq))"
_PG_MARKS = "json_agg(json_build_array(reader_role, reader_id, seq))"
_LATEST = "visitor_id = {p} ORDER BY created_at DESC LIMIT 1"
_SQLITE = _statement(
    "EXISTS (SELECT 1 FROM erased_visitors WHERE id = ?1)",
    _SQLITE_MARKS,
    "",
    "1",
    _LATEST.format(p="?1"),
)
_PG = _statement(
    "EXISTS (SELECT 1 FROM erased_visitors WHERE id = $1)",
    _PG_MARKS,
    "::text",
    "true",
    _LATEST.format(p="$1"),
)
_SQLITE_BY_ID = _statement("0", _SQLITE_MARKS, "", "1", "id = ?1")
_PG_BY_ID = _statement("false", _PG_MARKS, "::text", "true", "id = $1")
_MESSAGES = ", ".join(MESSAGE_COLUMNS)
_SQLITE_AFTER = (
    f"SELECT {_MESSAGES} FROM messages WHERE conversation_id = ? AND seq > ? ORDER BY seq LIMIT ?"
)
_PG_AFTER = (
    f"SELECT {_MESSAGES} FROM messages WHERE conversation_id = $1 AND seq > $2"
    " ORDER BY seq LIMIT $3"
)


def _same(moment: Any) -> Any:
    return moment


class Busy(Exception):
    """SQLite was locked for this read: use the pooled path instead."""


def _returning(row: Sequence[Any], moment: Any) -> Returning:
    width = len(CONVERSATION_COLUMNS)
    conversation = None if row[1] is None else conversation_from_row(row[1 : 1 + width], moment)
    marks_json = row[1 + width]
    marks = sorted(
        (str(role), str(reader), int(seq)) for role, reader, seq in json.loads(marks_json or "[]")
    )
    position = row[2 + width]
    return Returning(bool(row[0]), conversation, marks, None if position is None else int(position))


def _busy(exc: sqlite3.OperationalError) -> Exception:
    """`Busy` for a locked database (the caller falls back), else the error itself."""
    return Busy() if "locked" in str(exc) or "busy" in str(exc) else exc


class SqliteLookups:
    """Lookups on a read-only stdlib sqlite3 connection, on the calling (loop) thread."""

    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA busy_timeout=0")
        self._conn.execute("PRAGMA query_only=1")

    def read(self, visitor_id: str) -> Returning:
        try:
            row = self._conn.execute(_SQLITE, (visitor_id,)).fetchone()
        except sqlite3.OperationalError as exc:
            raise _busy(exc) from exc
        return _returning(row, sqlite_moment)

    def sync(
        self, conversation_id: str, after_seq: int, limit: int
    ) -> tuple[list[Message], Returning]:
        """Messages after `after_seq`, then the conversation as it is after them (read marks,
        queue position), in one read transaction."""
        conn = self._conn
        try:
            conn.execute("BEGIN")
            try:
                rows = conn.execute(_SQLITE_AFTER, (conversation_id, after_seq, limit)).fetchall()
                row = conn.execute(_SQLITE_BY_ID, (conversation_id,)).fetchone()
            finally:
                conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            raise _busy(exc) from exc
        return [message_from_row(r, sqlite_moment) for r in rows], _returning(row, sqlite_moment)

    def close(self) -> None:
        self._conn.close()


class PgLookups:
    """Lookups on up to `size` asyncpg connections held between lookups, made from the store's
    pool (one at a time was the reconnect storm's limit on PostgreSQL: each handshake waited
    for the previous one's round trip)."""

    def __init__(self, size: int = LOOKUP_CONNECTIONS) -> None:
        self._slots = asyncio.Semaphore(size)
        self._idle: list[tuple[Any, Any]] = []
        """(SQLAlchemy connection, its asyncpg connection) of each held connection not in use."""
        self._generation = 0
        """Bumped by `close()`: a connection in use then is dropped when its lookup ends."""

    async def read(self, engine: Any, visitor_id: str) -> Returning:
        async with self._slots:
            held, generation = await self._take(engine)
            try:
                row = await held[1].fetchrow(_PG, visitor_id)
            except Exception:
                await _drop(held)
                raise
            await self._give_back(held, generation)
        return _returning(row, _same)

    async def sync(
        self, engine: Any, conversation_id: str, after_seq: int, limit: int
    ) -> tuple[list[Message], Returning]:
        """Messages after `after_seq`, then the conversation as it is after them."""
        async with self._slots:
            held, generation = await self._take(engine)
            try:
                rows = await held[1].fetch(_PG_AFTER, conversation_id, after_seq, limit)
                row = await held[1].fetchrow(_PG_BY_ID, conversation_id)
            except Exception:
                await _drop(held)
                raise
            await self._give_back(held, generation)
        return [message_from_row(r, _same) for r in rows], _returning(row, _same)

    async def _take(self, engine: Any) -> tuple[tuple[Any, Any], int]:
        generation = self._generation
        if self._idle:
            return self._idle.pop(), generation
        conn = await engine.connect()
        raw = await conn.get_raw_connection()
        return (conn, raw.driver_connection), generation

    async def _give_back(self, held: tuple[Any, Any], generation: int) -> None:
        if generation == self._generation:
            self._idle.append(held)
        else:
            await _drop(held)

    async def close(self) -> None:
        """Drop every held connection (those in use when their lookup ends)."""
        self._generation += 1
        idle, self._idle = self._idle, []
        for held in idle:
            await _drop(held)


async def _drop(held: tuple[Any, Any]) -> None:
    with contextlib.suppress(Exception):
        await held[0].invalidate()
    with contextlib.suppress(Exception):
        await held[0].close()
