"""The ledger's tables (SQLAlchemy Core). Alembic migrations create them; this module describes them.

The log tables (`log_entries`, `merkle_nodes`, `checkpoints`, `cosignatures`) are append-only; the
database refuses UPDATE and DELETE on them with triggers (see the migrations). The projection tables
mirror the records of `ledger.state` column for column: one table per record type, derived from the
dataclass fields, so a record and its row cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
)
from sqlalchemy.types import TypeEngine

from ledger.encoding import canonical_json
from ledger.state import RECORD_TYPES

metadata = MetaData()

registry_meta = Table(
    "registry_meta",
    metadata,
    Column("name", Text, primary_key=True),
    Column("value", Text, nullable=False),
)

log_entries = Table(
    "log_entries",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("data", LargeBinary, nullable=False),
    Column("leaf_hash", LargeBinary, nullable=False),
    Column("chain_hash", LargeBinary, nullable=False),
    Column("accepted_at", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("nonce", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("tx_hash", LargeBinary, nullable=False),
    # Nonce first: the append path looks up a batch's nonces with one `nonce IN (...)` query.
    Index("ix_log_entries_nonce_actor", "nonce", "actor", unique=True),
)

merkle_nodes = Table(
    "merkle_nodes",
    metadata,
    Column("level", SmallInteger, nullable=False),
    Column("idx", BigInteger, nullable=False, autoincrement=False),
    Column("hash", LargeBinary, nullable=False),
    PrimaryKeyConstraint("level", "idx"),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("root_hash", LargeBinary, nullable=False),
    Column("note", LargeBinary, nullable=False),
    Column("created_at", Text, nullable=False),
)

cosignatures = Table(
    "cosignatures",
    metadata,
    Column("size", BigInteger, nullable=False, autoincrement=False),
    Column("witness", Text, nullable=False),
    Column("line", Text, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    PrimaryKeyConstraint("size", "witness"),
)

# What each entry did to which serial blocks (`ledger.history`): derived from the log like the projections,
# but only ever appended, so the database guards it like the log.
unit_movements = Table(
    "unit_movements",
    metadata,
    Column("entry", BigInteger, nullable=False, autoincrement=False),
    Column("batch_id", Text, nullable=False),
    Column("first", BigInteger, nullable=False, autoincrement=False),
    Column("last", BigInteger, nullable=False, autoincrement=False),
    Column("span", SmallInteger, nullable=False),  # `ledger.history.span_class`: the bit length of last - first
    Column("action", Text, nullable=False),
    Column("from_holder", Text, nullable=True),
    Column("to_holder", Text, nullable=True),
    Column("ref", Text, nullable=True),
    PrimaryKeyConstraint("entry", "batch_id", "first"),
    # A serial's history: the movements of its batch around it, one range of first serials per length class
    # (`store.movements_of_serials`). An account's: where it sent or received.
    Index("ix_unit_movements_batch_span_first", "batch_id", "span", "first"),
    Index("ix_unit_movements_from_holder", "from_holder", "entry"),
    Index("ix_unit_movements_to_holder", "to_holder", "entry"),
)

# The records behind each attested points batch (`ledger.points_batch`): private, served only to the holder,
# the authority and auditors. A provider uploads a batch's records in chunks before attesting it; once the
# batch is attested its rows never change (the entry commits to them by their root, and the audit checks it).
point_uploads = Table(
    "point_uploads",
    metadata,
    Column("batch_id", Text, primary_key=True),
    Column("provider", Text, nullable=False),
    Column("uploaded_at", Text, nullable=False),
    Column("attested", Boolean, nullable=False),
)

point_records = Table(
    "point_records",
    metadata,
    Column("batch_id", Text, nullable=False),
    Column("position", BigInteger, nullable=False, autoincrement=False),
    Column("account_id", Text, nullable=False),
    Column("quantity", BigInteger, nullable=False, autoincrement=False),
    Column("subject", Text, nullable=False),
    PrimaryKeyConstraint("batch_id", "position"),
    # A holder's own records, newest batch first.
    Index("ix_point_records_account", "account_id"),
)

APPEND_ONLY_TABLES = ("log_entries", "merkle_nodes", "checkpoints", "cosignatures", "unit_movements")


def _column_type(hint: Any) -> tuple[TypeEngine[Any] | type[TypeEngine[Any]], bool]:
    """Map a record field's type hint to a column type and nullability."""
    nullable = False
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        nullable = len(args) < len(typing.get_args(hint))
        hint = args[0]
    if hint is bool:
        return Boolean, nullable
    if hint is int:
        return BigInteger, nullable
    return Text, nullable  # str, and tuples stored as canonical JSON text


def _projection_table(record_type: type[Any]) -> Table:
    hints = typing.get_type_hints(record_type)
    columns = []
    for fld in dataclasses.fields(record_type):
        column_type, nullable = _column_type(hints[fld.name])
        columns.append(Column(fld.name, column_type, nullable=nullable, autoincrement=False))
    return Table(record_type.TABLE, metadata, *columns, PrimaryKeyConstraint(*record_type.KEY))


PROJECTIONS: dict[str, Table] = {rt.TABLE: _projection_table(rt) for rt in RECORD_TYPES}


def record_row(record: Any) -> dict[str, Any]:
    """A record as a row of its projection table (tuples become canonical JSON text)."""
    row = {}
    for fld in dataclasses.fields(record):
        value = getattr(record, fld.name)
        row[fld.name] = canonical_json(_jsonable(value)).decode() if isinstance(value, tuple) else value
    return row


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value
