"""Several server processes on one database, taking concurrent transfers between the same accounts.

On PostgreSQL two ``cdcer serve`` processes share the database; on SQLite one ``cdcer serve --workers 2``
runs two worker processes on the same file. Client threads send pre-signed transfers among three
accounts that hold units (some too large to pass, some sent twice, to both servers). Afterwards the
audit passes; every acknowledged transaction is in the log exactly once, at its receipt's index; refusals
are 4xx, never 5xx; every receipt verifies; receipts of one tree size carry the same checkpoint, the one
stored; and the balances are what the acknowledged transfers say, none negative.
"""

from __future__ import annotations

import base64
import random
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from ledger.audit import audit
from ledger.checkpoint import open_checkpoint
from ledger.keys import write_key_file
from ledger.ledger import Ledger, tx_hash
from ledger.merkle import verify_inclusion
from ledger.note import NoteVerifier
from ledger.storage.engine import read_transaction
from ledger.storage.source import DatabaseSource
from ledger.storage.tables import checkpoints, log_entries
from ledger.transactions import Selection, SignedTransaction, Transfer
from tests.conftest import Story, log_signer
from tests.ledger.scenario import ORIGIN, seeded_key
from tests.registry.live import serve

ACCOUNTS = ("owner", "organiser", "buyer")
TRANSFERS = 300
TOO_LARGE = 1_000_000
CLIENTS = 8
VKEY = log_signer().verifier_key()
# The servers read the log key file in the clear and the origin from the database.
SERVER_ENV: dict[str, str | None] = {"CDCER_LOG_KEY_PASSPHRASE": None, "CDCER_ORIGIN": None}


@dataclass(frozen=True, slots=True)
class Answer:
    tx: SignedTransaction
    server: str
    status: int
    body: dict[str, Any]


@pytest.fixture
def log_key_file(tmp_path: Path) -> Path:
    """The registry's log signing key (the one the `ledger` fixture signs with), in a clear key file."""
    path = tmp_path / "registry-log.key"
    write_key_file(path, seeded_key("log"), passphrase=None)
    return path


@contextmanager
def servers(database_url: str, log_key_file: Path, *, sqlite: bool) -> Iterator[list[str]]:
    """SQLite: one server with two worker processes. PostgreSQL: two servers, each its own process."""
    with ExitStack() as stack:
        if sqlite:
            yield [stack.enter_context(serve(database_url, log_key_file, workers=2, env=SERVER_ENV))]
        else:
            yield [stack.enter_context(serve(database_url, log_key_file, env=SERVER_ENV)) for _ in range(2)]


def signed_transfers(story: Story) -> list[SignedTransaction]:
    """Transfers in a ring among the accounts; every 25th asks for more units than exist."""
    txs = []
    for i in range(TRANSFERS):
        sender = ACCOUNTS[i % 3]
        to = ACCOUNTS[(i % 3 + 1 + (i // 3) % 2) % 3]
        quantity = TOO_LARGE if i % 25 == 24 else 1 + i % 4
        txs.append(story.world.sign_as(sender, Transfer(to=to, selection=Selection(quantity=quantity))))
    return txs


def quantity(tx: SignedTransaction) -> int:
    payload = tx.body.payload
    assert isinstance(payload, Transfer)
    assert payload.selection.quantity is not None
    return payload.selection.quantity


def send_all(work: list[tuple[SignedTransaction, str]]) -> list[Answer]:
    """Post every (transaction, server) from CLIENTS threads at once, a new connection per request."""
    answers: list[Answer] = []
    lock = threading.Lock()
    start = threading.Barrier(CLIENTS)

    def client(part: list[tuple[SignedTransaction, str]]) -> None:
        # No keep-alive, so the kernel spreads the connections over the worker processes.
        with httpx.Client(timeout=60.0, limits=httpx.Limits(max_keepalive_connections=0)) as http:
            start.wait()
            for tx, server in part:
                response = http.post(f"{server}/v1/transactions", json=tx.to_json())
                answer = Answer(tx, server, response.status_code, response.json())
                with lock:
                    answers.append(answer)

    threads = [threading.Thread(target=client, args=(work[i::CLIENTS],)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def verify_receipt(receipt: dict[str, Any]) -> None:
    """The receipt's inclusion proof puts its leaf in the tree its signed checkpoint commits to."""
    verifier = NoteVerifier.from_vkey(VKEY)
    checkpoint = open_checkpoint(receipt["checkpoint"].encode(), verifier, origin=ORIGIN).checkpoint
    assert checkpoint.size == receipt["tree_size"] > receipt["index"]
    verify_inclusion(
        leaf=base64.b64decode(receipt["leaf_hash"]),
        index=receipt["index"],
        size=checkpoint.size,
        proof=[base64.b64decode(h) for h in receipt["inclusion_proof"]],
        root=checkpoint.root_hash,
    )


def test_concurrent_transfers_through_several_processes(story: Story, database_url: str, log_key_file: Path) -> None:
    # Accounts that hold units: 550 for the owner, 300 each for the organiser and the buyer.
    project = story.world.registered_project()
    story.world.issued_batch(project, 2023, 1200, 1150)
    story.world.transfer("owner", "organiser", 300)
    story.world.transfer("owner", "buyer", 300)
    story.sync(together=True)
    engine = story.ledger.engine
    before = {account: story.ledger.state().balance(account) for account in ACCOUNTS}
    start_size = story.ledger.size()
    txs = signed_transfers(story)
    by_identity = {tx_hash(tx): tx for tx in txs}
    fitting = [tx for tx in txs if quantity(tx) != TOO_LARGE]
    for account in ACCOUNTS:  # so in whatever order they arrive, every transfer that fits can pass
        sent = sum(quantity(tx) for tx in fitting if tx.body.actor == account)
        assert sent <= before[account]

    sqlite = engine.dialect.name == "sqlite"
    with servers(database_url, log_key_file, sqlite=sqlite) as urls:
        work = [(tx, urls[i % len(urls)]) for i, tx in enumerate(txs)]
        work += [(tx, urls[(i + 1) % len(urls)]) for i, tx in enumerate(txs[:30:3])]  # sent again, elsewhere
        random.Random(5).shuffle(work)
        answers = send_all(work)
    assert len(answers) == len(work)

    # Refusals are problems of the client's making, never server errors: here only the too-large ones.
    acknowledged: dict[bytes, list[dict[str, Any]]] = defaultdict(list)
    for answer in answers:
        identity = tx_hash(answer.tx)
        if answer.status in (200, 201):
            acknowledged[identity].append(answer.body)
            verify_receipt(answer.body)
        else:
            assert answer.status == 409, (answer.server, answer.status, answer.body)
            assert answer.body["type"].endswith("/insufficient_units"), answer.body
            assert quantity(by_identity[identity]) == TOO_LARGE
    assert {tx_hash(tx) for tx in fitting} == set(acknowledged)
    if not sqlite:
        assert {a.server for a in answers if a.status == 201} == set(urls)  # both processes appended

    # Each acknowledged transaction is in the log exactly once, at its receipts' index; nothing else is.
    with read_transaction(engine) as conn:
        entries = conn.execute(select(log_entries.c.idx, log_entries.c.tx_hash).where(log_entries.c.idx >= start_size))
        index_of: dict[bytes, list[int]] = defaultdict(list)
        for idx, identity in entries:
            index_of[bytes(identity)].append(int(idx))
        rows = conn.execute(select(checkpoints.c.size, checkpoints.c.note))
        stored = {int(size): bytes(note).decode() for size, note in rows}
    assert set(index_of) == set(acknowledged)
    for identity, receipts in acknowledged.items():
        assert len(index_of[identity]) == 1
        assert {r["index"] for r in receipts} == set(index_of[identity])
        assert sorted(r["duplicate"] for r in receipts) == [False] + [True] * (len(receipts) - 1)
    assert story.ledger.size() == start_size + len(acknowledged)

    # One checkpoint per tree size: every receipt of a size carries it byte for byte, as stored.
    notes_by_size: dict[int, set[str]] = defaultdict(set)
    for receipts in acknowledged.values():
        for receipt in receipts:
            notes_by_size[receipt["tree_size"]].add(receipt["checkpoint"])
    for size, notes in notes_by_size.items():
        assert notes == {stored[size]}, size

    # The audit replays the whole log; the balances are what the acknowledged transfers did.
    with DatabaseSource(engine) as source:
        report = audit(source, vkey=VKEY, workers=1)
    assert report.verified, report.to_json()["findings"]
    expected = Counter(before)
    for receipts in acknowledged.values():
        outcome = next(r["outcome"] for r in receipts if not r["duplicate"])
        expected[outcome["from"]] -= outcome["quantity"]
        expected[outcome["to"]] += outcome["quantity"]
    state = Ledger(engine, log_signer()).state()  # replayed from the database, not this process's memory
    assert {account: state.balance(account) for account in ACCOUNTS} == dict(expected)
    assert all(state.balance(pid) >= 0 for pid in state.participants)
