"""The public registry's queries (SQLAlchemy Core over the projection tables); no rules, no HTTP.

Rows come back as dicts with the columns a record stores as canonical JSON text (tuples) decoded.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, Table, and_, func, or_, select

from ledger.state import RECORD_TYPES
from ledger.storage.tables import PROJECTIONS

Row = dict[str, Any]
Condition = ColumnElement[bool]


def _json_columns(record_type: type[Any]) -> frozenset[str]:
    hints = typing.get_type_hints(record_type)
    return frozenset(f.name for f in dataclasses.fields(record_type) if typing.get_origin(hints[f.name]) is tuple)


_JSON_COLUMNS: dict[str, frozenset[str]] = {rt.TABLE: _json_columns(rt) for rt in RECORD_TYPES}


def table(name: str) -> Table:
    return PROJECTIONS[name]


def key_columns(name: str) -> list[str]:
    """The primary key's columns of a projection table, in key order."""
    return list(table(name).primary_key.columns.keys())


def key_types(name: str) -> list[type]:
    """The Python type of each primary-key column (int or str)."""
    return [int if column.type.python_type is int else str for column in table(name).primary_key.columns]


def _row(name: str, mapping: Any) -> Row:
    row = dict(mapping)
    for column in _JSON_COLUMNS[name]:
        row[column] = json.loads(row[column])
    return row


def _after(name: str, after: Sequence[Any]) -> Condition:
    """Rows whose primary key sorts after `after` (keyset pagination on a composite key)."""
    columns = [table(name).c[c] for c in key_columns(name)]
    condition: Condition = columns[-1] > after[-1]
    for column, value in zip(reversed(columns[:-1]), reversed(after[:-1]), strict=True):
        condition = or_(column > value, and_(column == value, condition))
    return condition


def page(
    conn: Connection, name: str, *, where: Sequence[Condition], after: Sequence[Any] | None, limit: int
) -> list[Row]:
    """Up to `limit` rows of table `name` matching `where`, after key `after`, in primary-key order."""
    t = table(name)
    conditions = list(where) if after is None else [*where, _after(name, after)]
    query = select(t).where(*conditions).order_by(*(t.c[c] for c in key_columns(name))).limit(limit)
    return [_row(name, m) for m in conn.execute(query).mappings()]


def get(conn: Connection, name: str, key: Sequence[Any]) -> Row | None:
    """One row by primary key, or None."""
    t = table(name)
    query = select(t).where(*(t.c[c] == v for c, v in zip(key_columns(name), key, strict=True)))
    found = conn.execute(query).mappings().first()
    return None if found is None else _row(name, found)


def children(conn: Connection, name: str, column: str, value: Any) -> list[Row]:
    """Every row of table `name` whose `column` equals `value`, in primary-key order."""
    t = table(name)
    query = select(t).where(t.c[column] == value).order_by(*(t.c[c] for c in key_columns(name)))
    return [_row(name, m) for m in conn.execute(query).mappings()]


def equal(name: str, **filters: Any) -> list[Condition]:
    """Equality conditions for the filters given (None means no filter)."""
    t = table(name)
    return [t.c[column] == value for column, value in filters.items() if value is not None]


def in_json_list(name: str, column: str, item: str) -> Condition:
    """The JSON-text list in `column` holds the string `item` (canonical JSON: no spaces, no escapes here)."""
    return table(name).c[column].contains(json.dumps(item), autoescape=True)


def blocks_of_project(name: str, project_id: str) -> Condition:
    """The record's block strings include one of the project's (``CDCER-<project>-...``)."""
    return table(name).c["blocks"].contains(f'"CDCER-{project_id}-', autoescape=True)


def time_between(name: str, column: str, since: str | None, until: str | None) -> list[Condition]:
    """`since` <= column < `until` on the ledger's one textual time form (which sorts as time does)."""
    c = table(name).c[column]
    return [
        cond
        for cond in (None if since is None else c >= since, None if until is None else c < until)
        if cond is not None
    ]


def _count(conn: Connection, name: str, *where: Condition) -> int:
    return int(conn.execute(select(func.count()).select_from(table(name)).where(*where)).scalar_one())


def stats(conn: Connection) -> Row:
    """Registry-wide totals: projects registered, units issued / held / retired / cancelled, claims."""
    blocks = table("unit_blocks")
    by_state = {
        state: int(total)
        for state, total in conn.execute(
            select(blocks.c.state, func.sum(blocks.c["last"] - blocks.c["first"] + 1)).group_by(blocks.c.state)
        )
    }
    batches = table("batches")
    issued = conn.execute(select(func.coalesce(func.sum(batches.c.quantity), 0))).scalar_one()
    return {
        "projects_registered": _count(conn, "projects", table("projects").c.state == "registered"),
        "units_issued": int(issued),
        "units_held": by_state.get("held", 0),
        "units_retired": by_state.get("retired", 0),
        "units_cancelled": by_state.get("cancelled", 0),
        "claims": _count(conn, "claims"),
    }


def names(conn: Connection, ids: Iterable[str | None]) -> dict[str, str]:
    """The names of the participants among `ids` (one query; an id the registry does not know is left out)."""
    wanted = sorted({i for i in ids if i})
    if not wanted:
        return {}
    t = table("participants")
    return {str(i): str(n) for i, n in conn.execute(select(t.c.id, t.c.name).where(t.c.id.in_(wanted)))}


def project_units(conn: Connection, project_id: str) -> Row:
    """A project's units over all its batches: issued, and of those retired, cancelled and still outstanding."""
    batches, blocks = table("batches"), table("unit_blocks")
    issued = conn.execute(
        select(func.coalesce(func.sum(batches.c.quantity), 0)).where(batches.c.project_id == project_id)
    ).scalar_one()
    by_state = {
        str(state): int(total)
        for state, total in conn.execute(
            select(blocks.c.state, func.sum(blocks.c["last"] - blocks.c["first"] + 1))
            .select_from(blocks.join(batches, blocks.c.batch_id == batches.c.id))
            .where(batches.c.project_id == project_id)
            .group_by(blocks.c.state)
        )
    }
    return {
        "issued": int(issued),
        "retired": by_state.get("retired", 0),
        "cancelled": by_state.get("cancelled", 0),
        "outstanding": by_state.get("held", 0),
    }
