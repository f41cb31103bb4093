"""Queries over the ledger's tables. Every function takes an open connection; callers own the transaction."""

from __future__ import annotations

import dataclasses
import functools
import json
import typing
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, Dialect, func, insert, select
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from ledger.errors import ConflictError, ProofError, UploadOffsetError
from ledger.history import Movement, movement_row
from ledger.log import StoredEntry
from ledger.merkle import Hash, NodeId
from ledger.points_batch import PointRecord
from ledger.state import RECORD_TYPES, State
from ledger.storage.tables import (
    PROJECTIONS,
    checkpoints,
    cosignatures,
    log_entries,
    merkle_nodes,
    point_records,
    point_uploads,
    record_row,
    registry_meta,
    unit_movements,
)


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """A signed checkpoint as stored: its size, root and the exact signed note."""

    size: int
    root_hash: bytes
    note: bytes
    created_at: str


@dataclass(frozen=True, slots=True)
class EntryMeta:
    """What the store indexes about an entry beside its bytes."""

    accepted_at: str
    actor: str
    nonce: str
    kind: str
    tx_hash: bytes


# --- registry metadata ---------------------------------------------------------------------------------


def all_meta(conn: Connection) -> dict[str, str]:
    """Every registry setting, by name."""
    return {str(name): str(value) for name, value in conn.execute(select(registry_meta.c.name, registry_meta.c.value))}


def get_meta(conn: Connection, name: str) -> str | None:
    """A registry setting (origin, verifier key), or None."""
    return conn.execute(select(registry_meta.c.value).where(registry_meta.c.name == name)).scalar_one_or_none()


def set_meta(conn: Connection, name: str, value: str) -> None:
    """Record a registry setting once; a different value for an existing name is a conflict."""
    existing = get_meta(conn, name)
    if existing is None:
        conn.execute(insert(registry_meta).values(name=name, value=value))
    elif existing != value:
        raise ConflictError(f"registry {name} is already {existing!r}")


# --- the append path's bulk writes ---------------------------------------------------------------------


def _write_many(
    conn: Connection, table: str, columns: tuple[str, ...], rows: Sequence[tuple[Any, ...]], verb: str
) -> None:
    """Insert rows, or delete the rows with these keys, straight through the driver.

    The append path's rows are plain values (bytes, str, int, bool, None), which sqlite3 and psycopg
    adapt exactly as SQLAlchemy would hand them over; going round its per-row bind processing halves the
    cost of a batch's writes. SQLite (in process) takes one ``executemany``; PostgreSQL one statement per
    thousand rows, since psycopg's ``executemany`` sends a statement per row.
    """
    if not rows:
        return
    dialect = conn.dialect
    if _marker(dialect) == "?":
        conn.exec_driver_sql(_bulk_sql(dialect, verb, table, columns, 1), list(rows))
        return
    for start in range(0, len(rows), _ROWS_PER_STATEMENT):
        chunk = rows[start : start + _ROWS_PER_STATEMENT]
        params = tuple(value for row in chunk for value in row)
        conn.exec_driver_sql(_bulk_sql(dialect, verb, table, columns, len(chunk)), params)


_ROWS_PER_STATEMENT = 1000


def _marker(dialect: Dialect) -> str:
    """The driver's positional parameter marker: sqlite3's ``?``, psycopg's ``%s``."""
    return "?" if dialect.paramstyle == "qmark" else "%s"


def _bulk_sql(dialect: Dialect, verb: str, table: str, columns: tuple[str, ...], count: int) -> str:
    """``INSERT INTO t (a, b) VALUES (?, ?)[, ...]`` or ``DELETE FROM t WHERE (a = ? AND b = ?)[ OR ...]``
    for `count` rows, in the dialect's quoting and parameter style."""
    head, row = _bulk_parts(dialect, verb, table, columns)
    return head + (", " if verb == "insert" else " OR ").join([row] * count)


@functools.cache
def _bulk_parts(dialect: Dialect, verb: str, table: str, columns: tuple[str, ...]) -> tuple[str, str]:
    quote = dialect.identifier_preparer.quote
    marker = _marker(dialect)
    if verb == "insert":
        names = ", ".join(quote(c) for c in columns)
        return f"INSERT INTO {quote(table)} ({names}) VALUES ", f"({', '.join(marker for _ in columns)})"
    return f"DELETE FROM {quote(table)} WHERE ", "(" + " AND ".join(f"{quote(c)} = {marker}" for c in columns) + ")"


def _insert_many(conn: Connection, table: str, columns: tuple[str, ...], rows: Sequence[tuple[Any, ...]]) -> None:
    _write_many(conn, table, columns, rows, "insert")


# --- entries ---------------------------------------------------------------------------------------------


def log_size(conn: Connection) -> int:
    """The number of entries in the log."""
    top = conn.execute(select(func.max(log_entries.c.idx))).scalar_one_or_none()
    return 0 if top is None else int(top) + 1


def insert_entries(conn: Connection, rows: Sequence[tuple[StoredEntry, EntryMeta]]) -> None:
    """Append sealed entries (one statement for the batch)."""
    _insert_many(
        conn,
        log_entries.name,
        ("idx", "data", "leaf_hash", "chain_hash", "accepted_at", "actor", "nonce", "kind", "tx_hash"),
        [
            (e.index, e.data, e.leaf_hash, e.chain_hash, m.accepted_at, m.actor, m.nonce, m.kind, m.tx_hash)
            for e, m in rows
        ],
    )


def read_entries(conn: Connection, start: int, stop: int) -> list[StoredEntry]:
    """Entries with start <= index < stop, in order."""
    rows = conn.execute(
        select(log_entries.c.idx, log_entries.c.data, log_entries.c.leaf_hash, log_entries.c.chain_hash)
        .where(log_entries.c.idx >= start, log_entries.c.idx < stop)
        .order_by(log_entries.c.idx)
    ).all()  # fetched at once: iterating a result fetches row by row
    return [StoredEntry(int(i), bytes(data), bytes(leaf), bytes(chain)) for i, data, leaf, chain in rows]


def iter_entry_index_rows(conn: Connection, *, chunk: int = 5000) -> Iterator[dict[str, Any]]:
    """The columns stored beside each entry's bytes (idx, accepted_at, actor, nonce, kind, tx_hash), in order."""
    columns = [log_entries.c[name] for name in ("idx", "accepted_at", "actor", "nonce", "kind", "tx_hash")]
    after = -1
    while True:
        rows = conn.execute(
            select(*columns).where(log_entries.c.idx > after).order_by(log_entries.c.idx).limit(chunk)
        ).mappings()
        batch = [dict(row) for row in rows.all()]
        yield from batch
        if len(batch) < chunk:
            return
        after = int(batch[-1]["idx"])


def iter_entries(conn: Connection, start: int = 0, *, chunk: int = 2000) -> Iterator[StoredEntry]:
    """Stream every entry from ``start`` in order, a chunk at a time (bounded memory)."""
    while True:
        batch = read_entries(conn, start, start + chunk)
        yield from batch
        if len(batch) < chunk:
            return
        start = batch[-1].index + 1


def find_nonces(conn: Connection, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, bytes]]:
    """For many (actor, nonce) pairs at once: the index and transaction hash of entries that used them."""
    wanted = set(pairs)
    if not wanted:
        return {}
    rows = conn.execute(
        select(log_entries.c.idx, log_entries.c.actor, log_entries.c.nonce, log_entries.c.tx_hash).where(
            log_entries.c.nonce.in_(sorted({nonce for _, nonce in wanted}))
        )
    )
    return {(r.actor, r.nonce): (int(r.idx), bytes(r.tx_hash)) for r in rows if (r.actor, r.nonce) in wanted}


def find_by_nonce(conn: Connection, actor: str, nonce: str) -> tuple[int, bytes] | None:
    """The index and transaction hash of the entry an actor sent with this nonce, if any."""
    row = conn.execute(
        select(log_entries.c.idx, log_entries.c.tx_hash).where(
            log_entries.c.actor == actor, log_entries.c.nonce == nonce
        )
    ).first()
    return None if row is None else (int(row.idx), bytes(row.tx_hash))


# --- Merkle nodes ------------------------------------------------------------------------------------------


def insert_nodes(conn: Connection, nodes: Iterable[tuple[NodeId, Hash]]) -> None:
    """Store completed interior nodes; level-0 nodes are the entries' leaf hashes and are skipped."""
    rows = [(n.level, n.index, h) for n, h in nodes if n.level > 0]
    _insert_many(conn, merkle_nodes.name, ("level", "idx", "hash"), rows)


_NODES_PER_QUERY = 200
"""Nodes asked for per statement: well within SQLite's expression depth (1,000) and parameter limits."""


@functools.cache
def _leaves_sql(dialect: Dialect, count: int) -> str:
    marker = _marker(dialect)
    return f"SELECT idx, leaf_hash FROM log_entries WHERE idx IN ({', '.join([marker] * count)})"


@functools.cache
def _nodes_sql(dialect: Dialect, count: int) -> str:
    marker = _marker(dialect)
    pair = f"(level = {marker} AND idx = {marker})"
    return f"SELECT level, idx, hash FROM merkle_nodes WHERE {' OR '.join([pair] * count)}"


class DbNodeReader:
    """Reads perfect-subtree hashes: leaves from the entries table, interior nodes from merkle_nodes."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def get_nodes(self, ids: Sequence[NodeId]) -> Mapping[NodeId, Hash]:
        """Fetch the requested nodes: two queries for a proof's few dozen (more, in chunks, for many)."""
        found: dict[NodeId, Hash] = {}
        leaves = [n.index for n in ids if n.level == 0]
        inner = [(n.level, n.index) for n in ids if n.level > 0]
        dialect = self._conn.dialect
        unique = sorted(set(leaves))
        for start in range(0, len(unique), _NODES_PER_QUERY):
            indexes = tuple(unique[start : start + _NODES_PER_QUERY])
            for idx, digest in self._conn.exec_driver_sql(_leaves_sql(dialect, len(indexes)), indexes):
                found[NodeId(0, int(idx))] = Hash(bytes(digest))
        # Exact (level, idx) pairs, OR-ed: one primary-key probe each on both engines (two IN lists would
        # probe their cross product, 400 rows for 20 nodes; SQLite scans for a row-value IN). Plain SQL,
        # one string per number of nodes: building the expression each time cost more than the query.
        pairs = sorted(set(inner))
        for start in range(0, len(pairs), _NODES_PER_QUERY):
            chunk = pairs[start : start + _NODES_PER_QUERY]
            params = tuple(value for pair in chunk for value in pair)
            for level, idx, digest in self._conn.exec_driver_sql(_nodes_sql(dialect, len(chunk)), params):
                found[NodeId(int(level), int(idx))] = Hash(bytes(digest))
        missing = [n for n in ids if n not in found]
        if missing:
            raise ProofError(f"the store has no hash for tree node {missing[0]} (the log is shorter or damaged)")
        return found


# --- checkpoints -------------------------------------------------------------------------------------------


def insert_checkpoint(conn: Connection, cp: StoredCheckpoint) -> None:
    """Store a signed checkpoint; a second checkpoint of the same size is refused (compare-and-swap).

    The insert runs in a savepoint so a conflict leaves the caller's transaction usable.
    """
    try:
        with conn.begin_nested():
            conn.execute(
                insert(checkpoints).values(size=cp.size, root_hash=cp.root_hash, note=cp.note, created_at=cp.created_at)
            )
    except SAIntegrityError:
        raise ConflictError(f"a checkpoint of size {cp.size} already exists") from None


def latest_checkpoint(conn: Connection) -> StoredCheckpoint | None:
    """The checkpoint of the largest size, or None before the first one."""
    row = conn.execute(select(checkpoints).order_by(checkpoints.c.size.desc()).limit(1)).first()
    return (
        None if row is None else StoredCheckpoint(int(row.size), bytes(row.root_hash), bytes(row.note), row.created_at)
    )


def checkpoint_at(conn: Connection, size: int) -> StoredCheckpoint | None:
    """The checkpoint of exactly this size, if one was signed."""
    row = conn.execute(select(checkpoints).where(checkpoints.c.size == size)).first()
    return (
        None if row is None else StoredCheckpoint(int(row.size), bytes(row.root_hash), bytes(row.note), row.created_at)
    )


def iter_checkpoints(conn: Connection) -> Iterator[StoredCheckpoint]:
    """Every stored checkpoint, smallest first."""
    for row in conn.execute(select(checkpoints).order_by(checkpoints.c.size)):
        yield StoredCheckpoint(int(row.size), bytes(row.root_hash), bytes(row.note), row.created_at)


def insert_cosignature(conn: Connection, size: int, witness: str, line: str, timestamp: int) -> None:
    """Store a witness's cosignature of the checkpoint of this size (once per witness)."""
    try:
        with conn.begin_nested():
            conn.execute(insert(cosignatures).values(size=size, witness=witness, line=line, timestamp=timestamp))
    except SAIntegrityError:
        raise ConflictError(f"witness {witness} already cosigned the checkpoint of size {size}") from None


def cosignature_lines(conn: Connection, size: int) -> list[str]:
    """The cosignature lines stored for the checkpoint of this size, by witness name."""
    rows = conn.execute(select(cosignatures.c.line).where(cosignatures.c.size == size).order_by(cosignatures.c.witness))
    return [r.line for r in rows]


# --- unit movements ----------------------------------------------------------------------------------------


def insert_movements(conn: Connection, moves: Sequence[Movement]) -> None:
    """Store the movements of newly appended entries (one statement for the batch)."""
    if moves:
        rows = [movement_row(m) for m in moves]
        columns = tuple(rows[0])
        _insert_many(conn, unit_movements.name, columns, [tuple(row[c] for c in columns) for row in rows])


def movements_of_serials(
    conn: Connection,
    batch: str,
    first: int,
    last: int,
    *,
    after: Sequence[int] | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """The movements that touched a serial in ``first..last`` of `batch`, in (entry, first serial) order.

    Each row carries the entry's acceptance time (``accepted_at``). A movement of length class k
    (`ledger.history.span_class`) that reaches ``first`` starts at most 2**k - 1 serials before it, so each
    class present in the batch is one bounded range of the ``(batch_id, span, first)`` index: the cost
    follows the movements near the serials asked for, not every movement of the batch before them.

    One batch's movements are unique by (entry, first serial), so that order is total and pages by it:
    `after` (an entry and a first serial) keeps the movements that sort after it, `limit` the first that
    many of them (all without it).
    """
    m = unit_movements
    top = conn.execute(
        select(m.c.span).where(m.c.batch_id == batch).order_by(m.c.span.desc()).limit(1)
    ).scalar_one_or_none()
    if top is None:
        return []
    classes = int(top) + 1
    params: tuple[Any, ...] = ()
    for k in range(classes):
        params += (batch, k, first - (1 << k) + 1, last, first)
        if after is not None:
            params += (after[0], after[0], after[1])
    if limit is not None:
        params += (limit,)
    sql = _movements_sql(conn.dialect, classes, paged=after is not None, limited=limit is not None)
    return [dict(row) for row in conn.exec_driver_sql(sql, params).mappings()]


@functools.cache
def _movements_sql(dialect: Dialect, classes: int, *, paged: bool, limited: bool) -> str:
    """One index range per length class, as plain SQL: building the expression each time cost ten times the
    query. The entries' times are joined to the page only, not to every movement before the limit."""
    marker = _marker(dialect)
    names = ", ".join(f'm."{column.name}"' for column in unit_movements.c)
    branch = (
        f"SELECT {names} FROM unit_movements m "
        f'WHERE m.batch_id = {marker} AND m.span = {marker} AND m."first" BETWEEN {marker} AND {marker} '
        f'AND m."last" >= {marker}'
    )
    if paged:
        branch += f' AND (m."entry" > {marker} OR (m."entry" = {marker} AND m."first" > {marker}))'
    moved = " UNION ALL ".join([branch] * classes) + ' ORDER BY "entry", "first"'
    if limited:
        moved += f" LIMIT {marker}"
    picked = ", ".join(f'u."{column.name}"' for column in unit_movements.c)
    return (
        f'SELECT {picked}, e.accepted_at FROM ({moved}) u JOIN log_entries e ON e.idx = u."entry" '
        'ORDER BY u."entry", u."first"'
    )


def iter_movement_rows(conn: Connection, *, chunk: int = 2000) -> Iterator[dict[str, Any]]:
    """Every stored movement in (entry, batch, first) order, read a range of entries at a time."""
    top = conn.execute(select(func.max(unit_movements.c.entry))).scalar_one_or_none()
    if top is None:
        return
    order = (unit_movements.c.entry, unit_movements.c.batch_id, unit_movements.c.first)
    for start in range(0, int(top) + 1, chunk):
        rows = conn.execute(
            select(unit_movements)
            .where(unit_movements.c.entry >= start, unit_movements.c.entry < start + chunk)
            .order_by(*order)
        ).mappings()
        for row in rows.all():
            yield dict(row)


# --- projections -------------------------------------------------------------------------------------------


def write_projections(conn: Connection, state: State) -> None:
    """Write the rows the state changed since the last call (delete then insert), and clear the marks."""
    by_table: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for table_name, key in state.dirty:
        by_table[table_name].append(key)
    for table_name, keys in by_table.items():
        _delete_many(conn, table_name, keys)
        rows = []
        for key in keys:
            record = state.lookup(table_name, key)
            if record is not None:
                rows.append(record_row(record))
        if rows:
            _insert_projection_rows(conn, table_name, rows)
    state.dirty.clear()


def _delete_many(conn: Connection, table_name: str, keys: Sequence[tuple[Any, ...]]) -> None:
    """Delete the rows of a projection table with these primary keys.

    SQLite takes one ``executemany`` of a one-row ``DELETE``, a primary-key lookup each. PostgreSQL takes
    one statement that joins the table with the keys unnested from one array per key column. It planned
    the thousand-term ``OR`` of composite keys this replaces as a bitmap scan that rechecked every row it
    fetched against all thousand terms, and for a key whose second column repeats (a month's point lots)
    it fetched the whole month by that column alone; the join probes the primary key once per key. The
    arrays hold any number of keys in as many bind parameters as the key has columns, so the statement
    needs no chunking to stay under PostgreSQL's limit of 65,535.
    """
    if _marker(conn.dialect) == "?":
        _write_many(conn, table_name, _key_names(table_name), keys, "delete")
    elif keys:
        conn.exec_driver_sql(_unnest_delete_sql(conn.dialect, table_name), _columns_of(keys))


def _insert_projection_rows(conn: Connection, table_name: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert projection rows: with ``_insert_many`` on SQLite, from one array per column on PostgreSQL.

    On PostgreSQL, once the deletes were fast, the thousand-row ``VALUES`` lists of the six-column point
    totals took the largest share of the projections' time; unnesting the columns' arrays takes a third.
    """
    columns = tuple(rows[0])
    values = [tuple(row[c] for c in columns) for row in rows]
    if _marker(conn.dialect) == "?":
        _insert_many(conn, table_name, columns, values)
    else:
        conn.exec_driver_sql(_unnest_insert_sql(conn.dialect, table_name, columns), _columns_of(values))


@functools.cache
def _unnest_delete_sql(dialect: Dialect, table_name: str) -> str:
    """``DELETE FROM t USING unnest(%s::text[], ...) AS k(a, ...) WHERE t.a = k.a AND ...`` (PostgreSQL)."""
    quote = dialect.identifier_preparer.quote
    names = _key_names(table_name)
    join = " AND ".join(f"t.{quote(name)} = k.{quote(name)}" for name in names)
    return (
        f"DELETE FROM {quote(table_name)} AS t USING {_unnest_sql(dialect, table_name, names)} "
        f"AS k({', '.join(quote(name) for name in names)}) WHERE {join}"
    )


@functools.cache
def _unnest_insert_sql(dialect: Dialect, table_name: str, columns: tuple[str, ...]) -> str:
    """``INSERT INTO t (a, ...) SELECT * FROM unnest(%s::text[], ...)`` (PostgreSQL)."""
    quote = dialect.identifier_preparer.quote
    return (
        f"INSERT INTO {quote(table_name)} ({', '.join(quote(c) for c in columns)}) "
        f"SELECT * FROM {_unnest_sql(dialect, table_name, columns)}"
    )


def _unnest_sql(dialect: Dialect, table_name: str, columns: tuple[str, ...]) -> str:
    """``unnest(%s::text[], %s::bigint[], ...)``: one array parameter per column, cast to the column's type."""
    table = PROJECTIONS[table_name]
    return f"unnest({', '.join(f'%s::{table.c[c].type.compile(dialect=dialect)}[]' for c in columns)})"


def _columns_of(rows: Sequence[tuple[Any, ...]]) -> tuple[list[Any], ...]:
    """Rows as columns, one list each: the arrays ``unnest`` reads back as rows."""
    return tuple(list(column) for column in zip(*rows, strict=True))


_KEY_NAMES: dict[str, tuple[str, ...]] = {rt.TABLE: tuple(rt.KEY) for rt in RECORD_TYPES}


def _key_names(table_name: str) -> tuple[str, ...]:
    return _KEY_NAMES[table_name]


def iter_projection_rows(conn: Connection, table_name: str) -> Iterator[dict[str, Any]]:
    """Every row of a projection table, as a dict, in no particular order."""
    for row in conn.execute(select(PROJECTIONS[table_name])):
        yield dict(row._mapping)


def projection_key(table_name: str, row: Mapping[str, Any]) -> tuple[Any, ...]:
    """The primary key of a projection row."""
    return tuple(row[name] for name in _key_names(table_name))


# --- reads for certificates ----------------------------------------------------------------------------

_R = TypeVar("_R")


def get_record(conn: Connection, record_type: type[_R], key: Sequence[Any]) -> _R | None:
    """One projection row as its `ledger.state` record (JSON-text columns back to tuples), or None."""
    table = PROJECTIONS[getattr(record_type, "TABLE")]  # noqa: B009 - a ClassVar that mypy cannot see on type[_R]
    names = _key_names(table.name)
    row = conn.execute(
        select(table).where(*(table.c[name] == value for name, value in zip(names, key, strict=True)))
    ).first()
    if row is None:
        return None
    hints = typing.get_type_hints(record_type)
    values = {}
    for fld in dataclasses.fields(record_type):  # type: ignore[arg-type]  # records are dataclasses
        value = row._mapping[fld.name]
        if typing.get_origin(hints[fld.name]) is tuple and isinstance(value, str):
            value = _tuples(json.loads(value))
        values[fld.name] = value
    return record_type(**values)


def _tuples(value: Any) -> Any:
    return tuple(_tuples(item) for item in value) if isinstance(value, list) else value


def read_entries_at(conn: Connection, indexes: Iterable[int]) -> dict[int, StoredEntry]:
    """The entries at these indexes (one query); indexes beyond the log are simply absent."""
    wanted = sorted(set(indexes))
    if not wanted:
        return {}
    rows = conn.execute(
        select(log_entries.c.idx, log_entries.c.data, log_entries.c.leaf_hash, log_entries.c.chain_hash).where(
            log_entries.c.idx.in_(wanted)
        )
    )
    return {int(r.idx): StoredEntry(int(r.idx), bytes(r.data), bytes(r.leaf_hash), bytes(r.chain_hash)) for r in rows}


def find_entries(conn: Connection, kind: str, *, start: int, stop: int, actor: str | None = None) -> list[StoredEntry]:
    """Entries of one transaction kind (and actor, if given) with start <= index < stop, in order.

    The index range keeps this a primary-key range scan: callers bound it by what they know (e.g. a
    record's first and last entries), never the whole log.
    """
    query = select(log_entries.c.idx, log_entries.c.data, log_entries.c.leaf_hash, log_entries.c.chain_hash).where(
        log_entries.c.idx >= start, log_entries.c.idx < stop, log_entries.c.kind == kind
    )
    if actor is not None:
        query = query.where(log_entries.c.actor == actor)
    rows = conn.execute(query.order_by(log_entries.c.idx))
    return [StoredEntry(int(r.idx), bytes(r.data), bytes(r.leaf_hash), bytes(r.chain_hash)) for r in rows]


# --- the records behind attested points batches (private) -----------------------------------------------


def upload_point_records(
    conn: Connection, *, batch_id: str, provider: str, offset: int, records: Sequence[PointRecord], now: str
) -> int:
    """Append one chunk of a batch's records at `offset` (the number already uploaded); return the new count.

    Raises `ConflictError` if another provider uploads under that batch id, the batch is already attested,
    or `offset` is not where the upload stands (a chunk lost or sent twice: the message says where to resume).
    """
    upload = conn.execute(select(point_uploads).where(point_uploads.c.batch_id == batch_id)).first()
    if upload is None:
        row = {"batch_id": batch_id, "provider": provider, "uploaded_at": now, "attested": False}
        conn.execute(insert(point_uploads).values(**row))
    elif upload.provider != provider:
        raise ConflictError(f"batch id {batch_id} is taken by another provider's upload; choose another id")
    elif upload.attested:
        raise ConflictError(f"batch {batch_id} is attested; its records can no longer change")
    count = point_record_count(conn, batch_id)
    if offset != count:
        raise UploadOffsetError(
            f"batch {batch_id} has {count} records uploaded; send the chunk that starts at {count}", uploaded=count
        )
    _insert_many(
        conn,
        "point_records",
        ("batch_id", "position", "account_id", "quantity", "subject"),
        [(batch_id, offset + i, r.account_id, r.quantity, r.subject) for i, r in enumerate(records)],
    )
    return count + len(records)


def discard_point_upload(conn: Connection, *, batch_id: str, provider: str) -> int:
    """Delete a provider's unattested upload (to start it again); return how many records it held."""
    upload = conn.execute(select(point_uploads).where(point_uploads.c.batch_id == batch_id)).first()
    if upload is None or upload.provider != provider:
        raise ConflictError(f"{provider} has no upload {batch_id}")
    if upload.attested:
        raise ConflictError(f"batch {batch_id} is attested; its records can no longer change")
    count = point_record_count(conn, batch_id)
    conn.execute(point_records.delete().where(point_records.c.batch_id == batch_id))
    conn.execute(point_uploads.delete().where(point_uploads.c.batch_id == batch_id))
    return count


def point_record_count(conn: Connection, batch_id: str) -> int:
    """How many records are uploaded under `batch_id`."""
    found = conn.execute(select(func.count()).where(point_records.c.batch_id == batch_id)).scalar_one()
    return int(found)


def point_upload(conn: Connection, batch_id: str) -> tuple[str, bool] | None:
    """(provider, attested) of the upload `batch_id`, or None."""
    row = conn.execute(
        select(point_uploads.c.provider, point_uploads.c.attested).where(point_uploads.c.batch_id == batch_id)
    ).first()
    return None if row is None else (str(row.provider), bool(row.attested))


def read_point_records(conn: Connection, batch_id: str, *, provider: str | None = None) -> list[PointRecord] | None:
    """A batch's uploaded records in order (None if nothing is uploaded under that id, by `provider` if given)."""
    upload = point_upload(conn, batch_id)
    if upload is None or (provider is not None and upload[0] != provider):
        return None
    rows = conn.exec_driver_sql(
        f"SELECT account_id, quantity, subject FROM point_records WHERE batch_id = {_marker(conn.dialect)} "
        "ORDER BY position",
        (batch_id,),
    )
    return [PointRecord(account_id, int(quantity), subject) for account_id, quantity, subject in rows]


def mark_attested(conn: Connection, batch_id: str) -> None:
    """Freeze an upload: its batch is in the log."""
    conn.execute(point_uploads.update().where(point_uploads.c.batch_id == batch_id).values(attested=True))


def point_records_of(conn: Connection, account_id: str) -> list[tuple[str, int, PointRecord]]:
    """Every attested record of one account: (batch id, position, record), by batch id and position."""
    rows = conn.execute(
        select(point_records)
        .join(point_uploads, point_uploads.c.batch_id == point_records.c.batch_id)
        .where(point_records.c.account_id == account_id, point_uploads.c.attested.is_(True))
        .order_by(point_records.c.batch_id, point_records.c.position)
    )
    return [
        (str(r.batch_id), int(r.position), PointRecord(str(r.account_id), int(r.quantity), str(r.subject)))
        for r in rows
    ]
