"""`store.write_projections` on both engines: it replaces and deletes exactly the dirty rows, by composite key.

The batches here are larger than any one statement's worth of bind parameters if each key column of each
row were bound on its own (PostgreSQL's limit is 65,535): 24,000 three-column keys and their five-column rows.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import Engine

from ledger.state import State
from ledger.state.records import Consent, Key, PointLot
from ledger.storage import store
from ledger.storage.engine import read_transaction, write_transaction
from ledger.storage.tables import record_row

ACCOUNTS = 12_000  # two providers each: 24,000 consents, 24,000 lots
PROVIDERS = ("provider-a", "provider-b")
MONTHS = ("2026-10", "2026-11")
RULE = "bike-km"


def _stored(engine: Engine, table: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    with read_transaction(engine) as conn:
        return {store.projection_key(table, row): row for row in store.iter_projection_rows(conn, table)}


def _expected(state: State, table: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    rows = (record_row(record) for record in state.records(table))
    return {store.projection_key(table, row): row for row in rows}


def _put_consent(state: State, consent: Consent) -> None:
    key = (consent.account_id, consent.provider, consent.rule_id)
    state.consents[key] = consent
    state.dirty.add((Consent.TABLE, key))


def _put_lot(state: State, lot: PointLot) -> None:
    key = (lot.account_id, lot.month)
    state.point_lots[key] = lot
    state.dirty.add((PointLot.TABLE, key))


def _remove(state: State, table: str, key: tuple[Any, ...]) -> None:
    records: dict[str, dict[Any, Any]] = {
        Consent.TABLE: state.consents,
        PointLot.TABLE: state.point_lots,
        Key.TABLE: state.keys,
    }
    del records[table][key[0] if len(key) == 1 else key]
    state.dirty.add((table, key))


def _write(engine: Engine, state: State) -> None:
    with write_transaction(engine) as conn:
        store.write_projections(conn, state)
    assert state.dirty == set()


def test_write_projections_replaces_and_deletes_exactly_the_dirty_composite_keys(engine: Engine) -> None:
    state = State()
    for i in range(ACCOUNTS):
        account = f"acct-{i:05d}"
        for provider in PROVIDERS:
            _put_consent(state, Consent(account, provider, RULE, granted=True, updated_at=1))
        # Only the first month of each account: the second arrives in the next batch, beside its neighbour.
        _put_lot(state, PointLot(account, MONTHS[0], points=i))
    # Bigint values beyond 32 bits and a nullable column that is NULL in every row of the batch.
    for i in range(3):
        key = Key(f"key-{i}", f"acct-{i:05d}", "ed25519:" + "ab" * 32, added_at=2**40 + i, revoked_at=None)
        state.keys[key.key_id] = key
        state.dirty.add((Key.TABLE, (key.key_id,)))
    _write(engine, state)
    for table in (Consent.TABLE, PointLot.TABLE, Key.TABLE):
        assert _stored(engine, table) == _expected(state, table), table

    # A row no record stands for, never marked dirty: the next write must leave it alone.
    stray = Consent("acct-00000", "provider-c", RULE, granted=False, updated_at=7)
    with write_transaction(engine) as conn:
        store.write_projections(conn, _dirty_state_with(stray))

    # Second batch: one consent of each account changed or removed (its twin under the other provider,
    # which shares two of its three key columns, untouched), a lot added beside each account's first
    # month, every third first-month lot changed and every fifth removed.
    for i in range(ACCOUNTS):
        account = f"acct-{i:05d}"
        provider = PROVIDERS[i % 2]
        if i % 3 == 0:
            _remove(state, Consent.TABLE, (account, provider, RULE))
        else:
            _put_consent(state, replace(state.consents[(account, provider, RULE)], granted=False, updated_at=2))
        _put_lot(state, PointLot(account, MONTHS[1], points=10 * i))
        if i % 5 == 0:
            _remove(state, PointLot.TABLE, (account, MONTHS[0]))
        elif i % 3 == 0:
            _put_lot(state, PointLot(account, MONTHS[0], points=i + 1))
    revoked = replace(state.keys["key-1"], revoked_at=2**41)
    state.keys["key-1"] = revoked
    state.dirty.add((Key.TABLE, ("key-1",)))
    _remove(state, Key.TABLE, ("key-2",))
    dirty = len(state.dirty)
    assert dirty > 2 * ACCOUNTS + 2
    _write(engine, state)

    consents = _stored(engine, Consent.TABLE)
    assert consents.pop(("acct-00000", "provider-c", RULE)) == record_row(stray)
    assert consents == _expected(state, Consent.TABLE)
    assert len(consents) == 2 * ACCOUNTS - len(range(0, ACCOUNTS, 3))
    lots = _stored(engine, PointLot.TABLE)
    assert lots == _expected(state, PointLot.TABLE)
    assert len(lots) == 2 * ACCOUNTS - len(range(0, ACCOUNTS, 5))
    assert lots[("acct-00003", MONTHS[0])]["points"] == 4
    assert lots[("acct-00001", MONTHS[0])]["points"] == 1
    assert ("acct-00005", MONTHS[0]) not in lots
    assert _stored(engine, Key.TABLE) == _expected(state, Key.TABLE)
    assert _stored(engine, Key.TABLE)[("key-1",)]["revoked_at"] == 2**41


def test_write_projections_with_nothing_dirty_writes_nothing(engine: Engine) -> None:
    state = State()
    _write(engine, state)
    assert _stored(engine, Consent.TABLE) == {}


def _dirty_state_with(consent: Consent) -> State:
    state = State()
    _put_consent(state, consent)
    return state
