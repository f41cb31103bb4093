"""The audit's view of a ledger database: one snapshot of entries, checkpoints, nodes and projections."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from typing import Any

from sqlalchemy import Connection, Engine

from ledger.audit import SourceCheckpoint
from ledger.log import StoredEntry
from ledger.merkle import NodeReader
from ledger.points_batch import PointRecord
from ledger.storage import store
from ledger.storage.engine import read_transaction


class DatabaseSource:
    """Reads a ledger database for the audit inside one read transaction (use as a context manager)."""

    holds_point_records = True  # every attested batch's records are in `point_records`

    def __init__(self, engine: Engine, *, with_projections: bool = True) -> None:
        self._engine = engine
        self._with_projections = with_projections
        self._stack = ExitStack()
        self._conn: Connection | None = None

    def __enter__(self) -> DatabaseSource:
        self._conn = self._stack.enter_context(read_transaction(self._engine))
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()
        self._conn = None

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            raise RuntimeError("DatabaseSource is used outside its `with` block")
        return self._conn

    def entries(self) -> Iterator[StoredEntry]:
        """Every entry in index order, streamed in chunks."""
        return store.iter_entries(self.conn, 0)

    def checkpoints(self) -> Sequence[SourceCheckpoint]:
        """Every stored checkpoint, smallest first."""
        return [SourceCheckpoint(cp.size, cp.root_hash, cp.note) for cp in store.iter_checkpoints(self.conn)]

    def node_reader(self) -> NodeReader | None:
        """The stored Merkle nodes."""
        return store.DbNodeReader(self.conn)

    def projection_rows(self, table: str) -> Iterator[dict[str, Any]] | None:
        """The rows of one projection table, or None when projections are not audited."""
        if not self._with_projections:
            return None
        return store.iter_projection_rows(self.conn, table)

    def movement_rows(self) -> Iterator[dict[str, Any]] | None:
        """The stored unit movements in entry order, or None when projections are not audited."""
        if not self._with_projections:
            return None
        return store.iter_movement_rows(self.conn)

    def entry_index_rows(self) -> Iterator[dict[str, Any]] | None:
        """The columns stored beside each entry's bytes, in index order (audited with the projections)."""
        if not self._with_projections:
            return None
        return store.iter_entry_index_rows(self.conn)

    def point_records(self, batch_id: str, provider: str) -> Sequence[PointRecord] | None:
        """The records `provider` uploaded for a points batch (private rows: the database has them all)."""
        return store.read_point_records(self.conn, batch_id, provider=provider)

    def registry_meta(self) -> Mapping[str, str] | None:
        """The registry's recorded settings (origin, verifier key)."""
        return store.all_meta(self.conn)
