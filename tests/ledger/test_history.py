"""Unit movements: what each entry did to which serials, stored beside the log and checked by the audit."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from ledger.audit import audit
from ledger.history import ACTIONS, Movement, movement_row, movements, span_class
from ledger.ledger import Ledger
from ledger.log import decode_entry
from ledger.serials import SerialRange, parse_block
from ledger.state import State
from ledger.storage import schema, store
from ledger.storage.engine import read_transaction
from ledger.storage.source import DatabaseSource
from ledger.transactions import CancellationReason, FreezeTarget, Role, Selection
from tests.conftest import Story, log_signer
from tests.ledger.test_audit import drop_triggers

VKEY = log_signer().verifier_key()


@pytest.fixture
def told(story: Story) -> Story:
    """The full story, then a split transfer, a cancellation and a retirement by explicit serials."""
    story.full_story()
    world = story.world
    world.transfer("owner", "buyer", 40)
    world.advance(timedelta(days=1))
    world.cancel("buyer", Selection(quantity=5), CancellationReason.CORRECTION)
    (held,) = world.holdings("buyer")
    block = parse_block(held)
    middle = SerialRange(block.batch_id, block.first + 4, block.first + 6)  # three serials inside the block
    world.retire("buyer", Selection(blocks=(str(middle),)))
    story.sync()
    return story


def replayed_movements(ledger: Ledger) -> list[Movement]:
    """The movements the log implies, replayed from the stored entries alone."""
    state = State()
    found: list[Movement] = []
    with read_transaction(ledger.engine) as conn:
        for stored in store.iter_entries(conn):
            entry = decode_entry(stored.data, index=stored.index)
            body = entry.body()
            state.authorise(body, index=entry.index, accepted_at=entry.accepted_at)
            found += movements(
                entry.index, body.actor, state.apply(body, index=entry.index, accepted_at=entry.accepted_at)
            )
    return found


def stored_rows(engine: Engine) -> list[dict[str, object]]:
    with read_transaction(engine) as conn:
        return list(store.iter_movement_rows(conn, chunk=3))  # a small chunk crosses chunk boundaries


def test_the_write_path_stores_the_movements_the_log_implies(told: Story) -> None:
    expected = [movement_row(m) for m in replayed_movements(told.ledger)]
    assert stored_rows(told.ledger.engine) == expected
    assert {row["action"] for row in expected} == set(ACTIONS)


def test_every_serials_history_is_one_unbroken_chain_ending_where_the_state_says(told: Story) -> None:
    state = told.ledger.state()
    by_serial: dict[tuple[str, int], list[Movement]] = defaultdict(list)
    for move in replayed_movements(told.ledger):
        for serial in range(move.first, move.last + 1):
            by_serial[(move.batch_id, serial)].append(move)
    for batch in state.records("batches"):
        for serial in range(1, batch.quantity + 1):
            history = by_serial[(batch.id, serial)]
            assert history[0].action == "issued"
            assert history[0].to_holder == batch.owner
            for before, after in zip(history, history[1:], strict=False):
                assert before.entry < after.entry
                assert after.from_holder == before.to_holder or (before.action, after.action) == ("retired", "claimed")
            block = next(
                b for b in state.records("unit_blocks") if b.batch_id == batch.id and b.first <= serial <= b.last
            )
            last = history[-1]
            if block.state == "held":
                assert last.to_holder == block.holder
                assert last.action in ("issued", "transferred")
            else:
                assert last.action in (block.state, "claimed")
                assert last.to_holder is None


def test_movements_of_serials_finds_every_movement_touching_a_range(told: Story) -> None:
    moves = replayed_movements(told.ledger)
    batch = moves[0].batch_id
    with read_transaction(told.ledger.engine) as conn:
        for first, last in [(1, 1), (300, 312), (310, 310), (1, 1150), (1150, 1150)]:
            found = store.movements_of_serials(conn, batch, first, last)
            want = [m for m in moves if m.batch_id == batch and m.first <= last and m.last >= first]
            assert [(r["entry"], r["first"]) for r in found] == [(m.entry, m.first) for m in want]
            assert all(r["accepted_at"] for r in found)
        assert store.movements_of_serials(conn, "P9999-2023-001", 1, 1) == []


def test_movements_of_serials_agrees_with_a_scan_for_every_serial_and_length_class(told: Story) -> None:
    # Blocks of many lengths (a whole batch, 40, 5, 3 and single serials) sit at every distance before a
    # serial; the per-class index ranges must find exactly what a scan of every movement finds.
    world = told.world
    world.register("buyer2", [Role.ACCOUNT_HOLDER])
    for quantity in (1, 2, 3, 7, 64, 65, 200):
        world.transfer("owner", "buyer2", quantity)
    world.transfer("buyer2", "buyer", 100)  # moves the small blocks again, and part of a larger one
    told.sync()
    moves = replayed_movements(told.ledger)
    assert len({span_class(m.first, m.last) for m in moves}) >= 6
    state = told.ledger.state()
    with read_transaction(told.ledger.engine) as conn:
        for batch in state.records("batches"):
            edges = {edge for m in moves if m.batch_id == batch.id for edge in (m.first, m.last)}
            serials = sorted(edges | {e + d for e in edges for d in (-1, 1)} | set(range(1, batch.quantity + 1, 37)))
            ranges = [(s, s) for s in serials if 1 <= s <= batch.quantity]
            ranges += [(a, b) for a, b in zip(serials, serials[5:], strict=False) if 1 <= a and b <= batch.quantity]
            for first, last in ranges:
                found = store.movements_of_serials(conn, batch.id, first, last)
                want = [m for m in moves if m.batch_id == batch.id and m.first <= last and m.last >= first]
                assert [(r["entry"], r["first"]) for r in found] == [(m.entry, m.first) for m in want], (first, last)


def test_span_class_is_the_bit_length_of_the_distance_from_first_to_last() -> None:
    assert [span_class(10, 10 + d) for d in (0, 1, 2, 3, 4, 7, 8, 1023, 1024)] == [0, 1, 2, 2, 3, 3, 4, 10, 11]
    assert span_class(1, 2**63 - 1) == 63
    for first, last in [(1, 1), (5, 9), (1, 1_000_000)]:
        assert first > last - 2 ** span_class(first, last)  # a class-k block starts within 2**k - 1 before last


def test_a_pristine_log_passes_the_movement_check(told: Story) -> None:
    with DatabaseSource(told.ledger.engine) as source:
        report = audit(source, vkey=VKEY, workers=1)
    assert report.verified, report.to_json()["findings"]


TAMPERING = {
    "a holder rewritten": "UPDATE unit_movements SET to_holder = 'mallory' WHERE action = 'transferred'",
    "a movement deleted": "DELETE FROM unit_movements WHERE action = 'retired'",
    "a range widened": "UPDATE unit_movements SET last = last + 1 WHERE action = 'cancelled'",
    # A wrong length class hides the movement from its serials' histories (the index range misses it).
    "a length class lowered": "UPDATE unit_movements SET span = span - 1 WHERE action = 'issued'",
    "a movement invented": (
        "INSERT INTO unit_movements (entry, batch_id, first, last, span, action, from_holder, to_holder, ref) "
        "VALUES (2, 'P0001-2023-001', 1, 5, 3, 'transferred', 'owner', 'mallory', NULL)"
    ),
    "a movement after the log's end": (
        "INSERT INTO unit_movements (entry, batch_id, first, last, span, action, from_holder, to_holder, ref) "
        "VALUES (100000, 'P0001-2023-001', 1, 5, 3, 'transferred', 'owner', 'mallory', NULL)"
    ),
}


@pytest.mark.parametrize("statement", TAMPERING.values(), ids=TAMPERING.keys())
def test_an_altered_history_is_found_without_blaming_an_entry(told: Story, statement: str) -> None:
    engine = told.ledger.engine
    drop_triggers(engine)
    with engine.begin() as conn:
        assert conn.execute(text(statement)).rowcount >= 1
    with DatabaseSource(engine) as source:
        report = audit(source, vkey=VKEY, workers=1)
    assert not report.verified
    assert report.first_bad_index is None  # the log is intact; a derived table lies
    assert {f.invariant for f in report.findings} == {"projections"}
    assert any("unit_movements" in f.message for f in report.findings), report.to_json()["findings"]


def test_the_migration_backfills_the_movements_of_an_older_registry(told: Story) -> None:
    engine = told.ledger.engine
    before = stored_rows(engine)
    schema.downgrade(engine, "0001")
    with engine.connect() as conn:
        assert "unit_movements" not in conn.dialect.get_table_names(conn)
    schema.upgrade(engine)
    assert stored_rows(engine) == before


def test_the_length_class_migration_classes_every_existing_movement_and_keeps_the_table_append_only(
    told: Story,
) -> None:
    engine = told.ledger.engine
    before = stored_rows(engine)
    schema.downgrade(engine, "0002")
    with engine.connect() as conn:
        assert "span" not in {c["name"] for c in conn.dialect.get_columns(conn, "unit_movements")}
    schema.upgrade(engine)
    after = stored_rows(engine)
    assert after == before  # the classes the SQL gives are those `span_class` gives
    assert len({row["span"] for row in after}) >= 5
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("UPDATE unit_movements SET span = 0"))
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("DELETE FROM unit_movements"))
    with DatabaseSource(engine) as source:
        assert audit(source, vkey=VKEY, workers=1).verified


def test_entries_that_move_nothing_have_no_movements(told: Story) -> None:
    told.world.freeze(FreezeTarget.ACCOUNT, "buyer")
    (receipt,) = told.sync()
    assert receipt.outcome is not None
    assert movements(receipt.index, "authority", receipt.outcome) == []
    with read_transaction(told.ledger.engine) as conn:
        assert not [r for r in store.iter_movement_rows(conn) if r["entry"] == receipt.index]


def test_movements_of_serials_pages_by_entry_then_first_serial(told: Story) -> None:
    # One transfer of several blocks: movements that share an entry, which a page may split.
    world = told.world
    held = [parse_block(text) for text in world.holdings("buyer")]
    low, high = held[0], held[-1]
    world.transfer_blocks("buyer", "owner", [str(SerialRange(low.batch_id, s, s)) for s in (low.first, high.last)])
    told.sync()
    (batch,) = told.ledger.state().records("batches")
    with read_transaction(told.ledger.engine) as conn:
        for first, last in [(1, batch.quantity), (low.first, high.last)]:
            whole = store.movements_of_serials(conn, batch.id, first, last)
            keys = [(row["entry"], row["first"]) for row in whole]
            assert keys == sorted(set(keys))
            assert len({entry for entry, _ in keys}) < len(keys)  # some entry moved several blocks here
            for limit in (1, 2, 3, len(whole)):
                for start in range(len(whole)):
                    after = None if start == 0 else keys[start - 1]
                    page = store.movements_of_serials(conn, batch.id, first, last, after=after, limit=limit)
                    assert page == whole[start : start + limit], (first, last, after, limit)
            assert store.movements_of_serials(conn, batch.id, first, last, after=keys[-1]) == []
            assert store.movements_of_serials(conn, batch.id, first, last, after=(keys[0][0], -1)) == whole
