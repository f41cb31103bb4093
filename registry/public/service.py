"""The public registry's read rules: cursors, pages, time windows, and what "not found" says."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

from ledger.encoding import canonical_json
from ledger.transactions import format_utc
from registry.errors import BadRequest, NotFound
from registry.public import repository
from registry.public.repository import Condition, Row


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[Row]
    next_cursor: str | None


def encode_cursor(key: Sequence[Any]) -> str:
    """An opaque cursor: base64url (unpadded) of the last row's primary key as a JSON list."""
    return base64.urlsafe_b64encode(canonical_json(list(key))).decode().rstrip("=")


def decode_cursor(cursor: str, table: str) -> list[Any]:
    """The primary key a cursor of `table` carries; BadRequest for anything this API did not hand out."""
    return decode_key(cursor, repository.key_types(table))


def decode_key(cursor: str, types: Sequence[type]) -> list[Any]:
    """The key a cursor carries, one value of each of `types`; BadRequest for anything else."""
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
        key = None
    if (
        not isinstance(key, list)
        or len(key) != len(types)
        or not all(type(value) is kind and _storable(value) for value, kind in zip(key, types, strict=True))
    ):
        raise BadRequest(
            f"cursor {cursor!r} is not a cursor of this list; pass the next_cursor of the previous page, "
            "or omit cursor for the first page",
            "invalid-cursor",
        )
    return key


def _storable(value: Any) -> bool:
    """Whether a key value fits the databases: an integer beyond BIGINT names no row (and SQLite cannot bind it)."""
    return not isinstance(value, int) or -(2**63) <= value < 2**63


def list_page(conn: Connection, table: str, *, where: Sequence[Condition], cursor: str | None, limit: int) -> Page:
    """One page of `table`'s rows matching `where`, in primary-key order, and the next page's cursor."""
    after = None if cursor is None else decode_cursor(cursor, table)
    rows = repository.page(conn, table, where=where, after=after, limit=limit + 1)
    if len(rows) <= limit:
        return Page(rows, None)
    rows = rows[:limit]
    return Page(rows, encode_cursor([rows[-1][c] for c in repository.key_columns(table)]))


def time_window(table: str, column: str, since: datetime | None, until: datetime | None) -> list[Condition]:
    """`since` <= `column` < `until` (a time without a zone is UTC); BadRequest for an empty window."""
    low, high = _utc(since), _utc(until)
    if low is not None and high is not None and low > high:
        raise BadRequest(f"since {low} is after until {high}; ask for since <= until", "invalid-range")
    return repository.time_between(table, column, low, high)


def _utc(value: datetime | None) -> str | None:
    if value is None:
        return None
    try:
        return format_utc(value if value.tzinfo is not None else value.replace(tzinfo=UTC))
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00, which is in year 0 in UTC
        raise BadRequest(f"time {value.isoformat()} is outside the years 1 to 9999 in UTC", "invalid-time") from None


def one(conn: Connection, table: str, key: Sequence[Any], *, what: str, listing: str) -> Row:
    """The row with this key, or NotFound naming the key and where to list the existing ones."""
    row = repository.get(conn, table, key)
    if row is None:
        shown = "/".join(str(part) for part in key)
        raise NotFound(
            f"no {what} {shown!r} in the registry; list them at {listing}", f"{what.replace(' ', '-')}-not-found"
        )
    return row
