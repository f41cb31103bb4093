"""Ledger benchmark: append, audit, Merkle root and inclusion proofs on a log in a SQLite file.

Every figure is printed beside its ratio to a raw limit measured in the same run (PyNaCl signature
verifications per second times cores; plain SQLite inserts per second), because shared machines
are noisy. Nothing here asserts a timing.

    python -m bench.ledger --entries 1000000            # build (or extend) the log, then measure
    python -m bench.ledger audit --db bench-data/ledger.db   # the audit alone (run as a subprocess)
    python -m bench.ledger audit-parts --db FILE            # where the audit's time goes
    python -m bench.ledger append-parts --db FILE           # where an append's time goes (extends FILE)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import nacl.signing
from sqlalchemy import text

from bench.serve import free_port, server
from cli.sources import RegistryClient, RemoteSource
from ledger.audit import audit
from ledger.keys import PrivateKey
from ledger.ledger import Ledger, found_registry
from ledger.merkle import inclusion_proof, root_at
from ledger.note import NoteSigner
from ledger.storage import store
from ledger.storage.engine import make_engine, read_transaction
from ledger.storage.schema import upgrade
from ledger.storage.source import DatabaseSource
from ledger.transactions import (
    Issue,
    MethodologyPublish,
    Opinion,
    ParticipantRegister,
    ProjectDecide,
    ProjectDecision,
    ProjectDetails,
    ProjectSubmit,
    ProjectValidate,
    ReportSubmit,
    ReportVerify,
    Role,
    Selection,
    SignedTransaction,
    TransactionSigner,
    Transfer,
)

ORIGIN = "bench.cdcer.example/ledger"
MEMORY_BUDGET_MB = 300  # the audit's peak memory target (issue 8)
SHA = "0f" * 32
ACCOUNTS = 64


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- raw limits -----------------------------------------------------------------------------------


def raw_verify_rate(seconds: float = 2.0) -> float:
    """PyNaCl Ed25519 verifications per second on one core."""
    key = nacl.signing.SigningKey.generate()
    message = b"x" * 400
    signed = key.sign(message)
    verify = key.verify_key.verify
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(500):
            verify(signed.message, signed.signature)
        count += 500
    return count / (time.perf_counter() - start)


def raw_sqlite_insert_rate(directory: Path, rows: int = 100_000, batch: int = 1000) -> float:
    """Plain inserts per second into a SQLite file (WAL, synchronous=FULL, one commit per batch)."""
    path = directory / "raw-inserts.db"
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (idx INTEGER PRIMARY KEY, data BLOB NOT NULL, h BLOB NOT NULL)")
    payload, digest = os.urandom(700), os.urandom(32)
    start = time.perf_counter()
    for first in range(0, rows, batch):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO t VALUES (?, ?, ?)", [(i, payload, digest) for i in range(first, first + batch)])
        conn.execute("COMMIT")
    rate = rows / (time.perf_counter() - start)
    conn.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return rate


# --- building the log ------------------------------------------------------------------------------


def key_for(label: str) -> PrivateKey:
    import hashlib

    return PrivateKey.from_seed(hashlib.sha256(f"bench/{label}".encode()).digest())


@dataclass
class World:
    ledger: Ledger
    signers: dict[str, TransactionSigner]

    def submit(self, who: str, payloads: list[object]) -> None:
        now = datetime.now(UTC)
        txs = [self.signers[who].sign(p, at=now) for p in payloads]  # type: ignore[arg-type]
        for result in self.ledger.submit(txs):
            if isinstance(result, Exception):
                raise result


def signer(name: str) -> TransactionSigner:
    return TransactionSigner(ORIGIN, name, key_for(name))


def setup(ledger: Ledger) -> World:
    """Entry 0 and the participants, a project, and enough issued units to move around."""
    found_registry(
        ledger, authority_id="authority", authority_name="Bench Authority", authority_key=key_for("authority")
    )
    accounts = [f"acct{i:03d}" for i in range(ACCOUNTS)]
    signers = {name: signer(name) for name in ["authority", "verifier", *accounts]}
    world = World(ledger, signers)
    registrations: list[object] = [
        ParticipantRegister(
            participant_id="verifier",
            name="Verifier",
            roles=(Role.VERIFIER,),
            public_keys=(key_for("verifier").public_key.b64(),),
        )
    ]
    registrations += [
        ParticipantRegister(
            participant_id=a, name=a, roles=(Role.PROJECT_OWNER,), public_keys=(key_for(a).public_key.b64(),)
        )
        for a in accounts
    ]
    world.submit("authority", registrations)
    world.submit(
        "authority",
        [MethodologyPublish(code="CDCER-PV", version="1.0", title="PV", sector="energy", document_sha256=SHA)],
    )
    # Each account owns one project with one year of issuance.
    for number, account in enumerate(accounts, start=1):
        pid = f"P{number:04d}"
        details = ProjectDetails(
            methodology_code="CDCER-PV",
            methodology_version="1.0",
            title=f"PV {account}",
            district="Pidu",
            description="bench",
            crediting_start=date(2020, 1, 1),
            crediting_end=date(2030, 12, 31),
            estimated_annual_reductions=100_000,
        )
        world.submit(account, [ProjectSubmit(details=details)])
        world.submit(
            "verifier", [ProjectValidate(project_id=pid, opinion=Opinion.POSITIVE, opinion_sha256=SHA, statement="ok")]
        )
        world.submit("authority", [ProjectDecide(project_id=pid, decision=ProjectDecision.REGISTER, reason="ok")])
        world.submit(
            account,
            [
                ReportSubmit(
                    project_id=pid,
                    period_start=date(2023, 1, 1),
                    period_end=date(2023, 12, 31),
                    claimed=1_000_000,
                    verifier="verifier",
                )
            ],
        )
        rid = f"MR{number:04d}"
        world.submit("verifier", [ReportVerify(report_id=rid, verified=1_000_000, opinion_sha256=SHA, statement="ok")])
        world.submit("authority", [Issue(report_id=rid)])
    return world


def presign_transfers(world: World, count: int, rng: random.Random) -> list[SignedTransaction]:
    """Client work, done before the clock starts: signed transfers of 1-5 units between random accounts."""
    accounts = [name for name in world.signers if name.startswith("acct")]
    now = datetime.now(UTC)
    txs = []
    for _ in range(count):
        sender, receiver = rng.sample(accounts, 2)
        txs.append(
            world.signers[sender].sign(Transfer(to=receiver, selection=Selection(quantity=rng.randint(1, 5))), at=now)
        )
    return txs


def build(db: Path, entries: int, batch: int) -> dict[str, float]:
    """Create or extend the bench log to ``entries`` entries, timing the appends of signed transfers."""
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine)
    ledger = Ledger(engine, NoteSigner(ORIGIN, key_for("log").seed))
    if ledger.size() == 0:
        log("setting up participants, projects and issuances")
        world = setup(ledger)
    else:
        world = World(
            ledger,
            {name: signer(name) for name in ["authority", "verifier"] + [f"acct{i:03d}" for i in range(ACCOUNTS)]},
        )
    rng = random.Random(ledger.size())
    start_size = ledger.size()
    appended, busy = 0, 0.0
    window: list[float] = []
    first_window = last_window = 0.0
    while ledger.size() < entries:
        chunk = presign_transfers(world, min(batch, entries - ledger.size()), rng)
        t0 = time.perf_counter()
        results = ledger.submit(chunk)
        elapsed = time.perf_counter() - t0
        refused = [r for r in results if isinstance(r, Exception)]
        if refused:
            raise SystemExit(f"bench: {len(refused)} transfers refused, e.g. {refused[0]}")
        appended += len(chunk)
        busy += elapsed
        window.append(len(chunk) / elapsed)
        if len(window) == 10 and first_window == 0.0:
            first_window = statistics.mean(window)
        if len(window) >= 10:
            last_window = statistics.mean(window[-10:])
        size = ledger.size()
        if size % 50_000 < batch:
            log(f"  {size:>9,} entries  {len(chunk) / elapsed:8,.0f} entries/s")
    engine.dispose()
    return {
        "appended": appended,
        "append_rate": appended / busy if busy else 0.0,
        "append_rate_first": first_window,
        "append_rate_last": last_window,
        "start_size": start_size,
    }


# --- measuring ---------------------------------------------------------------------------------------


def measure_proofs(db: Path, samples: int = 2000) -> dict[str, float]:
    engine = make_engine(f"sqlite:///{db}")
    rng = random.Random(7)
    with read_transaction(engine) as conn:
        size = store.log_size(conn)
        reader = store.DbNodeReader(conn)
        root_times, proof_times, node_times = [], [], []
        node = text("SELECT hash FROM merkle_nodes WHERE level = 1 AND idx = :i")
        for _ in range(samples if size > 1 else 0):  # the raw unit a root or a proof is made of
            t0 = time.perf_counter()
            conn.execute(node, {"i": rng.randrange(size // 2)}).scalar_one()
            node_times.append(time.perf_counter() - t0)
        for _ in range(samples):
            t0 = time.perf_counter()
            root_at(reader, rng.randint(1, size))
            root_times.append(time.perf_counter() - t0)
        for _ in range(samples):
            t0 = time.perf_counter()
            inclusion_proof(reader, rng.randrange(size), size)
            proof_times.append(time.perf_counter() - t0)
    engine.dispose()
    return {
        "size": size,
        "node_ms_mean": statistics.mean(node_times) * 1000 if node_times else 0.0,
        "root_ms_mean": statistics.mean(root_times) * 1000,
        "proof_ms_mean": statistics.mean(proof_times) * 1000,
        "proof_ms_p99": sorted(proof_times)[int(samples * 0.99)] * 1000,
    }


def run_audit(db: Path, url: str | None = None) -> dict[str, float]:
    """The audit of the whole log, in this process, from the database or (`url`) over the registry's HTTP
    API as `cdcer audit verify --url` reads it; prints a JSON line of its figures."""
    vkey = NoteSigner(ORIGIN, key_for("log").seed).verifier_key()

    printed = [0]

    def progress(n: int) -> None:
        if n - printed[0] >= 100_000:
            printed[0] = n
            log(f"  audited {n:,}")

    t0 = time.perf_counter()
    if url is None:
        engine = make_engine(f"sqlite:///{db}")
        with DatabaseSource(engine) as source:
            report = audit(source, vkey=vkey, progress=progress)
    else:
        with RegistryClient(url) as client:
            report = audit(RemoteSource(client), vkey=vkey, progress=progress)
    elapsed = time.perf_counter() - t0
    figures = {
        "entries": report.entries,
        "verified": report.verified,
        "seconds": elapsed,
        "rate": report.entries / elapsed,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_worker_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "findings": report.finding_count,
    }
    print(json.dumps(figures))
    return figures


def audit_parts(db: Path) -> None:
    """Where the audit's time goes: the whole audit, then without step (8)'s merges with the database's
    index columns, serial histories and projections, beside the signature checks' raw limit."""
    vkey = NoteSigner(ORIGIN, key_for("log").seed).verifier_key()
    engine = make_engine(f"sqlite:///{db}")
    cores = os.cpu_count() or 1
    verify = raw_verify_rate() * cores
    print(f"cdcer audit parts: {db}, {cores} cores")
    print(f"{'raw: PyNaCl verifications/s x cores':<66} {verify:>10,.0f}")
    for label, left_out in [
        ("the whole audit", ()),
        ("without step 8 (index columns, serial histories, projections)", ("entry_index_rows", "movement_rows")),
    ]:
        with DatabaseSource(engine) as source:
            for name in left_out:
                setattr(source, name, lambda: None)
            if left_out:
                source.projection_rows = lambda table: None  # type: ignore[method-assign]
            t0, cpu0 = time.perf_counter(), time.process_time()
            report = audit(source, vkey=vkey)
            elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        rate = report.entries / elapsed
        print(
            f"{label + ', entries/s':<66} {rate:>10,.0f}   main process busy {cpu / elapsed:.0%}, "
            f"{cpu / report.entries * 1e6:.0f} us per entry; {rate / verify:.2f} x verify limit"
        )


# The store's writes and reads inside a batch, timed one by one by `append_parts`.
APPEND_STEPS = {
    "find_nonces": "nonce lookup (re-sent and reused nonces)",
    "insert_entries": "entry rows and their index columns",
    "insert_movements": "unit movements (four indexes)",
    "write_projections": "projection rows the batch changed",
    "insert_nodes": "Merkle tree nodes",
}


def append_parts(db: Path, batches: int, batch: int) -> None:
    """Where an append's time goes at this log's size: extend the log by `batches` batches of signed
    transfers and split each entry's time into the store's writes, the in-memory work (authorise,
    apply, invariants, seal, tree), the receipts' proofs and the durable commit."""
    engine = make_engine(f"sqlite:///{db}")
    ledger = Ledger(engine, NoteSigner(ORIGIN, key_for("log").seed))
    if ledger.size() == 0:
        raise SystemExit(f"bench: no log at {db}; build one with python -m bench.ledger --entries N")
    world = World(
        ledger, {name: signer(name) for name in ["authority", "verifier"] + [f"acct{i:03d}" for i in range(ACCOUNTS)]}
    )
    rng = random.Random(ledger.size())
    log(f"replaying {ledger.size():,} entries, then appending {batches} batches of {batch}")
    ledger.submit(presign_transfers(world, batch, rng))  # the state is replayed before the clock starts
    chunks = [presign_transfers(world, batch, rng) for _ in range(batches)]
    spent = dict.fromkeys([*APPEND_STEPS, "_append", "_with_proofs"], 0.0)
    originals = {name: getattr(store, name) for name in APPEND_STEPS}

    def timed_call(name: str, call: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - t0

        return wrapper

    append, with_proofs = Ledger._append, Ledger._with_proofs
    try:
        for name, call in originals.items():
            setattr(store, name, timed_call(name, call))
        Ledger._append = timed_call("_append", append)  # type: ignore[method-assign]
        Ledger._with_proofs = timed_call("_with_proofs", with_proofs)  # type: ignore[method-assign]
        t0 = time.perf_counter()
        for chunk in chunks:
            ledger.submit(chunk)
        total = time.perf_counter() - t0
    finally:
        Ledger._append, Ledger._with_proofs = append, with_proofs  # type: ignore[method-assign]
        for name, call in originals.items():
            setattr(store, name, call)
    engine.dispose()
    count = batches * batch
    with tempfile.TemporaryDirectory(dir=db.parent) as scratch:
        raw_row = 1e6 / raw_sqlite_insert_rate(Path(scratch))
    size = ledger.size()
    in_memory = spent["_append"] - sum(spent[name] for name in APPEND_STEPS)
    parts = [(f"store: {label}", spent[name]) for name, label in APPEND_STEPS.items()]
    parts += [("in memory: authorise, apply, invariants, seal, tree", in_memory)]
    parts += [("receipts: inclusion proofs and checkpoint", spent["_with_proofs"])]
    parts += [
        ("write lock and durable commit (WAL, synchronous=FULL)", total - spent["_append"] - spent["_with_proofs"])
    ]
    print(f"cdcer append parts: {count:,} transfers appended at {size - count:,} entries, {db}")
    print(f"{'raw: one plain SQLite insert (WAL, FULL, 1,000 per commit), us':<64} {raw_row:>8.1f}")
    print(f"{'append, entries/s':<64} {count / total:>8,.0f}   {total / count * 1e6:.0f} us per entry")
    for label, seconds in parts:
        per_entry = seconds / count * 1e6
        print(f"{label + ', us per entry':<64} {per_entry:>8.1f}   {per_entry / raw_row:.1f} x one plain insert")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ledger")
    parser.add_argument("command", nargs="?", default="all", choices=["all", "audit", "audit-parts", "append-parts"])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000, help="transactions per group commit")
    parser.add_argument("--db", type=Path, default=Path("bench-data/ledger.db"))
    parser.add_argument("--url", help="audit: over this registry's HTTP API instead of the database")
    parser.add_argument("--batches", type=int, default=20, help="append-parts: batches to append and time")
    args = parser.parse_args()
    if args.command == "audit":
        run_audit(args.db, args.url)
        return
    if args.command == "audit-parts":
        audit_parts(args.db)
        return
    if args.command == "append-parts":
        append_parts(args.db, args.batches, args.batch)
        return
    args.db.parent.mkdir(parents=True, exist_ok=True)
    cores = os.cpu_count() or 1
    log("measuring raw limits")
    verify_rate = raw_verify_rate()
    with tempfile.TemporaryDirectory(dir=args.db.parent) as scratch:
        insert_rate = raw_sqlite_insert_rate(Path(scratch))
    log(f"building a log of {args.entries:,} entries in {args.db}")
    built = build(args.db, args.entries, args.batch)
    proofs = measure_proofs(args.db)
    log("auditing (in a fresh process, so its peak memory is its own)")
    out = subprocess.run(
        [sys.executable, "-m", "bench.ledger", "audit", "--db", str(args.db)],
        check=True,
        capture_output=True,
        text=True,
    )
    audited = json.loads(out.stdout.strip().splitlines()[-1])
    log("auditing over HTTP through cdcer serve (read-only), in a fresh process")
    port = free_port()
    command = [sys.executable, "-m", "cli", "serve", "--database", f"sqlite:///{args.db}", "--port", str(port)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDCER_")}
    with server(command, port, env) as base:
        out = subprocess.run(
            [sys.executable, "-m", "bench.ledger", "audit", "--url", base], check=True, capture_output=True, text=True
        )
    remote = json.loads(out.stdout.strip().splitlines()[-1])

    def row(name: str, value: str, ratio: str = "") -> None:
        print(f"{name:<44} {value:>22}   {ratio}")

    def budget(megabytes: float) -> str:
        return f"{megabytes / MEMORY_BUDGET_MB:.2f} x the {MEMORY_BUDGET_MB} MB budget"

    def nodes(ms: float) -> str:
        return f"{ms / node_ms:.1f} x one node read"

    print(f"\ncdcer ledger benchmark: {proofs['size']:,} entries, {cores} cores, SQLite file {args.db}")
    row("raw: PyNaCl verifications/s x cores", f"{verify_rate * cores:,.0f}", f"({verify_rate:,.0f}/s per core)")
    row("raw: plain SQLite inserts/s (WAL, FULL)", f"{insert_rate:,.0f}")
    if built["appended"]:
        rate = built["append_rate"]
        row(
            "append: signed transfers/s (batch commit)",
            f"{rate:,.0f}",
            f"{rate / (verify_rate * cores):.2f} x verify limit, {rate / insert_rate:.2f} x insert limit",
        )
        if built["append_rate_first"]:  # only with 10 batches or more
            row("append: first 10 batches, entries/s", f"{built['append_rate_first']:,.0f}")
            row(
                "append: last 10 batches, entries/s",
                f"{built['append_rate_last']:,.0f}",
                f"(last/first = {built['append_rate_last'] / built['append_rate_first']:.2f})",
            )
    else:
        row("append", "log already built", "(delete the file to measure appends)")
    row(
        "audit: entries/s",
        f"{audited['rate']:,.0f}",
        f"{audited['rate'] / (verify_rate * cores):.2f} x verify limit; verified={audited['verified']}",
    )
    row("audit: peak memory, main process (MB)", f"{audited['peak_rss_mb']:,.0f}", budget(audited["peak_rss_mb"]))
    row("audit: peak memory, largest worker (MB)", f"{audited['peak_worker_rss_mb']:,.0f}")
    row(
        "audit over HTTP: entries/s",
        f"{remote['rate']:,.0f}",
        f"{remote['rate'] / (verify_rate * cores):.2f} x verify limit; verified={remote['verified']}",
    )
    remote_peak = remote["peak_rss_mb"]
    row("audit over HTTP: peak memory, main process (MB)", f"{remote_peak:,.0f}", budget(remote_peak))
    row("audit over HTTP: peak memory, largest worker (MB)", f"{remote['peak_worker_rss_mb']:,.0f}")
    row("raw: one tree node by primary key (ms, mean)", f"{proofs['node_ms_mean']:.3f}")
    node_ms = proofs["node_ms_mean"] or float("nan")
    row("Merkle root at a random size (ms, mean)", f"{proofs['root_ms_mean']:.3f}", nodes(proofs["root_ms_mean"]))
    row("inclusion proof at full size (ms, mean)", f"{proofs['proof_ms_mean']:.3f}", nodes(proofs["proof_ms_mean"]))
    row("inclusion proof at full size (ms, p99)", f"{proofs['proof_ms_p99']:.3f}", nodes(proofs["proof_ms_p99"]))


if __name__ == "__main__":
    main()
