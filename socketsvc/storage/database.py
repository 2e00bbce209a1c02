"""Engine construction: turns DATABASE_URL into a tuned async SQLAlchemy engine."""

from __future__ import annotations

import functools
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from socketsvc.settings import sqlite_path


def async_url(database_url: str) -> tuple[str, dict[str, Any]]:
    """The SQLAlchemy async URL and connect args for a `sqlite:` or `postgres(ql):` URL."""
    parts = urlsplit(database_url)
    if parts.scheme == "sqlite":
        return "sqlite+aiosqlite:///" + database_url.removeprefix("sqlite:///"), {"timeout": 30}
    query = dict(parse_qsl(parts.query))
    connect_args: dict[str, Any] = {}
    sslmode = query.pop("sslmode", None)
    if sslmode and sslmode != "disable":
        # libpq's sslmode (Heroku adds it) means asyncpg's `ssl`.
        connect_args["ssl"] = "require" if sslmode in ("require", "prefer", "allow") else sslmode
    url = urlunsplit(("postgresql+asyncpg", parts.netloc, parts.path, urlencode(query), ""))
    return url, connect_args


SQLITE_PAGE_SIZE = 1024
DEFAULT_SQLITE_BUSY_TIMEOUT = 30.0
"""Seconds a SQLite write waits for a lock another process holds (SQLITE_BUSY_TIMEOUT); then
"database is locked", an outage: `unavailable`."""


def sqlite_pragmas(
    dbapi_connection: Any, _record: Any, busy_timeout: float = DEFAULT_SQLITE_BUSY_TIMEOUT
) -> None:
    cursor = dbapi_connection.cursor()
    # Only takes effect while the database file is still empty (a new database). Every commit
    # writes each page it changed to the WAL, and a message changes a few index pages at random
    # places (by conversation): 1 KiB pages write 7 KiB per message, 4 KiB pages 17 KiB
    # (docs/operations.md, "SQLite").
    cursor.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: every commit is fsynced before the message is acknowledged.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={round(busy_timeout * 1000)}")
    # Checkpoints run in the background, not inside a commit (see storage/checkpoints.py).
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


def create_engine(
    database_url: str, busy_timeout: float = DEFAULT_SQLITE_BUSY_TIMEOUT
) -> AsyncEngine:
    """An engine for `database_url`; SQLite runs in WAL mode with full fsync on commit and waits
    `busy_timeout` seconds for another process's lock."""
    url, connect_args = async_url(database_url)
    if url.startswith("sqlite"):
        path = sqlite_path(database_url)
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args=connect_args, pool_size=5, max_overflow=5)
        sa.event.listen(
            engine.sync_engine,
            "connect",
            functools.partial(sqlite_pragmas, busy_timeout=busy_timeout),
        )
        return engine
    return create_async_engine(
        url,
        connect_args=connect_args,
        pool_size=10,
        max_overflow=10,
        pool_recycle=1800,
        pool_timeout=10,
    )
