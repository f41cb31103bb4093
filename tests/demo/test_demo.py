"""The demo generator on real ledgers (SQLite and PostgreSQL): what it appends, and that it all verifies.

The points story attests the days since the log began (a rule applies from the day it is published and a
day is attested once it is over), so most tests run on a registry founded weeks ago (`aged`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import fields
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from demo import DEFAULT_CITIZENS, DemoError, DemoSummary, run_demo
from demo.points import DAYS
from ledger.audit import AuditReport, audit
from ledger.invariants import check_all
from ledger.keys import PrivateKey, read_key_file
from ledger.ledger import Ledger, Receipt, found_registry
from ledger.points_batch import batch_root
from ledger.state import RECORD_TYPES, State
from ledger.storage import schema, store
from ledger.storage.engine import make_engine
from ledger.storage.source import DatabaseSource
from ledger.transactions import Retire, RetirementPurpose, Selection, TransactionSigner, Transfer
from tests.conftest import AUTHORITY, AUTHORITY_NAME, Databases, log_signer
from tests.ledger.scenario import ORIGIN, seeded_key

TODAY = datetime.now(UTC).date()
FOUNDED = timedelta(days=30)
"""How long before now the `aged` registry was founded: room for the points story's attested days."""
PROMISED_KINDS = {
    "participant.register",
    "methodology.publish",
    "project.submit",
    "project.resubmit",
    "project.validate",
    "project.decide",
    "report.submit",
    "report.verify",
    "report.reject",
    "issuance.issue",
    "units.transfer",
    "units.retire",
    "units.cancel",
    "freeze.set",
    "freeze.lift",
    "event.register",
    "event.footprint",
    "claim.issue",
}
POINTS_KINDS = {
    "points.rule_publish",
    "points.policy",
    "points.provider_scope",
    "points.account_open",
    "points.consent",
    "points.attest",
    "project.scope",
    "scene.apply",
    "scene.evaluate",
    "scene.decide",
    "scene.suspend",
    "offer.publish",
    "points.redeem",
    "redemption.fulfil",
    "redemption.cancel",
}
SAME_DAY_KINDS = POINTS_KINDS - {"points.attest", "points.redeem", "redemption.fulfil", "redemption.cancel"}
"""What the points story appends on a registry founded today: everything but awards and what spends them."""


@pytest.fixture
def aged(engine: Engine) -> Ledger:
    """A registry founded `FOUNDED` ago (its genesis is its only entry)."""
    return founded(engine, aged=True)


def demo(ledger: Ledger, data_dir: Path, **options: Any) -> DemoSummary:
    return run_demo(ledger, authority_key=seeded_key(AUTHORITY), data_dir=data_dir, today=TODAY, **options)


def run_audit(engine: Engine) -> AuditReport:
    with DatabaseSource(engine) as source:
        return audit(source, vkey=log_signer().verifier_key(), workers=1)


def test_the_story_appends_every_promised_kind(aged: Ledger, tmp_path: Path) -> None:
    ledger = aged
    summary = demo(ledger, tmp_path)
    assert set(summary.kinds) >= PROMISED_KINDS | POINTS_KINDS
    assert summary.entries == sum(summary.kinds.values()) == ledger.size() - 1 == summary.log_size - 1
    project_path = sum(n for kind, n in summary.kinds.items() if kind not in POINTS_KINDS)
    assert 140 <= project_path <= 185  # with the points story's participants and the bike operator's project
    assert summary.kinds["units.transfer"] >= 20
    state = ledger.state()
    # The five methodologies of the story, and the bike operator's (its project claims what bike points reward).
    assert len({p.methodology_code for p in state.projects.values() if p.state == "registered"}) == 6
    assert {p.state for p in state.projects.values()} == {"registered", "rejected", "submitted"}
    assert len({p.district for p in state.projects.values()}) >= 6
    assert {int(r.period_end[:4]) for r in state.reports.values() if r.state == "issued"} == {
        TODAY.year - 3,
        TODAY.year - 2,
        TODAY.year - 1,
    }
    assert all(r.verified is None or r.verified <= r.claimed for r in state.reports.values())
    assert {r.state for r in state.reports.values()} == {"issued", "rejected", "submitted"}
    assert {r.purpose for r in state.retirements.values()} == {"event", "organisation", "individual", "voluntary"}
    assert len(state.claims) == 3
    assert all(c.units * 1000 >= c.footprint_kg for c in state.claims.values())
    assert all(e.planned_footprint for e in state.events.values())
    assert sum(1 for e in state.events.values() if e.final_footprint_kg is not None) == 4
    assert any(date.fromisoformat(e.start_date) > TODAY for e in state.events.values())  # one still to come
    assert [c.reason_code for c in state.cancellations.values()] == ["reversal"]
    assert not any(p.frozen for p in state.participants.values())  # frozen, then released


def test_the_points_story_awards_points_that_citizens_redeem(aged: Ledger, tmp_path: Path) -> None:
    summary = demo(aged, tmp_path)
    state = aged.state()
    assert summary.kinds["points.account_open"] == DEFAULT_CITIZENS == len(state.point_accounts)
    assert all(a.account_kind == "citizen" for a in state.point_accounts.values())
    modes = {rule.rule_id: rule.claim_mode for rule in state.points_rules.values()}
    assert modes == {"bike-km": "reward_only", "metro-trip": "claim", "power-saving": "claim"}
    assert state.points_policy[1].lifetime_months == 12
    bike_project = next(p for p in state.projects.values() if p.methodology_code == "CDCER-BIKE")
    assert bike_project.state == "registered"
    assert state.project_scopes[bike_project.id].scopes == ("short-car-trips/account_day",)
    # One batch a day for the last week from the bike and transit providers, one from the utility.
    attestations = list(state.attestations.values())
    days = {a.day for a in attestations}
    assert days == {(TODAY - timedelta(days=back)).isoformat() for back in range(1, DAYS + 1)}
    assert Counter(a.rule_id for a in attestations) == {"bike-km": DAYS, "metro-trip": DAYS, "power-saving": 1}
    assert all(a.points_awarded > 0 for a in attestations)
    assert all(a.points_capped > 0 for a in attestations)  # the heaviest riders and commuters hit the daily caps
    assert {a.claimable for a in attestations if a.rule_id == "bike-km"} == {False}
    # The batches' records were uploaded first: the log commits to them, the uploads store holds them.
    with aged.engine.connect() as conn:
        for attestation in attestations:
            assert store.point_upload(conn, attestation.batch_id) == (attestation.provider, True)
            records = store.read_point_records(conn, attestation.batch_id)
            assert records is not None
            assert batch_root(attestation.batch_id, records).hex() == attestation.root
    totals = state.point_totals.values()
    assert sum(1 for t in totals if t.balance > 0) > DEFAULT_CITIZENS // 2
    assert all(t.awarded == t.balance + t.redeemed + t.expired + t.clawed_back for t in totals)
    # Scenes: three approved (one later suspended), one rejected; offers at the approved ones.
    assert Counter(s.state for s in state.scenes.values()) == {"approved": 2, "suspended": 1, "rejected": 1}
    assert {o.scene_id for o in state.offers.values()} == {
        s.id for s in state.scenes.values() if s.state in ("approved", "suspended")
    }
    orders = Counter(r.state for r in state.redemptions.values())
    assert orders["cancelled"] == 1
    assert orders["fulfilled"] > orders["pending"] > 0
    assert sum(t.redeemed for t in totals) == sum(
        r.points for r in state.redemptions.values() if r.state != "cancelled"
    )


def test_on_a_registry_founded_today_no_day_can_be_attested(ledger: Ledger, tmp_path: Path) -> None:
    summary = demo(ledger, tmp_path, citizens=50)
    assert set(summary.kinds) >= PROMISED_KINDS | SAME_DAY_KINDS
    assert not set(summary.kinds) & (POINTS_KINDS - SAME_DAY_KINDS)
    state = ledger.state()
    assert {rule.effective_from for rule in state.points_rules.values()} == {TODAY.isoformat()}
    assert not state.point_totals
    assert run_audit(ledger.engine).verified


def test_every_invariant_and_the_full_audit_pass(aged: Ledger, tmp_path: Path) -> None:
    ledger = aged
    summary = demo(ledger, tmp_path)
    assert check_all(ledger.state()) == []
    report = run_audit(ledger.engine)
    assert report.verified, report.to_json()["findings"]
    assert report.entries == summary.log_size


def test_transactions_go_in_batches_one_checkpoint_each(aged: Ledger, tmp_path: Path) -> None:
    summary = demo(aged, tmp_path, batch_size=40, citizens=200)
    report = run_audit(aged.engine)
    assert report.verified
    # The genesis's, then one per batch: full ones, and a partial one where the story's clock moves on
    # (to each attested day's morning, to now) and before the redemptions read the awarded balances.
    full = -(-summary.entries // 40)
    assert full + 1 <= report.checkpoints <= full + 1 + DAYS + 3


def test_the_key_files_load_and_are_the_participants_registered_keys(ledger: Ledger, tmp_path: Path) -> None:
    summary = demo(ledger, tmp_path, citizens=50)
    state = ledger.state()
    roles = {role for p in summary.participants for role in p.roles}
    assert roles == {
        "verifier",
        "project_owner",
        "event_organiser",
        "account_holder",
        "data_provider",
        "platform_operator",
        "merchant",
        "scene_evaluator",
    }
    assert len(summary.participants) == 20
    for participant in summary.participants:
        path = Path(participant.key_file)
        assert path.parent == tmp_path / "demo-keys"
        assert path.name == f"{participant.id}.key"
        assert "DEMO" in path.read_text()
        key = read_key_file(path, passphrase=None)
        assert key.key_id == participant.key_id
        stored = state.keys[key.key_id]
        assert stored.participant_id == participant.id
        assert stored.revoked_at is None
        assert state.participants[participant.id].roles == participant.roles
    # A demo key signs for its participant: the fund gives units to the brewery and retires some.
    fund = next(p for p in summary.participants if p.id == "green-tianfu-fund")
    signer = TransactionSigner(ORIGIN, fund.id, read_key_file(Path(fund.key_file), passphrase=None))
    now = datetime.now(UTC)
    results = ledger.submit(
        [
            signer.sign(Transfer(to="jinjiang-brewery", selection=Selection(quantity=3)), at=now),
            signer.sign(
                Retire(
                    selection=Selection(quantity=2),
                    beneficiary="A visitor",
                    purpose=RetirementPurpose.INDIVIDUAL,
                    reason="Flight to Chengdu",
                ),
                at=now,
            ),
        ]
    )
    assert all(isinstance(r, Receipt) for r in results), results


def test_entries_scale_with_every_kind_of_activity(ledger: Ledger, tmp_path: Path) -> None:
    summary = demo(ledger, tmp_path, entries=600, citizens=50)
    project_path = sum(n for kind, n in summary.kinds.items() if kind not in POINTS_KINDS)
    assert 500 <= project_path <= 720  # `entries` sizes the project path; the points story comes on top
    assert summary.entries == ledger.size() - 1
    state = ledger.state()
    # Beyond the story's 8 projects, 17 batches, 5 events, 3 claims and 8 retirements: more of each.
    assert len(state.projects) > 8
    assert len(state.batches) > 17
    assert len(state.events) > 5
    assert len(state.claims) > 3
    assert len(state.retirements) > 8
    assert summary.kinds["units.transfer"] > 200
    assert run_audit(ledger.engine).verified


def test_same_seed_same_projections_other_seed_others(databases: Databases, tmp_path: Path) -> None:
    def projections(seed: int, where: str) -> dict[str, list[dict[str, Any]]]:
        url = databases.create(directory=tmp_path)
        engine = make_engine(url)
        try:
            schema.upgrade(engine)
            led = founded(engine, aged=True)
            demo(led, tmp_path / where, entries=300, seed=seed, citizens=300)
            return snapshot(led.state())
        finally:
            engine.dispose()
            databases.drop(url)

    first = projections(7, "a")
    assert projections(7, "b") == first
    assert projections(8, "c") != first


def founded(engine: Engine, *, aged: bool = False) -> Ledger:
    led = Ledger(engine, log_signer())
    now = datetime.now(UTC) - FOUNDED if aged else None
    found_registry(
        led, authority_id=AUTHORITY, authority_name=AUTHORITY_NAME, authority_key=seeded_key(AUTHORITY), now=now
    )
    return led


def snapshot(state: State) -> dict[str, list[dict[str, Any]]]:
    """Every projection row, without the acceptance times (the only thing two runs may differ in)."""
    return {
        table.TABLE: [
            {f.name: getattr(record, f.name) for f in fields(record) if not f.name.endswith("_time")}
            for record in state.records(table.TABLE)
        ]
        for table in RECORD_TYPES
    }


def test_appending_again_uses_new_participants(ledger: Ledger, tmp_path: Path) -> None:
    first = demo(ledger, tmp_path, citizens=50)
    second = demo(ledger, tmp_path, citizens=50)
    assert {p.id for p in second.participants} == {f"{p.id}-2" for p in first.participants}
    assert "methodology.publish" not in second.kinds  # the first demo's methodologies are reused
    assert run_audit(ledger.engine).verified
    assert len(list((tmp_path / "demo-keys").iterdir())) == 40
    assert len(ledger.state().point_accounts) == 100  # the second draws no id the first took


def test_an_unfounded_registry_is_refused(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(DemoError, match="no genesis entry"):
        demo(Ledger(engine, log_signer()), tmp_path)
    assert not (tmp_path / "demo-keys").exists()


def test_a_key_that_is_not_the_authority_s_is_refused(ledger: Ledger, tmp_path: Path) -> None:
    stranger = PrivateKey.from_seed(b"\x07" * 32)
    with pytest.raises(DemoError, match=f"key {stranger.key_id} is not a valid key of this registry"):
        run_demo(ledger, authority_key=stranger, data_dir=tmp_path)
    assert ledger.size() == 1
    assert not (tmp_path / "demo-keys").exists()


def test_a_foreign_key_file_in_the_way_is_refused(ledger: Ledger, tmp_path: Path) -> None:
    (tmp_path / "demo-keys").mkdir()
    (tmp_path / "demo-keys" / "tianfu-certification.key").write_text("not a key")
    with pytest.raises(DemoError, match="tianfu-certification.key exists and is not this demo's key"):
        demo(ledger, tmp_path)
    assert ledger.size() == 1
