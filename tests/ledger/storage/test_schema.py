"""Migrations: the only way tables are made; they match the models, round-trip, and guard the log."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from ledger.errors import StorageError
from ledger.ledger import Ledger
from ledger.storage import schema
from ledger.storage.engine import is_sqlite, make_engine
from ledger.storage.tables import APPEND_ONLY_TABLES, metadata
from ledger.transactions import Role
from tests.conftest import Story


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def _revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def test_upgrade_downgrade_round_trip(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        assert _tables(engine) == set()
        schema.upgrade(engine)
        assert _tables(engine) == set(metadata.tables)
        schema.require_current(engine)
        schema.downgrade(engine, "base")
        assert _tables(engine) == set()
        assert _revision(engine) is None
        schema.upgrade(engine)  # the downgrade removed everything, triggers and functions included
        assert _tables(engine) == set(metadata.tables)
        schema.require_current(engine)
    finally:
        engine.dispose()


def test_one_linear_history_with_a_single_head() -> None:
    scripts = ScriptDirectory.from_config(schema.alembic_config("sqlite://"))
    assert len(scripts.get_heads()) == 1
    revisions = list(scripts.walk_revisions())
    assert revisions[-1].down_revision is None
    assert all(len(r.nextrev) <= 1 for r in revisions)


def test_migrations_match_the_models(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        assert compare_metadata(context, metadata) == []


def test_migrations_create_the_unique_nonce_index(engine: Engine) -> None:
    indexes = {ix["name"]: ix for ix in inspect(engine).get_indexes("log_entries")}
    assert indexes["ix_log_entries_nonce_actor"]["column_names"] == ["nonce", "actor"]
    assert indexes["ix_log_entries_nonce_actor"]["unique"]


def test_require_current_refuses_an_unmigrated_database(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:  # the database exists (SQLite creates its file) but is empty
            conn.execute(text("SELECT 1"))
        with pytest.raises(StorageError, match="schema is at nothing"):
            schema.require_current(engine)
    finally:
        engine.dispose()


def test_require_current_refuses_a_missing_database(database_url: str) -> None:
    url = make_url(database_url)
    missing = f"{url.database}-missing" if url.get_backend_name() == "sqlite" else "cdcer_no_such_database"
    engine = make_engine(url.set(database=missing).render_as_string(hide_password=False))
    try:
        with pytest.raises(StorageError, match="no ledger database at|cannot open the database"):
            schema.require_current(engine)
    finally:
        engine.dispose()


def test_require_current_refuses_a_downgraded_database(engine: Engine) -> None:
    schema.downgrade(engine, "base")
    with pytest.raises(StorageError, match="run `cdcer init`"):
        schema.require_current(engine)


# --- append-only in the database itself ---------------------------------------------------------------

CHANGES = {
    "log_entries": ("UPDATE log_entries SET actor = 'mallory'", "DELETE FROM log_entries"),
    "merkle_nodes": ("UPDATE merkle_nodes SET hash = :zero", "DELETE FROM merkle_nodes"),
    "checkpoints": ("UPDATE checkpoints SET note = :zero", "DELETE FROM checkpoints"),
    "unit_movements": ("UPDATE unit_movements SET to_holder = 'mallory'", "DELETE FROM unit_movements"),
}


@pytest.mark.parametrize("table", sorted(CHANGES))
@pytest.mark.parametrize("action", ["update", "delete"])
def test_log_tables_refuse_update_and_delete(story: Story, table: str, action: str) -> None:
    # Entry 0 and its checkpoint exist; more entries give the tree interior nodes and move units.
    story.world.register("buyer2", [Role.ACCOUNT_HOLDER])
    story.world.issued_batch(story.world.registered_project(), 2023, 10, 10)
    story.sync()
    ledger = story.ledger
    statement = CHANGES[table][0 if action == "update" else 1]
    with ledger.engine.connect() as conn:
        before = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
    assert before > 0
    with pytest.raises(DBAPIError, match="append-only"), ledger.engine.begin() as conn:
        conn.execute(text(statement), {"zero": bytes(32)})
    with ledger.engine.connect() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() == before


def test_cosignatures_refuse_update_and_delete(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO cosignatures (size, witness, line, timestamp) VALUES (1, 'w', 'l', 0)"))
    for statement in ("UPDATE cosignatures SET line = 'forged'", "DELETE FROM cosignatures"):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))


@pytest.mark.postgres
@pytest.mark.parametrize("databases", ["postgres"], indirect=True)
@pytest.mark.parametrize("table", APPEND_ONLY_TABLES)
def test_postgres_log_tables_refuse_truncate(ledger: Ledger, table: str) -> None:
    assert not is_sqlite(ledger.engine)
    with pytest.raises(DBAPIError, match="append-only"), ledger.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {table}"))
    assert ledger.size() == 1
