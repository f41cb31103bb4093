"""the public path's awards and scenes: attestations, lots, totals, policy, scenes, offers, redemptions

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 20:00:00.000000

Seven projection tables, empty in every registry created before this revision (no entry of theirs
existed), and the two private tables a provider uploads a batch's records to before attesting it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _text(name: str, *, nullable: bool = False) -> sa.Column[str]:
    return sa.Column(name, sa.Text(), autoincrement=False, nullable=nullable)


def _int(name: str, *, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), autoincrement=False, nullable=nullable)


def _bool(name: str) -> sa.Column[bool]:
    return sa.Column(name, sa.Boolean(), autoincrement=False, nullable=False)


def upgrade() -> None:
    op.create_table(
        "point_attestations",
        _text("batch_id"),
        _text("provider"),
        _text("rule_id"),
        _int("version"),
        _text("day"),
        _int("count"),
        _int("total_quantity"),
        _text("root"),
        _int("points_awarded"),
        _int("points_capped"),
        _int("reduction_g"),
        _bool("claimable"),
        _int("clawed_back"),
        _int("attested_at"),
        sa.PrimaryKeyConstraint("batch_id"),
    )
    op.create_table(
        "points_policy",
        _int("id"),
        _int("lifetime_months"),
        _int("set_at"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "point_lots",
        _text("account_id"),
        _text("month"),
        _int("points"),
        sa.PrimaryKeyConstraint("account_id", "month"),
    )
    op.create_table(
        "point_totals",
        _text("account_id"),
        _int("awarded"),
        _int("balance"),
        _int("redeemed"),
        _int("expired"),
        _int("clawed_back"),
        sa.PrimaryKeyConstraint("account_id"),
    )
    op.create_table(
        "scenes",
        _text("id"),
        _text("merchant"),
        _text("name"),
        _text("category"),
        _text("district"),
        _text("address"),
        _text("description"),
        _text("state"),
        _text("evaluator", nullable=True),
        _int("score", nullable=True),
        _text("opinion", nullable=True),
        _int("evaluated_at", nullable=True),
        _int("decided_at", nullable=True),
        _text("valid_until", nullable=True),
        _int("applied_at"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "offers",
        _text("id"),
        _text("scene_id"),
        _text("merchant"),
        _text("title"),
        _int("price_points"),
        _int("stock"),
        _int("per_account_limit"),
        _text("valid_from"),
        _text("valid_until"),
        _text("state"),
        _int("published_at"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "redemptions",
        _text("id"),
        _text("offer_id"),
        _text("account_id"),
        _int("quantity"),
        _int("points"),
        _text("lots"),
        _text("state"),
        _int("placed_at"),
        _int("closed_at", nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "point_uploads",
        _text("batch_id"),
        _text("provider"),
        _text("uploaded_at"),
        _bool("attested"),
        sa.PrimaryKeyConstraint("batch_id"),
    )
    op.create_table(
        "point_records",
        _text("batch_id"),
        _int("position"),
        _text("account_id"),
        _int("quantity"),
        _text("subject"),
        sa.PrimaryKeyConstraint("batch_id", "position"),
    )
    op.create_index("ix_point_records_account", "point_records", ["account_id"])


def downgrade() -> None:
    op.drop_index("ix_point_records_account", table_name="point_records")
    for table in (
        "point_records",
        "point_uploads",
        "redemptions",
        "offers",
        "scenes",
        "point_totals",
        "point_lots",
        "points_policy",
        "point_attestations",
    ):
        op.drop_table(table)
