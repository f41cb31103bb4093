"""The audit over a database, pristine and after each way a malicious operator could alter it.

Every tamper case first drops the append-only triggers, as an operator with the database's owner
rights could, then alters the stored data and checks that the audit names the altered entry and
the step that caught it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import Engine, text

import ledger.audit
from ledger.audit import AuditReport, audit
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.errors import IntegrityError
from ledger.ledger import Ledger, Receipt, found_registry, tx_hash
from ledger.log import Entry, decode_entry, seal
from ledger.note import NoteSigner
from ledger.points_batch import PointRecord
from ledger.storage import schema, store
from ledger.storage.engine import is_sqlite, make_engine, read_transaction, write_transaction
from ledger.storage.source import DatabaseSource
from ledger.storage.tables import APPEND_ONLY_TABLES
from ledger.transactions import (
    PointAccountKind,
    PointAccountOpen,
    PointsConsent,
    PointsRedeem,
    ProviderScope,
    RedemptionFulfil,
    Retire,
    RetirementPurpose,
    Role,
    Selection,
    SignedTransaction,
    TransactionSigner,
    Transfer,
    encode_body,
    format_utc,
    make_body,
    sign_transaction,
    signing_message,
)
from tests.conftest import AUTHORITY, AUTHORITY_NAME, Databases, Story, log_signer
from tests.ledger.scenario import ORIGIN, seeded_key
from tests.ledger.state.test_awards import A1, A2, attest, km
from tests.ledger.state.test_points import rule
from tests.ledger.state.test_scenes import approved_scene, offer

VKEY = log_signer().verifier_key()
SIZE = 26


def build_pristine(engine: Engine) -> None:
    """The full story, then transfers and retirements, some of them in one batch (one checkpoint)."""
    schema.upgrade(engine)
    led = Ledger(engine, log_signer())
    found_registry(led, authority_id=AUTHORITY, authority_name=AUTHORITY_NAME, authority_key=seeded_key(AUTHORITY))
    story = Story(led)
    story.full_story()
    world = story.world
    world.transfer("owner", "buyer", 100)
    world.transfer("buyer", "organiser", 20)
    story.sync()
    world.submit(
        "buyer",
        Retire(
            selection=Selection(quantity=30),
            beneficiary="Buyer Co",
            purpose=RetirementPurpose.ORGANISATION,
            year=2024,
            reason="2024 footprint",
        ),
    )
    world.submit(
        "owner",
        Retire(
            selection=Selection(quantity=5), beneficiary="Citizens", purpose=RetirementPurpose.VOLUNTARY, reason="gift"
        ),
    )
    world.transfer("organiser", "owner", 50)
    story.sync(together=True)
    world.transfer("buyer", "owner", 10)
    world.transfer("owner", "buyer", 3)
    story.sync()
    world.transfer("owner", "organiser", 7)
    world.transfer("organiser", "buyer", 1)
    story.sync(together=True)
    assert led.size() == SIZE


@pytest.fixture
def pristine(databases: Databases, tmp_path: Path) -> Iterator[Ledger]:
    """A private copy of the pristine ledger (built once per process and engine)."""
    url = databases.from_template("audit-pristine", build_pristine, directory=tmp_path)
    engine = make_engine(url)
    try:
        yield Ledger(engine, log_signer())
    finally:
        engine.dispose()
        databases.drop(url)


def run_audit(engine: Engine, *, vkey: str | None = VKEY, workers: int = 1) -> AuditReport:
    with DatabaseSource(engine) as source:
        return audit(source, vkey=vkey, workers=workers)


def assert_caught(report: AuditReport, index: int | None, step: str, message: str = "") -> None:
    """Not verified; the first bad entry is `index`, and the first finding is of `step`."""
    summary = report.to_json()
    assert not report.verified, summary
    assert report.first_bad_index == index, summary["findings"]
    first = report.first_finding()
    assert first is not None
    assert first.invariant == step, summary["findings"]
    assert message in first.message, summary["findings"]
    assert summary["first_bad_index"] == index


def drop_triggers(engine: Engine) -> None:
    """What a malicious operator does first: switch the append-only guard off."""
    with engine.begin() as conn:
        for table in APPEND_ONLY_TABLES:
            if is_sqlite(engine):
                for action in ("update", "delete"):
                    conn.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_{action}"))
            else:
                conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))


def tamper(engine: Engine, statement: str, **params: object) -> None:
    drop_triggers(engine)
    with engine.begin() as conn:
        assert conn.execute(text(statement), params).rowcount >= 1


def stored_column(engine: Engine, column: str, index: int) -> bytes:
    with engine.connect() as conn:
        return bytes(conn.execute(text(f"SELECT {column} FROM log_entries WHERE idx = :i"), {"i": index}).scalar_one())


# --- pristine ------------------------------------------------------------------------------------------


def test_a_pristine_ledger_verifies(pristine: Ledger) -> None:
    seen: list[int] = []
    with DatabaseSource(pristine.engine) as source:
        report = audit(source, vkey=VKEY, workers=1, progress=seen.append)
    assert report.verified, report.to_json()["findings"]
    assert report.first_bad_index is None
    assert report.first_finding() is None
    assert report.entries == SIZE
    assert report.signatures_checked == SIZE
    assert report.projections_checked
    assert report.checkpoints == len(list(_checkpoint_sizes(pristine.engine))) == SIZE - 3  # two batches
    latest = pristine.latest_checkpoint()
    assert latest is not None
    assert report.root_hash == latest.root_hash
    assert seen[-1] == SIZE
    summary = json.loads(json.dumps(report.to_json()))
    assert summary["verified"] is True
    assert summary["findings"] == []
    assert summary["entries"] == SIZE


def test_a_pristine_ledger_verifies_without_a_vkey(pristine: Ledger) -> None:
    # Without the auditor's own copy of the key, the genesis entry's key is used (self-consistency).
    assert run_audit(pristine.engine, vkey=None).verified


class _EntriesOnly:
    """A database source that, like an export or a registry over HTTP, has no movement or projection rows."""

    def __init__(self, inner: DatabaseSource) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def movement_rows(self) -> None:
        return None

    def projection_rows(self, table: str) -> None:
        return None

    def entry_index_rows(self) -> None:
        return None


def test_a_log_without_stored_movements_verifies_without_a_vkey_too(pristine: Ledger) -> None:
    # The genesis key stands in for a missing vkey whatever the source (it was only used from a database).
    with DatabaseSource(pristine.engine) as source:
        report = audit(_EntriesOnly(source), vkey=None)
    assert report.verified, report.to_json()["findings"]


@pytest.mark.parametrize("workers", [1, 2])
def test_signatures_are_checked_in_worker_processes(
    pristine: Ledger, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small chunks and no threshold: several chunks go to the workers, as for a large log.
    monkeypatch.setattr(ledger.audit, "CHUNK", 4)
    monkeypatch.setattr(ledger.audit, "PARALLEL_THRESHOLD", 0)
    report = run_audit(pristine.engine, workers=workers)
    assert report.verified, report.to_json()["findings"]
    assert report.signatures_checked == SIZE
    # A forged signature is found by a worker and named at its entry.
    forged = _append_forged_entry(pristine, signer_key="mallory", key_id_of="owner")
    report = run_audit(pristine.engine, workers=workers)
    assert_caught(report, forged, "signatures")
    assert [f.invariant for f in report.findings if f.index is not None] == ["signatures", "signatures"]


def _checkpoint_sizes(engine: Engine) -> list[int]:
    with read_transaction(engine) as conn:
        return [cp.size for cp in store.iter_checkpoints(conn)]


# --- altered entries -----------------------------------------------------------------------------------

COLUMN_STEP = {"data": "encoding", "leaf_hash": "encoding", "chain_hash": "chain"}


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("column", sorted(COLUMN_STEP))
def test_a_flipped_byte_is_found_at_its_entry(pristine: Ledger, column: str, seed: int) -> None:
    rng = random.Random(f"{column}-{seed}")
    index = rng.randrange(1, SIZE)
    value = bytearray(stored_column(pristine.engine, column, index))
    position = rng.randrange(len(value))
    value[position] ^= 1 << rng.randrange(8)
    tamper(pristine.engine, f"UPDATE log_entries SET {column} = :v WHERE idx = :i", v=bytes(value), i=index)
    report = run_audit(pristine.engine)
    assert_caught(report, index, COLUMN_STEP[column])


def test_an_altered_transaction_with_rehashed_chain_is_found(pristine: Ledger) -> None:
    # A careful forger recomputes the leaf and every chain hash after the entry: the signature, the
    # signed checkpoints and the stored tree still give it away.
    index = 12
    with read_transaction(pristine.engine) as conn:
        entries = store.read_entries(conn, 0, SIZE)
    data = entries[index].data.replace(b'"quantity":300', b'"quantity":900')
    assert data != entries[index].data
    drop_triggers(pristine.engine)
    previous = entries[index - 1].chain_hash
    with pristine.engine.begin() as conn:
        for stored in entries[index:]:
            body = data if stored.index == index else stored.data
            resealed = seal(_decode(body, previous))
            conn.execute(
                text("UPDATE log_entries SET data = :d, leaf_hash = :l, chain_hash = :c WHERE idx = :i"),
                {"d": resealed.data, "l": resealed.leaf_hash, "c": resealed.chain_hash, "i": stored.index},
            )
            previous = resealed.chain_hash
    report = run_audit(pristine.engine)
    assert not report.verified
    assert report.first_bad_index == index
    steps = {f.invariant for f in report.findings if f.index == index}
    assert "signatures" in steps


def _decode(data: bytes, previous: bytes) -> Entry:
    entry = decode_entry(data)
    return Entry(entry.index, entry.accepted_at, previous, entry.public_key, entry.signature, entry.body_bytes)


def test_a_deleted_entry_is_found(pristine: Ledger) -> None:
    tamper(pristine.engine, "DELETE FROM log_entries WHERE idx = 11")
    report = run_audit(pristine.engine)
    assert_caught(report, 11, "encoding", "expected entry 11 next, found entry 12")


def test_swapped_entries_are_found(pristine: Ledger) -> None:
    first, second = stored_column(pristine.engine, "data", 9), stored_column(pristine.engine, "data", 14)
    tamper(pristine.engine, "UPDATE log_entries SET data = :d WHERE idx = 9", d=second)
    tamper(pristine.engine, "UPDATE log_entries SET data = :d WHERE idx = 14", d=first)
    report = run_audit(pristine.engine)
    assert_caught(report, 9, "encoding", "leaf hash")
    assert {f.index for f in report.findings if f.invariant == "encoding"} >= {9, 14}


def test_a_truncated_log_is_found(pristine: Ledger) -> None:
    # The checkpoints already published name more entries than the log keeps.
    tamper(pristine.engine, "DELETE FROM log_entries WHERE idx >= 19")
    report = run_audit(pristine.engine)
    assert_caught(report, 19, "checkpoints", "the log was truncated")
    assert report.entries == 19


# --- checkpoints and keys ------------------------------------------------------------------------------


def test_a_checkpoint_signed_with_another_key_is_found(pristine: Ledger) -> None:
    size = 17
    with read_transaction(pristine.engine) as conn:
        real = store.checkpoint_at(conn, size)
    assert real is not None
    forger = NoteSigner(ORIGIN, seeded_key("forger").seed)
    forged = sign_checkpoint(Checkpoint(ORIGIN, size, real.root_hash), forger)
    tamper(pristine.engine, "UPDATE checkpoints SET note = :n WHERE size = :s", n=forged, s=size)
    report = run_audit(pristine.engine)
    assert_caught(report, size - 1, "checkpoints", f"checkpoint of size {size}")
    assert len(report.findings) == 1


def test_a_checkpoint_of_another_tree_is_found(pristine: Ledger) -> None:
    # Signed with the registry's own key (a compromised signer), for a root the log does not give.
    size = 22
    forged = sign_checkpoint(Checkpoint(ORIGIN, size, bytes(32)), log_signer())
    tamper(
        pristine.engine,
        "UPDATE checkpoints SET note = :n, root_hash = :r WHERE size = :s",
        n=forged,
        r=bytes(32),
        s=size,
    )
    report = run_audit(pristine.engine)
    assert_caught(report, size - 1, "checkpoints", "the entries give")
    assert "consistency" in {f.invariant for f in report.findings}


def test_the_wrong_verifier_key_is_refused(pristine: Ledger) -> None:
    other = NoteSigner(ORIGIN, seeded_key("another registry").seed).verifier_key()
    report = run_audit(pristine.engine, vkey=other)
    assert_caught(report, 0, "checkpoints", "the genesis entry names registry key")
    assert {f.invariant for f in report.findings} == {"checkpoints"}


# --- projections ---------------------------------------------------------------------------------------

PROJECTION_EDITS = {
    "block_holder": ("UPDATE unit_blocks SET holder = 'buyer' WHERE holder = 'organiser'", "unit_blocks", "holder"),
    "block_last": (
        "UPDATE unit_blocks SET last = last + 1 WHERE first = (SELECT max(first) FROM unit_blocks)",
        "unit_blocks",
        "last",
    ),
    "project_state": ("UPDATE projects SET state = 'suspended'", "projects", "state"),
    "claim_footprint": ("UPDATE claims SET footprint_kg = footprint_kg - 1000", "claims", "footprint_kg"),
}


@pytest.mark.parametrize("edit", sorted(PROJECTION_EDITS))
def test_an_edited_projection_row_is_found(pristine: Ledger, edit: str) -> None:
    statement, table, column = PROJECTION_EDITS[edit]
    tamper(pristine.engine, statement)
    report = run_audit(pristine.engine)
    assert_caught(report, None, "projections", f"{table} row")
    assert column in report.findings[0].message
    assert {f.invariant for f in report.findings} == {"projections"}


def test_a_deleted_projection_row_is_found(pristine: Ledger) -> None:
    tamper(pristine.engine, "DELETE FROM retirements WHERE purpose = 'voluntary'")
    report = run_audit(pristine.engine)
    assert_caught(report, None, "projections", "retirements has 2 rows, the replayed state has 3")


# --- forged entries ------------------------------------------------------------------------------------


def _append_forged_entry(
    ledger: Ledger,
    *,
    signer_key: str,
    key_id_of: str,
    actor: str = "owner",
    payload: BaseModel | None = None,
) -> int:
    """Append, with correct leaf and chain hashes and bypassing the rules, an entry of `actor` signed with
    `signer_key` (a key other than the actor's unless both name the actor)."""
    forger = seeded_key(signer_key)
    with read_transaction(ledger.engine) as conn:
        size = store.log_size(conn)
        (last,) = store.read_entries(conn, size - 1, size)
    state = Ledger(ledger.engine, ledger.signer).state()
    assert state.last_time is not None
    at = state.last_time + timedelta(seconds=1)
    body = make_body(
        origin=ORIGIN,
        actor=actor,
        key=seeded_key(key_id_of).public_key,
        payload=payload or Transfer(to="buyer", selection=Selection(quantity=100)),
        nonce="forged-nonce-000001",
        created_at=at,
    )
    if key_id_of == signer_key:
        tx = sign_transaction(body, forger)
    else:
        body_bytes = encode_body(body)
        tx = SignedTransaction(body_bytes, forger.sign(signing_message(body_bytes)), body)
    sealed = seal(Entry(size, at, last.chain_hash, forger.public_key.raw, tx.signature, tx.body_bytes))
    meta = store.EntryMeta(format_utc(at), actor, body.nonce, body.kind, tx_hash(tx))
    with write_transaction(ledger.engine) as conn:
        store.insert_entries(conn, [(sealed, meta)])
    return size


def test_an_entry_signed_by_an_unknown_key_is_found(pristine: Ledger) -> None:
    index = _append_forged_entry(pristine, signer_key="mallory", key_id_of="mallory")
    report = run_audit(pristine.engine)
    assert_caught(report, index, "keys", "is not registered to owner")
    assert report.entries == SIZE + 1


def test_an_entry_signed_with_another_key_than_the_actors_is_found(pristine: Ledger) -> None:
    index = _append_forged_entry(pristine, signer_key="mallory", key_id_of="owner")
    report = run_audit(pristine.engine)
    assert_caught(report, index, "signatures")
    messages = sorted(f.message for f in report.findings)
    assert any("other than the registered key" in m for m in messages), messages
    assert any("does not verify" in m for m in messages), messages


def test_the_ledger_will_not_build_on_a_log_that_does_not_replay(pristine: Ledger) -> None:
    # The write path replays what other processes appended; a forged entry stops it (fail closed)
    # with an integrity error about that entry, not a rule violation blamed on the caller.
    index = _append_forged_entry(pristine, signer_key="mallory", key_id_of="mallory")
    fresh = Ledger(pristine.engine, pristine.signer)
    with pytest.raises(IntegrityError, match=f"entry {index}: the stored log does not replay: unknown_key"):
        fresh.state()
    tx = TransactionSigner(ORIGIN, "buyer", seeded_key("buyer")).sign(
        Transfer(to="owner", selection=Selection(quantity=1)), at=datetime.now(UTC)
    )
    with pytest.raises(IntegrityError, match=f"entry {index}"):
        fresh.submit([tx])
    assert fresh.size() == index + 1


def test_a_strangers_retirement_for_an_event_is_found(pristine: Ledger) -> None:
    # Written past the rules, with the buyer's own valid signature: the replay refuses it, so the audit
    # and the certificate verifier agree that only an event's organiser retires units for it.
    stranger = Retire(
        selection=Selection(quantity=1),
        beneficiary="Tianfu Green Forum",
        purpose=RetirementPurpose.EVENT,
        event_id="E0001",
        reason="attached to someone else's event",
    )
    index = _append_forged_entry(pristine, signer_key="buyer", key_id_of="buyer", actor="buyer", payload=stranger)
    report = run_audit(pristine.engine)
    assert_caught(report, index, "replay", "forbidden: event E0001 is organised by organiser; only its organiser")


# --- the points path's private records -------------------------------------------------------------------


class _PublicLog(_EntriesOnly):
    """What an outside auditor reads (the public log over HTTP, an export): no points batch's records."""

    holds_point_records = False

    def point_records(self, batch_id: str, provider: str) -> None:
        return None


def bike_riders(story: Story) -> None:
    """In the world: bike-co scoped to bike-km, and tianfu-app's citizens A1 and A2 consenting to it."""
    w = story.world
    w.register("bike-co", [Role.DATA_PROVIDER])
    w.register("tianfu-app", [Role.PLATFORM_OPERATOR])
    w.submit(AUTHORITY, rule("bike-km", w.clock.date()))
    w.submit(AUTHORITY, ProviderScope(provider="bike-co", rules=("bike-km",)))
    for account in (A1, A2):
        w.submit("tianfu-app", PointAccountOpen(account_id=account, account_kind=PointAccountKind.CITIZEN))
        w.submit("tianfu-app", PointsConsent(account_id=account, provider="bike-co", rule_id="bike-km", granted=True))


def ridden_yesterday(story: Story) -> tuple[list[PointRecord], Receipt]:
    """bike-co's batch b-1 of A1's and A2's rides yesterday, uploaded to the private tables, then attested."""
    story.sync()
    day = story.world.clock.date() - timedelta(days=1)
    records = [km(A1, 10, day), km(A2, 4, day)]
    with write_transaction(story.ledger.engine) as conn:
        store.upload_point_records(conn, batch_id="b-1", provider="bike-co", offset=0, records=records, now="x")
    return records, story.submit("bike-co", attest(story.world, "bike-co", "b-1", records, day))


def points_story(story: Story) -> list[PointRecord]:
    """bike-co attests a day of two citizens' rides; A1 redeems 500 points at an approved tea house and gets
    its tea; the batch's records (uploaded to the private tables first) are returned."""
    w = story.world
    bike_riders(story)
    w.register("teahouse", [Role.MERCHANT])
    w.register("green-eval", [Role.SCENE_EVALUATOR])
    approved_scene(w)
    w.advance(timedelta(days=3))
    w.submit("teahouse", offer(w))
    records, _ = ridden_yesterday(story)
    story.submit(
        "tianfu-app", PointsRedeem(order_id="RO00000000000000a1", offer_id="tea-set", account_id=A1, quantity=1)
    )
    story.submit("teahouse", RedemptionFulfil(order_id="RO00000000000000a1"))
    return records


def test_an_audit_of_the_database_replays_every_batch_from_its_records(story: Story) -> None:
    points_story(story)
    report = run_audit(story.ledger.engine)
    assert report.verified, report.to_json()["findings"]
    assert report.points_not_replayed == 0
    assert report.projections_checked


def test_an_audit_of_the_public_log_verifies_all_but_the_point_balances(story: Story) -> None:
    # Without the private records, the attestation, the redemption and its fulfilment are checked up to
    # their signatures but not replayed; the report says how many, and nothing else is left unchecked.
    points_story(story)
    with DatabaseSource(story.ledger.engine) as source:
        report = audit(_PublicLog(source), vkey=VKEY, workers=1)
    assert report.verified, report.to_json()["findings"]
    assert report.points_not_replayed == 3
    assert report.to_json()["points_not_replayed"] == 3
    assert report.signatures_checked == report.entries == story.ledger.size()


def test_an_attestation_whose_records_are_gone_from_the_database_is_found(story: Story) -> None:
    points_story(story)
    with write_transaction(story.ledger.engine) as conn:
        conn.execute(text("DELETE FROM point_records WHERE batch_id = 'b-1'"))
        conn.execute(text("DELETE FROM point_uploads WHERE batch_id = 'b-1'"))
    index = story.ledger.size() - 3
    report = run_audit(story.ledger.engine)
    assert_caught(report, index, "replay", "the records of points batch b-1 are not available to this audit")


def test_an_edited_record_no_longer_matches_the_attested_root(story: Story) -> None:
    points_story(story)
    with write_transaction(story.ledger.engine) as conn:
        conn.execute(text("UPDATE point_records SET quantity = 40 WHERE batch_id = 'b-1' AND position = 0"))
    index = story.ledger.size() - 3
    report = run_audit(story.ledger.engine)
    assert_caught(report, index, "replay", "root_mismatch")
