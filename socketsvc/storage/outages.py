"""Database outages: which failures are the database being unreachable, and logging them once.

The storage layer is the only place that knows the drivers' exception types. Every way into the
database (`Store.read`, `Store.write`, the group-commit appends, readiness' ping) runs inside
`guard()`, which turns a connection-level failure into `StorageUnavailable` (an `unavailable`
ack, a refused connect), so domain and namespace code never see SQLAlchemy, asyncpg or sqlite3
exceptions for them. Anything else (a programming error, an unexpected integrity error) passes
through unchanged and stays a bug: `internal`, with a traceback.

An outage is logged twice: one WARNING when the first operation fails (with the cause, no
traceback) and one when an operation of the kind that failed (a read, or a write) next succeeds
(how long it lasted, how many events and connects were refused). Each failure in between is a
DEBUG line. One record per process, like the metrics.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Literal

import asyncpg
import sqlalchemy.exc

from socketsvc.domain.errors import StorageUnavailable, Unavailable
from socketsvc.runtime import metrics

log = logging.getLogger(__name__)

Kind = Literal["read", "write"]
Refusal = Literal["event", "connect"]

PG_OUTAGE_CLASSES = frozenset({"08", "53", "57", "58"})
"""SQLSTATE classes of a database that cannot serve us: connection exception, insufficient
resources (too many connections, disk full), operator intervention (admin/crash shutdown,
cannot connect now, query canceled or timed out), system error (I/O)."""
PG_NOT_ACCEPTING = "55000"
"""object_not_in_prerequisite_state: `database "x" is not currently accepting connections`
(ALLOW_CONNECTIONS false) when it comes from a connection attempt; from a statement it is a bug."""
SQLITE_OUTAGE_CODES = frozenset(
    {
        sqlite3.SQLITE_BUSY,  # database is locked (by another process, past the busy timeout)
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_IOERR,  # disk I/O error (and its extended codes)
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PROTOCOL,
    }
)


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` means the database is unreachable or refusing us (not a bug in a query).

    Follows SQLAlchemy's `orig` and explicit causes (`raise ... from`), not the implicit
    context: an error raised while handling an outage is not an outage itself.
    """
    from_connect = False
    for link in _chain(exc):
        if isinstance(link, sqlalchemy.exc.DBAPIError):
            if link.connection_invalidated:
                return True
            # No statement: raised on the way to a connection (connect, begin, commit).
            from_connect = from_connect or link.statement is None
        if isinstance(link, sqlalchemy.exc.TimeoutError | sqlalchemy.exc.DisconnectionError):
            return True  # the pool's timeout; a connection found dead at checkout
        if isinstance(link, OSError):  # ConnectionRefusedError, resets, TimeoutError, DNS
            return True
        if isinstance(link, asyncpg.InterfaceError) and "connection is closed" in str(link):
            return True  # asyncpg's own wording, as SQLAlchemy's asyncpg dialect checks it
        state = getattr(link, "sqlstate", None)
        if isinstance(state, str) and (
            state[:2] in PG_OUTAGE_CLASSES or (state == PG_NOT_ACCEPTING and from_connect)
        ):
            return True
        code = getattr(link, "sqlite_errorcode", None)  # & 0xFF: an extended code's primary
        if isinstance(link, sqlite3.Error) and isinstance(code, int):
            return code & 0xFF in SQLITE_OUTAGE_CODES
    return False


def describe(exc: BaseException) -> str:
    """One line naming the driver's exception, e.g. `DBAPIError:
    asyncpg.ObjectNotInPrerequisiteStateError (55000): database "chat" is not currently accepting
    connections`; `connection lost: ...` when SQLAlchemy found the connection dead (asyncpg's own
    error is then often obscure)."""
    cause = exc
    for link in _chain(exc):
        cause = link
        if not type(link).__module__.startswith("sqlalchemy"):
            break
    code = getattr(cause, "sqlstate", None) or getattr(cause, "sqlite_errorname", None)
    package = type(cause).__module__.partition(".")[0]
    name = type(cause).__name__ if package == "builtins" else f"{package}.{type(cause).__name__}"
    name += f" ({code})" if code else ""
    if cause is not exc:
        name = f"{type(exc).__name__}: {name}"
    if getattr(exc, "connection_invalidated", False):
        name = f"connection lost: {name}"
    text = " ".join(str(cause).split())
    return f"{name}: {text[:300]}" if text else name


class _Described:
    """`describe(exc)` when a log record is formatted (DEBUG lines are usually dropped)."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def __str__(self) -> str:
        return describe(self.exc)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        orig = getattr(link, "orig", None)
        link = orig if isinstance(orig, BaseException) else link.__cause__


class Outages:
    """The outage in progress, if any: since when, why, and what it refused."""

    def __init__(self) -> None:
        self.recovered_at = float("-inf")
        """time.monotonic() when the last outage ended."""
        self._clear()

    def _clear(self) -> None:
        self.started: float | None = None
        """time.monotonic() of the first failure; None while the database answers."""
        self.cause = ""
        self.last_error: BaseException | None = None
        self.failed_kinds: set[Kind] = set()
        self.failures = 0
        self.refusals: dict[Refusal, int] = {"event": 0, "connect": 0}

    @property
    def in_progress(self) -> bool:
        return self.started is not None

    def reset(self) -> None:
        """Forget any outage in progress, without logging (tests)."""
        self._clear()
        self.recovered_at = float("-inf")
        metrics.DATABASE_OUTAGE.set(0)

    def failed(self, exc: BaseException, kind: Kind, began: float) -> None:
        """An operation of `kind`, begun at `began`, failed with an outage error."""
        if self.started is None:
            if began < self.recovered_at:
                # Begun while the last outage lasted and only failing now: part of that one.
                log.debug(
                    "database %s begun during the last outage failed: %s", kind, _Described(exc)
                )
                return
            self.started = time.monotonic()
            self.cause = describe(exc)
            metrics.DATABASE_OUTAGE.set(1)
            log.warning(
                "database outage: %s; answering unavailable until the database answers again",
                self.cause,
            )
        else:
            log.debug("database %s failed during the outage: %s", kind, _Described(exc))
        self.last_error = exc
        self.failed_kinds.add(kind)
        self.failures += 1

    def succeeded(self, kind: Kind) -> None:
        """An operation of `kind` succeeded: the end of an outage in which that kind failed."""
        if self.started is None or kind not in self.failed_kinds:
            return
        now = time.monotonic()
        log.warning(
            "database outage over after %.1f s: %d events and %d connects refused with"
            " unavailable, %d database operations failed; last error: %s",
            now - self.started,
            self.refusals["event"],
            self.refusals["connect"],
            self.failures,
            "none" if self.last_error is None else describe(self.last_error),
        )
        metrics.DATABASE_OUTAGE.set(0)
        self._clear()
        self.recovered_at = now

    def refused(self, what: Refusal) -> None:
        """An event or a connect was answered `unavailable` because of the database."""
        metrics.DATABASE_REFUSALS.labels(kind=what).inc()
        if self.started is not None:
            self.refusals[what] += 1

    def guard(self, kind: Kind) -> Guard:
        """`with guard(kind):` around one database operation: an outage error comes out as
        `StorageUnavailable` (recorded); success may end the outage in progress."""
        return Guard(self, kind)


class Guard:
    """The context manager of `Outages.guard` (a class: a third of a generator-based one's cost,
    and every message's append runs in one)."""

    __slots__ = ("_began", "_kind", "_outages")

    def __init__(self, outages: Outages, kind: Kind) -> None:
        self._outages = outages
        self._kind = kind
        self._began = 0.0

    def __enter__(self) -> None:
        self._began = time.monotonic()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        outages = self._outages
        if exc is None:
            if outages.started is not None:
                outages.succeeded(self._kind)
            return
        if isinstance(exc, Unavailable) or not isinstance(exc, Exception) or not is_outage(exc):
            return  # raised as it is: translated already (an inner guard), cancelled, or a bug
        outages.failed(exc, self._kind, self._began)
        raise StorageUnavailable() from exc


OUTAGES = Outages()
"""This process's record (the database is the process's one database)."""
refused = OUTAGES.refused
