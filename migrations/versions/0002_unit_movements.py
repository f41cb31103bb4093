"""unit movements: what each entry did to which serial blocks

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 09:40:00.000000

A registry created before this revision already has entries that moved units: the upgrade replays
its log once to write their movements, so every registry ends up with the same table whatever its age.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "unit_movements"
COLUMNS = ("entry", "batch_id", "first", "last", "action", "from_holder", "to_holder", "ref")


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("entry", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("batch_id", sa.Text(), nullable=False),
        sa.Column("first", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("last", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("from_holder", sa.Text(), nullable=True),
        sa.Column("to_holder", sa.Text(), nullable=True),
        sa.Column("ref", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("entry", "batch_id", "first"),
    )
    op.create_index("ix_unit_movements_batch_first", TABLE, ["batch_id", "first"])
    op.create_index("ix_unit_movements_from_holder", TABLE, ["from_holder", "entry"])
    op.create_index("ix_unit_movements_to_holder", TABLE, ["to_holder", "entry"])
    _backfill()
    if op.get_bind().dialect.name == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {TABLE}_no_{action.lower()} BEFORE {action} ON {TABLE} "
                f"BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only: {action} refused'); END"
            )
        return
    # cdcer_refuse_change() is revision 0001's.
    op.execute(
        f"CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE} "
        "FOR EACH ROW EXECUTE FUNCTION cdcer_refuse_change()"
    )
    op.execute(
        f"CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE} "
        "FOR EACH STATEMENT EXECUTE FUNCTION cdcer_refuse_change()"
    )


def _backfill() -> None:
    from ledger.history import movement_row, movements
    from ledger.log import decode_entry
    from ledger.state import State
    from ledger.storage import store

    # The table as this revision makes it: later revisions add columns the rows must not carry yet.
    unit_movements = sa.table(TABLE, *(sa.column(name) for name in COLUMNS))
    conn = op.get_bind()
    state = State()
    rows: list[dict[str, object]] = []
    for stored in store.iter_entries(conn):
        entry = decode_entry(stored.data, index=stored.index)
        body = entry.body()
        state.authorise(body, index=entry.index, accepted_at=entry.accepted_at)
        outcome = state.apply(body, index=entry.index, accepted_at=entry.accepted_at)
        for movement in movements(entry.index, body.actor, outcome):
            row = movement_row(movement)
            rows.append({name: row[name] for name in COLUMNS})
        if len(rows) >= 5000:
            conn.execute(sa.insert(unit_movements), rows)
            rows.clear()
    if rows:
        conn.execute(sa.insert(unit_movements), rows)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for action in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_{action}")
    else:
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_append_only ON {TABLE}")
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_truncate ON {TABLE}")
    op.drop_index("ix_unit_movements_to_holder", table_name=TABLE)
    op.drop_index("ix_unit_movements_from_holder", table_name=TABLE)
    op.drop_index("ix_unit_movements_batch_first", table_name=TABLE)
    op.drop_table(TABLE)
