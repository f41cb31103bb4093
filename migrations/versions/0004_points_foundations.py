"""the public path's foundations: points rules, providers' rules, point accounts, consents, project scopes

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 17:00:00.000000

Five projection tables, empty in every registry created before this revision (no entry of theirs
existed), so there is nothing to backfill: a replay of the log fills them like any other projection.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _text(name: str, *, nullable: bool = False) -> sa.Column[str]:
    return sa.Column(name, sa.Text(), autoincrement=False, nullable=nullable)


def _int(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), autoincrement=False, nullable=False)


def upgrade() -> None:
    op.create_table(
        "points_rules",
        _text("rule_id"),
        _int("version"),
        _text("title"),
        _text("activity_unit"),
        _int("emission_factor_g"),
        _text("factor_source"),
        _int("points_per_gram"),
        _int("daily_cap"),
        _int("monthly_cap"),
        _int("annual_cap"),
        _int("late_window_days"),
        _text("claim_mode"),
        _text("subject"),
        _text("displaced_source"),
        _text("effective_from"),
        _text("effective_until", nullable=True),
        _int("published_at"),
        sa.PrimaryKeyConstraint("rule_id", "version"),
    )
    op.create_table(
        "provider_rules",
        _text("provider"),
        _text("rules"),
        _int("updated_at"),
        sa.PrimaryKeyConstraint("provider"),
    )
    op.create_table(
        "point_accounts",
        _text("id"),
        _text("account_kind"),
        _text("operator"),
        _int("opened_at"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "points_consents",
        _text("account_id"),
        _text("provider"),
        _text("rule_id"),
        sa.Column("granted", sa.Boolean(), autoincrement=False, nullable=False),
        _int("updated_at"),
        sa.PrimaryKeyConstraint("account_id", "provider", "rule_id"),
    )

    op.create_table(
        "project_scopes",
        _text("project_id"),
        _text("scopes"),
        _int("updated_at"),
        sa.PrimaryKeyConstraint("project_id"),
    )


def downgrade() -> None:
    for table in ("project_scopes", "points_consents", "point_accounts", "provider_rules", "points_rules"):
        op.drop_table(table)
