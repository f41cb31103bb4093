"""Load: client processes sending transfers among overlapping accounts to several server processes at once.

Setup, appended directly through the `Ledger`: a founded registry with two issued batches (2,300 units)
spread over six holders (and a seventh account, the prober, that only test_crash.py uses). The test
process pre-signs every transfer, each with its own random nonce: every client owns two sending accounts,
which it shares with other clients, sends to any other holder, and asks for 1 to 9 units or (every 30th)
a million, always refused; balances drift, so ordinary transfers are refused at times too.

The clients are OS processes (``python -c`` running `client_main` of this module) posting with httpx
over keep-alive connections; each records every answer in a JSON Lines file and sends the identical
signed transaction again when a request fails in transport. Every 25th request is hasty: the client stops
waiting for its answer after 1 ms (the registry gathers a batch for 2 ms), as a client that timed out
would, and sends it again, so the registry sees the same transaction twice, often while the first copy
is being appended. Half the clients also re-send transfers they hold receipts for (on PostgreSQL to the
other server). The servers are the real ``cdcer serve``: on PostgreSQL two independent servers share
the database (two workers each in the slow test, one in the small one); on SQLite one server with two
workers (two appending processes on one file).

Afterwards `check_registry` (which test_crash.py runs too) asserts:

- every answer is a receipt (201 appended by this request, 200 already in the log: the original
  receipt) or a 409 ``insufficient_units``, never a 5xx; every million-unit transfer was refused; a
  transaction answered without a transport error before is answered 201 with the outcome it asked for;
- every acknowledged transaction is in the log exactly once, at its receipts' index, with their leaf
  hash; after the setup the log holds nothing else (a transaction whose client gave up after transport
  errors could be in it unacknowledged, but no client may give up); no refused transaction is in it; no
  (actor, nonce) appears twice;
- every receipt's inclusion proof verifies against its signed checkpoint, which is byte for byte the one
  stored for its size, so no two checkpoints of one size differ; every stored checkpoint is consistent
  with the latest, which covers the whole log, and nothing lies beyond the log (`read_log`);
- the balances replayed from the log are the setup's plus what the acknowledged transfers moved, none
  is negative, the total is conserved and the invariants hold;
- ``cdcer audit verify`` on the database exits 0.

`test_load` (slow): 8 clients x 500 transfers. `test_load_small` (default suite): 4 clients x 25.
Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import httpx
import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from ledger.checkpoint import Checkpoint, open_checkpoint
from ledger.invariants import check_all
from ledger.keys import write_key_file
from ledger.ledger import Ledger, tx_hash
from ledger.merkle import consistency_proof, verify_consistency, verify_inclusion
from ledger.note import NoteVerifier
from ledger.storage import store
from ledger.storage.engine import read_transaction
from ledger.storage.tables import log_entries, merkle_nodes, unit_movements
from ledger.transactions import Role, Selection, SignedTransaction, TransactionSigner, Transfer
from tests.conftest import Story, log_signer
from tests.ledger.scenario import ORIGIN, seeded_key
from tests.registry.live import REPO_ROOT, serve

HOLDERS = ("owner", "organiser", "buyer", "holder-a", "holder-b", "holder-c")
PROBER = "prober"
"""An account no client sends from: test_crash.py sends one transfer from it after every restart."""
TOO_LARGE = 1_000_000
VKEY = log_signer().verifier_key()
# The servers read the log key file in the clear and the origin from the database.
SERVER_ENV: dict[str, str | None] = {"CDCER_LOG_KEY_PASSPHRASE": None, "CDCER_ORIGIN": None}
REQUEST_TIMEOUT = 60.0
START_TIMEOUT = 120.0


# --- the registry's setup and the transfers ---------------------------------------------------------------


@pytest.fixture
def log_key_file(tmp_path: Path) -> Path:
    """The registry's log signing key (the one the `ledger` fixture signs with), in a clear key file."""
    return write_log_key(tmp_path)


def write_log_key(directory: Path) -> Path:
    path = directory / "registry-log.key"
    write_key_file(path, seeded_key("log"), passphrase=None)
    return path


def found_holders(story: Story) -> dict[str, int]:
    """Append the setup (one batch, one checkpoint): 2,300 units over the holders and the prober; the balances."""
    world = story.world
    for pid in (*HOLDERS[3:], PROBER):
        world.register(pid, [Role.ACCOUNT_HOLDER])
    project = world.registered_project()
    world.issued_batch(project, 2022, 1200, 1150)
    world.issued_batch(project, 2023, 1200, 1150)
    for holder in HOLDERS[1:]:
        world.transfer("owner", holder, 330)
    world.transfer("owner", PROBER, 200)
    story.sync(together=True)
    state = story.ledger.state()
    balances = {account: state.balance(account) for account in (*HOLDERS, PROBER)}
    assert sum(balances.values()) == 2300
    return balances


@dataclass(frozen=True, slots=True)
class Sent:
    """A pre-signed transfer: the transaction and what it asks for."""

    tx: SignedTransaction
    identity: bytes
    sender: str
    to: str
    quantity: int


_SIGNERS: dict[str, TransactionSigner] = {}


def signed_transfer(sender: str, to: str, quantity: int) -> Sent:
    """A transfer signed now by `sender`'s key, with a fresh random nonce."""
    signer = _SIGNERS.get(sender)
    if signer is None:
        signer = _SIGNERS[sender] = TransactionSigner(ORIGIN, sender, seeded_key(sender))
    tx = signer.sign(Transfer(to=to, selection=Selection(quantity=quantity)), at=datetime.now(UTC))
    return Sent(tx, tx_hash(tx), sender, to, quantity)


def client_transfers(client: int, count: int, rng: random.Random) -> list[Sent]:
    """`count` transfers from the client's two accounts (each shared with other clients) to any other holder."""
    senders = (HOLDERS[client % len(HOLDERS)], HOLDERS[(client + 3) % len(HOLDERS)])
    transfers = []
    for i in range(count):
        sender = rng.choice(senders)
        to = rng.choice([holder for holder in HOLDERS if holder != sender])
        quantity = TOO_LARGE if i % 30 == 7 else rng.randint(1, 9)
        transfers.append(signed_transfer(sender, to, quantity))
    return transfers


@dataclass(frozen=True, slots=True)
class Step:
    """One request of a client's plan: its transfer number `tx`, to server `server` (modulo the servers)."""

    tx: int
    server: int
    resend: bool = False
    """Send transfer `tx` again, if (and only if) it was acknowledged before: expects the original receipt."""
    hasty: bool = False
    """Stop waiting for the first answer after 1 ms (a client-side timeout: the registry gathers a batch for
    2 ms, so the request is still being appended) and send the identical transaction again."""


def plan(count: int, *, client: int, resend_every: int) -> list[Step]:
    """Each transfer once, to the client's server, every 25th hastily; with `resend_every`, also an earlier one
    again to the other server."""
    steps = []
    for i in range(count):
        steps.append(Step(i, client, hasty=i % 25 == 12))
        if resend_every and i % resend_every == resend_every - 1:
            steps.append(Step(i - resend_every // 2, client + 1, resend=True))
    return steps


# --- the client processes -----------------------------------------------------------------------------------


def client_main() -> None:
    """A client process: ``python -c "from tests.registry.test_load import client_main; client_main()" SPEC``."""
    run_client(json.loads(Path(sys.argv[1]).read_text()))


def run_client(spec: dict[str, Any]) -> None:
    """Post the plan's transfers one at a time and write one JSON line per step to the results file.

    Signals the test through files: touches ``ready`` once set up, starts when ``go`` exists, stops
    between steps once ``stop`` exists. The servers' URLs are read from ``urls`` (a JSON list the test
    replaces atomically) at the start and after every transport error. A request that fails in
    transport is sent again, identical, every 50 ms, until ``give_up_after`` seconds have passed.
    """
    bodies = [json.dumps(tx, separators=(",", ":")).encode() for tx in spec["txs"]]
    urls_file, go, stop = Path(spec["urls"]), Path(spec["go"]), Path(spec["stop"])
    acknowledged: set[int] = set()
    headers = {"content-type": "application/json"}
    with httpx.Client(timeout=spec["timeout"], headers=headers) as http, open(spec["results"], "a") as out:
        Path(spec["ready"]).touch()
        while not go.exists():
            time.sleep(0.01)
        urls: list[str] = json.loads(urls_file.read_text())
        for number, (tx, server, resend, hasty) in enumerate(spec["plan"]):
            if stop.exists():
                break
            record: dict[str, Any] = {"step": number, "tx": tx, "resend": resend, "status": None, "body": None}
            record.update(transport_errors=0, gave_up=False, error=None)
            if resend and tx not in acknowledged:
                _write(out, record)  # nothing to re-send: the original was refused
                continue
            first_error: float | None = None
            while True:
                timeout = httpx.Timeout(spec["timeout"], read=0.001) if hasty and first_error is None else None
                try:
                    response = http.post(
                        f"{urls[server % len(urls)]}/v1/transactions",
                        content=bodies[tx],
                        timeout=timeout or httpx.USE_CLIENT_DEFAULT,
                    )
                except httpx.TransportError as exc:
                    record["transport_errors"] += 1
                    record["error"] = repr(exc)
                    now = time.monotonic()
                    first_error = now if first_error is None else first_error
                    if now - first_error > spec["give_up_after"]:
                        record["gave_up"] = True
                        break
                    time.sleep(0.05)
                    urls = json.loads(urls_file.read_text())
                    continue
                record["status"] = response.status_code
                try:
                    record["body"] = response.json()
                except ValueError:
                    record["body"] = {"text": response.text}
                break
            if record["status"] in (200, 201):
                acknowledged.add(tx)
            _write(out, record)


def _write(out: TextIO, record: dict[str, Any]) -> None:
    out.write(json.dumps(record) + "\n")
    out.flush()  # the test reads the file while the client runs (test_crash.py, after each kill)


def write_urls(path: Path, urls: Sequence[str]) -> None:
    """Publish the servers' URLs to the clients (atomically: a client never reads half a file)."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(list(urls)))
    os.replace(partial, path)


@dataclass(frozen=True, slots=True)
class Answer:
    """What a client got for one step of its plan."""

    client: int
    sent: Sent
    resend: bool
    status: int | None
    """None when a re-send was skipped (its original was refused) or the client gave up."""
    body: dict[str, Any] | None
    transport_errors: int
    gave_up: bool
    error: str | None

    @property
    def acknowledged(self) -> bool:
        return self.status in (200, 201)


@dataclass
class Clients:
    """Client processes started by `clients`: their files, and the answers they recorded so far."""

    directory: Path
    transfers: list[list[Sent]]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    started: float = 0.0

    def path(self, name: str, client: int | None = None) -> Path:
        return self.directory / (name if client is None else f"{name}-{client}")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not all(self.path("ready", c).exists() for c in range(len(self.processes))):
            self.check_alive()
            assert time.monotonic() < deadline, "the clients did not start"
            time.sleep(0.05)

    def go(self) -> None:
        self.started = time.monotonic()
        self.path("go").touch()

    def stop(self) -> None:
        self.path("stop").touch()

    def check_alive(self) -> None:
        for client, process in enumerate(self.processes):
            if process.poll() not in (None, 0):
                raise AssertionError(f"client {client} failed ({process.returncode}):\n{self.output(client)}")

    def progress(self) -> int:
        """How many bytes of answers the clients have recorded so far."""
        paths = [self.path("results", c) for c in range(len(self.processes))]
        return sum(path.stat().st_size for path in paths if path.exists())

    def running(self) -> bool:
        return any(process.poll() is None for process in self.processes)

    def join(self, timeout: float = 600.0) -> float:
        """Wait until every client has finished; the seconds since `go`."""
        deadline = time.monotonic() + timeout
        for client, process in enumerate(self.processes):
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise AssertionError(f"client {client} did not finish:\n{self.output(client)}") from None
        elapsed = time.monotonic() - self.started
        self.check_alive()
        return elapsed

    def output(self, client: int) -> str:
        return self.path("output", client).read_text(errors="replace")[-5000:]

    def answers(self) -> list[Answer]:
        """Every complete line the clients have written so far, as answers."""
        answers = []
        for client, transfers in enumerate(self.transfers):
            results = self.path("results", client)
            text = results.read_text() if results.exists() else ""
            for line in text[: text.rfind("\n") + 1].splitlines():
                r = json.loads(line)
                answers.append(
                    Answer(
                        client,
                        transfers[r["tx"]],
                        r["resend"],
                        r["status"],
                        r["body"],
                        r["transport_errors"],
                        r["gave_up"],
                        r["error"],
                    )
                )
        return answers


@contextmanager
def clients(
    directory: Path, work: Sequence[tuple[list[Sent], list[Step]]], urls_file: Path, *, give_up_after: float
) -> Iterator[Clients]:
    """Start one client process per (transfers, plan); they wait for `Clients.go`. Killed if still running at exit."""
    directory.mkdir(parents=True, exist_ok=True)
    group = Clients(directory, [transfers for transfers, _ in work])
    try:
        for client, (transfers, steps) in enumerate(work):
            spec = {
                "txs": [sent.tx.to_json() for sent in transfers],
                "plan": [(step.tx, step.server, step.resend, step.hasty) for step in steps],
                "urls": str(urls_file),
                "results": str(group.path("results", client)),
                "ready": str(group.path("ready", client)),
                "go": str(group.path("go")),
                "stop": str(group.path("stop")),
                "timeout": REQUEST_TIMEOUT,
                "give_up_after": give_up_after,
            }
            spec_file = group.path("spec", client)
            spec_file.write_text(json.dumps(spec))
            with group.path("output", client).open("wb") as output:
                group.processes.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-c",
                            "from tests.registry.test_load import client_main; client_main()",
                            str(spec_file),
                        ],
                        cwd=REPO_ROOT,
                        stdin=subprocess.DEVNULL,
                        stdout=output,
                        stderr=subprocess.STDOUT,
                    )
                )
        yield group
    finally:
        for process in group.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
            process.wait()


# --- the checks -------------------------------------------------------------------------------------------------


@dataclass
class LogView:
    """One snapshot of the log tables: what `check_receipts` and `check_registry` look at."""

    size: int
    after_setup: dict[bytes, list[int]]
    """tx hash -> the indexes it is at, for the entries from the setup's end on."""
    leaves: dict[int, bytes]
    checkpoints: dict[int, bytes]
    """size -> signed note."""


def read_log(engine: Engine, start_size: int) -> LogView:
    """Read the log after the setup and check that it is whole: nothing half-written, one consistent tree.

    The log is contiguous from 0 and its size is the latest checkpoint's; no unit movement or Merkle node
    lies beyond it; no (actor, nonce) or transaction is in it twice; every stored checkpoint is signed by
    the registry, stores the root it signed, and is consistent with the latest (an RFC 9162 consistency
    proof from the stored tree verifies between their signed roots).
    """
    verifier = NoteVerifier.from_vkey(VKEY)
    with read_transaction(engine) as conn:
        count, top = conn.execute(select(func.count(), func.max(log_entries.c.idx))).one()
        size = store.log_size(conn)
        assert (count, top) == (size, size - 1)  # no gap
        pairs = Counter((r.actor, r.nonce) for r in conn.execute(select(log_entries.c.actor, log_entries.c.nonce)))
        assert pairs.most_common(1)[0][1] == 1, pairs.most_common(1)  # no nonce twice
        after: dict[bytes, list[int]] = defaultdict(list)
        leaves = {}
        rows = conn.execute(
            select(log_entries.c.idx, log_entries.c.tx_hash, log_entries.c.leaf_hash).where(
                log_entries.c.idx >= start_size
            )
        )
        for idx, identity, leaf in rows:
            after[bytes(identity)].append(int(idx))
            leaves[int(idx)] = bytes(leaf)
        moved_to = conn.execute(select(func.max(unit_movements.c.entry))).scalar_one()
        assert moved_to is not None
        assert moved_to < size
        levels = conn.execute(select(merkle_nodes.c.level, func.max(merkle_nodes.c.idx)).group_by(merkle_nodes.c.level))
        for level, top_node in levels:
            assert top_node < size >> level, f"a tree node ({level}, {top_node}) beyond the log's {size} entries"
        stored = list(store.iter_checkpoints(conn))
        signed: dict[int, Checkpoint] = {}
        for cp in stored:
            signed[cp.size] = open_checkpoint(cp.note, verifier, origin=ORIGIN).checkpoint
            assert (signed[cp.size].size, signed[cp.size].root_hash) == (cp.size, cp.root_hash)
        latest = signed[stored[-1].size]
        assert latest.size == size, f"the log holds {size} entries, its latest checkpoint {latest.size}"
        reader = store.DbNodeReader(conn)
        for old in signed.values():
            proof = consistency_proof(reader, old.size, size)
            verify_consistency(
                old_size=old.size, new_size=size, old_root=old.root_hash, new_root=latest.root_hash, proof=proof
            )
    return LogView(size, dict(after), leaves, {cp.size: cp.note for cp in stored})


def check_receipts(view: LogView, answers: Sequence[Answer]) -> int:
    """Every acknowledged transaction is in the log, exactly once, where its receipts say; how many there are.

    Each receipt's leaf hash is the stored entry's, its checkpoint is byte for byte the one stored for its
    tree size, and its inclusion proof verifies against that checkpoint's signed root.
    """
    verifier = NoteVerifier.from_vkey(VKEY)
    opened: dict[str, Checkpoint] = {}
    acknowledged: set[bytes] = set()
    for answer in answers:
        if not answer.acknowledged:
            continue
        receipt = answer.body
        assert receipt is not None
        identity = answer.sent.identity
        acknowledged.add(identity)
        assert view.after_setup.get(identity) == [receipt["index"]], (view.after_setup.get(identity), receipt)
        leaf = base64.b64decode(receipt["leaf_hash"])
        assert view.leaves[receipt["index"]] == leaf
        assert view.checkpoints[receipt["tree_size"]] == receipt["checkpoint"].encode(), receipt["tree_size"]
        if receipt["checkpoint"] not in opened:
            opened[receipt["checkpoint"]] = open_checkpoint(receipt["checkpoint"].encode(), verifier).checkpoint
        checkpoint = opened[receipt["checkpoint"]]
        assert checkpoint.size == receipt["tree_size"] > receipt["index"]
        verify_inclusion(
            leaf=leaf,
            index=receipt["index"],
            size=checkpoint.size,
            proof=[base64.b64decode(h) for h in receipt["inclusion_proof"]],
            root=checkpoint.root_hash,
        )
    return len(acknowledged)


def audit_passes(database_url: str, size: int) -> None:
    """``cdcer audit verify --database URL --vkey VKEY --json`` exits 0 and saw the whole log."""
    from cli.main import app  # here, not at the top: the client processes import this module and need no CLI

    command = ["audit", "verify", "-d", database_url, "--vkey", VKEY, "--json", "--workers", "1"]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, (result.stdout[-5000:], result.stderr[-5000:])
    report = json.loads(result.stdout)
    assert report["verified"] is True
    assert report["entries"] == size


@dataclass
class Tally:
    """The figures of a run."""

    transactions: int = 0
    """Distinct transfers answered."""
    appended: int = 0
    """Acknowledged transfers."""
    recovered: int = 0
    """Acknowledged transfers appended by a request whose answer was lost in transport: the identical
    re-send got the original receipt (200)."""
    refused: int = 0
    resent: int = 0
    """Deliberate re-sends of acknowledged transfers (each answered 200 with the original receipt)."""
    transport_errors: int = 0
    log_size: int = 0

    def line(self) -> str:
        return (
            f"{self.transactions} transfers answered: {self.appended} appended, {self.refused} refused; "
            f"{self.transport_errors} requests failed in transport and were sent again, {self.recovered} of them "
            f"already appended (answered 200 with the original receipt); {self.resent} acknowledged transfers "
            f"re-sent on purpose, answered with the original receipt; log size {self.log_size}"
        )


def check_registry(
    engine: Engine, database_url: str, answers: Sequence[Answer], *, before: dict[str, int], start_size: int
) -> Tally:
    """Every check of the module's docstring on the registry after the clients finished; the figures."""
    tally = Tally()
    by_identity: dict[bytes, list[Answer]] = defaultdict(list)
    for answer in answers:
        assert not answer.gave_up, f"a client gave up after {answer.transport_errors} errors: {answer.error}"
        if answer.status is None:
            continue  # a re-send skipped because the original was refused
        assert answer.status < 500, (answer.status, answer.body)
        by_identity[answer.sent.identity].append(answer)
        tally.transport_errors += answer.transport_errors
    acknowledged: dict[bytes, Sent] = {}
    for identity, got in by_identity.items():
        first, *again = got
        sent = first.sent
        assert not first.resend
        assert all(a.resend for a in again)
        tally.transactions += 1
        if not first.acknowledged:
            assert first.body is not None
            assert (first.status, first.body["type"].split("/")[-1]) == (409, "insufficient_units"), first.body
            assert not again  # a refused transfer is not sent again
            tally.refused += 1
            continue
        assert sent.quantity != TOO_LARGE, "a million units moved"
        acknowledged[identity] = sent
        tally.appended += 1
        assert all(a.status == 200 for a in again)  # a re-send: the original receipt, nothing appended
        receipts = [a.body for a in got if a.body is not None]
        # 201 exactly when appended by this request; a request that failed in transport may have been
        # appended all the same, and its retry then gets the original receipt (200).
        assert [a.status for a in got] == [200 if r["duplicate"] else 201 for r in receipts]
        if first.transport_errors == 0:
            assert first.status == 201
            outcome = {"kind": "units.transfer", "from": sent.sender, "to": sent.to, "quantity": sent.quantity}
            assert first.body is not None
            assert first.body["outcome"] == {**outcome, "blocks": first.body["outcome"]["blocks"]}
        elif first.status == 200:
            tally.recovered += 1
        assert len({r["index"] for r in receipts}) == 1
        tally.resent += len(again)

    view = read_log(engine, start_size)
    assert check_receipts(view, answers) == len(acknowledged)
    # Nothing in the log that was not acknowledged (no client gave up, so none may be there unanswered).
    assert set(view.after_setup) == set(acknowledged)
    assert view.size == start_size + len(acknowledged)
    tally.log_size = view.size

    # Balances: replayed from the database (not this process's memory), against the acknowledged transfers.
    state = Ledger(engine, log_signer()).state()
    expected = Counter(before)
    for sent in acknowledged.values():
        expected[sent.sender] -= sent.quantity
        expected[sent.to] += sent.quantity
    assert {account: state.balance(account) for account in before} == dict(expected)
    assert all(state.balance(pid) >= 0 for pid in state.participants)
    assert sum(state.balance(pid) for pid in state.participants) == sum(before.values())
    assert check_all(state) == []
    audit_passes(database_url, view.size)
    return tally


def report(title: str, tally: Tally, **figures: object) -> None:
    details = ", ".join(f"{name.replace('_', ' ')} {value}" for name, value in figures.items())
    print(f"\n[{title}] {details}\n[{title}] {tally.line()}")  # noqa: T201 (figures, shown with -s)


# --- the tests -------------------------------------------------------------------------------------------------


@contextmanager
def load_servers(database_url: str, log_key_file: Path, *, sqlite: bool, workers: int) -> Iterator[list[str]]:
    """SQLite: one server with two workers. PostgreSQL: two servers sharing the database, `workers` each."""
    with ExitStack() as stack:
        yield [
            stack.enter_context(
                serve(
                    database_url, log_key_file, workers=2 if sqlite else workers, env=SERVER_ENV, timeout=START_TIMEOUT
                )
            )
            for _ in range(1 if sqlite else 2)
        ]


def run_load(
    story: Story, database_url: str, log_key_file: Path, tmp_path: Path, *, clients_: int, each: int, workers: int
) -> Tally:
    before = found_holders(story)
    start_size = story.ledger.size()
    engine = story.ledger.engine
    sqlite = engine.dialect.name == "sqlite"
    rng = random.Random(2024)
    transfers = [client_transfers(c, each, rng) for c in range(clients_)]
    sent = [s for group in transfers for s in group]
    assert len({s.identity for s in sent}) == len({(s.sender, s.tx.body.nonce) for s in sent}) == len(sent)
    work = [(group, plan(each, client=c, resend_every=10 if c % 2 else 0)) for c, group in enumerate(transfers)]
    urls_file = tmp_path / "urls.json"
    # The clients start while the servers do; they read the servers' URLs once told to go.
    with clients(tmp_path / "clients", work, urls_file, give_up_after=60.0) as group:
        with load_servers(database_url, log_key_file, sqlite=sqlite, workers=workers) as urls:
            write_urls(urls_file, urls)
            group.wait_ready()
            group.go()
            wall = group.join()
        answers = group.answers()
    assert len(answers) == sum(len(steps) for _, steps in work)
    tally = check_registry(engine, database_url, answers, before=before, start_size=start_size)
    assert tally.transactions == len(sent)
    assert tally.refused > 0
    assert tally.resent > 0
    if not sqlite:  # both servers appended (every client's first server is client % 2)
        assert {a.client % 2 for a in answers if a.status == 201} == {0, 1}
    servers = "1 server with 2 workers" if sqlite else f"2 servers with {workers} worker{'s' * (workers > 1)} each"
    requests = sum(1 + a.transport_errors for a in answers if a.status is not None)
    report(
        f"load {engine.dialect.name}",
        tally,
        client_processes=clients_,
        server_processes=servers,
        transfers_sent=len(sent),
        requests=requests,
        wall_s=f"{wall:.1f}",
        requests_per_s=f"{requests / wall:.0f}",
    )
    return tally


@pytest.mark.slow
def test_load(story: Story, database_url: str, log_key_file: Path, tmp_path: Path) -> None:
    tally = run_load(story, database_url, log_key_file, tmp_path, clients_=8, each=500, workers=2)
    # Of the 160 requests whose client stopped waiting after 1 ms, some were appended before the identical
    # re-send arrived, which was then answered with the original receipt (the others were appended by it).
    assert tally.recovered > 0


def test_load_small(story: Story, database_url: str, log_key_file: Path, tmp_path: Path) -> None:
    run_load(story, database_url, log_key_file, tmp_path, clients_=4, each=25, workers=1)
