"""`ProcessSequencer`: appends in a child process of their own, on SQLite and PostgreSQL.

Batches cross a pipe and come back as the receipts and refusals the ledger gives; a child that dies fails
the batches it was given with `AppendOutcomeUnknown` and the next batch starts a new child; a child whose
parent dies leaves; a child that cannot open the ledger makes `start` fail with the reason; the log the
child writes passes the audit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest

from ledger.audit import audit
from ledger.errors import RuleViolation, StorageError
from ledger.keys import write_key_file
from ledger.ledger import Receipt
from ledger.storage.source import DatabaseSource
from ledger.transactions import Selection, SignedTransaction, Transfer
from registry.settings import Settings
from registry.transactions.sequencer import AppendOutcomeUnknown, ProcessSequencer, Result
from tests.conftest import Story, log_signer
from tests.ledger.scenario import ORIGIN, seeded_key


@pytest.fixture
def issued(story: Story) -> Story:
    """The founded registry with 1150 units issued to ``owner``, all of it appended."""
    story.world.issued_batch(story.world.registered_project(), 2023, 1200, 1150)
    story.sync(together=True)
    return story


@pytest.fixture
def settings(issued: Story, tmp_path: Path) -> Settings:
    key_file = tmp_path / "log.key"
    write_key_file(key_file, seeded_key("log"), passphrase=None)
    url = issued.ledger.engine.url.render_as_string(hide_password=False)
    return Settings(database_url=url, log_key_file=key_file, origin=ORIGIN)


@pytest.fixture
def sequencer(settings: Settings) -> Iterator[ProcessSequencer]:
    seq = ProcessSequencer(settings, max_batch=50)
    seq.start()
    try:
        yield seq
    finally:
        seq.close()


def transfer(story: Story, quantity: int = 1) -> SignedTransaction:
    return story.world.sign_as("owner", Transfer(to="buyer", selection=Selection(quantity=quantity)))


def results(futures: list[Future[Result]]) -> list[Result]:
    return [future.result(timeout=60) for future in futures]


def child_pid(sequencer: ProcessSequencer) -> int:
    child = sequencer._child
    assert child is not None
    assert child.pid is not None
    return child.pid


def test_the_child_appends_each_batch_and_answers_in_order(issued: Story, sequencer: ProcessSequencer) -> None:
    size = issued.ledger.size()
    txs = [transfer(issued) for _ in range(120)]
    txs.append(transfer(issued, quantity=10_000))  # more than the owner holds: refused by the ledger
    got = results([sequencer.submit(tx) for tx in txs])
    receipts = [r for r in got[:-1] if isinstance(r, Receipt)]
    assert [r.index for r in receipts] == list(range(size, size + 120))
    assert isinstance(got[-1], RuleViolation)
    assert got[-1].code == "insufficient_units"
    assert sequencer.batches >= 3  # at most 50 a batch
    again = results([sequencer.submit(txs[0])])[0]  # re-sent: the original receipt
    assert isinstance(again, Receipt)
    assert (again.duplicate, again.index) == (True, size)
    with DatabaseSource(issued.ledger.engine) as source:
        report = audit(source, vkey=log_signer().verifier_key(), workers=1)
    assert report.verified, report.to_json()["findings"]
    assert report.entries == size + 120


def test_a_killed_child_fails_its_batch_and_the_next_batch_starts_another(
    issued: Story, sequencer: ProcessSequencer
) -> None:
    first = child_pid(sequencer)
    assert isinstance(results([sequencer.submit(transfer(issued))])[0], Receipt)
    os.kill(first, signal.SIGKILL)
    time.sleep(0.2)
    # The batch after the kill: refused before it reached the dead child (the pipe is broken), or sent and
    # never answered; either way the request learns that it must send the transaction again.
    with pytest.raises(StorageError, match="the append process (has stopped|stopped during the batch)"):
        results([sequencer.submit(transfer(issued))])
    after = results([sequencer.submit(transfer(issued)) for _ in range(5)])
    assert all(isinstance(r, Receipt) for r in after)
    assert child_pid(sequencer) != first
    with DatabaseSource(issued.ledger.engine) as source:
        assert audit(source, vkey=log_signer().verifier_key(), workers=1).verified


def test_a_child_killed_during_a_batch_leaves_its_outcome_unknown(issued: Story, sequencer: ProcessSequencer) -> None:
    first = child_pid(sequencer)
    txs = [transfer(issued) for _ in range(400)]
    futures = [sequencer.submit(tx) for tx in txs]
    futures[0].result(timeout=60)  # batches are flowing: the next ones are in the child's hands
    os.kill(first, signal.SIGKILL)
    outcomes: list[Result | StorageError] = []
    for future in futures:
        try:
            outcomes.append(future.result(timeout=60))
        except StorageError as exc:
            outcomes.append(exc)
    unknown = [o for o in outcomes if isinstance(o, AppendOutcomeUnknown)]
    assert unknown, "no batch was in the child's hands when it died"
    assert "may or may not be in the log; send it again" in str(unknown[0])
    # Sending everything again settles it: each transaction is in the log exactly once.
    again = results([sequencer.submit(tx) for tx in txs])
    assert all(isinstance(r, Receipt) for r in again)
    indexes = [r.index for r in again if isinstance(r, Receipt)]
    assert len(set(indexes)) == len(txs)
    with DatabaseSource(issued.ledger.engine) as source:
        report = audit(source, vkey=log_signer().verifier_key(), workers=1)
    assert report.verified, report.to_json()["findings"]
    assert report.entries == max(indexes) + 1


def test_close_stops_the_child_and_later_submissions_are_refused(issued: Story, settings: Settings) -> None:
    seq = ProcessSequencer(settings)
    seq.start()
    child = seq._child
    assert child is not None
    assert child.is_alive()
    pending = [seq.submit(transfer(issued)) for _ in range(10)]
    seq.close()
    assert all(isinstance(r, Receipt) for r in results(pending))  # what was queued was appended
    assert not child.is_alive()
    with pytest.raises(RuntimeError, match="shutting down"):
        seq.submit(transfer(issued))


def test_a_child_that_cannot_open_the_ledger_fails_start_with_the_reason(settings: Settings, tmp_path: Path) -> None:
    missing = settings.model_copy(update={"log_key_file": tmp_path / "no-such.key"})
    with pytest.raises(StorageError, match="the append process could not open the ledger: .*no-such.key"):
        ProcessSequencer(missing).start()


def test_the_child_leaves_when_its_parent_dies(settings: Settings, tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from registry.settings import Settings
        from registry.transactions.sequencer import ProcessSequencer
        seq = ProcessSequencer(Settings.model_validate_json({settings.model_dump_json()!r}))
        seq.start()
        print(seq._child.pid, flush=True)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        os.kill(pid, 0)  # the child runs
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    assert not _alive(pid), "the append process outlived its parent"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has left already
    except FileNotFoundError:
        return False
