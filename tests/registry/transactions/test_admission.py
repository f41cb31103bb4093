"""`Admission`, the write path's gate before the sequencer, on SQLite and PostgreSQL.

Transactions handed to `Admission.submit` from many threads at once are judged by one thread in batches
(`check_many`, one read each), and each gets the verdict `Admission.check` gives it alone; only the
transactions that pass every cheap check cost a signature check; `close` drains the queue, and a later
`submit` starts again; a batch whose read fails fails every one of its futures with the `StorageError`.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from ledger.errors import RuleViolation, StorageError
from ledger.keys import PublicKey
from ledger.storage import schema
from ledger.storage.engine import make_engine
from ledger.transactions import (
    KeyRevoke,
    MethodologyPublish,
    ParticipantSuspend,
    Role,
    Selection,
    SignedTransaction,
    TransactionSigner,
    Transfer,
)
from registry.transactions.sequencer import SequencerClosed
from registry.transactions.service import Admission, Verdict
from tests.conftest import Databases, Story
from tests.ledger.scenario import ORIGIN, seeded_key

THREAD_NAME = "cdcer-admission"


@pytest.fixture
def issued(story: Story) -> Story:
    """The founded registry with 1150 units issued to ``owner``, all of it appended."""
    project = story.world.registered_project()
    story.world.issued_batch(project, 2023, 1200, 1150)
    story.sync(together=True)
    return story


@pytest.fixture
def admission(issued: Story) -> Iterator[Admission]:
    gate = Admission(issued.ledger.engine)
    try:
        yield gate
    finally:
        gate.close()


def good_transfer(story: Story, sender: str = "owner", quantity: int = 1) -> SignedTransaction:
    return story.world.sign_as(sender, Transfer(to="buyer", selection=Selection(quantity=quantity)))


def bad_signature(story: Story, i: int) -> SignedTransaction:
    tx = good_transfer(story)
    # Noise, or the signature of another transaction by the same key.
    signature = os.urandom(64) if i % 2 else good_transfer(story).signature
    return dataclasses.replace(tx, signature=signature)


def unknown_key(story: Story) -> SignedTransaction:
    mallory = TransactionSigner(ORIGIN, "owner", seeded_key("mallory"))
    return story.world.sign_as("owner", Transfer(to="buyer", selection=Selection(quantity=1)), signer=mallory)


def reused_nonce(story: Story, i: int) -> SignedTransaction:
    used, _ = story.world.log[1 + i % (len(story.world.log) - 1)]
    return story.world.sign_as(
        used.body.actor, Transfer(to="buyer", selection=Selection(quantity=1)), nonce=used.body.nonce
    )


def resent(story: Story, i: int) -> SignedTransaction:
    tx, _ = story.world.log[1 + i % (len(story.world.log) - 1)]
    return tx


def mix(story: Story, count: int) -> list[SignedTransaction]:
    """`count` transactions: good transfers, bad signatures, unknown keys, reused nonces and resent ones."""
    makers: list[Callable[[int], SignedTransaction]] = [
        lambda i: good_transfer(story, ("owner", "buyer")[i % 2]),
        lambda i: bad_signature(story, i),
        lambda i: unknown_key(story),
        lambda i: reused_nonce(story, i),
        lambda i: resent(story, i),
    ]
    return [makers[i % len(makers)](i) for i in range(count)]


def shape(verdict: Verdict) -> tuple[str, ...]:
    """A verdict as a comparable value (a `RuleViolation` is an exception, compared by identity)."""
    if isinstance(verdict, RuleViolation):
        return ("refused", verdict.code, verdict.message)
    if isinstance(verdict, PublicKey):
        return ("verified with", verdict.key_id)
    return ("not checked",)


def alone(engine: Engine, txs: Sequence[SignedTransaction]) -> list[tuple[str, ...]]:
    """The verdict `check` gives each transaction on its own (from an admission of its own)."""
    reference = Admission(engine)
    return [shape(reference.check(tx)) for tx in txs]


def submit_from_threads(admission: Admission, txs: Sequence[SignedTransaction], threads: int) -> list[Verdict]:
    """Submit every transaction from `threads` threads at once; the verdicts in the transactions' order."""
    futures: list[Future[Verdict] | None] = [None] * len(txs)
    start = threading.Barrier(threads)

    def client(part: range) -> None:
        start.wait()
        for i in part:
            futures[i] = admission.submit(txs[i])

    workers = [threading.Thread(target=client, args=(range(t, len(txs), threads),)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return [future.result(timeout=30) for future in futures if future is not None]


def admission_threads(besides: frozenset[threading.Thread] = frozenset()) -> list[threading.Thread]:
    """The running admission threads, other than `besides` (those of other tests' admissions)."""
    return [thread for thread in threading.enumerate() if thread.name == THREAD_NAME and thread not in besides]


# --- verdicts -----------------------------------------------------------------------------------------------


def test_the_mix_gets_the_verdicts_it_is_made_for(issued: Story) -> None:
    """The reference the tests below compare with: each kind of transaction gets its own verdict."""
    verdicts = alone(issued.ledger.engine, mix(issued, 10))
    assert verdicts[0] == ("verified with", seeded_key("owner").key_id)
    assert verdicts[5] == ("verified with", seeded_key("buyer").key_id)
    assert [verdict[:2] for verdict in verdicts[1:4] + verdicts[6:9]] == [
        ("refused", "bad_signature"),
        ("refused", "unknown_key"),
        ("refused", "nonce_reused"),
    ] * 2
    assert verdicts[4] == verdicts[9] == ("not checked",)  # resent: the ledger answers with the original receipt


def test_concurrent_submissions_get_the_verdict_each_gets_alone(issued: Story, admission: Admission) -> None:
    txs = mix(issued, 400)
    expected = alone(issued.ledger.engine, txs)
    verdicts = submit_from_threads(admission, txs, threads=8)
    assert len(verdicts) == len(txs)
    assert [shape(verdict) for verdict in verdicts] == expected
    assert all(isinstance(verdict, PublicKey) for verdict in verdicts[::5])
    # Only the good transfers and the bad signatures passed the cheap checks: one signature check each.
    passed = sum(v[0] == "verified with" or v[:2] == ("refused", "bad_signature") for v in expected)
    assert passed == 160
    assert admission.signature_checks == passed


def test_check_many_judges_each_transaction_on_its_own(issued: Story, admission: Admission) -> None:
    txs = mix(issued, 25)
    # Twice the same nonce in one batch is not a reuse here: the ledger decides which one wins.
    first = good_transfer(issued)
    same_nonce = issued.world.sign_as(
        "owner", Transfer(to="buyer", selection=Selection(quantity=2)), nonce=first.body.nonce
    )
    txs += [first, same_nonce]
    expected = alone(issued.ledger.engine, txs)
    assert expected[-2:] == [("verified with", seeded_key("owner").key_id)] * 2
    assert [shape(verdict) for verdict in admission.check_many(txs)] == expected
    assert admission.check_many([]) == []


def test_one_batch_reads_every_actor_and_key_it_names(issued: Story, admission: Admission) -> None:
    # The batch's actors, keys and nonces are read together: each transaction must still be judged by its
    # own actor and key (unknown, suspended, revoked, without the role, for another registry).
    world = issued.world
    world.register("holder2", [Role.ACCOUNT_HOLDER])
    world.register("gone", [Role.ACCOUNT_HOLDER])
    world.submit("authority", ParticipantSuspend(participant_id="gone", reason="left the scheme"))
    world.register("stolen", [Role.ACCOUNT_HOLDER])
    stolen_key = seeded_key("stolen").key_id
    world.submit("stolen", KeyRevoke(participant_id="stolen", key_id=stolen_key, reason="laptop stolen"))
    issued.sync(together=True)
    elsewhere = TransactionSigner("other.registry.example/cdcer", "owner", seeded_key("owner"))
    txs = [
        good_transfer(issued),
        world.sign_as("nobody", Transfer(to="buyer", selection=Selection(quantity=1))),
        world.sign_as("gone", Transfer(to="buyer", selection=Selection(quantity=1))),
        world.sign_as("stolen", Transfer(to="buyer", selection=Selection(quantity=1))),
        world.sign_as(
            "holder2",
            MethodologyPublish(code="CDCER-X", version="1.0", title="t", sector="energy", document_sha256="0" * 64),
        ),
        world.sign_as("owner", Transfer(to="buyer", selection=Selection(quantity=1)), signer=elsewhere),
        good_transfer(issued, "buyer"),
    ]
    expected = alone(issued.ledger.engine, txs)
    assert [verdict[:2] for verdict in expected] == [
        ("verified with", seeded_key("owner").key_id),
        ("refused", "unknown_actor"),
        ("refused", "actor_suspended"),
        ("refused", "revoked_key"),
        ("refused", "forbidden"),
        ("refused", "wrong_origin"),
        ("verified with", seeded_key("buyer").key_id),
    ]
    assert [shape(verdict) for verdict in admission.check_many(txs)] == expected
    assert [shape(verdict) for verdict in admission.check_many(txs[::-1])] == expected[::-1]


def test_the_queue_is_judged_in_batches_of_at_most_max_batch(issued: Story, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the thread judges one batch, what is queued waits, and is then drained in reads of `max_batch`."""
    admission = Admission(issued.ledger.engine, max_batch=16)
    batches: list[int] = []
    release = threading.Event()
    real_check_many = Admission.check_many

    def held_check_many(
        self: Admission, txs: Sequence[SignedTransaction], *, now: datetime | None = None
    ) -> list[Verdict]:
        batches.append(len(txs))
        release.wait(30)  # the first batch waits until everything else is queued
        return real_check_many(self, txs, now=now)

    txs = mix(issued, 41)
    expected = alone(issued.ledger.engine, txs)
    monkeypatch.setattr(Admission, "check_many", held_check_many)
    try:
        futures = [admission.submit(tx) for tx in txs]
        release.set()
        verdicts = [future.result(timeout=30) for future in futures]
    finally:
        release.set()
        admission.close()
    assert [shape(verdict) for verdict in verdicts] == expected
    assert sum(batches) == 41
    assert max(batches) == 16
    assert len(batches) <= 1 + 3  # the first, then the other 40 in reads of at most 16


# --- the thread -------------------------------------------------------------------------------------------------


def test_close_drains_the_queue_and_a_later_submit_starts_again(issued: Story) -> None:
    admission = Admission(issued.ledger.engine)
    others = frozenset(admission_threads())
    admission.close()  # never started: nothing to do
    txs = mix(issued, 30)
    expected = alone(issued.ledger.engine, txs)
    futures = [admission.submit(tx) for tx in txs]
    assert len(admission_threads(others)) == 1
    admission.close()
    assert all(future.done() for future in futures)  # judged before close returned
    assert [shape(future.result()) for future in futures] == expected
    assert not admission_threads(others)
    admission.close()  # closed twice: nothing to do

    again = good_transfer(issued)
    try:
        assert admission.submit(again).result(timeout=30) == seeded_key("owner").public_key
        assert len(admission_threads(others)) == 1
    finally:
        admission.close()
    assert not admission_threads(others)


def test_submit_while_closing_is_refused_and_what_was_queued_is_judged(
    issued: Story, monkeypatch: pytest.MonkeyPatch
) -> None:
    admission = Admission(issued.ledger.engine)
    release = threading.Event()
    real_check_many = Admission.check_many

    def held_check_many(
        self: Admission, txs: Sequence[SignedTransaction], *, now: datetime | None = None
    ) -> list[Verdict]:
        release.wait(30)  # the thread is busy with a batch while the admission closes
        return real_check_many(self, txs, now=now)

    monkeypatch.setattr(Admission, "check_many", held_check_many)
    futures = [admission.submit(good_transfer(issued))]
    closing = threading.Thread(target=admission.close)
    closing.start()
    refusal: SequencerClosed | None = None
    try:
        deadline = time.monotonic() + 30
        while refusal is None and time.monotonic() < deadline:  # until close has marked the admission closed
            tx = good_transfer(issued)
            try:
                futures.append(admission.submit(tx))
            except SequencerClosed as exc:
                refusal = exc
            time.sleep(0.01)
    finally:
        release.set()
        closing.join(30)
    assert refusal is not None, "submit was never refused while the admission was closing"
    assert "shutting down" in str(refusal)
    assert not closing.is_alive()
    owner = seeded_key("owner").public_key
    assert [future.result(timeout=0) for future in futures] == [owner] * len(futures)  # judged before close returned


# --- an unreachable database ------------------------------------------------------------------------------------


def unreachable_url(databases: Databases, tmp_path: Path) -> str:
    """A database that cannot be opened: SQLite in a directory that does not exist, a dropped PostgreSQL one."""
    if databases.kind == "sqlite":
        return f"sqlite:///{tmp_path / 'missing' / 'registry.db'}"
    url = databases.create()
    databases.drop(url)
    return url


def recreate(databases: Databases, tmp_path: Path, url: str) -> None:
    """Make the database of `unreachable_url` exist (empty)."""
    if databases.kind == "sqlite":
        (tmp_path / "missing").mkdir()
        return
    assert databases.admin is not None
    with databases.admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{make_url(url).database}"'))


def test_a_batch_on_an_unreachable_database_fails_every_future(
    databases: Databases, tmp_path: Path, issued: Story
) -> None:
    others = frozenset(admission_threads())
    url = unreachable_url(databases, tmp_path)
    engine = make_engine(url)
    admission = Admission(engine)
    txs = mix(issued, 20)
    try:
        futures = [admission.submit(tx) for tx in txs]
        for future in futures:
            with pytest.raises(StorageError, match="database read failed"):
                future.result(timeout=60)
        assert admission.signature_checks == 0
        # The thread outlives a failed batch: once the database is there (empty, no genesis), it judges again.
        recreate(databases, tmp_path, url)
        schema.upgrade(engine)
        assert admission.submit(txs[0]).result(timeout=60) is None  # nothing to check before the genesis
        assert len(admission_threads(others)) == 1
    finally:
        admission.close()
        engine.dispose()
        if databases.kind == "postgres":
            databases.drop(url)
