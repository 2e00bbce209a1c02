"""Alembic's environment: runs on the connection `socketsvc.storage.schema` hands it (the
service's own engine, `socketsvc.storage.database.create_engine`), or, for the `alembic` command
line (a config with `script_location` = this directory), on an engine made from DATABASE_URL
the same way (Alembic's async cookbook: `run_sync` on an async connection)."""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection

from socketsvc.storage.database import create_engine
from socketsvc.storage.tables import metadata

config = context.config


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things: later revisions use batch_alter_table.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_with_own_engine(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(run_on)
            await conn.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():  # pragma: no cover - the service never renders SQL scripts
    raise SystemExit("socketsvc migrations run online only: `socketsvc migrate`")
connection = config.attributes.get("connection")
if connection is not None:
    run_on(connection)
else:  # pragma: no cover - the `alembic` command line
    url = config.get_main_option("sqlalchemy.url") or os.environ.get(
        "DATABASE_URL", "sqlite:///socketsvc.sqlite3"
    )
    asyncio.run(run_with_own_engine(url))
