"""The public path's whole story over real HTTP: `cdcer serve` (uvicorn) on a loopback port, on both engines.

A bike-share operator runs a registered project over the car trips its bikes displace, and attests its
riders' kilometres as carbon points. Rule `bike-km` first claims those reductions (claim mode); from a
later day its version 2 only rewards them (reward-only). So the operator's monitoring report over a
claim-mode period is refused (one reduction, one claimant), and its report over a reward-only period is
verified and issued; the points attested then are marked not claimable. Citizens earn points, one hits
the daily cap, they redeem at an approved low-carbon scene (one order fulfilled, one cancelled) but
cannot spend points past their lifetime, the authority expires those, a holder's record verifies
offline up to the signed checkpoint, and the auditor's replay of the database, records and all, finds
nothing.

The rule must be published before the days it applies to (never retroactively) and those days must be
over, so the registry is founded 100 days ago and the authority publishes the rule's two versions then,
in process with those past times; everything after happens over HTTP, now.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel
from sqlalchemy import Engine, text

from ledger.audit import audit
from ledger.checkpoint import open_checkpoint
from ledger.keys import write_key_file
from ledger.ledger import Ledger, Receipt, found_registry
from ledger.log import decode_entry
from ledger.merkle import leaf_hash, verify_inclusion
from ledger.points_batch import PointRecord, batch_root, subject_commitment, verify_record
from ledger.storage.source import DatabaseSource
from ledger.transactions import (
    ClaimMode,
    ClaimScope,
    Issue,
    MethodologyPublish,
    OfferPublish,
    Opinion,
    ParticipantRegister,
    PointAccountKind,
    PointAccountOpen,
    PointsAttest,
    PointsConsent,
    PointsExpire,
    PointsPolicy,
    PointsRedeem,
    PointsRulePublish,
    PointsSubject,
    ProjectDecide,
    ProjectDecision,
    ProjectDetails,
    ProjectScope,
    ProjectSubmit,
    ProjectValidate,
    ProviderScope,
    RedemptionCancel,
    RedemptionFulfil,
    ReportSubmit,
    ReportVerify,
    Role,
    SceneApply,
    SceneCategory,
    SceneDecide,
    SceneEvaluate,
    TransactionSigner,
)
from registry.accounts.signatures import sign_request
from tests.conftest import AUTHORITY, AUTHORITY_NAME, log_signer
from tests.ledger.scenario import ORIGIN, SHA, seeded_key
from tests.registry.live import serve
from tests.registry.test_end_to_end import VKEY, Registry

PROBLEM = "application/problem+json"
KM_POINTS = 120  # 120 gCO2e avoided per km, 1 point per gram
DAILY_CAP = 2_400  # 20 km
A1, A2, A3 = "PA00000000000000a1", "PA00000000000000a2", "PA00000000000000a3"
CAR_TRIPS = ClaimScope(displaced_source="car-trips", subject=PointsSubject.ACCOUNT_DAY)


def month_of(day: date) -> str:
    return day.strftime("%Y-%m")


def months_before(day: date, months: int) -> date:
    """The first day of the month `months` before `day`'s."""
    index = day.year * 12 + day.month - 1 - months
    return date(index // 12, index % 12 + 1, 1)


class Days:
    """The story's days, relative to today (UTC), so the test holds whatever day it runs."""

    def __init__(self, today: date) -> None:
        self.today = today
        self.claim_from = today - timedelta(days=88)  # version 1 (claim mode) takes effect
        self.reward_from = today - timedelta(days=80)  # version 2 (reward-only) takes effect
        self.claimed_day = today - timedelta(days=85)  # a ride day under version 1
        # A day in the month before last: with a one-month lifetime, its points expire at this month's start.
        self.old_day = months_before(today, 2) + timedelta(days=14)
        self.recent_day = today - timedelta(days=2)
        assert self.reward_from <= self.old_day < self.recent_day
        self.expire_through = month_of(self.old_day)


def bike_rule(version: int, claim_mode: ClaimMode, effective_from: date) -> PointsRulePublish:
    return PointsRulePublish(
        rule_id="bike-km",
        version=version,
        title="Shared-bike kilometres",
        activity_unit="km",
        emission_factor_g=KM_POINTS,
        factor_source="Chengdu transport survey 2024, car trips displaced per shared-bike km",
        points_per_gram=1,
        daily_cap=DAILY_CAP,
        monthly_cap=40_000,
        annual_cap=200_000,
        late_window_days=90,
        claim_mode=claim_mode,
        subject=CAR_TRIPS.subject,
        displaced_source=CAR_TRIPS.displaced_source,
        effective_from=effective_from,
    )


def founded_in_the_past(engine: Engine, days: Days) -> Ledger:
    """A registry founded 100 days ago, where the authority published both versions of `bike-km` then."""
    ledger = Ledger(engine, log_signer())
    founded = datetime.now(UTC) - timedelta(days=100)
    found_registry(
        ledger, authority_id=AUTHORITY, authority_name=AUTHORITY_NAME, authority_key=seeded_key(AUTHORITY), now=founded
    )
    signer = TransactionSigner(ORIGIN, AUTHORITY, seeded_key(AUTHORITY))
    for second, payload in enumerate(
        (bike_rule(1, ClaimMode.CLAIM, days.claim_from), bike_rule(2, ClaimMode.REWARD_ONLY, days.reward_from)),
        start=1,
    ):
        at = founded + timedelta(seconds=second)
        (receipt,) = ledger.submit([signer.sign(payload, at=at)], now=at)
        assert isinstance(receipt, Receipt), receipt
    return ledger


class Points(Registry):
    """The registry's client, with the points path's signed uploads and reads."""

    def refused(self, who: str, payload: BaseModel, status: int, code: str) -> dict[str, Any]:
        """A transaction the registry must refuse with `status` and problem `code`, appending nothing."""
        size = self.size()
        tx = TransactionSigner(ORIGIN, who, seeded_key(who)).sign(payload, at=datetime.now(UTC))
        response = self.http.post("/v1/transactions", json=tx.to_json())
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == PROBLEM
        problem: dict[str, Any] = response.json()
        assert problem["type"] == f"/problems/{code}", problem
        assert self.size() == size
        return problem

    def size(self) -> int:
        checkpoint = open_checkpoint(self.http.get("/v1/log/checkpoint").content, self.verifier, origin=ORIGIN)
        return checkpoint.checkpoint.size

    def signed(self, who: str, method: str, path: str, *, document: Any = None, **params: Any) -> httpx.Response:
        content = None if document is None else json.dumps(document).encode()
        headers = {} if content is None else {"content-type": "application/json"}
        request = self.http.build_request(method, path, params=params, content=content, headers=headers)
        sign_request(request, seeded_key(who), body=content)
        return self.http.send(request)

    def read(self, who: str, path: str) -> Any:
        response = self.signed(who, "GET", path)
        assert response.status_code == 200, response.text
        return response.json()

    def attest(self, provider: str, batch_id: str, records: list[PointRecord], day: date, version: int) -> int:
        """Upload `records` in chunks of two, then attest them; the attestation's log index."""
        for offset in range(0, len(records), 2):
            chunk = records[offset : offset + 2]
            document = {
                "records": [{"account_id": r.account_id, "quantity": r.quantity, "subject": r.subject} for r in chunk]
            }
            response = self.signed(
                provider, "PUT", f"/v1/points/batches/{batch_id}/records", document=document, offset=offset
            )
            assert response.status_code == 200, response.text
            assert response.json()["uploaded"] == offset + len(chunk)
        payload = PointsAttest(
            batch_id=batch_id,
            rule_id="bike-km",
            version=version,
            day=day,
            count=len(records),
            total_quantity=sum(r.quantity for r in records),
            root=batch_root(batch_id, records).hex(),
        )
        index: int = self.submit(provider, payload)["index"]
        return index


def rides(day: date, **km: int) -> list[PointRecord]:
    """One record per account for `day`: its kilometres, under the account-day subject."""
    accounts = {"a1": A1, "a2": A2, "a3": A3}
    return [
        PointRecord(accounts[name], quantity, subject_commitment("account_day", accounts[name], day.isoformat()))
        for name, quantity in km.items()
    ]


def totals(registry: Points, account: str) -> dict[str, int]:
    body = registry.read("tianfu-app", f"/v1/points/accounts/{account}")
    found: dict[str, int] = body["totals"]
    assert found["awarded"] == found["balance"] + found["redeemed"] + found["expired"] + found["clawed_back"]
    assert found["balance"] == sum(lot["points"] for lot in body["lots"])
    return found


def test_citizens_points_and_the_bike_project_over_http(engine: Engine, tmp_path: Path) -> None:
    days = Days(datetime.now(UTC).date())
    ledger = founded_in_the_past(engine, days)
    key_file = tmp_path / "registry-log.key"
    write_key_file(key_file, seeded_key("log"), passphrase=None)
    url = engine.url.render_as_string(hide_password=False)
    with serve(url, key_file) as base, httpx.Client(base_url=base, timeout=30) as http:
        registry = Points(http)
        for pid, name, roles in (
            ("tianfu-verify", "Tianfu Verification Centre", (Role.VERIFIER,)),
            ("qingju-bike", "Qingju Shared Bikes Chengdu", (Role.PROJECT_OWNER, Role.DATA_PROVIDER)),
            ("tianfu-app", "Tianfu Carbon Inclusion App", (Role.PLATFORM_OPERATOR,)),
            ("green-cafe", "Green Leaf Cafe", (Role.MERCHANT,)),
            ("scene-eval", "Chengdu Low-Carbon Scene Evaluation Centre", (Role.SCENE_EVALUATOR,)),
        ):
            registry.submit(
                AUTHORITY,
                ParticipantRegister(
                    participant_id=pid, name=name, roles=roles, public_keys=(seeded_key(pid).public_key.b64(),)
                ),
            )
        rules = registry.get("/v1/points/rules")["items"]
        assert [(r["version"], r["claim_mode"]) for r in rules] == [(1, "claim"), (2, "reward_only")]

        # The bike operator's project declares the activity data its reductions rest on.
        methodology = MethodologyPublish(
            code="CDCER-BIKE", version="1.0", title="Shared bicycles displacing car trips", sector="transport",
            document_sha256=SHA,
        )  # fmt: skip
        registry.submit(AUTHORITY, methodology)
        details = ProjectDetails(
            methodology_code="CDCER-BIKE",
            methodology_version="1.0",
            title="Qingju shared bikes, Chengdu central districts",
            district="Jinjiang",
            description="40,000 shared bicycles replacing short car trips",
            crediting_start=days.today - timedelta(days=365),
            crediting_end=days.today + timedelta(days=3 * 365),
            estimated_annual_reductions=3000,
        )
        project = registry.submit("qingju-bike", ProjectSubmit(details=details))["outcome"]["project_id"]
        registry.submit("qingju-bike", ProjectScope(project_id=project, scopes=(CAR_TRIPS,)))
        registry.submit(
            "tianfu-verify",
            ProjectValidate(project_id=project, opinion=Opinion.POSITIVE, opinion_sha256=SHA, statement="conforms"),
        )
        registry.submit(AUTHORITY, ProjectDecide(project_id=project, decision=ProjectDecision.REGISTER, reason="ok"))

        # One reduction, one claimant: a report over days the claim-mode version holds is refused ...
        claimed = ReportSubmit(
            project_id=project,
            period_start=days.claim_from,
            period_end=days.claim_from + timedelta(days=4),
            claimed=40,
            verifier="tianfu-verify",
        )
        problem = registry.refused("qingju-bike", claimed, 409, "claimed_elsewhere")
        assert "bike-km" in problem["detail"]
        # ... and one over days the rule only rewards is verified and issued.
        reported = ReportSubmit(
            project_id=project,
            period_start=days.reward_from,
            period_end=days.reward_from + timedelta(days=9),
            claimed=80,
            verifier="tianfu-verify",
        )
        report = registry.submit("qingju-bike", reported)["outcome"]["report_id"]
        registry.submit(
            "tianfu-verify", ReportVerify(report_id=report, verified=75, opinion_sha256=SHA, statement="verified")
        )
        issued = registry.submit(AUTHORITY, Issue(report_id=report))["outcome"]
        assert issued["quantity"] == 75
        assert registry.get("/v1/stats")["units_issued"] == 75

        # The authority scopes the operator to the rule and sets a one-month lifetime before any points exist.
        registry.submit(AUTHORITY, ProviderScope(provider="qingju-bike", rules=("bike-km",)))
        registry.submit(AUTHORITY, PointsPolicy(lifetime_months=1))
        for account in (A1, A2, A3):
            registry.submit("tianfu-app", PointAccountOpen(account_id=account, account_kind=PointAccountKind.CITIZEN))
            registry.submit(
                "tianfu-app", PointsConsent(account_id=account, provider="qingju-bike", rule_id="bike-km", granted=True)
            )

        # Citizens' rides: under version 1 (claimable), then version 2 (reward-only), where A1 hits the cap.
        registry.attest("qingju-bike", "qingju-claim-1", rides(days.claimed_day, a1=10, a2=5), days.claimed_day, 1)
        old = rides(days.old_day, a1=25, a2=8, a3=3)
        old_index = registry.attest("qingju-bike", "qingju-old-1", old, days.old_day, 2)
        registry.attest("qingju-bike", "qingju-recent-1", rides(days.recent_day, a1=10, a2=5), days.recent_day, 2)
        claim_batch = registry.get("/v1/points/batches/qingju-claim-1")
        assert (claim_batch["claimable"], claim_batch["points_awarded"]) == (True, 15 * KM_POINTS)
        old_batch = registry.get("/v1/points/batches/qingju-old-1")
        assert old_batch["claimable"] is False  # reward-only: never counts toward a carbon-neutral claim
        assert old_batch["points_capped"] == 25 * KM_POINTS - DAILY_CAP
        assert old_batch["points_awarded"] == DAILY_CAP + 11 * KM_POINTS
        assert old_batch["reduction_g"] == 36 * KM_POINTS
        assert totals(registry, A1) == {
            "awarded": 10 * KM_POINTS + DAILY_CAP + 10 * KM_POINTS,
            "balance": 10 * KM_POINTS + DAILY_CAP + 10 * KM_POINTS,
            "redeemed": 0,
            "expired": 0,
            "clawed_back": 0,
        }

        # The holder's record verifies offline: record -> batch root -> attestation entry -> checkpoint.
        items = registry.read("tianfu-app", f"/v1/points/accounts/{A3}/records")["items"]
        (item,) = items
        assert (item["batch_id"], item["attested_at"]) == ("qingju-old-1", old_index)
        checkpoint = open_checkpoint(http.get("/v1/log/checkpoint").content, registry.verifier, origin=ORIGIN)
        size, root = checkpoint.checkpoint.size, checkpoint.checkpoint.root_hash
        (stored,) = registry.get(f"/v1/log/entries?start={old_index}&limit=1")["entries"]
        leaf = base64.b64decode(stored["leaf"])
        attested = decode_entry(leaf, index=old_index).body().payload
        assert isinstance(attested, PointsAttest)
        verify_record(
            batch_id=item["batch_id"],
            position=item["position"],
            record=PointRecord(item["account_id"], item["quantity"], item["subject"]),
            count=attested.count,
            proof=[bytes.fromhex(h) for h in item["proof"]],
            root=bytes.fromhex(attested.root),
        )
        inclusion = registry.get(f"/v1/log/proof/inclusion?index={old_index}&size={size}")
        verify_inclusion(
            leaf=leaf_hash(leaf),
            index=old_index,
            size=size,
            proof=[base64.b64decode(h) for h in inclusion["hashes"]],
            root=root,
        )

        # A merchant's cafe is evaluated and approved as a low-carbon scene, and offers a coffee for points.
        registry.submit(
            "green-cafe",
            SceneApply(
                scene_id="green-leaf-taikoo",
                name="Green Leaf Cafe, Taikoo Li",
                category=SceneCategory.RESTAURANT,
                district="Jinjiang",
                address="Zhongshamao Street 8",
                description="Reusable cups only, plant-based menu, rooftop solar",
            ),
        )
        registry.submit(
            "scene-eval",
            SceneEvaluate(scene_id="green-leaf-taikoo", score=86, opinion=Opinion.POSITIVE, report_sha256=SHA),
        )
        registry.submit(
            AUTHORITY,
            SceneDecide(
                scene_id="green-leaf-taikoo",
                approve=True,
                valid_until=days.today + timedelta(days=365),
                reason="meets the low-carbon restaurant criteria",
            ),
        )
        registry.submit(
            "green-cafe",
            OfferPublish(
                offer_id="oat-latte",
                scene_id="green-leaf-taikoo",
                title="One oat latte",
                price_points=500,
                stock=5,
                per_account_limit=2,
                valid_from=days.today,
                valid_until=days.today + timedelta(days=30),
            ),
        )
        assert registry.get("/v1/scenes/green-leaf-taikoo")["state"] == "approved"

        # Points past their one-month lifetime (the month before last and earlier) can no longer be spent,
        # even before the authority expires them: A1's two lattes come out of its recent lot.
        recent_lot = month_of(days.recent_day)
        order = PointsRedeem(order_id="RO00000000000000a1", offer_id="oat-latte", account_id=A1, quantity=2)
        registry.submit("tianfu-app", order)
        registry.submit("green-cafe", RedemptionFulfil(order_id="RO00000000000000a1"))
        registry.refused(
            "tianfu-app",
            PointsRedeem(order_id="RO00000000000000a9", offer_id="oat-latte", account_id=A1, quantity=1),
            409,
            "limit_reached",
        )
        lapsed = registry.refused(
            "tianfu-app",
            PointsRedeem(order_id="RO00000000000000a8", offer_id="oat-latte", account_id=A3, quantity=1),
            409,
            "insufficient_points",
        )
        assert "0 are spendable (360 are past their lifetime)" in lapsed["detail"]
        # A2 orders one and cancels it: its points return to their live lot, the latte to the stock.
        registry.submit(
            "tianfu-app", PointsRedeem(order_id="RO00000000000000a2", offer_id="oat-latte", account_id=A2, quantity=1)
        )
        assert registry.get("/v1/offers/oat-latte")["stock"] == 2
        registry.submit("tianfu-app", RedemptionCancel(order_id="RO00000000000000a2", reason="changed her mind"))
        assert registry.get("/v1/offers/oat-latte")["stock"] == 3
        (fulfilled,) = registry.read("tianfu-app", f"/v1/points/accounts/{A1}")["redemptions"]
        assert (fulfilled["state"], fulfilled["points"], fulfilled["lots"]) == (
            "fulfilled",
            1_000,
            [f"{recent_lot}:1000"],
        )
        (cancelled,) = registry.read("tianfu-app", f"/v1/points/accounts/{A2}")["redemptions"]
        assert cancelled["state"] == "cancelled"

        # The authority expires the lapsed lots; what is left is the recent lots' points.
        registry.submit(AUTHORITY, PointsExpire(through_month=days.expire_through))
        expected = {
            A1: {"awarded": 4_800, "balance": 200, "redeemed": 1_000, "expired": 3_600, "clawed_back": 0},
            A2: {"awarded": 2_160, "balance": 600, "redeemed": 0, "expired": 1_560, "clawed_back": 0},
            A3: {"awarded": 360, "balance": 0, "redeemed": 0, "expired": 360, "clawed_back": 0},
        }
        for account_id, figures in expected.items():
            assert totals(registry, account_id) == figures, account_id
            lots = registry.read("tianfu-app", f"/v1/points/accounts/{account_id}")["lots"]
            assert all(lot["month"] > days.expire_through for lot in lots), lots

    # The auditor replays the database: every entry, every attestation's records, conservation and caps.
    with DatabaseSource(ledger.engine) as source:
        report_ = audit(source, vkey=VKEY, workers=1)
    assert report_.verified, report_.to_json()["findings"]
    with ledger.engine.connect() as conn:
        attested_rows = conn.execute(text("SELECT count(*) FROM point_records")).scalar_one()
    assert attested_rows == 2 + 3 + 2
