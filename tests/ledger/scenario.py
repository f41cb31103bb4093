"""A small world of signed actors that drives the state machine, shared by the ledger tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from ledger.keys import PrivateKey
from ledger.note import NoteSigner
from ledger.points_batch import PointRecord
from ledger.state import RECORD_TYPES, Outcome, State
from ledger.transactions import (
    Cancel,
    CancellationReason,
    ClaimIssue,
    EventFootprint,
    EventKind,
    EventRegister,
    FootprintSource,
    FootprintStage,
    Freeze,
    FreezeTarget,
    Issue,
    MethodologyPublish,
    Opinion,
    ParticipantRegister,
    PointsAttest,
    ProjectDecide,
    ProjectDecision,
    ProjectDetails,
    ProjectSubmit,
    ProjectValidate,
    RegistryGenesis,
    ReportSubmit,
    ReportVerify,
    Retire,
    RetirementPurpose,
    Role,
    Selection,
    SignedTransaction,
    TransactionSigner,
    Transfer,
    Unfreeze,
)

ORIGIN = "registry.test/cdcer"
START = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
SHA = "ab" * 32


def seeded_key(label: str) -> PrivateKey:
    """A deterministic key per label, so tests are reproducible."""
    import hashlib

    return PrivateKey.from_seed(hashlib.sha256(label.encode()).digest())


@dataclass
class World:
    """Signs transactions as named participants and applies them to a State, tick by tick."""

    state: State = field(default_factory=State)
    clock: datetime = START
    signers: dict[str, TransactionSigner] = field(default_factory=dict)
    log: list[tuple[SignedTransaction, datetime]] = field(default_factory=list)
    registry_key: NoteSigner = field(default_factory=lambda: NoteSigner("registry.test/cdcer", seeded_key("log").seed))
    uploads: dict[tuple[str, str], list[PointRecord]] = field(default_factory=dict)
    """Points batches' records by (batch id, provider): what a provider uploaded before attesting."""

    def upload(self, provider: str, batch_id: str, records: Sequence[PointRecord]) -> None:
        """Upload a points batch's records (the attachment its `points.attest` entry is applied with)."""
        self.uploads[(batch_id, provider)] = list(records)

    def attachment(self, tx: SignedTransaction) -> list[PointRecord] | None:
        payload = tx.body.payload
        return self.uploads.get((payload.batch_id, tx.body.actor)) if isinstance(payload, PointsAttest) else None

    def signer(self, who: str) -> TransactionSigner:
        if who not in self.signers:
            self.signers[who] = TransactionSigner(ORIGIN, who, seeded_key(who))
        return self.signers[who]

    def sign(self, who: str, payload: BaseModel) -> SignedTransaction:
        self.clock += timedelta(seconds=1)
        return self.signer(who).sign(payload, at=self.clock)

    def submit(self, who: str, payload: BaseModel) -> Outcome:
        """Authorise, verify and apply; raises RuleViolation and leaves the state unchanged on refusal."""
        tx = self.sign(who, payload)
        return self.accept(tx)

    def accept(self, tx: SignedTransaction) -> Outcome:
        index = self.state.size
        key = self.state.authorise(tx.body, index=index, accepted_at=self.clock)
        tx.verify(key)
        outcome = self.state.apply(tx.body, index=index, accepted_at=self.clock, attachment=self.attachment(tx))
        self.log.append((tx, self.clock))
        return outcome

    def advance(self, delta: timedelta) -> None:
        self.clock += delta

    # --- common stories ---------------------------------------------------------------------------

    def found(self) -> None:
        self.submit(
            "authority",
            RegistryGenesis(
                registry_vkey=self.registry_key.verifier_key(),
                authority_name="Chengdu Ecology and Environment Bureau",
                authority_public_key=seeded_key("authority").public_key.b64(),
            ),
        )
        for pid, roles in (
            ("verifier", [Role.VERIFIER]),
            ("owner", [Role.PROJECT_OWNER]),
            ("organiser", [Role.EVENT_ORGANISER]),
            ("buyer", [Role.ACCOUNT_HOLDER]),
        ):
            self.register(pid, roles)
        self.submit(
            "authority",
            MethodologyPublish(
                code="CDCER-PV", version="1.0", title="Distributed PV", sector="energy", document_sha256=SHA
            ),
        )

    def register(self, pid: str, roles: list[Role]) -> None:
        self.submit(
            "authority",
            ParticipantRegister(
                participant_id=pid,
                name=pid.title(),
                roles=tuple(roles),
                public_keys=(seeded_key(pid).public_key.b64(),),
            ),
        )

    def registered_project(self, owner: str = "owner") -> str:
        details = ProjectDetails(
            methodology_code="CDCER-PV",
            methodology_version="1.0",
            title="Rooftop PV, Pidu",
            district="Pidu",
            description="2 MW distributed PV",
            crediting_start=date(2022, 1, 1),
            crediting_end=date(2031, 12, 31),
            estimated_annual_reductions=1500,
        )
        pid = str(self.submit(owner, ProjectSubmit(details=details)).details["project_id"])
        self.submit(
            "verifier",
            ProjectValidate(project_id=pid, opinion=Opinion.POSITIVE, opinion_sha256=SHA, statement="ok"),
        )
        self.submit(
            "authority",
            ProjectDecide(project_id=pid, decision=ProjectDecision.REGISTER, reason="meets the methodology"),
        )
        return pid

    def issued_batch(self, project_id: str, year: int, claimed: int, verified: int, owner: str = "owner") -> str:
        rep = self.submit(
            owner,
            ReportSubmit(
                project_id=project_id,
                period_start=date(year, 1, 1),
                period_end=date(year, 12, 31),
                claimed=claimed,
                verifier="verifier",
            ),
        )
        rid = str(rep.details["report_id"])
        self.submit("verifier", ReportVerify(report_id=rid, verified=verified, opinion_sha256=SHA, statement="ok"))
        return str(self.submit("authority", Issue(report_id=rid)).details["batch_id"])

    def event_with_claim(self, units: int = 10, footprint_kg: int = 9600) -> dict[str, Any]:
        ev = self.submit(
            "organiser",
            EventRegister(
                name="Tianfu Green Forum",
                event_kind=EventKind.FORUM,
                venue="Chengdu Century City",
                start_date=self.clock.date(),
                end_date=self.clock.date() + timedelta(days=1),
                expected_attendees=800,
            ),
        )
        eid = str(ev.details["event_id"])
        self.advance(timedelta(days=3))
        self.submit(
            "organiser",
            EventFootprint(
                event_id=eid,
                stage=FootprintStage.FINAL,
                sources={FootprintSource.VENUE_ENERGY: footprint_kg - 600, FootprintSource.CATERING: 600},
            ),
        )
        retired = self.submit(
            "organiser",
            Retire(
                selection=Selection(quantity=units),
                beneficiary="Tianfu Green Forum",
                purpose=RetirementPurpose.EVENT,
                event_id=eid,
                reason="carbon-neutral forum",
            ),
        )
        claim = self.submit("organiser", self.claim_issue(eid))
        return {"event_id": eid, "retirement": retired.details, "claim": claim.details}

    def transfer(self, sender: str, to: str, quantity: int) -> Outcome:
        return self.submit(sender, Transfer(to=to, selection=Selection(quantity=quantity)))

    def claim_issue(self, event_id: str) -> ClaimIssue:
        """The claim of an event, naming the entry that registered it (or entry 0 for an unknown event)."""
        event = self.state.events.get(event_id)
        return ClaimIssue(event_id=event_id, event_entry=0 if event is None else event.registered_at)

    # --- finer control, for the state-machine tests -------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything an applied transaction may change: every table, the size, time and indexes."""
        st = self.state
        return {
            "origin": st.origin,
            "size": st.size,
            "last_time": st.last_time,
            "tables": {t.TABLE: list(st.records(t.TABLE)) for t in RECORD_TYPES},
            "firsts": {bid: list(firsts) for bid, firsts in st._firsts.items()},
            "held": {holder: set(keys) for holder, keys in st.held.items()},
            "held_order": {holder: list(order) for holder, order in st._held_order.items()},
            "balances": dict(st._balances),
            "reports_by_project": {pid: list(rids) for pid, rids in st.reports_by_project.items()},
            "batch_count": dict(st.batch_count),
            "lot_months": {account: list(months) for account, months in st.lot_months.items()},
            "rewarded_subjects": {period: dict(subjects) for period, subjects in st.rewarded_subjects.items()},
            "batch_awards": {batch: dict(awards) for batch, awards in st.batch_awards.items()},
            "earned": dict(st.earned),
            "ordered": dict(st.ordered),
            "dirty": set(st.dirty),
        }

    def sign_as(
        self,
        who: str,
        payload: BaseModel,
        *,
        at: datetime | None = None,
        nonce: str | None = None,
        signer: TransactionSigner | None = None,
    ) -> SignedTransaction:
        """Sign without applying: at the next tick unless ``at`` is given; a fixed nonce or signer if given."""
        if at is None:
            self.clock += timedelta(seconds=1)
            at = self.clock
        return (signer or self.signer(who)).sign(payload, at=at, nonce=nonce)

    def accept_at(self, tx: SignedTransaction, accepted_at: datetime) -> Outcome:
        """Like `accept`, with an explicit acceptance time (which may differ from the world's clock)."""
        index = self.state.size
        key = self.state.authorise(tx.body, index=index, accepted_at=accepted_at)
        tx.verify(key)
        outcome = self.state.apply(tx.body, index=index, accepted_at=accepted_at, attachment=self.attachment(tx))
        self.log.append((tx, accepted_at))
        return outcome

    def issued_period(self, project_id: str, start: date, end: date, quantity: int, owner: str = "owner") -> str:
        """Report, verify and issue ``quantity`` units for one monitoring period; return the batch id."""
        rep = self.submit(
            owner,
            ReportSubmit(
                project_id=project_id, period_start=start, period_end=end, claimed=quantity, verifier="verifier"
            ),
        )
        rid = str(rep.details["report_id"])
        self.submit("verifier", ReportVerify(report_id=rid, verified=quantity, opinion_sha256=SHA, statement="ok"))
        return str(self.submit("authority", Issue(report_id=rid)).details["batch_id"])

    def transfer_blocks(self, sender: str, to: str, blocks: Sequence[str]) -> Outcome:
        return self.submit(sender, Transfer(to=to, selection=Selection(blocks=tuple(blocks))))

    def retire(
        self,
        who: str,
        selection: Selection,
        *,
        purpose: RetirementPurpose = RetirementPurpose.VOLUNTARY,
        event_id: str | None = None,
        year: int | None = None,
    ) -> Outcome:
        payload = Retire(
            selection=selection,
            beneficiary="Chengdu",
            purpose=purpose,
            event_id=event_id,
            year=year,
            reason="neutralisation",
        )
        return self.submit(who, payload)

    def cancel(
        self, holder: str, selection: Selection, reason_code: CancellationReason = CancellationReason.CORRECTION
    ) -> Outcome:
        payload = Cancel(holder=holder, selection=selection, reason_code=reason_code, reason="registry correction")
        return self.submit("authority", payload)

    def freeze(self, target: FreezeTarget, target_id: str) -> Outcome:
        return self.submit("authority", Freeze(target=target, target_id=target_id, reason="investigation"))

    def unfreeze(self, target: FreezeTarget, target_id: str) -> Outcome:
        return self.submit("authority", Unfreeze(target=target, target_id=target_id, reason="cleared"))

    def holdings(self, holder: str) -> list[str]:
        """An account's held blocks as block strings, oldest serials first."""
        return [str(block.range) for block in self.state.held_blocks(holder)]


def full_story() -> World:
    """The story of the registry API issue, on the state machine alone."""
    world = World()
    world.found()
    project = world.registered_project()
    world.issued_batch(project, 2023, 1200, 1150)
    world.transfer("owner", "organiser", 300)
    world.event_with_claim()
    return world
