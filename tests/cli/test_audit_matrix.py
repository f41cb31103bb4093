"""The tamper matrix: every way an operator with full database access could alter a demo ledger, audited.

A registry is filled by `run_demo` (the ``cdcer demo`` story: participants, projects, issuances,
transfers, events, retirements, claims), then one participant's extra key is added and revoked through
real ``key.add`` and ``key.revoke`` transactions. That ledger is built once per engine and worker as a
template database; every case works on its own copy, tampers with it as an operator who dropped the
append-only triggers could, and runs ``cdcer audit verify -d URL --vkey VKEY --json``. Each case asserts
exit status 1, ``verified: false``, the first bad entry (``first_bad_index``; none for a lying projection
table) and a fragment of the first finding's text that names the reason. The cases:

- a pristine copy verifies (exit 0);
- one flipped bit in each column of a ``log_entries`` row, at random entries: ``idx`` (a high bit, so the
  row leaves its place), ``data``, ``leaf_hash``, ``chain_hash``; and the columns the store indexes beside
  the bytes (``accepted_at``, ``actor``, ``nonce``, ``kind``, ``tx_hash``), compared with the entry's own;
- a deleted entry; two entries whose rows swap places; the tail behind the latest checkpoint cut off;
- forged entries with correct leaf and chain hashes: appended under the actor's key id but signed by
  another key; signed by an unknown key; signed by the revoked key after its revocation; a genuine
  entry's signed transaction replayed; a forged entry inserted in the middle with every later entry
  renumbered and re-chained;
- edited projection rows: a holding's quantity (``unit_blocks.last``, ``unit_blocks.first``), a project's
  state, a claim's footprint, a serial movement's range;
- the registry's key replaced (every checkpoint re-signed with another key, audited with the real key
  and with the usurper's), or only the registry's recorded verifier key or origin (``registry_meta``);
- checkpoints forged with another key (an existing one re-signed, a new size added);
- an older copy of the database restored after a later checkpoint was published: a database audit cannot
  tell a consistent older log from the current one, so the auditor's saved checkpoint does
  (``cdcer audit checkpoint --save`` then ``cdcer audit verify --url --since``, against ``cdcer serve``),
  also when the restored log was then grown into a fork.

The 10,000-entry matrix is marked ``slow`` (``make test-long``); the same cases on a 300-entry demo, with
fewer random positions, run in the default suite. Positions come from ``random.Random`` seeded by the
case's name and number, so pytest-xdist workers collect and run the same cases.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner, Result

from cli.main import app
from demo import DEFAULT_SEED, demo_key, run_demo
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.keys import PrivateKey, write_key_file
from ledger.ledger import Ledger, Receipt, found_registry, tx_hash
from ledger.log import Entry, StoredEntry, decode_entry, seal
from ledger.merkle import Frontier, Hash
from ledger.note import NoteSigner
from ledger.storage import schema, store
from ledger.storage.engine import make_engine, read_transaction, write_transaction
from ledger.storage.tables import log_entries
from ledger.transactions import (
    KeyAdd,
    KeyRevoke,
    Role,
    Selection,
    SignedTransaction,
    TransactionSigner,
    Transfer,
    encode_body,
    format_utc,
    make_body,
    signing_message,
)
from tests.conftest import AUTHORITY, AUTHORITY_NAME, Databases, log_signer
from tests.ledger.scenario import ORIGIN, seeded_key
from tests.ledger.test_audit import drop_triggers
from tests.registry.live import serve

if TYPE_CHECKING:
    from _pytest.mark import ParameterSet

VKEY = log_signer().verifier_key()
SLOW_ENTRIES = 10_000
FAST_ENTRIES = 300
USURPER = NoteSigner(ORIGIN, seeded_key("matrix usurper").seed)
MALLORY = seeded_key("matrix mallory")


def cases(slow: int, fast: int) -> list[ParameterSet]:
    """(entries, seed) parameters: `fast` seeds on the small demo, `slow` seeds on the 10,000-entry one."""
    return [pytest.param(FAST_ENTRIES, seed, id=f"300-{seed}") for seed in range(fast)] + [
        pytest.param(SLOW_ENTRIES, seed, id=f"10k-{seed}", marks=pytest.mark.slow) for seed in range(slow)
    ]


# --- the template ledger -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Facts:
    """What the cases need to know about a template ledger, noted when it was built."""

    size: int
    checkpoints: tuple[int, ...]
    actor: str  # an account holder: the forged entries' actor
    actor_registered_at: int  # the entry that registered it (the demo registers the points path's first)
    actor_key: PrivateKey  # its valid demo key
    recipient: str  # another account holder
    revoked: PrivateKey  # the actor's second key, revoked at entry `revoked_at`
    revoked_at: int


_FACTS: dict[tuple[str, int], Facts] = {}


def build_demo(engine: Engine, entries: int, keys: Path) -> Facts:
    """Found a registry, append the demo, then add a key to an account holder and revoke it."""
    schema.upgrade(engine)
    ledger = Ledger(engine, log_signer())
    found_registry(ledger, authority_id=AUTHORITY, authority_name=AUTHORITY_NAME, authority_key=seeded_key(AUTHORITY))
    # A few hundred point accounts: the points entries are tampered with too, the log stays near `entries`.
    summary = run_demo(ledger, authority_key=seeded_key(AUTHORITY), data_dir=keys, entries=entries, citizens=400)
    holders = [p.id for p in summary.participants if Role.ACCOUNT_HOLDER.value in p.roles]
    actor, recipient = holders[0], holders[1]
    revoked = seeded_key("matrix revoked key")
    authority = TransactionSigner(ORIGIN, AUTHORITY, seeded_key(AUTHORITY))
    now = datetime.now(UTC)
    added, revocation = ledger.submit(
        [
            authority.sign(KeyAdd(participant_id=actor, public_key=revoked.public_key.b64()), at=now),
            authority.sign(KeyRevoke(participant_id=actor, key_id=revoked.key_id, reason="laptop stolen"), at=now),
        ]
    )
    assert isinstance(added, Receipt)
    assert isinstance(revocation, Receipt)
    with read_transaction(engine) as conn:
        size = store.log_size(conn)
        checkpoints = tuple(cp.size for cp in store.iter_checkpoints(conn))
    assert size >= entries
    assert checkpoints[-1] == size
    state = ledger.state()
    return Facts(
        size=size,
        checkpoints=checkpoints,
        actor=actor,
        actor_registered_at=state.participants[actor].registered_at,
        actor_key=demo_key(seeded_key(AUTHORITY), DEFAULT_SEED, actor),
        recipient=recipient,
        revoked=revoked,
        revoked_at=revocation.index,
    )


@dataclass
class Copy:
    """A private copy of a template ledger: its URL, an engine on it, and the template's facts."""

    url: str
    engine: Engine
    facts: Facts


@pytest.fixture
def copy_of(
    databases: Databases, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[int], Copy]]:
    """Makes private copies of the demo ledger of a given size (its template built once per worker)."""
    made: list[Copy] = []

    def make(entries: int) -> Copy:
        key = (databases.kind, entries)

        def build(engine: Engine) -> None:
            _FACTS[key] = build_demo(engine, entries, tmp_path_factory.mktemp(f"matrix-keys-{entries}"))

        url = databases.from_template(f"audit-matrix-{entries}", build, directory=tmp_path)
        copy = Copy(url, make_engine(url), _FACTS[key])
        made.append(copy)
        return copy

    try:
        yield make
    finally:
        for copy in made:
            copy.engine.dispose()
            databases.drop(copy.url)


# --- running the audit ---------------------------------------------------------------------------------


def cdcer(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def audit_json(copy: Copy, vkey: str = VKEY, *, workers: int | None = 1) -> tuple[int, dict[str, Any]]:
    """`cdcer audit verify -d URL --vkey VKEY --json`: with one signature process unless told (xdist already
    keeps the cores busy); ``workers=None`` is the command's default (one per core, above 4,096 entries)."""
    copy.engine.dispose()
    options = [] if workers is None else ["--workers", str(workers)]
    result = cdcer("audit", "verify", "-d", copy.url, "--vkey", vkey, "--json", *options)
    assert "Traceback" not in result.stderr, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return result.exit_code, report


def assert_caught(
    copy: Copy, index: int | None, step: str, fragment: str, *, vkey: str = VKEY, workers: int | None = 1
) -> dict[str, Any]:
    """The audit exits 1, is not verified, names entry `index` first (None: no entry), by `step`, saying `fragment`."""
    code, report = audit_json(copy, vkey, workers=workers)
    findings = report["findings"][:8]
    assert code == 1, findings
    assert report["verified"] is False
    assert report["finding_count"] >= 1
    assert report["first_bad_index"] == index, findings
    first = report["first_finding"]
    assert isinstance(first, str)
    assert first.startswith(f"entry {index}: {step}: " if index is not None else f"{step}: "), first
    assert fragment in first, first
    return report


# --- tampering -----------------------------------------------------------------------------------------


def execute(engine: Engine, statement: str, **params: object) -> int:
    """Run one statement with the append-only triggers off (as an operator could); the rows it touched."""
    drop_triggers(engine)
    with engine.begin() as conn:
        count = conn.execute(text(statement), params).rowcount
    assert count >= 1, statement
    return count


def column_value(engine: Engine, column: str, index: int) -> Any:
    with engine.connect() as conn:
        return conn.execute(text(f"SELECT {column} FROM log_entries WHERE idx = :i"), {"i": index}).scalar_one()


def flip_bit(value: Any, rng: random.Random) -> Any:
    """`value` with one bit flipped: bytes anywhere; text in an ASCII character (never to NUL, which
    PostgreSQL refuses); an index in a high bit (a low one would collide with another entry's key)."""
    if isinstance(value, int):
        flipped = value ^ (1 << rng.randrange(32, 64))
        return flipped - (1 << 64) if flipped >= 1 << 63 else flipped  # a signed 64-bit integer
    if isinstance(value, str):
        raw = bytearray(value.encode())
        position = rng.choice([i for i, byte in enumerate(raw) if 0 < byte < 0x80])
        raw[position] ^= 1 << rng.choice([bit for bit in range(7) if raw[position] != 1 << bit])
        return raw.decode()
    raw = bytearray(value)
    raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
    return bytes(raw)


def last_entry(engine: Engine) -> tuple[StoredEntry, Entry]:
    with read_transaction(engine) as conn:
        size = store.log_size(conn)
        (stored,) = store.read_entries(conn, size - 1, size)
    return stored, decode_entry(stored.data, index=size - 1)


def forged(
    index: int,
    prev_chain: bytes,
    at: datetime,
    *,
    actor: str,
    named_key: PrivateKey,
    signer: PrivateKey,
    nonce: str,
    recipient: str,
) -> tuple[StoredEntry, store.EntryMeta]:
    """A well-formed entry (exact encoding, correct leaf and chain hashes) of `actor`'s transfer that names
    `named_key`'s id and carries `signer`'s public key and signature."""
    body = make_body(
        origin=ORIGIN,
        actor=actor,
        key=named_key.public_key,
        payload=Transfer(to=recipient, selection=Selection(quantity=1)),
        nonce=nonce,
        created_at=at,
    )
    body_bytes = encode_body(body)
    tx = SignedTransaction(body_bytes, signer.sign(signing_message(body_bytes)), body)
    sealed = seal(Entry(index, at, prev_chain, signer.public_key.raw, tx.signature, body_bytes))
    return sealed, store.EntryMeta(format_utc(at), actor, nonce, body.kind, tx_hash(tx))


def append_forged(copy: Copy, *, named_key: PrivateKey, signer: PrivateKey, nonce: str) -> int:
    """Append a forged entry of the facts' actor after the last entry (a second later); its index."""
    stored, entry = last_entry(copy.engine)
    at = entry.accepted_at + timedelta(seconds=1)
    row = forged(
        stored.index + 1,
        stored.chain_hash,
        at,
        actor=copy.facts.actor,
        named_key=named_key,
        signer=signer,
        nonce=nonce,
        recipient=copy.facts.recipient,
    )
    with write_transaction(copy.engine) as conn:
        store.insert_entries(conn, [row])
    return stored.index + 1


# --- the pristine ledger -------------------------------------------------------------------------------


def test_every_entry_column_is_in_the_matrix() -> None:
    assert {column.name for column in log_entries.columns} == set(FLIPS) | set(INDEXED_COLUMNS)


@pytest.mark.parametrize(("entries", "seed"), cases(1, 1))
def test_the_pristine_demo_ledger_verifies(copy_of: Callable[[int], Copy], entries: int, seed: int) -> None:
    copy = copy_of(entries)
    code, report = audit_json(copy, workers=None)
    assert code == 0, report["findings"][:5]
    assert report["verified"] is True
    assert report["entries"] == copy.facts.size
    assert report["signatures_checked"] == copy.facts.size
    assert report["checkpoints"] == len(copy.facts.checkpoints)
    assert report["projections_checked"] is True
    assert report["first_bad_index"] is None
    assert report["findings"] == []


# --- one flipped bit in an entry row -------------------------------------------------------------------

FLIPS = {  # column: (the step that catches it, what the first finding says)
    "idx": ("encoding", "expected entry {index} next, found entry {next}"),
    "data": ("encoding", "stored leaf hash does not match the entry's bytes"),
    "leaf_hash": ("encoding", "stored leaf hash does not match the entry's bytes"),
    "chain_hash": ("chain", "chain hash mismatch: expected"),
}


def flip_at_random(copy: Copy, column: str, seed: str) -> int:
    """Flip one bit of `column` in a random row of ``log_entries``; the row's index."""
    rng = random.Random(seed)
    index = rng.randrange(copy.facts.size)
    value = flip_bit(column_value(copy.engine, column, index), rng)
    execute(copy.engine, f"UPDATE log_entries SET {column} = :v WHERE idx = :i", v=value, i=index)
    return index


@pytest.mark.parametrize(("entries", "seed"), cases(12, 2))
@pytest.mark.parametrize("column", sorted(FLIPS))
def test_a_flipped_bit_in_an_entry_row_is_found_at_its_entry(
    copy_of: Callable[[int], Copy], column: str, entries: int, seed: int
) -> None:
    copy = copy_of(entries)
    index = flip_at_random(copy, column, f"flip-{column}-{entries}-{seed}")
    step, fragment = FLIPS[column]
    if column == "idx" and index == copy.facts.size - 1:
        # The last row moved out of reach: the log is one entry shorter than its latest checkpoint.
        step, fragment = "checkpoints", f"checkpoint of size {copy.facts.size} covers entries the log does not have"
    assert_caught(copy, index, step, fragment.format(index=index, next=index + 1))


INDEXED_COLUMNS = ("accepted_at", "actor", "kind", "nonce", "tx_hash")


@pytest.mark.parametrize(("entries", "seed"), cases(6, 1))
@pytest.mark.parametrize("column", INDEXED_COLUMNS)
def test_a_flipped_bit_in_an_indexed_column_is_found_at_its_entry(
    copy_of: Callable[[int], Copy], column: str, entries: int, seed: int
) -> None:
    copy = copy_of(entries)
    index = flip_at_random(copy, column, f"flip-{column}-{entries}-{seed}")
    code, report = audit_json(copy)
    assert code == 1
    assert report["first_bad_index"] == index
    assert f"stored {column} " in report["first_finding"]
    assert "differs from the entry's" in report["first_finding"]


# --- deleted, swapped, truncated -----------------------------------------------------------------------


@pytest.mark.parametrize(("entries", "seed"), cases(8, 1))
def test_a_deleted_entry_is_found(copy_of: Callable[[int], Copy], entries: int, seed: int) -> None:
    copy = copy_of(entries)
    index = random.Random(f"delete-{entries}-{seed}").randrange(copy.facts.size - 1)  # the last: truncation
    execute(copy.engine, "DELETE FROM log_entries WHERE idx = :i", i=index)
    assert_caught(copy, index, "encoding", f"expected entry {index} next, found entry {index + 1}")


@pytest.mark.parametrize(("entries", "seed"), cases(6, 1))
def test_two_swapped_entries_are_found(copy_of: Callable[[int], Copy], entries: int, seed: int) -> None:
    copy = copy_of(entries)
    rng = random.Random(f"swap-{entries}-{seed}")
    first, second = sorted(rng.sample(range(copy.facts.size), 2))
    execute(copy.engine, "UPDATE log_entries SET idx = -1 WHERE idx = :i", i=first)
    execute(copy.engine, "UPDATE log_entries SET idx = :i WHERE idx = :j", i=first, j=second)
    execute(copy.engine, "UPDATE log_entries SET idx = :j WHERE idx = -1", j=second)
    # Each row keeps its own hashes, so the chain breaks at the first place and the bytes say where they belong.
    report = assert_caught(copy, first, "chain", "chain hash mismatch")
    at_first = [f["message"] for f in report["findings"] if f["index"] == first]
    assert f"says it is entry {second}" in " ".join(at_first), at_first


@pytest.mark.parametrize(("entries", "seed"), cases(4, 1))
def test_a_tail_cut_behind_the_latest_checkpoint_is_found(
    copy_of: Callable[[int], Copy], entries: int, seed: int
) -> None:
    copy = copy_of(entries)
    size = copy.facts.size
    kept = size - random.Random(f"truncate-{entries}-{seed}").randrange(1, size // 4)
    execute(copy.engine, "DELETE FROM log_entries WHERE idx >= :k", k=kept)
    beyond = [cp for cp in copy.facts.checkpoints if cp > kept]  # every one names the cut
    report = assert_caught(
        copy,
        kept,
        "checkpoints",
        f"checkpoint of size {beyond[0]} covers entries the log does not have (it holds {kept}): the log was truncated",
    )
    assert report["entries"] == kept
    truncated = [f["message"] for f in report["findings"] if "the log was truncated" in f["message"]]
    assert len(truncated) == len(beyond), truncated
    assert f"checkpoint of size {size} " in truncated[-1]


# --- forged entries with correct hashes ----------------------------------------------------------------


@pytest.mark.parametrize(("entries", "seed"), cases(2, 1))
def test_an_appended_entry_signed_by_another_key_than_the_actors_is_found(
    copy_of: Callable[[int], Copy], entries: int, seed: int
) -> None:
    copy = copy_of(entries)
    index = append_forged(copy, named_key=copy.facts.actor_key, signer=MALLORY, nonce=f"forged-signature-{seed:04d}")
    # The command's default workers: on the large ledger, the signature is checked in a worker process.
    report = assert_caught(
        copy, index, "signatures", "carries a public key other than the registered key", workers=None
    )
    messages = [f["message"] for f in report["findings"] if f["index"] == index]
    assert any("does not verify with its registered key" in m for m in messages), messages


@pytest.mark.parametrize(("entries", "seed"), cases(2, 1))
def test_an_appended_entry_signed_by_an_unknown_key_is_found(
    copy_of: Callable[[int], Copy], entries: int, seed: int
) -> None:
    copy = copy_of(entries)
    index = append_forged(copy, named_key=MALLORY, signer=MALLORY, nonce=f"forged-unknown-{seed:04d}")
    assert_caught(copy, index, "keys", f"key {MALLORY.key_id} is not registered to {copy.facts.actor}")


@pytest.mark.parametrize(("entries", "seed"), cases(2, 1))
def test_an_appended_entry_signed_by_a_revoked_key_is_found(
    copy_of: Callable[[int], Copy], entries: int, seed: int
) -> None:
    copy = copy_of(entries)
    revoked = copy.facts.revoked
    index = append_forged(copy, named_key=revoked, signer=revoked, nonce=f"forged-revoked-{seed:04d}")
    assert index > copy.facts.revoked_at
    assert_caught(
        copy,
        index,
        "keys",
        f"key {revoked.key_id} of {copy.facts.actor} was revoked at entry {copy.facts.revoked_at}",
    )


@pytest.mark.parametrize(("entries", "seed"), cases(2, 1))
def test_a_replayed_genuine_transaction_is_found(copy_of: Callable[[int], Copy], entries: int, seed: int) -> None:
    # A genuine signed transaction appended again (the unique nonce index dropped first): the signature
    # verifies, the nonce gives it away.
    copy = copy_of(entries)
    source = random.Random(f"replay-{entries}-{seed}").randrange(1, copy.facts.size)
    stored, last = last_entry(copy.engine)
    with read_transaction(copy.engine) as conn:
        (original,) = store.read_entries(conn, source, source + 1)
    entry = decode_entry(original.data, index=source)
    body = entry.body()
    index = stored.index + 1
    sealed = seal(
        Entry(index, last.accepted_at, stored.chain_hash, entry.public_key, entry.signature, entry.body_bytes)
    )
    meta = store.EntryMeta(
        format_utc(last.accepted_at),
        body.actor,
        body.nonce,
        body.kind,
        tx_hash(SignedTransaction(entry.body_bytes, entry.signature, body)),
    )
    with copy.engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_log_entries_nonce_actor"))
    with write_transaction(copy.engine) as conn:
        store.insert_entries(conn, [(sealed, meta)])
    assert_caught(copy, index, "keys", f"nonce {body.nonce} of {body.actor} was already used")


@pytest.mark.parametrize(("entries", "seed"), cases(3, 1))
def test_a_forged_entry_inserted_in_the_middle_is_found(
    copy_of: Callable[[int], Copy], entries: int, seed: int
) -> None:
    # A careful forger inserts an entry and renumbers and re-chains everything after it: every later
    # entry's signature still verifies and the chain is whole; the forged signer and the checkpoints are not.
    copy = copy_of(entries)
    # Inserted where its actor exists: before its registration the finding is another (no such participant).
    index = random.Random(f"insert-{entries}-{seed}").randrange(copy.facts.actor_registered_at + 1, copy.facts.size)
    columns = "idx, data, leaf_hash, chain_hash, accepted_at, actor, nonce, kind, tx_hash"
    with copy.engine.connect() as conn:
        (before,) = store.read_entries(conn, index - 1, index)
        rows = conn.execute(text(f"SELECT {columns} FROM log_entries WHERE idx >= :i ORDER BY idx"), {"i": index}).all()
    at = decode_entry(before.data, index=index - 1).accepted_at
    sealed = forged(
        index,
        before.chain_hash,
        at,
        actor=copy.facts.actor,
        named_key=MALLORY,
        signer=MALLORY,
        nonce=f"forged-inserted-{seed:04d}",
        recipient=copy.facts.recipient,
    )
    new_rows = [sealed]
    previous = sealed[0].chain_hash
    for row in rows:
        old = decode_entry(bytes(row.data), index=int(row.idx))
        moved = seal(Entry(old.index + 1, old.accepted_at, previous, old.public_key, old.signature, old.body_bytes))
        previous = moved.chain_hash
        new_rows.append((moved, store.EntryMeta(row.accepted_at, row.actor, row.nonce, row.kind, bytes(row.tx_hash))))
    execute(copy.engine, "DELETE FROM log_entries WHERE idx >= :i", i=index)
    with write_transaction(copy.engine) as conn:
        store.insert_entries(conn, new_rows)
    report = assert_caught(copy, index, "keys", f"key {MALLORY.key_id} is not registered to {copy.facts.actor}")
    assert report["entries"] == copy.facts.size + 1
    steps = {f["step"] for f in report["findings"] if f["index"] is not None and f["index"] > index}
    assert "checkpoints" in steps, report["findings"][:5]
    assert not steps & {"encoding", "chain", "signatures"}, report["findings"][:5]


# --- projection rows -----------------------------------------------------------------------------------


def projection_edit(engine: Engine, edit: str, rng: random.Random) -> str:
    """Alter one projection row; the fragment the audit's first finding must contain."""
    with engine.connect() as conn:
        if edit in ("holding_last", "holding_first"):
            rows = conn.execute(
                text(
                    "SELECT batch_id, first, last FROM unit_blocks WHERE state = 'held' AND last > first ORDER BY 1, 2"
                )
            ).all()
        elif edit == "project_state":
            rows = conn.execute(text("SELECT id, state FROM projects ORDER BY id")).all()
        elif edit == "claim_footprint":
            rows = conn.execute(text("SELECT id, footprint_kg FROM claims ORDER BY id")).all()
        else:
            rows = conn.execute(text("SELECT entry, batch_id, first, last FROM unit_movements ORDER BY 1, 2, 3")).all()
    row = rng.choice(rows)
    if edit == "holding_last":
        execute(engine, "UPDATE unit_blocks SET last = last + 1 WHERE batch_id = :b AND first = :f", b=row[0], f=row[1])
        return f"unit_blocks row {(row[0], row[1])!r} differs from the replayed state in last"
    if edit == "holding_first":
        execute(
            engine, "UPDATE unit_blocks SET first = first + 1 WHERE batch_id = :b AND first = :f", b=row[0], f=row[1]
        )
        return f"unit_blocks row {(row[0], row[1] + 1)!r} does not exist in the replayed state"
    if edit == "project_state":
        states = ["submitted", "validated", "registered", "rejected", "changes_requested", "suspended", "closed"]
        other = rng.choice([s for s in states if s != row[1]])
        execute(engine, "UPDATE projects SET state = :s WHERE id = :i", s=other, i=row[0])
        return f"projects row {(row[0],)!r} differs from the replayed state in state"
    if edit == "claim_footprint":
        delta = rng.choice([-1, 1]) * rng.randrange(1, 1_000_000)
        execute(engine, "UPDATE claims SET footprint_kg = footprint_kg + :d WHERE id = :i", d=delta, i=row[0])
        return f"claims row {(row[0],)!r} differs from the replayed state in footprint_kg"
    execute(
        engine,
        "UPDATE unit_movements SET last = last + 1 WHERE entry = :e AND batch_id = :b AND first = :f",
        e=row[0],
        b=row[1],
        f=row[2],
    )
    return f"unit_movements of entry {row[0]} differ from the log"


PROJECTION_EDITS = ("claim_footprint", "holding_first", "holding_last", "movement_last", "project_state")


@pytest.mark.parametrize(("entries", "seed"), cases(2, 1))
@pytest.mark.parametrize("edit", PROJECTION_EDITS)
def test_an_edited_projection_row_is_found(copy_of: Callable[[int], Copy], edit: str, entries: int, seed: int) -> None:
    copy = copy_of(entries)
    fragment = projection_edit(copy.engine, edit, random.Random(f"projection-{edit}-{entries}-{seed}"))
    report = assert_caught(copy, None, "projections", fragment)
    assert {f["step"] for f in report["findings"]} == {"projections"}, report["findings"][:5]


# --- the registry's key and its checkpoints ------------------------------------------------------------


def resign_checkpoints(engine: Engine, signer: NoteSigner) -> None:
    """What an operator who replaced the registry's key does: re-sign every checkpoint, publish the new key."""
    with engine.connect() as conn:
        stored = list(store.iter_checkpoints(conn))
    drop_triggers(engine)
    with engine.begin() as conn:
        for cp in stored:
            note = sign_checkpoint(Checkpoint(ORIGIN, cp.size, cp.root_hash), signer)
            conn.execute(text("UPDATE checkpoints SET note = :n WHERE size = :s"), {"n": note, "s": cp.size})
        conn.execute(text("UPDATE registry_meta SET value = :v WHERE name = 'vkey'"), {"v": signer.verifier_key()})


@pytest.mark.parametrize(("entries", "seed"), cases(1, 1))
def test_a_replaced_registry_key_is_found_with_the_real_vkey(
    copy_of: Callable[[int], Copy], entries: int, seed: int
) -> None:
    copy = copy_of(entries)
    resign_checkpoints(copy.engine, USURPER)
    first = copy.facts.checkpoints[0]
    report = assert_caught(copy, first - 1, "checkpoints", f"checkpoint of size {first}: ")
    assert {f["step"] for f in report["findings"]} == {"checkpoints", "meta"}
    # every checkpoint, and the recorded key that is not the genesis entry's; nothing else
    assert report["finding_count"] == len(copy.facts.checkpoints) + 1


@pytest.mark.parametrize(("entries", "seed"), cases(1, 1))
def test_a_replaced_registry_key_is_found_with_the_usurpers_vkey(
    copy_of: Callable[[int], Copy], entries: int, seed: int
) -> None:
    # An auditor who took the key the registry now publishes: the genesis entry names the real one.
    copy = copy_of(entries)
    resign_checkpoints(copy.engine, USURPER)
    report = assert_caught(
        copy, 0, "checkpoints", f"the genesis entry names registry key {ORIGIN}+", vkey=USURPER.verifier_key()
    )
    assert report["finding_count"] == 2  # the genesis entry, and the recorded key that is not the genesis entry's


@pytest.mark.parametrize(("entries", "seed"), cases(1, 1))
@pytest.mark.parametrize("name", ["vkey", "origin"])
def test_a_replaced_registry_setting_is_found(
    copy_of: Callable[[int], Copy], name: str, entries: int, seed: int
) -> None:
    copy = copy_of(entries)
    replacement = USURPER.verifier_key() if name == "vkey" else "usurper.example/registry"
    execute(copy.engine, "UPDATE registry_meta SET value = :v WHERE name = :n", v=replacement, n=name)
    code, report = audit_json(copy)
    assert code == 1
    assert report["first_finding"] == (
        f"meta: the registry's recorded {name} is {replacement!r}, but its genesis entry names "
        f"{VKEY if name == 'vkey' else ORIGIN!r}"
    )


@pytest.mark.parametrize(("entries", "seed"), cases(2, 1))
def test_a_checkpoint_re_signed_with_another_key_is_found(
    copy_of: Callable[[int], Copy], entries: int, seed: int
) -> None:
    copy = copy_of(entries)
    size = random.Random(f"checkpoint-{entries}-{seed}").choice(copy.facts.checkpoints)
    with copy.engine.connect() as conn:
        real = store.checkpoint_at(conn, size)
    assert real is not None
    note = sign_checkpoint(Checkpoint(ORIGIN, size, real.root_hash), USURPER)
    execute(copy.engine, "UPDATE checkpoints SET note = :n WHERE size = :s", n=note, s=size)
    report = assert_caught(copy, size - 1, "checkpoints", f"checkpoint of size {size}: ")
    assert report["finding_count"] == 1


@pytest.mark.parametrize(("entries", "seed"), cases(2, 1))
def test_a_new_checkpoint_signed_with_another_key_is_found(
    copy_of: Callable[[int], Copy], entries: int, seed: int
) -> None:
    # A checkpoint of a size the registry never signed, of the log's true root, signed by another key.
    copy = copy_of(entries)
    rng = random.Random(f"new-checkpoint-{entries}-{seed}")
    size = rng.choice([n for n in range(1, copy.facts.size) if n not in copy.facts.checkpoints])
    with copy.engine.connect() as conn:
        leaves = [entry.leaf_hash for entry in store.read_entries(conn, 0, size)]
    frontier = Frontier.empty()
    for leaf in leaves:
        frontier.append(Hash(leaf))
    note = sign_checkpoint(Checkpoint(ORIGIN, size, frontier.root()), USURPER)
    with copy.engine.begin() as conn:
        conn.execute(
            text("INSERT INTO checkpoints (size, root_hash, note, created_at) VALUES (:s, :r, :n, :c)"),
            {"s": size, "r": frontier.root(), "n": note, "c": format_utc(datetime.now(UTC))},
        )
    report = assert_caught(copy, size - 1, "checkpoints", f"checkpoint of size {size}: ")
    assert report["finding_count"] == 1
    assert report["checkpoints"] == len(copy.facts.checkpoints) + 1


# --- an older copy restored after a checkpoint was published -------------------------------------------


def grow(copy: Copy, label: str, count: int) -> None:
    """Append `count` entries through the ledger (the authority adds keys to the actor): a new checkpoint."""
    authority = TransactionSigner(ORIGIN, AUTHORITY, seeded_key(AUTHORITY))
    now = datetime.now(UTC)
    txs = [
        authority.sign(
            KeyAdd(participant_id=copy.facts.actor, public_key=seeded_key(f"matrix {label} {n}").public_key.b64()),
            at=now,
        )
        for n in range(count)
    ]
    results = Ledger(copy.engine, log_signer()).submit(txs)
    assert all(isinstance(result, Receipt) for result in results), results
    copy.engine.dispose()  # the served registry is the only user from here on


@pytest.mark.parametrize(
    ("entries", "seed", "fork"),
    [
        pytest.param(FAST_ENTRIES, 0, False, id="300-rollback"),
        pytest.param(SLOW_ENTRIES, 0, False, id="10k-rollback", marks=pytest.mark.slow),
        pytest.param(SLOW_ENTRIES, 0, True, id="10k-fork", marks=pytest.mark.slow),
    ],
)
def test_an_older_copy_restored_after_a_checkpoint_is_caught_against_the_saved_checkpoint(
    copy_of: Callable[[int], Copy], tmp_path: Path, entries: int, seed: int, fork: bool
) -> None:
    backup = copy_of(entries)  # the database as it was: what the operator restores
    live = copy_of(entries)
    grow(live, "published", 3)
    log_key = tmp_path / "registry-log.key"
    write_key_file(log_key, seeded_key("log"), passphrase=None)
    saved = tmp_path / "auditor.checkpoint"
    with serve(live.url, log_key) as base:
        save = cdcer("audit", "checkpoint", "--url", base, "--vkey", VKEY, "--save", str(saved), "--json")
        assert save.exit_code == 0, save.stderr
        published = json.loads(save.stdout)["size"]
    assert published == live.facts.size + 3
    kept = saved.read_bytes()

    # The operator puts the backup in place (and, for a fork, grows it past the saved size differently).
    restored_size = backup.facts.size
    if fork:
        grow(backup, "forked", 5)
        restored_size += 5
    with serve(backup.url, log_key) as base:
        since = cdcer("audit", "verify", "--url", base, "--vkey", VKEY, "--since", str(saved), "--json")
        refresh = cdcer("audit", "checkpoint", "--url", base, "--vkey", VKEY, "--save", str(saved))
    if fork:
        reason = f"checkpoint {published} -> {restored_size} is not consistent"
    else:
        reason = f"the log shrank: the saved checkpoint has {published:,} entries, the registry's {restored_size:,}"
    for result in (since, refresh):
        assert result.exit_code == 1, (result.stdout, result.stderr)
        assert result.stderr.startswith("error: "), result.stderr
        assert reason in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    # no report that could be read as a verdict: only the error
    assert json.loads(since.stdout) == {"error": {"message": since.stderr[7:].rstrip("\n"), "exit_code": 1}}
    assert saved.read_bytes() == kept  # the auditor keeps the checkpoint the registry went back on
