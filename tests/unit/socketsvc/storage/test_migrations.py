"""Schema migrations (storage/schema.py, storage/migrations): the baseline is exactly the schema
`metadata.create_all` makes, pre-migration databases are stamped, newer/older schemas refused."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from socketsvc.storage import schema, tables
from socketsvc.storage.database import create_engine
from socketsvc.storage.schema import BASELINE, HEAD, SchemaError, alembic_config, prepare
from socketsvc.storage.store import Store
from socketsvc.storage.tables import metadata

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _dump(conn: sa.Connection) -> dict[str, object]:
    """Tables, columns (name, type, nullable), keys, unique constraints and indexes, reflected."""
    inspector = sa.inspect(conn)
    out: dict[str, object] = {}
    for table in sorted(set(inspector.get_table_names()) - {"alembic_version"}):
        out[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)
            ],
            "pk": inspector.get_pk_constraint(table)["constrained_columns"],
            "fks": sorted(
                (tuple(f["constrained_columns"]), f["referred_table"])
                for f in inspector.get_foreign_keys(table)
            ),
            "unique": sorted(
                (u["name"], tuple(u["column_names"]))
                for u in inspector.get_unique_constraints(table)
            ),
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                for i in inspector.get_indexes(table)
                if not i["name"].startswith("sqlite_autoindex")
            ),
        }
    return out


def _create_baseline_tables(conn: sa.Connection) -> None:
    """What a release before migrations made: `create_all` of the baseline's tables."""
    metadata.create_all(conn, tables=[metadata.tables[name] for name in schema.BASELINE_TABLES])


async def _run(url: str, fn: object) -> object:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            return await conn.run_sync(fn)  # type: ignore[arg-type]
    finally:
        await engine.dispose()


async def _version(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(sa.text("SELECT version_num FROM alembic_version"))
            return [row[0] for row in rows]
    finally:
        await engine.dispose()


async def has_alembic_version(url: str) -> bool:
    return bool(await _run(url, lambda c: "alembic_version" in sa.inspect(c).get_table_names()))


async def _migrate(url: str, mode: schema.Mode = "migrate", **kw: object) -> schema.Outcome:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            return await prepare(conn, mode, **kw)  # type: ignore[arg-type]
    finally:
        await engine.dispose()


async def test_baseline_on_an_empty_database_is_what_create_all_makes(
    database_url: str, tmp_path: Path
) -> None:
    outcome = await _migrate(database_url)
    assert outcome.describe() == f"schema created at revision {HEAD}"
    assert await _run(database_url, schema.diff) == []
    assert await _version(database_url) == [HEAD]
    migrated = await _run(database_url, _dump)
    # The same reflection of a database made by create_all (a second, fresh one).
    if database_url.startswith("sqlite"):
        other = f"sqlite:///{tmp_path / 'create_all.sqlite3'}"
        await _run(other, metadata.create_all)
        made = await _run(other, _dump)
    else:
        # PostgreSQL: the same database, after dropping everything and running create_all.
        def recreate(conn: sa.Connection) -> object:
            metadata.drop_all(conn)
            conn.execute(sa.text("DROP TABLE alembic_version"))
            metadata.create_all(conn)
            return _dump(conn)

        made = await _run(database_url, recreate)
    print(f"\n{database_url.split(':')[0]}: {len(migrated)} tables reflected, identical")  # type: ignore[arg-type]
    assert set(migrated) == set(metadata.tables)  # type: ignore[arg-type]
    assert migrated == made


async def test_the_comparison_sees_a_difference(database_url: str) -> None:
    """What the baseline test relies on: compare_metadata reports a missing index."""
    await _migrate(database_url)
    await _run(database_url, lambda c: c.execute(sa.text("DROP INDEX ix_conversations_agent")))
    diffs = await _run(database_url, schema.diff)
    assert diffs and "ix_conversations_agent" in str(diffs)


async def test_migrate_on_an_up_to_date_database_is_a_no_op(database_url: str) -> None:
    await _migrate(database_url)
    again = await _migrate(database_url)
    assert not again.changed
    assert again.describe() == f"schema up to date at revision {HEAD}: nothing to do"
    assert await _version(database_url) == [HEAD]


async def test_a_pre_migration_database_is_stamped_and_keeps_its_rows(database_url: str) -> None:
    def old_release(conn: sa.Connection) -> None:
        _create_baseline_tables(conn)
        conn.execute(
            tables.agents.insert().values(id="a1", name="Ann", status="online", last_seen_at=NOW)
        )

    await _run(database_url, old_release)
    if not database_url.startswith("sqlite"):
        # PostgreSQL migrates only by `socketsvc migrate` (the release phase), not at start.
        with pytest.raises(SchemaError, match="older than this code needs"):
            await Store.open(database_url)
        assert not await has_alembic_version(database_url)  # the refusal stamped nothing
        outcome = await _migrate(database_url)
        assert outcome.stamped and outcome.describe().endswith(f"upgraded to {HEAD}")
    store = await Store.open(database_url)
    try:
        if database_url.startswith("sqlite"):
            assert store.schema is not None and store.schema.stamped
            assert "recognised as the baseline" in store.schema.describe()
        async with store.read() as conn:
            assert (await conn.execute(sa.text("SELECT name FROM agents"))).scalar() == "Ann"
    finally:
        await store.close()
    assert await _version(database_url) == [HEAD]
    assert not (await _migrate(database_url)).changed


async def test_unversioned_tables_that_are_not_the_baseline_are_refused(database_url: str) -> None:
    def other(conn: sa.Connection) -> None:
        _create_baseline_tables(conn)
        conn.execute(sa.text("ALTER TABLE agents ADD COLUMN extra INTEGER"))

    await _run(database_url, other)
    with pytest.raises(SchemaError, match=r"not socketsvc's baseline.*other columns: \['agents'\]"):
        await Store.open(database_url)


async def test_a_schema_newer_than_the_code_is_refused(database_url: str) -> None:
    await _migrate(database_url)
    await _run(
        database_url,
        lambda c: c.execute(sa.text("UPDATE alembic_version SET version_num = '0099_future'")),
    )
    with pytest.raises(SchemaError) as refused:
        await Store.open(database_url)
    message = str(refused.value)
    print(f"\nrefused: {message}")
    assert "0099_future, newer than this code" in message
    assert "deploy the newer socketsvc release" in message and "downgrade" in message
    with pytest.raises(SchemaError, match="newer than this code"):
        await _migrate(database_url)


NEXT_REVISION = """
import sqlalchemy as sa
from alembic import op

revision = "0099_test"
down_revision = "0003_bot_deliveries"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("test_extra", sa.Column("id", sa.Integer, primary_key=True))


def downgrade() -> None:
    op.drop_table("test_extra")
"""


@pytest.fixture
def newer_code(tmp_path: Path) -> object:
    """The migrations of a hypothetical next release: this release's plus 0099_test."""
    location = tmp_path / "migrations"
    shutil.copytree(schema.MIGRATIONS, location, ignore=shutil.ignore_patterns("__pycache__"))
    (location / "versions" / "0099_test.py").write_text(NEXT_REVISION)
    return location


async def test_an_older_schema_is_migrated_or_refused_at_start(
    database_url: str, newer_code: Path
) -> None:
    await _migrate(database_url)  # this release's head
    start = "start-sqlite" if database_url.startswith("sqlite") else "start-postgres"
    if start == "start-postgres":
        with pytest.raises(SchemaError) as refused:
            await _migrate(database_url, start, config=alembic_config(newer_code))
        print(f"\nrefused: {refused.value}")
        assert "older than this code needs (0099_test)" in str(refused.value)
        assert "run `socketsvc migrate`" in str(refused.value)
        assert await _version(database_url) == [HEAD]
        outcome = await _migrate(database_url, "migrate", config=alembic_config(newer_code))
    else:
        outcome = await _migrate(database_url, start, config=alembic_config(newer_code))
    assert outcome.describe() == f"schema upgraded from {HEAD} to 0099_test"
    assert await _version(database_url) == ["0099_test"]
    again = await _migrate(database_url, start, config=alembic_config(newer_code))
    assert not again.changed


async def test_an_empty_database_is_created_at_start(database_url: str) -> None:
    store = await Store.open(database_url)
    try:
        assert store.schema is not None
        assert store.schema.describe() == f"schema created at revision {HEAD}"
    finally:
        await store.close()


def test_head_is_the_only_head_of_the_migrations() -> None:
    from alembic.script import ScriptDirectory

    assert ScriptDirectory.from_config(alembic_config()).get_heads() == [HEAD]


async def test_0002_adds_erasure_markers_and_keeps_the_baseline_rows(database_url: str) -> None:
    """A database at the baseline (with a visitor) upgrades to 0002: `erased_visitors` exists,
    empty, and the visitor row is still there."""

    def baseline(conn: sa.Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = conn
        from alembic import command

        command.upgrade(config, BASELINE)
        conn.execute(tables.visitors.insert().values(id="v1", name="Visitor v1", created_at=NOW))

    await _run(database_url, baseline)
    assert await _version(database_url) == [BASELINE]
    outcome = await _migrate(database_url)
    assert outcome.describe() == f"schema upgraded from {BASELINE} to {HEAD}"
    assert await _run(database_url, schema.diff) == []

    def rows(conn: sa.Connection) -> object:
        return (
            conn.execute(sa.text("SELECT id FROM visitors")).scalars().all(),
            conn.execute(sa.text("SELECT count(*) FROM erased_visitors")).scalar(),
        )

    assert await _run(database_url, rows) == (["v1"], 0)


async def test_0003_adds_bot_deliveries_and_keeps_the_rows(database_url: str) -> None:
    """A database at 0002 (with a visitor) upgrades to 0003: `bot_deliveries` exists, empty,
    and the visitor row is still there."""

    def at_0002(conn: sa.Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = conn
        from alembic import command

        command.upgrade(config, "0002_visitor_erasures")
        conn.execute(tables.visitors.insert().values(id="v1", name="Visitor v1", created_at=NOW))

    await _run(database_url, at_0002)
    outcome = await _migrate(database_url)
    assert outcome.describe() == f"schema upgraded from 0002_visitor_erasures to {HEAD}"
    assert HEAD == "0003_bot_deliveries"
    assert await _run(database_url, schema.diff) == []

    def rows(conn: sa.Connection) -> object:
        return (
            conn.execute(sa.text("SELECT id FROM visitors")).scalars().all(),
            conn.execute(sa.text("SELECT count(*) FROM bot_deliveries")).scalar(),
        )

    assert await _run(database_url, rows) == (["v1"], 0)
