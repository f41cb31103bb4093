"""The registry API issue's whole story over real HTTP: `cdcer serve` (uvicorn) on a loopback port.

The authority registers a verifier, a project owner and an event organiser and publishes a methodology;
the owner's distributed-PV project is validated and registered; its 2023 monitoring report claims
1,200 t, the verifier verifies 1,150 and the authority issues them; the owner transfers 300 to the
organiser, who registers a two-day forum, declares a final footprint of 9,600 kgCO2e, retires 10 units
for it and obtains the claim. The claim's certificate then verifies offline with only the verifier key,
and the history of a retired serial shows its issuance, transfer and retirement.
"""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel

from ledger.audit import audit
from ledger.certificate import verify_certificate
from ledger.checkpoint import open_checkpoint
from ledger.keys import write_key_file
from ledger.ledger import Ledger
from ledger.merkle import verify_inclusion
from ledger.note import NoteVerifier
from ledger.serials import parse_block
from ledger.storage.source import DatabaseSource
from ledger.transactions import (
    ClaimIssue,
    EventFootprint,
    EventKind,
    EventRegister,
    FootprintSource,
    FootprintStage,
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
    Retire,
    RetirementPurpose,
    Role,
    Selection,
    TransactionSigner,
    Transfer,
)
from tests.conftest import log_signer
from tests.ledger.scenario import ORIGIN, SHA, seeded_key
from tests.registry.live import serve

VKEY = log_signer().verifier_key()


class Registry:
    """A client of the served registry: signs as any participant and checks every receipt."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.verifier = NoteVerifier.from_vkey(VKEY)

    def submit(self, who: str, payload: BaseModel) -> dict[str, Any]:
        tx = TransactionSigner(ORIGIN, who, seeded_key(who)).sign(payload, at=datetime.now(UTC))
        response = self.http.post("/v1/transactions", json=tx.to_json())
        assert response.status_code == 201, response.text
        receipt: dict[str, Any] = response.json()
        checkpoint = open_checkpoint(receipt["checkpoint"].encode(), self.verifier, origin=ORIGIN).checkpoint
        verify_inclusion(
            leaf=base64.b64decode(receipt["leaf_hash"]),
            index=receipt["index"],
            size=checkpoint.size,
            proof=[base64.b64decode(h) for h in receipt["inclusion_proof"]],
            root=checkpoint.root_hash,
        )
        return receipt

    def get(self, path: str) -> Any:
        response = self.http.get(path)
        assert response.status_code == 200, response.text
        return response.json()


def test_the_whole_story_over_http(ledger: Ledger, tmp_path: Path) -> None:
    key_file = tmp_path / "registry-log.key"
    write_key_file(key_file, seeded_key("log"), passphrase=None)
    url = ledger.engine.url.render_as_string(hide_password=False)
    with serve(url, key_file) as base, httpx.Client(base_url=base, timeout=30) as http:
        registry = Registry(http)
        assert http.get("/v1/log/vkey").text.strip() == VKEY

        for pid, name, role in (
            ("tianfu-verify", "Tianfu Verification Centre", Role.VERIFIER),
            ("sunpower-pidu", "Sunpower Pidu", Role.PROJECT_OWNER),
            ("forum-org", "Tianfu Green Forum Secretariat", Role.EVENT_ORGANISER),
        ):
            registry.submit(
                "authority",
                ParticipantRegister(
                    participant_id=pid, name=name, roles=(role,), public_keys=(seeded_key(pid).public_key.b64(),)
                ),
            )
        registry.submit(
            "authority",
            MethodologyPublish(
                code="CDCER-PV",
                version="1.0",
                title="Distributed photovoltaic power",
                sector="energy",
                document_sha256=SHA,
            ),
        )
        submitted = registry.submit(
            "sunpower-pidu",
            ProjectSubmit(
                details=ProjectDetails(
                    methodology_code="CDCER-PV",
                    methodology_version="1.0",
                    title="Pidu rooftop distributed PV",
                    district="Pidu",
                    description="2 MW of rooftop PV on industrial buildings",
                    crediting_start=date(2022, 1, 1),
                    crediting_end=date(2031, 12, 31),
                    estimated_annual_reductions=1500,
                )
            ),
        )
        project = submitted["outcome"]["project_id"]
        registry.submit(
            "tianfu-verify",
            ProjectValidate(project_id=project, opinion=Opinion.POSITIVE, opinion_sha256=SHA, statement="conforms"),
        )
        registry.submit(
            "authority", ProjectDecide(project_id=project, decision=ProjectDecision.REGISTER, reason="validated")
        )
        assert registry.get(f"/v1/projects/{project}")["state"] == "registered"

        report = registry.submit(
            "sunpower-pidu",
            ReportSubmit(
                project_id=project,
                period_start=date(2023, 1, 1),
                period_end=date(2023, 12, 31),
                claimed=1200,
                verifier="tianfu-verify",
            ),
        )["outcome"]["report_id"]
        registry.submit(
            "tianfu-verify", ReportVerify(report_id=report, verified=1150, opinion_sha256=SHA, statement="verified")
        )
        issued = registry.submit("authority", Issue(report_id=report))["outcome"]
        assert issued["quantity"] == 1150
        batch = issued["batch_id"]
        registry.submit("sunpower-pidu", Transfer(to="forum-org", selection=Selection(quantity=300)))

        start = datetime.now(UTC).date() - timedelta(days=20)
        event = registry.submit(
            "forum-org",
            EventRegister(
                name="Tianfu Green Low-Carbon Forum",
                event_kind=EventKind.FORUM,
                venue="Chengdu Century City",
                start_date=start,
                end_date=start + timedelta(days=1),
                expected_attendees=800,
            ),
        )["outcome"]["event_id"]
        registry.submit(
            "forum-org",
            EventFootprint(
                event_id=event,
                stage=FootprintStage.FINAL,
                sources={
                    FootprintSource.VENUE_ENERGY: 4200,
                    FootprintSource.ATTENDEE_TRANSPORT: 3600,
                    FootprintSource.ACCOMMODATION: 1200,
                    FootprintSource.CATERING: 600,
                },
            ),
        )
        retirement = registry.submit(
            "forum-org",
            Retire(
                selection=Selection(quantity=10),
                beneficiary="Tianfu Green Low-Carbon Forum",
                purpose=RetirementPurpose.EVENT,
                event_id=event,
                reason="carbon-neutral forum",
            ),
        )["outcome"]
        registered = registry.get(f"/v1/events/{event}")["registered_at"]
        claim_id = registry.submit("forum-org", ClaimIssue(event_id=event, event_entry=registered))["outcome"][
            "claim_id"
        ]

        # The public registry says what happened.
        claim = registry.get(f"/v1/claims/{claim_id}")
        assert (claim["event_id"], claim["footprint_kg"], claim["units"]) == (event, 9600, 10)
        assert registry.get(f"/v1/events/{event}")["claim_id"] == claim_id
        stats = registry.get("/v1/stats")
        assert (stats["units_issued"], stats["units_retired"]) == (1150, 10)

        # The claim's certificate verifies offline, with nothing but the verifier key.
        response = http.get(f"/v1/claims/{claim_id}/certificate")
        assert response.status_code == 200, response.text
        certificate = response.content
        (tmp_path / "claim.json").write_bytes(certificate)

        # The history of a retired serial: issued to the owner, transferred, retired for the forum.
        retired = parse_block(retirement["blocks"][0])
        assert retired.batch_id == batch
        history = registry.get(f"/v1/serials/CDCER-{batch}-{retired.first:06d}")["history"]
        assert [m["action"] for m in history][:3] == ["issued", "transferred", "retired"]
        assert [(m["from_holder"], m["to_holder"]) for m in history][:3] == [
            (None, "sunpower-pidu"),
            ("sunpower-pidu", "forum-org"),
            ("forum-org", None),
        ]
        assert history[2]["ref"] == retirement["retirement_id"]

    # Offline: the server is gone; only the saved file and the verifier key remain.
    verified = verify_certificate((tmp_path / "claim.json").read_bytes(), VKEY)
    assert verified.id == claim_id
    assert verified.kind == "claim"
    # And the auditor's audit of the database behind it passes.
    with DatabaseSource(ledger.engine) as source:
        report_ = audit(source, vkey=VKEY, workers=1)
    assert report_.verified, report_.to_json()["findings"]
