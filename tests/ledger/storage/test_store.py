"""The store's queries: checkpoint compare-and-swap, tree nodes, entry streaming, projections."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import Engine, select

from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.errors import ConflictError, ProofError
from ledger.ledger import tx_hash
from ledger.merkle import NodeId, leaf_hash, node_hash, root_at, root_from_leaves
from ledger.state import RECORD_TYPES
from ledger.storage import store
from ledger.storage.engine import read_transaction, write_transaction
from ledger.storage.tables import checkpoints, record_row
from tests.conftest import Story, log_signer
from tests.ledger.scenario import ORIGIN


@pytest.fixture
def told(story: Story) -> Story:
    """The full story appended: 17 entries, a checkpoint per entry."""
    story.full_story()
    return story


def _checkpoint(size: int, root: bytes) -> store.StoredCheckpoint:
    note = sign_checkpoint(Checkpoint(ORIGIN, size, root), log_signer())
    return store.StoredCheckpoint(size, root, note, "2025-01-01T00:00:00.000000Z")


# --- checkpoints -------------------------------------------------------------------------------------


def test_checkpoint_insert_is_a_compare_and_swap_on_size(engine: Engine) -> None:
    first, rival = _checkpoint(3, bytes([1]) * 32), _checkpoint(3, bytes([2]) * 32)
    with write_transaction(engine) as conn:
        store.insert_checkpoint(conn, first)
        with pytest.raises(ConflictError, match="a checkpoint of size 3 already exists"):
            store.insert_checkpoint(conn, rival)
        # The refused insert ran in a savepoint: the transaction goes on (PostgreSQL would abort it).
        store.insert_checkpoint(conn, _checkpoint(5, bytes([3]) * 32))
        assert store.checkpoint_at(conn, 3) == first
    with read_transaction(engine) as conn:
        assert [cp.size for cp in store.iter_checkpoints(conn)] == [3, 5]
        assert store.checkpoint_at(conn, 3) == first
        assert store.checkpoint_at(conn, 4) is None
        latest = store.latest_checkpoint(conn)
        assert latest is not None
        assert latest.size == 5


def test_checkpoint_cas_across_transactions(engine: Engine) -> None:
    with write_transaction(engine) as conn:
        store.insert_checkpoint(conn, _checkpoint(1, bytes(32)))
    with write_transaction(engine) as conn:
        with pytest.raises(ConflictError):
            store.insert_checkpoint(conn, _checkpoint(1, bytes([9]) * 32))
        assert conn.execute(select(checkpoints.c.root_hash)).scalars().all() == [bytes(32)]


def test_latest_checkpoint_of_an_empty_log(engine: Engine) -> None:
    with read_transaction(engine) as conn:
        assert store.latest_checkpoint(conn) is None
        assert store.log_size(conn) == 0
        assert list(store.iter_entries(conn)) == []


def test_cosignature_once_per_witness(engine: Engine) -> None:
    with write_transaction(engine) as conn:
        store.insert_cosignature(conn, 4, "w2", "— w2 line", 1)
        store.insert_cosignature(conn, 4, "w1", "— w1 line", 2)
        with pytest.raises(ConflictError, match="w1 already cosigned the checkpoint of size 4"):
            store.insert_cosignature(conn, 4, "w1", "— w1 other", 3)
        assert store.cosignature_lines(conn, 4) == ["— w1 line", "— w2 line"]
        assert store.cosignature_lines(conn, 5) == []


def test_meta_is_set_once(engine: Engine) -> None:
    with write_transaction(engine) as conn:
        store.set_meta(conn, "origin", ORIGIN)
        store.set_meta(conn, "origin", ORIGIN)
        with pytest.raises(ConflictError, match="registry origin is already"):
            store.set_meta(conn, "origin", "other.example/log")
        assert store.get_meta(conn, "origin") == ORIGIN
        assert store.get_meta(conn, "vkey") is None


# --- tree nodes --------------------------------------------------------------------------------------


def test_node_reader_returns_leaves_and_interior_nodes(told: Story) -> None:
    with read_transaction(told.ledger.engine) as conn:
        entries = store.read_entries(conn, 0, store.log_size(conn))
        leaves = [e.leaf_hash for e in entries]
        assert len(leaves) == 17
        assert leaves == [leaf_hash(e.data) for e in entries]
        reader = store.DbNodeReader(conn)
        wanted = [NodeId(0, 0), NodeId(0, 16), NodeId(1, 0), NodeId(1, 7), NodeId(2, 3), NodeId(3, 1), NodeId(4, 0)]
        nodes = reader.get_nodes(wanted)
        assert set(nodes) == set(wanted)
        assert nodes[NodeId(0, 16)] == leaves[16]
        assert nodes[NodeId(1, 0)] == node_hash(leaves[0], leaves[1])
        assert nodes[NodeId(1, 7)] == node_hash(leaves[14], leaves[15])
        assert nodes[NodeId(2, 3)] == root_from_leaves(leaves[12:16])
        assert nodes[NodeId(3, 1)] == root_from_leaves(leaves[8:16])
        assert nodes[NodeId(4, 0)] == root_from_leaves(leaves[:16])
        for size in (1, 2, 5, 16, 17):
            assert root_at(reader, size) == root_from_leaves(leaves[:size])


MISSING = [
    (NodeId(0, 17), [NodeId(0, 3), NodeId(0, 17)]),  # a leaf beyond the log
    (NodeId(1, 8), [NodeId(1, 8)]),  # leaves 16..17: not complete yet
    (NodeId(5, 0), [NodeId(2, 0), NodeId(5, 0)]),  # a subtree of 32 leaves
]


def test_node_reader_refuses_missing_nodes(told: Story) -> None:
    with read_transaction(told.ledger.engine) as conn:
        reader = store.DbNodeReader(conn)
        for missing, wanted in MISSING:
            with pytest.raises(ProofError, match=re.escape(f"no hash for tree node {missing}")):
                reader.get_nodes(wanted)


# --- entries -----------------------------------------------------------------------------------------


def test_iter_entries_streams_in_chunks(told: Story) -> None:
    with read_transaction(told.ledger.engine) as conn:
        everything = store.read_entries(conn, 0, 100)
        assert [e.index for e in everything] == list(range(17))
        for chunk in (1, 2, 5, 16, 17, 18, 1000):
            assert list(store.iter_entries(conn, 0, chunk=chunk)) == everything, chunk
            assert list(store.iter_entries(conn, 6, chunk=chunk)) == everything[6:], chunk
            assert list(store.iter_entries(conn, 16, chunk=chunk)) == everything[16:], chunk
            assert list(store.iter_entries(conn, 17, chunk=chunk)) == [], chunk
        assert store.read_entries(conn, 4, 7) == everything[4:7]
        assert store.read_entries(conn, 17, 20) == []


def test_find_by_nonce(told: Story) -> None:
    tx, _ = told.world.log[5]
    with read_transaction(told.ledger.engine) as conn:
        found = store.find_by_nonce(conn, tx.body.actor, tx.body.nonce)
        assert found is not None
        assert found[0] == 5
        assert store.find_by_nonce(conn, "someone-else", tx.body.nonce) is None
        other, _ = told.world.log[9]
        pairs = [(tx.body.actor, tx.body.nonce), (other.body.actor, other.body.nonce), ("someone-else", tx.body.nonce)]
        assert store.find_nonces(conn, pairs) == {
            pairs[0]: (5, tx_hash(tx)),
            pairs[1]: (9, tx_hash(other)),
        }
        assert store.find_nonces(conn, []) == {}


# --- projections -------------------------------------------------------------------------------------


def _rows_by_key(rows: Any, table: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {store.projection_key(table, row): dict(row) for row in rows}


def test_projections_equal_the_state(told: Story) -> None:
    # Some splits and merges of unit blocks, so rows are deleted as well as written.
    told.world.transfer("organiser", "buyer", 7)
    told.world.transfer("buyer", "owner", 3)
    told.world.transfer("buyer", "organiser", 4)
    told.sync()
    state = told.ledger.state()
    assert state.balance("buyer") == 0
    with read_transaction(told.ledger.engine) as conn:
        for record_type in RECORD_TYPES:
            table = record_type.TABLE
            stored = _rows_by_key(store.iter_projection_rows(conn, table), table)
            expected = _rows_by_key((record_row(r) for r in state.records(table)), table)
            assert stored == expected, table
    # The clients' own replay agrees with the ledger's.
    for record_type in RECORD_TYPES:
        table = record_type.TABLE
        assert list(told.world.state.records(table)) == list(state.records(table)), table


def test_write_projections_writes_the_dirty_rows_and_clears_the_marks(told: Story) -> None:
    state = told.ledger.state()
    assert state.dirty == set()  # the ledger wrote what its appends changed
    participant = state.participants["buyer"]
    state.participants["buyer"] = replace(participant, name="Renamed")
    state.dirty.add(("participants", ("buyer",)))
    del state.participants["verifier"]
    state.dirty.add(("participants", ("verifier",)))
    with write_transaction(told.ledger.engine) as conn:
        store.write_projections(conn, state)
        assert state.dirty == set()
        rows = {row["id"]: row for row in store.iter_projection_rows(conn, "participants")}
        conn.rollback()  # leave the ledger's tables as its log says
    assert set(rows) == {"authority", "owner", "organiser", "buyer"}
    assert rows["buyer"] == record_row(replace(participant, name="Renamed"))
