"""Points benchmark: attestation throughput and the audit's rate over a points-heavy log.

On a fresh database (a SQLite file in a temporary folder, or a recreated PostgreSQL database, dropped at
the end) it founds a registry, publishes a bike-km rule, scopes the providers, opens `--accounts` point
accounts with their consents, then for each of `--days` past days uploads every provider's records
(chunks of 10,000, a write transaction each, as the upload endpoint writes them) and submits the
provider's `points.attest`, which the ledger applies with the uploaded records. It then audits the whole
log. Figures are printed beside plain inserts per second on the same database, measured in the same run;
nothing here asserts a timing.

    python -m bench.points --db sqlite --accounts 20000 --days 5
    python -m bench.points --db postgresql --accounts 20000 --days 5
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from bench.http import raw_postgres_insert_rate
from bench.ledger import key_for, raw_sqlite_insert_rate
from ledger.audit import audit
from ledger.ledger import Ledger, found_registry
from ledger.note import NoteSigner
from ledger.points_batch import PointRecord, batch_root, subject_commitment
from ledger.storage import store
from ledger.storage.engine import make_engine, write_transaction
from ledger.storage.schema import upgrade
from ledger.storage.source import DatabaseSource
from ledger.transactions import (
    ClaimMode,
    ParticipantRegister,
    PointAccountKind,
    PointAccountOpen,
    PointsAttest,
    PointsConsent,
    PointsRulePublish,
    PointsSubject,
    ProviderScope,
    Role,
    TransactionSigner,
)

ORIGIN = "bench.cdcer.example/points"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
POSTGRES_DATABASE = "cdcer_bench_points"
RULE = "bike-km"
OPERATOR = "tianfu-app"
CHUNK = 10_000  # records per upload call, as a provider's client sends them
BATCH = 1_000  # transactions per Ledger.submit while setting up
LATE_WINDOW_DAYS = 90  # the rule's late window: every simulated day must lie within it
TARGET_PER_SECOND = 120  # 10 M records a day, sustained
AIM_PER_SECOND = 2_000
SECONDS_A_DAY = 86_400


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the database -------------------------------------------------------------------------------------


@contextmanager
def fresh_database(kind: str, postgres_url: str) -> Iterator[str]:
    """The URL of an empty database of `kind`, removed when the block ends."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="cdcer-bench-points-") as folder:
            yield f"sqlite:///{Path(folder) / 'points.db'}"
        return
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{POSTGRES_DATABASE}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{POSTGRES_DATABASE}"'))
        yield make_url(postgres_url).set(database=POSTGRES_DATABASE).render_as_string(hide_password=False)
    finally:
        try:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{POSTGRES_DATABASE}" WITH (FORCE)'))
        except SQLAlchemyError as exc:  # the figures are printed already; say what was left behind
            log(f"bench: could not drop {POSTGRES_DATABASE}: {exc}")
        admin.dispose()


def raw_insert_rate(kind: str, url: str) -> float:
    """Plain inserts per second on the same engine (a commit per 1,000 rows)."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="cdcer-bench-raw-") as scratch:
            return raw_sqlite_insert_rate(Path(scratch))
    return raw_postgres_insert_rate(url)


# --- the registry -------------------------------------------------------------------------------------


def signer(name: str) -> TransactionSigner:
    return TransactionSigner(ORIGIN, name, key_for(f"points/{name}"))


@dataclass
class Registry:
    ledger: Ledger
    providers: list[str]
    accounts: list[str]

    def submit(self, who: str, payloads: list[object], at: datetime | None = None) -> None:
        """Sign as `who` and append in batches of `BATCH`, at `at` (the ledger's clock too) or now."""
        sign = signer(who).sign
        for first in range(0, len(payloads), BATCH):
            when = at or datetime.now(UTC)
            txs = [sign(p, at=when) for p in payloads[first : first + BATCH]]  # type: ignore[arg-type]
            refused = [r for r in self.ledger.submit(txs, now=at) if isinstance(r, Exception)]
            if refused:
                raise SystemExit(f"bench: {len(refused)} transactions refused, e.g. {refused[0]}")

    def accounts_of(self, provider: str) -> list[str]:
        """The accounts `provider` reports on: the accounts are shared out among the providers, since one
        account's day is rewarded once whichever provider attests it."""
        number = self.providers.index(provider)
        return self.accounts[number :: len(self.providers)]


def setup(ledger: Ledger, *, accounts: int, providers: int, first_day: date) -> Registry:
    """Entry 0, the providers and the operator, the rule (in force from `first_day`), the providers'
    scope, the point accounts and each account's consent to its provider."""
    # A rule never takes effect before the day it is published: publish it, and everything before it,
    # the day before the first simulated day.
    past = datetime.combine(first_day - timedelta(days=1), datetime.min.time(), UTC) + timedelta(hours=12)
    found_registry(
        ledger,
        authority_id="authority",
        authority_name="Bench Authority",
        authority_key=key_for("points/authority"),
        now=past,
    )
    names = [f"provider-{n:02d}" for n in range(providers)]
    registry = Registry(ledger, names, [f"PA{n:016x}" for n in range(accounts)])
    registrations: list[object] = [
        ParticipantRegister(
            participant_id=name, name=name, roles=(role,), public_keys=(key_for(f"points/{name}").public_key.b64(),)
        )
        for name, role in [*((n, Role.DATA_PROVIDER) for n in names), (OPERATOR, Role.PLATFORM_OPERATOR)]
    ]
    rule = PointsRulePublish(
        rule_id=RULE,
        version=1,
        title="Shared-bike kilometres",
        activity_unit="km",
        emission_factor_g=120,
        factor_source="Chengdu transport survey 2024",
        points_per_gram=1,
        daily_cap=2_000,
        monthly_cap=30_000,
        annual_cap=200_000,
        late_window_days=LATE_WINDOW_DAYS,
        claim_mode=ClaimMode.REWARD_ONLY,
        subject=PointsSubject.ACCOUNT_DAY,
        displaced_source="car-trips",
        effective_from=first_day,
    )
    registry.submit("authority", [*registrations, rule], at=past)
    registry.submit("authority", [ProviderScope(provider=name, rules=(RULE,)) for name in names])
    opens = [PointAccountOpen(account_id=a, account_kind=PointAccountKind.CITIZEN) for a in registry.accounts]
    registry.submit(OPERATOR, list(opens))
    consents = [
        PointsConsent(account_id=a, provider=name, rule_id=RULE, granted=True)
        for name in names
        for a in registry.accounts_of(name)
    ]
    registry.submit(OPERATOR, list(consents))
    return registry


def day_records(accounts: list[str], day: date) -> list[PointRecord]:
    """One day's kilometres for each account (1 to 10 km: under the daily cap, so every record awards)."""
    period = day.isoformat()
    return [PointRecord(a, 1 + n % 10, subject_commitment("account_day", a, period)) for n, a in enumerate(accounts)]


# --- measuring ----------------------------------------------------------------------------------------


@dataclass
class Timings:
    records: int = 0
    batches: int = 0
    client: float = 0.0  # the provider's work: records and their root
    upload: float = 0.0
    attest: float = 0.0


def attest_days(registry: Registry, days: list[date]) -> Timings:
    """For each day and provider: upload the batch's records in chunks, then submit its attestation."""
    ledger, engine = registry.ledger, registry.ledger.engine
    timings = Timings()
    for day in days:
        for provider in registry.providers:
            batch_id = f"{provider}.{day.isoformat()}"
            t0 = time.perf_counter()
            records = day_records(registry.accounts_of(provider), day)
            root = batch_root(batch_id, records).hex()
            t1 = time.perf_counter()
            uploaded_at = datetime.now(UTC).isoformat()
            for offset in range(0, len(records), CHUNK):
                with write_transaction(engine) as conn:
                    store.upload_point_records(
                        conn,
                        batch_id=batch_id,
                        provider=provider,
                        offset=offset,
                        records=records[offset : offset + CHUNK],
                        now=uploaded_at,
                    )
            t2 = time.perf_counter()
            payload = PointsAttest(
                batch_id=batch_id,
                rule_id=RULE,
                version=1,
                day=day,
                count=len(records),
                total_quantity=sum(r.quantity for r in records),
                root=root,
            )
            (result,) = ledger.submit([signer(provider).sign(payload, at=datetime.now(UTC))])
            if isinstance(result, Exception):
                raise SystemExit(f"bench: batch {batch_id} refused: {result}")
            t3 = time.perf_counter()
            timings.records += len(records)
            timings.batches += 1
            timings.client += t1 - t0
            timings.upload += t2 - t1
            timings.attest += t3 - t2
            log(
                f"  {batch_id}: {len(records):,} records, upload {t2 - t1:.2f} s, attest {t3 - t2:.2f} s "
                f"({len(records) / (t3 - t1):,.0f} records/s)"
            )
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.points")
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--accounts", type=int, default=20_000, help="point accounts: records a day in all")
    parser.add_argument("--days", type=int, default=5, help="past days attested, one batch per provider each")
    parser.add_argument("--providers", type=int, default=1, help="providers sharing out the accounts")
    parser.add_argument("--postgres-url", default=os.environ.get("CDCER_BENCH_POSTGRES_URL", DEFAULT_POSTGRES))
    args = parser.parse_args()
    if not 1 <= args.days < LATE_WINDOW_DAYS:
        parser.error(f"--days must be between 1 and {LATE_WINDOW_DAYS - 1} (the rule's late window)")
    if not 1 <= args.providers <= args.accounts:
        parser.error("--providers must be between 1 and --accounts")
    today = datetime.now(UTC).date()
    days = [today - timedelta(days=args.days - n) for n in range(args.days)]  # oldest first, up to yesterday

    with fresh_database(args.db, args.postgres_url) as url:
        log("measuring plain inserts per second on the same engine")
        insert_rate = raw_insert_rate(args.db, url)
        engine = make_engine(url)
        upgrade(engine)
        ledger = Ledger(engine, NoteSigner(ORIGIN, key_for("points/log").seed))
        log(f"setting up: {args.accounts:,} point accounts and their consents, {args.providers} provider(s)")
        t0 = time.perf_counter()
        registry = setup(ledger, accounts=args.accounts, providers=args.providers, first_day=days[0])
        setup_seconds = time.perf_counter() - t0
        setup_entries = ledger.size()
        log(f"attesting {args.days} days, {days[0]} to {days[-1]}")
        timings = attest_days(registry, days)
        log("auditing the whole log from the database")
        vkey = ledger.signer.verifier_key()
        t0 = time.perf_counter()
        with DatabaseSource(engine) as source:
            report = audit(source, vkey=vkey)
        audit_seconds = time.perf_counter() - t0
        engine.dispose()

    def row(name: str, value: str, note: str = "") -> None:
        print(f"{name:<52} {value:>14}   {note}")

    def per_day(rate: float) -> str:
        return f"{rate * SECONDS_A_DAY / 1e6:,.1f} M records a day"

    def against_targets(rate: float) -> str:
        return (
            f"{per_day(rate)}; {rate / TARGET_PER_SECOND:,.1f} x the {TARGET_PER_SECOND}/s target, "
            f"{rate / AIM_PER_SECOND:.2f} x the {AIM_PER_SECOND:,}/s aim, {rate / insert_rate:.2f} x insert limit"
        )

    end_to_end = timings.records / (timings.upload + timings.attest)
    attest_alone = timings.records / timings.attest
    print(
        f"\ncdcer points benchmark: {args.db}, {args.accounts:,} accounts x {args.days} days, "
        f"{args.providers} provider(s), {os.cpu_count() or 1} cores"
    )
    row("raw: plain inserts/s (a commit per 1,000)", f"{insert_rate:,.0f}")
    row("setup: accounts and consents, entries/s", f"{setup_entries / setup_seconds:,.0f}", f"({setup_entries:,})")
    row("provider: records and batch root, records/s", f"{timings.records / timings.client:,.0f}", "(client side)")
    row("upload: records/s (chunks of 10,000)", f"{timings.records / timings.upload:,.0f}")
    row("attest alone: records/s", f"{attest_alone:,.0f}", against_targets(attest_alone))
    row("upload + attest, end to end: records/s", f"{end_to_end:,.0f}", against_targets(end_to_end))
    row(
        "audit: entries/s",
        f"{report.entries / audit_seconds:,.0f}",
        f"({report.entries:,} entries in {audit_seconds:.1f} s; verified={report.verified})",
    )
    row("audit: attested records replayed/s", f"{timings.records / audit_seconds:,.0f}", f"({timings.records:,})")
    if not report.verified:
        for finding in report.findings[:5]:
            print(f"  finding: {finding}")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
