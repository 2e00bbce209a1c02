"""`storage.outages`: which real driver errors are outages, and an outage logged twice.

The errors are caused for real wherever that can be done: a closed port, a PostgreSQL database
refusing connections, a terminated backend, an exhausted pool, a SQLite file locked by another
connection, a journal that cannot be read.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from socketsvc.domain.errors import StorageUnavailable, Unavailable
from socketsvc.storage.database import async_url
from socketsvc.storage.outages import OUTAGES, describe, is_outage
from tests.conftest import PG_ADMIN_URL

on_postgres = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


@pytest.fixture(autouse=True)
def no_outage() -> Iterator[None]:
    OUTAGES.reset()
    yield
    OUTAGES.reset()


async def raised(operation: Awaitable[Any]) -> BaseException:
    """The exception `operation` raises (it must raise)."""
    try:
        await operation
    except Exception as exc:
        return exc
    raise AssertionError("no exception")


def raised_now(operation: Callable[[], Any]) -> BaseException:
    try:
        operation()
    except Exception as exc:
        return exc
    raise AssertionError("no exception")


async def select(url: str, sql: str = "SELECT 1", **engine_args: Any) -> None:
    engine = create_async_engine(url, **engine_args)
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text(sql))
    finally:
        await engine.dispose()


def sa_url(database_url: str) -> str:
    return async_url(database_url)[0]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def admin() -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        yield conn
    finally:
        await conn.close()


# PostgreSQL -----------------------------------------------------------------------------------


async def test_a_closed_port_is_an_outage() -> None:
    exc = await raised(select(f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port()}/x"))
    assert isinstance(exc, ConnectionRefusedError)
    assert is_outage(exc)


@on_postgres
async def test_a_database_not_accepting_connections_is_an_outage(
    database_url: str, admin: asyncpg.Connection
) -> None:
    name = database_url.rpartition("/")[2]
    await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    try:
        exc = await raised(select(sa_url(database_url)))
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    # The failure of the bug report: 55000 wrapped in a plain DBAPIError.
    assert type(exc) is sa.exc.DBAPIError
    assert isinstance(exc.orig.__cause__, asyncpg.exceptions.ObjectNotInPrerequisiteStateError)
    assert is_outage(exc)
    assert describe(exc) == (
        "DBAPIError: asyncpg.ObjectNotInPrerequisiteStateError (55000):"
        f' database "{name}" is not currently accepting connections'
    )


@on_postgres
async def test_a_terminated_backend_is_an_outage(
    database_url: str, admin: asyncpg.Connection
) -> None:
    name = database_url.rpartition("/")[2]

    async def terminate_soon() -> None:
        await asyncio.sleep(0.5)
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )

    # through SQLAlchemy, mid-statement: 57P01 admin shutdown, the connection invalidated
    killer = asyncio.create_task(terminate_soon())
    exc = await raised(select(sa_url(database_url), "SELECT pg_sleep(5)"))
    await killer
    assert isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated
    assert is_outage(exc)
    assert describe(exc).startswith(
        "connection lost: DBAPIError: asyncpg.ConnectionDoesNotExistError (08003): connection was"
        " closed in the middle of operation: terminating connection due to administrator command"
    )

    # on the driver itself, as the group commit uses it: mid-statement, then the closed connection
    raw = await asyncpg.connect(database_url)
    killer = asyncio.create_task(terminate_soon())
    mid = await raised(raw.fetch("SELECT pg_sleep(5)"))
    await killer
    assert isinstance(mid, asyncpg.ConnectionDoesNotExistError) and is_outage(mid)
    closed = await raised(raw.fetch("SELECT 1"))
    assert isinstance(closed, asyncpg.InterfaceError) and is_outage(closed)
    await raw.close()


@on_postgres
async def test_the_pools_timeout_is_an_outage(database_url: str) -> None:
    engine = create_async_engine(
        sa_url(database_url), pool_size=1, max_overflow=0, pool_timeout=0.1
    )
    try:
        async with engine.connect():
            exc = await raised(engine.connect().start())
    finally:
        await engine.dispose()
    assert isinstance(exc, sa.exc.TimeoutError)
    assert is_outage(exc)


@on_postgres
async def test_errors_in_queries_are_not_outages(database_url: str) -> None:
    url = sa_url(database_url)
    syntax = await raised(select(url, "SELEC 1"))
    assert isinstance(syntax, sa.exc.ProgrammingError) and not is_outage(syntax)
    # 55000 from a statement (not a connection attempt) is a bug, not a refusal
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text("CREATE SEQUENCE s"))
            await conn.execute(sa.text("CREATE TABLE u (x int PRIMARY KEY)"))
            await conn.execute(sa.text("INSERT INTO u VALUES (1)"))
        async with engine.connect() as conn:
            currval = await raised(conn.execute(sa.text("SELECT currval('s')")))
        async with engine.connect() as conn:
            duplicate = await raised(conn.execute(sa.text("INSERT INTO u VALUES (1)")))
    finally:
        await engine.dispose()
    assert getattr(currval.__cause__, "sqlstate", None) == "55000"
    assert not is_outage(currval)
    assert isinstance(duplicate, sa.exc.IntegrityError) and not is_outage(duplicate)


# SQLite ---------------------------------------------------------------------------------------


@pytest.fixture
def sqlite_file(tmp_path: Path) -> str:
    path = str(tmp_path / "chat.sqlite3")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    return path


async def test_a_locked_sqlite_file_is_an_outage(sqlite_file: str) -> None:
    holder = sqlite3.connect(sqlite_file, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        waiter = sqlite3.connect(sqlite_file, timeout=0, isolation_level=None)
        locked = raised_now(lambda: waiter.execute("BEGIN IMMEDIATE"))
        waiter.close()
        engine = create_async_engine(
            f"sqlite+aiosqlite:///{sqlite_file}", connect_args={"timeout": 0}
        )
        try:
            async with engine.begin() as conn:
                wrapped = await raised(conn.execute(sa.text("INSERT INTO t VALUES (1)")))
        finally:
            await engine.dispose()
    finally:
        holder.close()
    assert isinstance(locked, sqlite3.OperationalError)
    assert str(locked) == "database is locked" and is_outage(locked)
    assert isinstance(wrapped, sa.exc.OperationalError) and is_outage(wrapped)
    assert (
        describe(wrapped)
        == "OperationalError: sqlite3.OperationalError (SQLITE_BUSY): database is locked"
    )


def test_sqlite_disk_errors_are_outages(tmp_path: Path) -> None:
    # a hot journal that cannot be read: SQLITE_IOERR_READ ("disk I/O error")
    path = str(tmp_path / "io.sqlite3")
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    os.mkdir(path + "-journal")
    io_error = raised_now(lambda: sqlite3.connect(path).execute("INSERT INTO t VALUES (1)"))
    assert getattr(io_error, "sqlite_errorname", None) == "SQLITE_IOERR_READ"
    assert is_outage(io_error)
    # a directory that does not exist: SQLITE_CANTOPEN
    cannot_open = raised_now(lambda: sqlite3.connect(str(tmp_path / "no" / "x.db")))
    assert getattr(cannot_open, "sqlite_errorname", None) == "SQLITE_CANTOPEN"
    assert is_outage(cannot_open)


async def test_sqlite_errors_in_queries_are_not_outages(sqlite_file: str) -> None:
    # sqlite3 raises OperationalError for these too (and SQLAlchemy wraps them in its own
    # OperationalError): the type alone does not tell an outage from a bug
    conn = sqlite3.connect(sqlite_file)
    syntax = raised_now(lambda: conn.execute("SELEC 1"))
    missing = raised_now(lambda: conn.execute("SELECT * FROM nowhere"))
    conn.close()
    url = f"sqlite+aiosqlite:///{sqlite_file}"
    wrapped = [await raised(select(url, "SELEC 1")), await raised(select(url, "SELECT * FROM no"))]
    for exc in (syntax, missing):
        assert isinstance(exc, sqlite3.OperationalError) and not is_outage(exc)
    for exc in wrapped:
        assert isinstance(exc, sa.exc.OperationalError) and not is_outage(exc)


# the record -----------------------------------------------------------------------------------


def test_bugs_are_not_outages() -> None:
    assert not is_outage(ValueError("a bug"))
    assert not is_outage(KeyError("x"))
    # an error raised while handling an outage is not an outage itself
    try:
        try:
            raise ConnectionRefusedError(111, "refused")
        except ConnectionRefusedError:
            raise RuntimeError("bug in the handler")  # noqa: B904 (the implicit context)
    except RuntimeError as exc:
        assert not is_outage(exc)


async def refused_connection() -> BaseException:
    """A real driver failure: asyncpg connecting to a closed port."""
    return await raised(asyncpg.connect(f"postgresql://postgres@127.0.0.1:{closed_port()}/x"))


def fail(exc: BaseException, kind: Any = "read") -> None:
    with pytest.raises(StorageUnavailable), OUTAGES.guard(kind):
        raise exc


async def test_an_outage_is_one_warning_when_it_starts_and_one_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="socketsvc.storage.outages")
    exc = await refused_connection()
    for _ in range(50):
        fail(exc)
        OUTAGES.refused("event")
    OUTAGES.refused("connect")
    assert OUTAGES.in_progress
    with OUTAGES.guard("read"):
        pass
    assert not OUTAGES.in_progress
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        f"database outage: {describe(exc)}; answering unavailable until the database answers again",
        warnings[1].getMessage(),
    ]
    assert describe(exc).startswith("ConnectionRefusedError: ")
    end = warnings[1].getMessage()
    assert end.startswith("database outage over after ")
    assert "50 events and 1 connects refused with unavailable, 50 database operations failed" in (
        end
    )
    assert all(r.exc_info is None for r in caplog.records)
    assert sum(r.levelno == logging.DEBUG for r in caplog.records) == 49


async def test_only_a_kind_that_failed_ends_the_outage(caplog: pytest.LogCaptureFixture) -> None:
    """SQLite locked by another process: writes fail while reads (WAL) still succeed."""
    fail(await refused_connection(), "write")
    with OUTAGES.guard("read"):
        pass
    assert OUTAGES.in_progress
    with OUTAGES.guard("write"):
        pass
    assert not OUTAGES.in_progress


async def test_a_late_failure_of_an_operation_begun_in_the_outage_starts_no_new_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exc = await refused_connection()
    fail(exc)
    slow = OUTAGES.guard("read")
    slow.__enter__()  # begun during the outage
    with OUTAGES.guard("read"):
        pass  # the database is back
    with pytest.raises(StorageUnavailable):
        slow.__exit__(type(exc), exc, exc.__traceback__)
    assert not OUTAGES.in_progress
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 2


def test_other_errors_pass_through_the_guard_unchanged() -> None:
    bug = ValueError("a bug")
    with pytest.raises(ValueError) as caught, OUTAGES.guard("read"):
        raise bug
    assert caught.value is bug
    already = Unavailable("shutting down")
    with pytest.raises(Unavailable) as again, OUTAGES.guard("write"):
        raise already
    assert again.value is already
    assert not OUTAGES.in_progress
