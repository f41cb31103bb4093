"""The demo generator on real ledgers (SQLite and PostgreSQL): what it appends, and that it all verifies."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from demo import DemoError, DemoSummary, run_demo
from ledger.audit import AuditReport, audit
from ledger.invariants import check_all
from ledger.keys import PrivateKey, read_key_file
from ledger.ledger import Ledger, Receipt, found_registry
from ledger.state import RECORD_TYPES, State
from ledger.storage import schema
from ledger.storage.engine import make_engine
from ledger.storage.source import DatabaseSource
from ledger.transactions import Retire, RetirementPurpose, Selection, TransactionSigner, Transfer
from tests.conftest import AUTHORITY, AUTHORITY_NAME, Databases, log_signer
from tests.ledger.scenario import ORIGIN, seeded_key

TODAY = datetime.now(UTC).date()
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


def demo(ledger: Ledger, data_dir: Path, **options: Any) -> DemoSummary:
    return run_demo(ledger, authority_key=seeded_key(AUTHORITY), data_dir=data_dir, today=TODAY, **options)


def run_audit(engine: Engine) -> AuditReport:
    with DatabaseSource(engine) as source:
        return audit(source, vkey=log_signer().verifier_key(), workers=1)


def test_the_story_appends_every_promised_kind(ledger: Ledger, tmp_path: Path) -> None:
    summary = demo(ledger, tmp_path)
    assert set(summary.kinds) >= PROMISED_KINDS
    assert summary.entries == sum(summary.kinds.values()) == ledger.size() - 1 == summary.log_size - 1
    assert 140 <= summary.entries <= 170
    assert summary.kinds["units.transfer"] >= 20
    state = ledger.state()
    assert len({p.methodology_code for p in state.projects.values() if p.state == "registered"}) == 5
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


def test_every_invariant_and_the_full_audit_pass(ledger: Ledger, tmp_path: Path) -> None:
    summary = demo(ledger, tmp_path)
    assert check_all(ledger.state()) == []
    report = run_audit(ledger.engine)
    assert report.verified, report.to_json()["findings"]
    assert report.entries == summary.log_size


def test_transactions_go_in_batches_one_checkpoint_each(ledger: Ledger, tmp_path: Path) -> None:
    summary = demo(ledger, tmp_path, batch_size=40)
    report = run_audit(ledger.engine)
    assert report.verified
    assert report.checkpoints == 1 + -(-summary.entries // 40)  # the genesis's, then one per batch


def test_the_key_files_load_and_are_the_participants_registered_keys(ledger: Ledger, tmp_path: Path) -> None:
    summary = demo(ledger, tmp_path)
    state = ledger.state()
    roles = {role for p in summary.participants for role in p.roles}
    assert roles == {"verifier", "project_owner", "event_organiser", "account_holder"}
    assert len(summary.participants) == 11
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
    summary = demo(ledger, tmp_path, entries=600)
    assert 500 <= summary.entries <= 700
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
            led = founded(engine)
            demo(led, tmp_path / where, entries=300, seed=seed)
            return snapshot(led.state())
        finally:
            engine.dispose()
            databases.drop(url)

    first = projections(7, "a")
    assert projections(7, "b") == first
    assert projections(8, "c") != first


def founded(engine: Engine) -> Ledger:
    led = Ledger(engine, log_signer())
    found_registry(led, authority_id=AUTHORITY, authority_name=AUTHORITY_NAME, authority_key=seeded_key(AUTHORITY))
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
    first = demo(ledger, tmp_path)
    second = demo(ledger, tmp_path)
    assert {p.id for p in second.participants} == {f"{p.id}-2" for p in first.participants}
    assert "methodology.publish" not in second.kinds  # the first demo's methodologies are reused
    assert run_audit(ledger.engine).verified
    assert len(list((tmp_path / "demo-keys").iterdir())) == 22


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
