"""unit movements by length class: a serial's history by index, whatever its batch's size

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 21:00:00.000000

A serial's movements were looked up by their first serial alone (`first <= s AND last >= s` on
(batch_id, first)), which reads every movement of the batch that starts before s: seconds for a serial far
into a batch moved a million times. Each movement now keeps its length class, `span` (the bit length of
last - first, `ledger.history.span_class`), and the index is (batch_id, span, first): the movements of
class k that reach s start within 2**k - 1 serials before it, one bounded index range per class.

Existing rows get their class from their own first and last serials, computed in SQL. The table stays
append-only: on PostgreSQL its trigger is paused for the one UPDATE; SQLite cannot add a NOT NULL column
without a default, so there the table is copied into its new shape and its triggers are made again.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "unit_movements"
OLD_INDEX = "ix_unit_movements_batch_first"
NEW_INDEX = "ix_unit_movements_batch_span_first"
COLUMNS = ("entry", "batch_id", "first", "last", "action", "from_holder", "to_holder", "ref")

# The bit length of last - first in plain SQL both engines run (serials are 64-bit, so it is at most 63).
SPAN_SQL = "CASE " + " ".join(f'WHEN "last" - "first" < {1 << k} THEN {k}' for k in range(63)) + " ELSE 63 END"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _copy_sqlite_table()
    else:
        op.add_column(TABLE, sa.Column("span", sa.SmallInteger(), nullable=True))
        op.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER {TABLE}_append_only")
        op.execute(f"UPDATE {TABLE} SET span = {SPAN_SQL}")
        op.execute(f"ALTER TABLE {TABLE} ENABLE TRIGGER {TABLE}_append_only")
        op.alter_column(TABLE, "span", nullable=False)
        op.drop_index(OLD_INDEX, table_name=TABLE)
    op.create_index(NEW_INDEX, TABLE, ["batch_id", "span", "first"])


def _copy_sqlite_table() -> None:
    new = f"{TABLE}_new"
    op.create_table(
        new,
        sa.Column("entry", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("batch_id", sa.Text(), nullable=False),
        sa.Column("first", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("last", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("span", sa.SmallInteger(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("from_holder", sa.Text(), nullable=True),
        sa.Column("to_holder", sa.Text(), nullable=True),
        sa.Column("ref", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("entry", "batch_id", "first"),
    )
    columns = ", ".join(f'"{name}"' for name in COLUMNS)
    op.execute(f"INSERT INTO {new} ({columns}, span) SELECT {columns}, {SPAN_SQL} FROM {TABLE}")
    op.drop_table(TABLE)  # its indexes and triggers go with it (dropping fires no DELETE trigger)
    op.rename_table(new, TABLE)
    op.create_index("ix_unit_movements_from_holder", TABLE, ["from_holder", "entry"])
    op.create_index("ix_unit_movements_to_holder", TABLE, ["to_holder", "entry"])
    for action in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER {TABLE}_no_{action.lower()} BEFORE {action} ON {TABLE} "
            f"BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only: {action} refused'); END"
        )


def downgrade() -> None:
    op.drop_index(NEW_INDEX, table_name=TABLE)
    op.drop_column(TABLE, "span")
    op.create_index(OLD_INDEX, TABLE, ["batch_id", "first"])
