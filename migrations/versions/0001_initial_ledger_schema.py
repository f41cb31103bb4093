"""initial ledger schema

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-25 03:13:17.014715
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


APPEND_ONLY = ("log_entries", "merkle_nodes", "checkpoints", "cosignatures")


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("project_id", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("vintage", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("number", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("report_id", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("quantity", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("owner", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("sequence", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("issued_at", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("issued_time", sa.Text(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "cancellations",
        sa.Column("id", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("holder", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("quantity", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("blocks", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("reason_code", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("reason", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("entry", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("cancelled_time", sa.Text(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "checkpoints",
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root_hash", sa.LargeBinary(), nullable=False),
        sa.Column("note", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("size"),
    )
    op.create_table(
        "claims",
        sa.Column("id", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("event_id", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("organiser", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("footprint_kg", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("footprint", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("units", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("retirements", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("blocks", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("entry", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("issued_time", sa.Text(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "cosignatures",
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("witness", sa.Text(), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("size", "witness"),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("organiser", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("name", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("venue", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("start_date", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("end_date", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("expected_attendees", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("planned_footprint", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("final_footprint", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("final_footprint_kg", sa.BigInteger(), autoincrement=False, nullable=True),
        sa.Column("retired_units", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("claim_id", sa.Text(), autoincrement=False, nullable=True),
        sa.Column("registered_at", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "log_entries",
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(), nullable=False),
        sa.Column("chain_hash", sa.LargeBinary(), nullable=False),
        sa.Column("accepted_at", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("nonce", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("tx_hash", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("idx"),
    )
    op.create_index("ix_log_entries_nonce_actor", "log_entries", ["nonce", "actor"], unique=True)
    op.create_table(
        "merkle_nodes",
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx"),
    )
    op.create_table(
        "methodologies",
        sa.Column("code", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("version", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("title", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("sector", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("document_sha256", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("status", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("published_at", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("code", "version"),
    )
    op.create_table(
        "monitoring_reports",
        sa.Column("id", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("project_id", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("period_start", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("period_end", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("claimed", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("verified", sa.BigInteger(), autoincrement=False, nullable=True),
        sa.Column("verifier", sa.Text(), autoincrement=False, nullable=True),
        sa.Column("state", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("submitted_at", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("updated_at", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "participant_keys",
        sa.Column("key_id", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("participant_id", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("public_key", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("added_at", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("revoked_at", sa.BigInteger(), autoincrement=False, nullable=True),
        sa.PrimaryKeyConstraint("key_id"),
    )
    op.create_table(
        "participants",
        sa.Column("id", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("name", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("roles", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("status", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("frozen", sa.Boolean(), autoincrement=False, nullable=False),
        sa.Column("registered_at", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "projects",
        sa.Column("id", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("owner", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("methodology_code", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("methodology_version", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("title", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("district", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("description", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("crediting_start", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("crediting_end", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("estimated_annual_reductions", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("documents", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("state", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("validator", sa.Text(), autoincrement=False, nullable=True),
        sa.Column("opinion", sa.Text(), autoincrement=False, nullable=True),
        sa.Column("frozen", sa.Boolean(), autoincrement=False, nullable=False),
        sa.Column("submitted_at", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("updated_at", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "registry_meta",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "retirements",
        sa.Column("id", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("holder", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("quantity", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("blocks", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("beneficiary", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("purpose", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("event_id", sa.Text(), autoincrement=False, nullable=True),
        sa.Column("year", sa.BigInteger(), autoincrement=False, nullable=True),
        sa.Column("reason", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("claim_id", sa.Text(), autoincrement=False, nullable=True),
        sa.Column("entry", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("retired_time", sa.Text(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "unit_blocks",
        sa.Column("batch_id", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("first", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("last", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("state", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("holder", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("ref", sa.Text(), autoincrement=False, nullable=True),
        sa.Column("updated_at", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("batch_id", "first"),
    )
    op.create_table(
        "witnesses",
        sa.Column("name", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("vkey", sa.Text(), autoincrement=False, nullable=False),
        sa.Column("added_at", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("removed_at", sa.BigInteger(), autoincrement=False, nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    _create_append_only_triggers()


def downgrade() -> None:
    _drop_append_only_triggers()
    op.drop_table("witnesses")
    op.drop_table("unit_blocks")
    op.drop_table("retirements")
    op.drop_table("registry_meta")
    op.drop_table("projects")
    op.drop_table("participants")
    op.drop_table("participant_keys")
    op.drop_table("monitoring_reports")
    op.drop_table("methodologies")
    op.drop_table("merkle_nodes")
    op.drop_index("ix_log_entries_nonce_actor", table_name="log_entries")
    op.drop_table("log_entries")
    op.drop_table("events")
    op.drop_table("cosignatures")
    op.drop_table("claims")
    op.drop_table("checkpoints")
    op.drop_table("cancellations")
    op.drop_table("batches")


def _create_append_only_triggers() -> None:
    """The log tables refuse UPDATE and DELETE in the database itself, not only in the application."""
    if op.get_bind().dialect.name == "sqlite":
        for table in APPEND_ONLY:
            for action in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {action} refused'); END"
                )
        return
    op.execute(
        """
        CREATE FUNCTION cdcer_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END $$
        """
    )
    for table in APPEND_ONLY:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION cdcer_refuse_change()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION cdcer_refuse_change()"
        )


def _drop_append_only_triggers() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table in APPEND_ONLY:
            for action in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{action}")
        return
    for table in APPEND_ONLY:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    op.execute("DROP FUNCTION IF EXISTS cdcer_refuse_change()")
