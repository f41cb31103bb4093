"""Unit movements: what each entry did to which serials, stored beside the log and checked by the audit."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

import pytest
from sqlalchemy import Engine, text

from ledger.audit import audit
from ledger.history import ACTIONS, Movement, movement_row, movements
from ledger.ledger import Ledger
from ledger.log import decode_entry
from ledger.serials import SerialRange, parse_block
from ledger.state import State
from ledger.storage import schema, store
from ledger.storage.engine import read_transaction
from ledger.storage.source import DatabaseSource
from ledger.transactions import CancellationReason, FreezeTarget, Selection
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


def test_a_pristine_log_passes_the_movement_check(told: Story) -> None:
    with DatabaseSource(told.ledger.engine) as source:
        report = audit(source, vkey=VKEY, workers=1)
    assert report.verified, report.to_json()["findings"]


TAMPERING = {
    "a holder rewritten": "UPDATE unit_movements SET to_holder = 'mallory' WHERE action = 'transferred'",
    "a movement deleted": "DELETE FROM unit_movements WHERE action = 'retired'",
    "a range widened": "UPDATE unit_movements SET last = last + 1 WHERE action = 'cancelled'",
    "a movement invented": (
        "INSERT INTO unit_movements (entry, batch_id, first, last, action, from_holder, to_holder, ref) "
        "VALUES (2, 'P0001-2023-001', 1, 5, 'transferred', 'owner', 'mallory', NULL)"
    ),
    "a movement after the log's end": (
        "INSERT INTO unit_movements (entry, batch_id, first, last, action, from_holder, to_holder, ref) "
        "VALUES (100000, 'P0001-2023-001', 1, 5, 'transferred', 'owner', 'mallory', NULL)"
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


def test_entries_that_move_nothing_have_no_movements(told: Story) -> None:
    told.world.freeze(FreezeTarget.ACCOUNT, "buyer")
    (receipt,) = told.sync()
    assert receipt.outcome is not None
    assert movements(receipt.index, "authority", receipt.outcome) == []
    with read_transaction(told.ledger.engine) as conn:
        assert not [r for r in store.iter_movement_rows(conn) if r["entry"] == receipt.index]
