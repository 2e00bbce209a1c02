"""Schema versions: Alembic migrations (storage/migrations) run on the service's own engine.

`prepare` runs when the store opens: on SQLite (the single-process default) it migrates to the
newest revision; on PostgreSQL it creates the schema of an empty database but refuses a schema
older than the code (`socketsvc migrate`, the Procfile's release phase, upgrades it). A schema
newer than the code, or tables that are not the baseline, are refused on both. A database made
by `metadata.create_all` before migrations existed (tables, no `alembic_version`) is recognised
and stamped as the baseline. See docs/operations.md, "Schema migrations".
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from socketsvc.storage.tables import metadata

MIGRATIONS = Path(__file__).with_name("migrations")
BASELINE = "0001_baseline"
HEAD = "0003_bot_deliveries"
"""The newest revision this code knows (a test checks it is the migrations' only head)."""
ADVISORY_LOCK = 7460113
"""PostgreSQL: processes that open or migrate the database at the same time take turns."""

BASELINE_TABLES: dict[str, frozenset[str]] = {
    "visitors": frozenset({"id", "name", "created_at"}),
    "conversations": frozenset(
        {
            "id",
            "visitor_id",
            "state",
            "last_seq",
            "agent_id",
            "agent_name",
            "queued_at",
            "bot_fallbacks",
            "human_offered",
            "created_at",
            "updated_at",
        }
    ),
    "messages": frozenset(
        {
            "id",
            "conversation_id",
            "seq",
            "client_id",
            "sender_role",
            "sender_id",
            "sender_name",
            "text",
            "created_at",
        }
    ),
    "read_marks": frozenset({"conversation_id", "reader_role", "reader_id", "seq", "updated_at"}),
    "agents": frozenset({"id", "name", "status", "last_seen_at"}),
    "agent_connections": frozenset({"sid", "agent_id", "node_id", "seen_at"}),
}
"""The tables and columns of the pre-migration schema (what release 86c724c's create_all made):
an unversioned database must have exactly these to be stamped as the baseline."""


class SchemaError(Exception):
    """The database's schema cannot be served by this code; the message says what to do."""


Mode = Literal["migrate", "start-sqlite", "start-postgres"]


@dataclasses.dataclass(frozen=True)
class Outcome:
    before: tuple[str, ...]
    """Revisions the database was at (empty: no schema, or unversioned)."""
    after: tuple[str, ...]
    stamped: bool = False
    """An unversioned pre-migration schema was stamped as the baseline."""

    @property
    def changed(self) -> bool:
        return self.stamped or self.before != self.after

    def describe(self) -> str:
        after = ", ".join(self.after)
        if not self.changed:
            return f"schema up to date at revision {after}: nothing to do"
        if self.stamped:
            text = f"existing schema recognised as the baseline {BASELINE} and stamped"
            return text if self.after == (BASELINE,) else f"{text}; upgraded to {after}"
        if not self.before:
            return f"schema created at revision {after}"
        return f"schema upgraded from {', '.join(self.before)} to {after}"


def alembic_config(script_location: Path = MIGRATIONS) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    return config


def _current(conn: Connection) -> tuple[str, ...]:
    return tuple(sorted(MigrationContext.configure(conn).get_current_heads()))


def _app_tables(conn: Connection) -> set[str]:
    return set(sa.inspect(conn).get_table_names()) - {"alembic_version"}


def _check_baseline(conn: Connection) -> None:
    """Raise unless the unversioned tables are exactly the pre-migration schema."""
    inspector = sa.inspect(conn)
    found = {
        name: frozenset(column["name"] for column in inspector.get_columns(name))
        for name in _app_tables(conn)
    }
    if found != BASELINE_TABLES:
        missing = sorted(set(BASELINE_TABLES) - set(found))
        extra = sorted(set(found) - set(BASELINE_TABLES))
        common = set(found) & set(BASELINE_TABLES)
        differ = sorted(n for n in common if found[n] != BASELINE_TABLES[n])
        raise SchemaError(
            "the database has tables but no alembic_version, and they are not socketsvc's "
            f"baseline schema (missing tables: {missing or 'none'}; unknown tables: "
            f"{extra or 'none'}; tables with other columns: {differ or 'none'}); point "
            "DATABASE_URL at socketsvc's database or an empty one"
        )


def _prepare(conn: Connection, mode: Mode, config: Config) -> Outcome:
    script = ScriptDirectory.from_config(config)
    heads = tuple(sorted(script.get_heads()))
    before = _current(conn)
    for revision in before:
        try:
            known = script.get_revision(revision)
        except CommandError:
            known = None
        if known is None:
            raise SchemaError(
                f"the database schema is at revision {revision}, newer than this code "
                f"(which knows up to {', '.join(heads)}): deploy the newer socketsvc release, "
                "or downgrade the database with that release before running this one"
            )
    stamped = False
    if not before and _app_tables(conn):
        _check_baseline(conn)
        config.attributes["connection"] = conn
        command.stamp(config, BASELINE)
        stamped = True
        before = (BASELINE,)
    if before and before != heads and mode == "start-postgres":
        raise SchemaError(
            f"the database schema is at revision {', '.join(before)}, older than this code "
            f"needs ({', '.join(heads)}): run `socketsvc migrate` (the Procfile's release "
            "phase does) before starting the service"
        )
    if before != heads:
        config.attributes["connection"] = conn
        command.upgrade(config, "heads")
    after = _current(conn)
    return Outcome(() if stamped else before, after, stamped)


async def prepare(conn: AsyncConnection, mode: Mode, config: Config | None = None) -> Outcome:
    """Bring the schema on `conn` (in a transaction the caller commits) to the code's revision,
    as `mode` allows; raise `SchemaError` when it cannot."""
    if conn.dialect.name != "sqlite":
        await conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({ADVISORY_LOCK})"))
    return await conn.run_sync(_prepare, mode, config or alembic_config())


def diff(conn: Connection) -> list[object]:
    """What differs between the database on `conn` and `tables.metadata` (empty: nothing)."""
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    result: list[object] = compare_metadata(context, metadata)
    return result
