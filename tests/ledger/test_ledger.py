"""The append path on SQLite and PostgreSQL: receipts, group commit, refusals, replays, concurrency."""

from __future__ import annotations

import dataclasses
import multiprocessing
import random
import traceback
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from ledger.audit import audit
from ledger.checkpoint import open_checkpoint
from ledger.errors import ConflictError, RuleViolation, StorageError
from ledger.keys import PublicKey
from ledger.ledger import Ledger, Receipt, found_registry, tx_hash
from ledger.log import decode_entry
from ledger.merkle import root_from_leaves, verify_inclusion
from ledger.note import NoteSigner, NoteVerifier
from ledger.state import RECORD_TYPES
from ledger.storage import store
from ledger.storage.engine import make_engine, read_transaction
from ledger.storage.source import DatabaseSource
from ledger.storage.tables import checkpoints, log_entries, record_row
from ledger.transactions import Role, Selection, SignedTransaction, TransactionSigner, Transfer
from tests.conftest import AUTHORITY, AUTHORITY_NAME, Story, log_signer
from tests.ledger.scenario import ORIGIN, World, seeded_key

HOLDERS = ("owner", "organiser", "buyer")


def verifier() -> NoteVerifier:
    return NoteVerifier.from_vkey(log_signer().verifier_key())


def check_receipt(receipt: Receipt) -> None:
    """The receipt's proof puts its leaf in the tree its signed checkpoint commits to."""
    signed = open_checkpoint(receipt.checkpoint, verifier(), origin=ORIGIN)
    assert signed.checkpoint.size == receipt.tree_size
    verify_inclusion(
        leaf=receipt.leaf_hash,
        index=receipt.index,
        size=receipt.tree_size,
        proof=receipt.inclusion_proof,
        root=signed.checkpoint.root_hash,
    )


def checkpoint_sizes(engine: Engine) -> list[int]:
    with read_transaction(engine) as conn:
        return [cp.size for cp in store.iter_checkpoints(conn)]


def assert_verifies(engine: Engine) -> None:
    with DatabaseSource(engine) as source:
        report = audit(source, vkey=log_signer().verifier_key(), workers=1)
    assert report.verified, report.to_json()["findings"]
    assert report.projections_checked


def assert_projections_match(engine: Engine, ledger: Ledger) -> None:
    state = Ledger(engine, ledger.signer).state()  # a fresh replay of the stored log
    with read_transaction(engine) as conn:
        for record_type in RECORD_TYPES:
            table = record_type.TABLE
            stored = {store.projection_key(table, r): r for r in store.iter_projection_rows(conn, table)}
            replayed = {store.projection_key(table, row): row for row in map(record_row, state.records(table))}
            assert stored == replayed, table


@pytest.fixture
def issued(story: Story) -> Story:
    """Participants, a registered project and 1150 units issued to the owner, 300 of them sent on."""
    project = story.world.registered_project()
    story.world.issued_batch(project, 2023, 1200, 1150)
    story.world.transfer("owner", "organiser", 300)
    story.sync()
    return story


def transfer(story: Story, sender: str, to: str, quantity: int, nonce: str | None = None) -> SignedTransaction:
    """A transfer signed by the world's client (not applied to the world's own state)."""
    story.world.advance(timedelta(seconds=1))
    payload = Transfer(to=to, selection=Selection(quantity=quantity))
    return story.world.signer(sender).sign(payload, at=story.world.clock, nonce=nonce)


# --- receipts ------------------------------------------------------------------------------------------


def test_founding_appends_the_genesis(ledger: Ledger) -> None:
    assert ledger.size() == 1
    cp = ledger.latest_checkpoint()
    assert cp is not None
    assert cp.size == 1
    signed = open_checkpoint(cp.note, verifier(), origin=ORIGIN)
    assert signed.checkpoint.root_hash == cp.root_hash
    state = ledger.state()
    assert state.origin == ORIGIN
    assert state.registry_vkey == log_signer().verifier_key()
    assert state.participants[AUTHORITY].roles == (Role.AUTHORITY.value,)
    with pytest.raises(RuleViolation, match="only valid as entry 0"):
        found_registry(
            ledger, authority_id=AUTHORITY, authority_name=AUTHORITY_NAME, authority_key=seeded_key(AUTHORITY)
        )
    assert ledger.size() == 1


def test_full_story_receipts_prove_inclusion(story: Story) -> None:
    story.full_story()
    assert story.ledger.size() == len(story.world.log) == 17
    assert sorted(story.receipts) == list(range(1, 17))
    with read_transaction(story.ledger.engine) as conn:
        entries = store.read_entries(conn, 0, 17)
    for index, receipt in story.receipts.items():
        assert receipt.index == index
        assert not receipt.duplicate
        assert receipt.tree_size == index + 1  # one transaction per batch: its own checkpoint
        assert receipt.leaf_hash == entries[index].leaf_hash
        assert receipt.outcome is not None
        check_receipt(receipt)
        entry = decode_entry(entries[index].data, index=index)
        tx, at = story.world.log[index]
        assert entry.body_bytes == tx.body_bytes
        assert entry.signature == tx.signature
        assert entry.accepted_at == at
    assert story.receipts[16].outcome is not None
    assert story.receipts[16].outcome.kind == "claim.issue"
    # Receipts for old entries stay valid against the latest checkpoint.
    latest = story.ledger.latest_checkpoint()
    assert latest is not None
    assert checkpoint_sizes(story.ledger.engine) == list(range(1, 18))
    assert latest.root_hash == root_from_leaves([e.leaf_hash for e in entries])
    assert_projections_match(story.ledger.engine, story.ledger)
    assert_verifies(story.ledger.engine)


def test_one_batch_gets_one_checkpoint(issued: Story) -> None:
    ledger = issued.ledger
    before, cps = ledger.size(), len(checkpoint_sizes(ledger.engine))
    batch = [
        transfer(issued, "owner", "buyer", 10),
        transfer(issued, "organiser", "buyer", 5),
        transfer(issued, "owner", "organiser", 1),
    ]
    receipts = ledger.submit(batch, now=issued.world.clock)
    assert [r.index for r in receipts if isinstance(r, Receipt)] == [before, before + 1, before + 2]
    assert len(checkpoint_sizes(ledger.engine)) == cps + 1
    for receipt in receipts:
        assert isinstance(receipt, Receipt)
        assert receipt.tree_size == before + 3
        check_receipt(receipt)
    assert ledger.state().balance("buyer") == 15
    assert_verifies(ledger.engine)


# --- refusals ------------------------------------------------------------------------------------------


def _forged_signature(story: Story) -> SignedTransaction:
    tx = transfer(story, "organiser", "buyer", 2)
    other = transfer(story, "organiser", "buyer", 3)
    return dataclasses.replace(tx, signature=other.signature)


def _unknown_key(story: Story) -> SignedTransaction:
    mallory = TransactionSigner(ORIGIN, "organiser", seeded_key("mallory"))
    return mallory.sign(Transfer(to="buyer", selection=Selection(quantity=2)), at=story.world.clock)


def _over_quantity(story: Story) -> SignedTransaction:
    return transfer(story, "organiser", "buyer", 301)


@pytest.mark.parametrize(
    ("make_bad", "code"),
    [(_forged_signature, "bad_signature"), (_unknown_key, "unknown_key"), (_over_quantity, "insufficient_units")],
    ids=["forged_signature", "unknown_key", "over_quantity"],
)
def test_a_bad_transaction_is_left_out_of_its_batch(
    issued: Story, make_bad: Callable[[Story], SignedTransaction], code: str
) -> None:
    ledger = issued.ledger
    before, cps = ledger.size(), checkpoint_sizes(ledger.engine)
    bad = make_bad(issued)
    good = [transfer(issued, "owner", "buyer", 10), transfer(issued, "organiser", "buyer", 20)]
    results = ledger.submit([good[0], bad, good[1]], now=issued.world.clock)
    first, refused, second = results
    assert isinstance(refused, RuleViolation)
    assert refused.code == code
    assert isinstance(first, Receipt)
    assert isinstance(second, Receipt)
    assert (first.index, second.index) == (before, before + 1)
    assert first.tree_size == second.tree_size == before + 2
    check_receipt(first)
    check_receipt(second)
    assert ledger.size() == before + 2
    assert checkpoint_sizes(ledger.engine) == [*cps, before + 2]
    with read_transaction(ledger.engine) as conn:
        assert store.find_by_nonce(conn, bad.body.actor, bad.body.nonce) is None
        stored = [decode_entry(e.data).body_bytes for e in store.read_entries(conn, before, before + 2)]
    assert stored == [good[0].body_bytes, good[1].body_bytes]
    state = ledger.state()
    assert state.balance("buyer") == 30
    assert state.balance("organiser") == 280
    assert_projections_match(ledger.engine, ledger)
    assert_verifies(ledger.engine)


def test_a_batch_that_fails_entirely_appends_nothing(issued: Story) -> None:
    ledger = issued.ledger
    before, cps = ledger.size(), checkpoint_sizes(ledger.engine)
    latest = ledger.latest_checkpoint()
    results = ledger.submit(
        [_forged_signature(issued), _unknown_key(issued), _over_quantity(issued)], now=issued.world.clock
    )
    assert [r.code for r in results if isinstance(r, RuleViolation)] == [
        "bad_signature",
        "unknown_key",
        "insufficient_units",
    ]
    assert ledger.size() == before
    assert checkpoint_sizes(ledger.engine) == cps
    assert ledger.latest_checkpoint() == latest
    assert ledger.submit([], now=issued.world.clock) == []
    assert checkpoint_sizes(ledger.engine) == cps


def test_a_resent_transaction_gets_its_original_receipt(issued: Story) -> None:
    ledger = issued.ledger
    tx = transfer(issued, "owner", "buyer", 10)
    (original,) = ledger.submit([tx], now=issued.world.clock)
    assert isinstance(original, Receipt)
    cps = checkpoint_sizes(ledger.engine)
    (again,) = ledger.submit([tx], now=issued.world.clock + timedelta(seconds=5))
    assert isinstance(again, Receipt)
    assert again.duplicate
    assert again.outcome is None
    assert (again.index, again.leaf_hash) == (original.index, original.leaf_hash)
    check_receipt(again)
    # In one batch with a new transaction, and twice in one batch.
    fresh = transfer(issued, "owner", "buyer", 1)
    results = ledger.submit([tx, fresh, fresh], now=issued.world.clock)
    assert [isinstance(r, Receipt) and r.duplicate for r in results] == [True, False, True]
    assert [r.index for r in results if isinstance(r, Receipt)] == [original.index, *[original.index + 1] * 2]
    # A new ledger object (another process, after a restart) knows it too.
    (later,) = Ledger(ledger.engine, ledger.signer).submit([tx], now=issued.world.clock)
    assert isinstance(later, Receipt)
    assert later.duplicate
    assert later.index == original.index
    assert ledger.size() == original.index + 2
    assert checkpoint_sizes(ledger.engine) == [*cps, original.index + 2]
    assert ledger.state().balance("buyer") == 11


def test_a_reused_nonce_with_another_body_is_refused(issued: Story) -> None:
    ledger = issued.ledger
    tx = transfer(issued, "owner", "buyer", 10)
    (original,) = ledger.submit([tx], now=issued.world.clock)
    assert isinstance(original, Receipt)
    size = ledger.size()
    other = transfer(issued, "owner", "buyer", 500, nonce=tx.body.nonce)
    (refused,) = ledger.submit([other], now=issued.world.clock)
    assert isinstance(refused, RuleViolation)
    assert refused.code == "nonce_reused"
    assert f"entry {original.index}" in refused.message
    # Within one batch too: the second use of a nonce loses.
    first = transfer(issued, "organiser", "buyer", 1)
    second = transfer(issued, "organiser", "buyer", 2, nonce=first.body.nonce)
    accepted, refused_too = ledger.submit([first, second], now=issued.world.clock)
    assert isinstance(accepted, Receipt)
    assert isinstance(refused_too, RuleViolation)
    assert refused_too.code == "nonce_reused"
    assert ledger.size() == size + 1
    assert ledger.state().balance("buyer") == 11


def test_a_transaction_for_another_registry_is_refused(issued: Story) -> None:
    ledger = issued.ledger
    size = ledger.size()
    elsewhere = TransactionSigner("other.example/cdcer", "owner", seeded_key("owner"))
    tx = elsewhere.sign(Transfer(to="buyer", selection=Selection(quantity=1)), at=issued.world.clock)
    (refused,) = ledger.submit([tx], now=issued.world.clock)
    assert isinstance(refused, RuleViolation)
    assert refused.code == "wrong_origin"
    assert ledger.size() == size


def test_a_process_with_another_checkpoint_key_refuses_to_append(issued: Story) -> None:
    impostor = Ledger(issued.ledger.engine, NoteSigner(ORIGIN, seeded_key("another log key").seed))
    size = issued.ledger.size()
    with pytest.raises(ConflictError, match="but the registry's checkpoint key is"):
        impostor.submit([transfer(issued, "owner", "buyer", 1)], now=issued.world.clock)
    assert issued.ledger.size() == size


def test_a_stale_transaction_is_refused(issued: Story) -> None:
    ledger = issued.ledger
    tx = transfer(issued, "owner", "buyer", 1)
    (refused,) = ledger.submit([tx], now=issued.world.clock + timedelta(minutes=16))
    assert isinstance(refused, RuleViolation)
    assert refused.code == "stale_transaction"


# --- signatures verified by the caller -------------------------------------------------------------------


@pytest.mark.parametrize("entries", [0, 1, 3], ids=["none", "too_few", "too_many"])
def test_verified_keys_of_the_wrong_length_are_refused_and_append_nothing(issued: Story, entries: int) -> None:
    ledger = issued.ledger
    size, cps = ledger.size(), checkpoint_sizes(ledger.engine)
    txs = [transfer(issued, "owner", "buyer", 10), transfer(issued, "organiser", "buyer", 5)]
    with pytest.raises(ValueError, match="one entry per transaction"):
        ledger.submit(txs, now=issued.world.clock, verified_keys=[None] * entries)
    assert ledger.size() == size
    assert checkpoint_sizes(ledger.engine) == cps
    # Nothing was half-applied: the same transactions append afterwards.
    results = ledger.submit(txs, now=issued.world.clock, verified_keys=[None, None])
    assert [isinstance(r, Receipt) and not r.duplicate for r in results] == [True, True]
    assert ledger.state().balance("buyer") == 15


@pytest.mark.parametrize(
    "vouched",
    [None, seeded_key("buyer").public_key.raw, seeded_key("mallory").public_key.raw],
    ids=["none", "another_participants_key", "a_strangers_key"],
)
def test_a_bad_signature_vouched_for_with_another_key_is_refused(issued: Story, vouched: bytes | None) -> None:
    ledger = issued.ledger
    size, cps = ledger.size(), checkpoint_sizes(ledger.engine)
    forged = _forged_signature(issued)  # the organiser's transaction, under another transaction's signature
    (refused,) = ledger.submit([forged], now=issued.world.clock, verified_keys=[vouched])
    assert isinstance(refused, RuleViolation)
    assert refused.code == "bad_signature"
    assert refused.message.startswith(f"signature does not verify for key {seeded_key('organiser').key_id}")
    assert ledger.size() == size
    assert checkpoint_sizes(ledger.engine) == cps
    # A good signature vouched for with the wrong key is verified here, and passes.
    good = transfer(issued, "organiser", "buyer", 2)
    (receipt,) = ledger.submit([good], now=issued.world.clock, verified_keys=[vouched])
    assert isinstance(receipt, Receipt), receipt
    assert ledger.state().balance("buyer") == 2


def test_a_signature_vouched_for_with_the_authorised_key_is_not_verified_again(
    issued: Story, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = issued.ledger
    verified: list[tuple[bytes, bytes]] = []
    real_verify = PublicKey.verify

    def counting_verify(key: PublicKey, message: bytes, signature: bytes) -> None:
        verified.append((key.raw, signature))
        real_verify(key, message, signature)

    monkeypatch.setattr(PublicKey, "verify", counting_verify)
    owner_key, organiser_key = seeded_key("owner").public_key.raw, seeded_key("organiser").public_key.raw
    vouched = transfer(issued, "owner", "buyer", 10)
    plain = transfer(issued, "organiser", "buyer", 5)
    results = ledger.submit([vouched, plain], now=issued.world.clock, verified_keys=[owner_key, None])
    assert [isinstance(r, Receipt) for r in results] == [True, True], results
    assert verified == [(organiser_key, plain.signature)]  # the vouched transaction: 0 checks; the other: 1

    # Vouched for with another participant's key: the ledger verifies it itself.
    verified.clear()
    misvouched = transfer(issued, "owner", "buyer", 1)
    (receipt,) = ledger.submit([misvouched], now=issued.world.clock, verified_keys=[organiser_key])
    assert isinstance(receipt, Receipt), receipt
    assert verified == [(owner_key, misvouched.signature)]
    assert ledger.state().balance("buyer") == 16
    monkeypatch.undo()
    assert_verifies(ledger.engine)  # the audit checks every signature, the vouched one included


# --- several writers ---------------------------------------------------------------------------------


def test_two_ledgers_on_one_database_stay_linear(issued: Story, database_url: str) -> None:
    first = issued.ledger
    other_engine = make_engine(database_url)
    try:
        second = Ledger(other_engine, log_signer())
        start = first.size()
        moves = [("owner", "buyer", 40), ("buyer", "organiser", 30), ("organiser", "owner", 25), ("buyer", "owner", 10)]
        receipts = []
        for turn, (sender, to, quantity) in enumerate(moves * 2):
            # Each move spends units the previous move (made through the other object) delivered.
            ledger = (first, second)[turn % 2]
            (receipt,) = ledger.submit([transfer(issued, sender, to, quantity)], now=issued.world.clock)
            assert isinstance(receipt, Receipt), receipt
            check_receipt(receipt)
            receipts.append(receipt)
        assert [r.index for r in receipts] == list(range(start, start + 8))
        assert first.size() == second.size() == start + 8
        sizes = checkpoint_sizes(first.engine)
        assert sizes == sorted(set(sizes))
        assert sizes[-8:] == list(range(start + 1, start + 9))
        # Both objects, caught up, agree with each other and with a fresh replay.
        for record_type in RECORD_TYPES:
            table = record_type.TABLE
            assert list(first.state().records(table)) == list(second.state().records(table)), table
        assert first.state().balance("buyer") == 0
        assert_projections_match(first.engine, first)
        assert_verifies(first.engine)
    finally:
        other_engine.dispose()


def _transfer_worker(url: str, seat: int, rounds: int, barrier: Any, results: Any) -> None:
    """One registry process: its own engine and Ledger, submitting random transfers among HOLDERS."""
    try:
        engine = make_engine(url)
        ledger = Ledger(engine, log_signer())
        world = World()
        rng = random.Random(seat)
        acknowledged: list[tuple[int, bytes, int]] = []
        refused: list[str] = []
        barrier.wait()
        for _ in range(rounds):
            batch = []
            for _ in range(rng.randint(1, 3)):
                sender, to = rng.sample(HOLDERS, 2)
                payload = Transfer(to=to, selection=Selection(quantity=rng.randint(1, 60)))
                batch.append(world.signer(sender).sign(payload, at=datetime.now(UTC)))
            for tx, result in zip(batch, ledger.submit(batch), strict=True):
                if isinstance(result, RuleViolation):
                    refused.append(result.code)
                else:
                    check_receipt(result)
                    acknowledged.append((result.index, tx_hash(tx), result.tree_size))
        engine.dispose()
        results.put((seat, acknowledged, refused, None))
    except BaseException:
        results.put((seat, [], [], traceback.format_exc()))


def test_two_processes_append_concurrently(issued: Story, database_url: str) -> None:
    ledger = issued.ledger
    issued.world.transfer("owner", "buyer", 200)
    issued.sync()
    start = ledger.size()
    assert ledger.state().balance("owner") == 650
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    processes = [
        context.Process(target=_transfer_worker, args=(database_url, seat, 12, barrier, results)) for seat in (1, 2)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    acknowledged: list[tuple[int, bytes, int]] = []
    for seat, acks, refused, error in outcomes:
        assert error is None, f"process {seat} failed:\n{error}"
        assert set(refused) <= {"insufficient_units"}, refused
        acknowledged += acks
    assert acknowledged, "no transfer was accepted"

    engine = ledger.engine
    size = ledger.size()
    with read_transaction(engine) as conn:
        # Sizes are contiguous and every acknowledged index holds that transaction.
        indexes = conn.execute(select(log_entries.c.idx).order_by(log_entries.c.idx)).scalars().all()
        assert indexes == list(range(size))
        held = {int(r.idx): bytes(r.tx_hash) for r in conn.execute(select(log_entries.c.idx, log_entries.c.tx_hash))}
        leaves = [e.leaf_hash for e in store.read_entries(conn, 0, size)]
        rows = conn.execute(select(checkpoints).order_by(checkpoints.c.size)).all()
        per_size = {
            int(r.size): int(r.n)
            for r in conn.execute(select(checkpoints.c.size, func.count().label("n")).group_by(checkpoints.c.size))
        }
    assert len({index for index, _, _ in acknowledged}) == len(acknowledged)
    assert size - start == len(acknowledged)
    for index, identity, _ in acknowledged:
        assert held[index] == identity
    # At most one checkpoint per size, each signed and naming the root of that prefix of the log.
    assert set(per_size.values()) == {1}
    assert rows[-1].size == size
    for row in rows:
        signed = open_checkpoint(bytes(row.note), verifier(), origin=ORIGIN)
        assert signed.checkpoint.size == row.size
        assert signed.checkpoint.root_hash == bytes(row.root_hash) == root_from_leaves(leaves[: row.size])
    # Units are conserved and nobody went below zero.
    state = Ledger(engine, log_signer()).state()
    balances = {holder: state.balance(holder) for holder in HOLDERS}
    assert all(balance >= 0 for balance in balances.values()), balances
    assert sum(balances.values()) == 1150
    assert_projections_match(engine, ledger)
    assert_verifies(engine)


def test_a_storage_failure_rolls_back_and_the_ledger_recovers(issued: Story, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = issued.ledger
    size = ledger.size()

    def refuse(*_: Any, **__: Any) -> None:
        raise StorageError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(store, "insert_checkpoint", refuse)
        with pytest.raises(StorageError, match="disk full"):
            ledger.submit([transfer(issued, "owner", "buyer", 10)], now=issued.world.clock)
    assert ledger.size() == size
    # The in-memory state did not keep the rolled-back transfer: the same units can move again.
    (receipt,) = ledger.submit([transfer(issued, "owner", "buyer", 850)], now=issued.world.clock)
    assert isinstance(receipt, Receipt), receipt
    assert ledger.state().balance("buyer") == 850
    assert_verifies(ledger.engine)
