"""Bad input on the points path: each answered by a 4xx problem a person can act on, nothing changed.

The refusal matrix of `tests.registry.transactions.test_refusals`, for the public path: every rule of
points rules, providers' scopes, consent, attestations (one reward per subject, the late window, the
records against the root), the points policy, expiry, clawback, scenes, offers and redemption orders,
and one reduction, one claimant between claim-mode rules and projects. Each refusal is an
``application/problem+json`` document with the status and ``type`` of its rule and a ``detail`` that says
what was wrong, and the whole database, the private uploads and records included, is byte for byte as before.

Rules never apply retroactively and a day is attested once it is over, so the registry is founded 100 days
ago and the authority publishes the rules then, in process with those past times (as in
`tests.registry.test_points_end_to_end`); everything after happens over HTTP, now, once per engine.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel
from sqlalchemy import Engine

from ledger.encoding import canonical_json
from ledger.ledger import Ledger, Receipt, found_registry
from ledger.points_batch import PointRecord, batch_root, subject_commitment
from ledger.state import State
from ledger.storage import schema
from ledger.storage.engine import make_engine
from ledger.transactions import (
    ClaimMode,
    ClaimScope,
    MethodologyPublish,
    OfferPublish,
    OfferWithdraw,
    Opinion,
    ParticipantRegister,
    PointAccountKind,
    PointAccountOpen,
    PointsAttest,
    PointsClawback,
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
    Role,
    SceneApply,
    SceneCategory,
    SceneDecide,
    SceneEvaluate,
    SceneSuspend,
    Selection,
    SignedTransaction,
    TransactionSigner,
    Transfer,
    signing_message,
)
from registry.accounts.signatures import sign_request
from registry.app import create_app
from registry.settings import Settings
from tests.conftest import AUTHORITY, AUTHORITY_NAME, Databases, log_signer
from tests.ledger.scenario import ORIGIN, SHA, seeded_key
from tests.registry.transactions.test_permissions import PROBLEM, PROBLEM_BASE, URL, database_snapshot

A1, A2, A3 = "PA00000000000000a1", "PA00000000000000a2", "PA00000000000000a3"
B1 = "PA00000000000000b1"  # opened in other-app
NOBODY = "PA00000000000000ff"  # never opened
KM_POINTS = 120  # gCO2e avoided per km, one point per gram
DAILY_CAP = 2_400
LATE_WINDOW = 30
TAXI_TRIPS = ClaimScope(displaced_source="taxi-trips", subject=PointsSubject.ACCOUNT_DAY)
ORDER_FULFILLED, ORDER_CANCELLED, ORDER_PENDING = "RO00000000000000f1", "RO00000000000000c1", "RO00000000000000a1"
NEW_ORDER = "RO00000000000000b1"


class Days:
    """The days the registry's story uses, relative to today (UTC), so the module holds whatever day it runs."""

    def __init__(self, today: date) -> None:
        self.today = today
        self.founded = today - timedelta(days=100)
        self.bike_v1 = today - timedelta(days=95)  # bike-km and metro-km take effect
        self.taxi_claim = today - timedelta(days=90)  # the claim-mode taxi-claim rule takes effect
        self.bike_v2 = today - timedelta(days=20)  # bike-km's version 2 takes effect
        self.later_rule = today + timedelta(days=30)  # later-rule takes effect
        self.capped = today - timedelta(days=3)  # batch b-cap
        self.fraud = today - timedelta(days=4)  # batch b-fraud, clawed back
        self.reported = (today - timedelta(days=80), today - timedelta(days=70))  # under taxi-claim

    @classmethod
    def now(cls) -> Days:
        return cls(datetime.now(UTC).date())


def rule(rule_id: str, version: int, effective_from: date, **changes: Any) -> PointsRulePublish:
    fields: dict[str, Any] = {
        "rule_id": rule_id,
        "version": version,
        "title": f"{rule_id} kilometres",
        "activity_unit": "km",
        "emission_factor_g": KM_POINTS,
        "factor_source": "Chengdu transport survey 2024",
        "points_per_gram": 1,
        "daily_cap": DAILY_CAP,
        "monthly_cap": 40_000,
        "annual_cap": 200_000,
        "late_window_days": LATE_WINDOW,
        "claim_mode": ClaimMode.REWARD_ONLY,
        "subject": PointsSubject.ACCOUNT_DAY,
        "displaced_source": "car-trips",
        "effective_from": effective_from,
    }
    return PointsRulePublish.model_validate(fields | changes)


def km(account: str, quantity: int, day: date) -> PointRecord:
    """An account's kilometres on `day`, under the account-day subject."""
    return PointRecord(account, quantity, subject_commitment("account_day", account, day.isoformat()))


def attestation(
    batch_id: str, records: list[PointRecord], day: date, *, rule_id: str = "bike-km", version: int = 2, **changes: Any
) -> PointsAttest:
    fields: dict[str, Any] = {
        "batch_id": batch_id,
        "rule_id": rule_id,
        "version": version,
        "day": day,
        "count": len(records),
        "total_quantity": sum(r.quantity for r in records),
        "root": batch_root(batch_id, records).hex(),
    }
    return PointsAttest.model_validate(fields | changes)


@dataclass
class Registry:
    """The registry over HTTP, as its participants see it: signed transactions, signed uploads."""

    client: TestClient
    ledger: Ledger

    @property
    def state(self) -> State:
        return self.ledger.state()

    def sign(self, who: str, payload: BaseModel) -> SignedTransaction:
        return TransactionSigner(ORIGIN, who, seeded_key(who)).sign(payload, at=datetime.now(UTC))

    def wire(self, who: str, payload: BaseModel) -> bytes:
        return json.dumps(self.sign(who, payload).to_json()).encode()

    def post(self, content: bytes) -> httpx.Response:
        response: httpx.Response = self.client.post(URL, content=content, headers={"content-type": "application/json"})
        return response

    def submit(self, who: str, payload: BaseModel) -> dict[str, Any]:
        response = self.post(self.wire(who, payload))
        assert response.status_code == 201, response.text
        outcome: dict[str, Any] = response.json()["outcome"]
        return outcome

    def upload(self, provider: str, batch_id: str, records: list[PointRecord]) -> None:
        document = {
            "records": [{"account_id": r.account_id, "quantity": r.quantity, "subject": r.subject} for r in records]
        }
        content = json.dumps(document).encode()
        path = f"/v1/points/batches/{batch_id}/records"
        request = self.client.build_request(
            "PUT", path, params={"offset": 0}, content=content, headers={"content-type": "application/json"}
        )
        sign_request(request, seeded_key(provider), body=content)
        response = self.client.send(request)
        assert response.status_code == 200, response.text
        assert response.json()["uploaded"] == len(records)

    def attest(self, provider: str, batch_id: str, records: list[PointRecord], day: date, **changes: Any) -> bytes:
        """Upload `records` (a step before the refusal), then the body of their attestation."""
        self.upload(provider, batch_id, records)
        return self.wire(provider, attestation(batch_id, records, day, **changes))

    def read(self, who: str, path: str) -> Any:
        request = self.client.build_request("GET", path)
        sign_request(request, seeded_key(who))
        response = self.client.send(request)
        assert response.status_code == 200, response.text
        return response.json()

    def project(self, title: str) -> str:
        return next(p.id for p in self.state.projects.values() if p.title == title)

    def report_of(self, project_id: str) -> str:
        (report,) = self.state.reports_by_project[project_id]
        return report


# --- the registry ---------------------------------------------------------------------------------------

PARTICIPANTS: tuple[tuple[str, tuple[Role, ...]], ...] = (
    ("bike-co", (Role.DATA_PROVIDER,)),
    ("metro-co", (Role.DATA_PROVIDER,)),
    ("tianfu-app", (Role.PLATFORM_OPERATOR,)),
    ("other-app", (Role.PLATFORM_OPERATOR,)),
    ("green-cafe", (Role.MERCHANT,)),
    ("tea-house", (Role.MERCHANT,)),
    ("scene-eval", (Role.SCENE_EVALUATOR,)),
    ("self-eval", (Role.MERCHANT, Role.SCENE_EVALUATOR)),  # a merchant that also evaluates scenes
    ("verifier", (Role.VERIFIER,)),
    ("qingju", (Role.PROJECT_OWNER,)),
)


CONSENTS = ((A1, "bike-co", "bike-km"), (A2, "bike-co", "bike-km"), (A1, "metro-co", "metro-km"))
SCENES = (
    ("green-cafe", "green-leaf"),
    ("tea-house", "tea-garden"),
    ("tea-house", "tea-annex"),
    ("self-eval", "self-shop"),
)


def founded_in_the_past(engine: Engine, days: Days) -> Ledger:
    """A registry founded 100 days ago, with its participants and every rule published then.

    ``bike-km`` (reward-only, car trips, account-day) version 1 from 95 days ago and version 2 from 20 days ago;
    ``metro-km`` (reward-only, bus trips, account-day) from 95 days ago; ``taxi-claim`` (claim mode, taxi
    trips) from 90 days ago; ``later-rule`` from 30 days ahead.
    """
    schema.upgrade(engine)
    ledger = Ledger(engine, log_signer())
    founded = datetime.now(UTC) - timedelta(days=100)
    found_registry(
        ledger, authority_id=AUTHORITY, authority_name=AUTHORITY_NAME, authority_key=seeded_key(AUTHORITY), now=founded
    )
    signer = TransactionSigner(ORIGIN, AUTHORITY, seeded_key(AUTHORITY))
    payloads: list[BaseModel] = [
        ParticipantRegister(participant_id=pid, name=pid, roles=roles, public_keys=(seeded_key(pid).public_key.b64(),))
        for pid, roles in PARTICIPANTS
    ]
    payloads += [
        rule("bike-km", 1, days.bike_v1),
        rule("bike-km", 2, days.bike_v2),
        rule("metro-km", 1, days.bike_v1, displaced_source="bus-trips"),
        rule("taxi-claim", 1, days.taxi_claim, claim_mode=ClaimMode.CLAIM, displaced_source="taxi-trips"),
        rule("later-rule", 1, days.later_rule),
    ]
    for second, payload in enumerate(payloads, start=1):
        at = founded + timedelta(seconds=second)
        (receipt,) = ledger.submit([signer.sign(payload, at=at)], now=at)
        assert isinstance(receipt, Receipt), receipt
    return ledger


def build_registry(engine: Engine) -> None:
    """What the refusals act on, built over HTTP after `founded_in_the_past`.

    Points: bike-co is scoped to bike-km, metro-co to metro-km; tianfu-app opened A1, A2, A3 (A1 and A2
    consent to bike-co, A1 to metro-co; A3 to nobody), other-app opened B1. Batch ``b-cap`` (3 days ago)
    gave A1 25 km (capped at 2,400 points) and A2 10 km; ``b-fraud`` (4 days ago) gave A2 5 km and was
    clawed back.

    Scenes: green-cafe's ``green-leaf`` is approved, with offers ``latte`` (1,000 points, 2 in stock, 5 per
    account), ``cookie`` (100 points, 2 per account), ``old-mug`` (withdrawn) and ``new-year-box`` (from 10
    days ahead). tea-house's ``tea-garden`` was approved, offered ``tea-set`` and is now suspended; its
    ``tea-annex`` is only applied for; self-eval applied for ``self-shop``. Orders of cookies: A1's fulfilled
    and pending ones, A2's cancelled one.

    Projects of qingju, both registered: ``Taxi app`` declares the taxi-trips scope; ``Taxi fleet`` declares
    none and reported the days 80 to 70 ago, which taxi-claim holds.
    """
    days = Days.now()
    ledger = founded_in_the_past(engine, days)
    with TestClient(create_app(Settings(origin=ORIGIN), ledger=ledger)) as client:
        r = Registry(client, ledger)
        r.submit(AUTHORITY, ProviderScope(provider="bike-co", rules=("bike-km",)))
        r.submit(AUTHORITY, ProviderScope(provider="metro-co", rules=("metro-km",)))
        for account in (A1, A2, A3):
            r.submit("tianfu-app", PointAccountOpen(account_id=account, account_kind=PointAccountKind.CITIZEN))
        r.submit("other-app", PointAccountOpen(account_id=B1, account_kind=PointAccountKind.CITIZEN))
        for account, provider, rule_id in CONSENTS:
            consent = PointsConsent(account_id=account, provider=provider, rule_id=rule_id, granted=True)
            r.submit("tianfu-app", consent)
        r.submit("bike-co", attestation_of(r, "b-cap", [km(A1, 25, days.capped), km(A2, 10, days.capped)], days.capped))
        r.submit("bike-co", attestation_of(r, "b-fraud", [km(A2, 5, days.fraud)], days.fraud))
        r.submit(AUTHORITY, PointsClawback(batch_id="b-fraud", reason="the rides were simulated"))

        for merchant, scene_id in SCENES:
            r.submit(
                merchant,
                SceneApply(
                    scene_id=scene_id, name=scene_id, category=SceneCategory.RESTAURANT, district="Jinjiang",
                    address="Chunxi Road 1",
                ),
            )  # fmt: skip
        for scene_id in ("green-leaf", "tea-garden"):
            r.submit(
                "scene-eval", SceneEvaluate(scene_id=scene_id, score=88, opinion=Opinion.POSITIVE, report_sha256=SHA)
            )
            approval = SceneDecide(
                scene_id=scene_id, approve=True, valid_until=days.today + timedelta(days=365), reason="low-carbon"
            )
            r.submit(AUTHORITY, approval)
        month = timedelta(days=30)
        for merchant, offer_id, scene_id, price, stock, limit, start in (
            ("green-cafe", "latte", "green-leaf", 1_000, 2, 5, days.today),
            ("green-cafe", "cookie", "green-leaf", 100, 50, 2, days.today),
            ("green-cafe", "old-mug", "green-leaf", 100, 50, 2, days.today),
            ("green-cafe", "new-year-box", "green-leaf", 100, 50, 2, days.today + timedelta(days=10)),
            ("tea-house", "tea-set", "tea-garden", 100, 50, 2, days.today),
        ):
            offer = OfferPublish(
                offer_id=offer_id, scene_id=scene_id, title=offer_id, price_points=price, stock=stock,
                per_account_limit=limit, valid_from=start, valid_until=start + month,
            )  # fmt: skip
            r.submit(merchant, offer)
        r.submit("green-cafe", OfferWithdraw(offer_id="old-mug"))
        r.submit(AUTHORITY, SceneSuspend(scene_id="tea-garden", reason="single-use cups found"))
        for order_id, account in ((ORDER_FULFILLED, A1), (ORDER_CANCELLED, A2), (ORDER_PENDING, A1)):
            r.submit("tianfu-app", PointsRedeem(order_id=order_id, offer_id="cookie", account_id=account, quantity=1))
        r.submit("green-cafe", RedemptionFulfil(order_id=ORDER_FULFILLED))
        r.submit("tianfu-app", RedemptionCancel(order_id=ORDER_CANCELLED, reason="changed her mind"))

        methodology = MethodologyPublish(
            code="CDCER-TAXI", version="1.0", title="Ride-hailing displacing private cars", sector="transport",
            document_sha256=SHA,
        )  # fmt: skip
        r.submit(AUTHORITY, methodology)
        for title in ("Taxi app", "Taxi fleet"):
            details = ProjectDetails(
                methodology_code="CDCER-TAXI", methodology_version="1.0", title=title, district="Wuhou",
                description="electric taxis replacing private car trips",
                crediting_start=days.today - timedelta(days=365), crediting_end=days.today + timedelta(days=3 * 365),
                estimated_annual_reductions=1000,
            )  # fmt: skip
            project = r.submit("qingju", ProjectSubmit(details=details))["project_id"]
            if title == "Taxi app":
                r.submit("qingju", ProjectScope(project_id=project, scopes=(TAXI_TRIPS,)))
            validate = ProjectValidate(project_id=project, opinion=Opinion.POSITIVE, opinion_sha256=SHA, statement="ok")
            r.submit("verifier", validate)
            r.submit(AUTHORITY, ProjectDecide(project_id=project, decision=ProjectDecision.REGISTER, reason="ok"))
        start, end = days.reported
        fleet = r.project("Taxi fleet")
        report = ReportSubmit(project_id=fleet, period_start=start, period_end=end, claimed=50, verifier="verifier")
        r.submit("qingju", report)


def attestation_of(r: Registry, batch_id: str, records: list[PointRecord], day: date) -> PointsAttest:
    r.upload("bike-co", batch_id, records)
    return attestation(batch_id, records, day)


@pytest.fixture
def ledger(databases: Databases, tmp_path: Path) -> Iterator[Ledger]:
    """A private copy of `build_registry`'s ledger (built once per process and engine)."""
    url = databases.from_template("points-refusals", build_registry, directory=tmp_path)
    engine = make_engine(url)
    try:
        yield Ledger(engine, log_signer())
    finally:
        engine.dispose()
        databases.drop(url)


@pytest.fixture
def registry(ledger: Ledger) -> Iterator[Registry]:
    with TestClient(create_app(Settings(origin=ORIGIN), ledger=ledger)) as client:
        yield Registry(client, ledger)


# --- the cases: rules, scopes, accounts, consent (ledger/state/points.py) ---------------------------------


def next_version_skipped(r: Registry) -> bytes:
    return r.wire(AUTHORITY, rule("bike-km", 5, Days.now().today + timedelta(days=1)))


def rule_version_taking_effect_yesterday(r: Registry) -> bytes:
    return r.wire(AUTHORITY, rule("bike-km", 3, Days.now().today - timedelta(days=1)))


def rule_version_before_the_one_it_follows(r: Registry) -> bytes:
    return r.wire(AUTHORITY, rule("later-rule", 2, Days.now().today + timedelta(days=10)))


def rule_version_changing_what_it_rewards(r: Registry) -> bytes:
    return r.wire(
        AUTHORITY, rule("bike-km", 3, Days.now().today + timedelta(days=1), subject=PointsSubject.VEHICLE_DAY)
    )


def scope_for_a_non_provider(r: Registry) -> bytes:
    return r.wire(AUTHORITY, ProviderScope(provider="tianfu-app", rules=("bike-km",)))


def scope_listing_a_rule_twice(r: Registry) -> bytes:
    return r.wire(AUTHORITY, ProviderScope(provider="bike-co", rules=("bike-km", "bike-km")))


def scope_naming_an_unknown_rule(r: Registry) -> bytes:
    return r.wire(AUTHORITY, ProviderScope(provider="bike-co", rules=("bike-km", "walk-steps")))


def account_opened_twice(r: Registry) -> bytes:
    return r.wire("other-app", PointAccountOpen(account_id=A1, account_kind=PointAccountKind.CITIZEN))


def consent_in_another_operators_app(r: Registry) -> bytes:
    return r.wire("other-app", PointsConsent(account_id=A1, provider="bike-co", rule_id="bike-km", granted=True))


def consent_given_twice(r: Registry) -> bytes:
    return r.wire("tianfu-app", PointsConsent(account_id=A1, provider="bike-co", rule_id="bike-km", granted=True))


def consent_withdrawn_never_given(r: Registry) -> bytes:
    return r.wire("tianfu-app", PointsConsent(account_id=A3, provider="bike-co", rule_id="bike-km", granted=False))


def consent_to_a_provider_out_of_scope(r: Registry) -> bytes:
    return r.wire("tianfu-app", PointsConsent(account_id=A3, provider="bike-co", rule_id="metro-km", granted=True))


def consent_for_an_unknown_account(r: Registry) -> bytes:
    return r.wire("tianfu-app", PointsConsent(account_id=NOBODY, provider="bike-co", rule_id="bike-km", granted=True))


# --- attestations, policy, expiry, clawback (ledger/state/awards.py) -------------------------------------


def batch_attested_twice(r: Registry) -> bytes:
    days = Days.now()
    return r.wire("bike-co", attestation("b-cap", [km(A1, 25, days.capped), km(A2, 10, days.capped)], days.capped))


def subject_rewarded_by_another_provider(r: Registry) -> bytes:
    # metro-km rewards account-days too: A1's day of b-cap is already rewarded, whoever attests it.
    day = Days.now().capped
    return r.attest("metro-co", "m-1", [km(A1, 4, day)], day, rule_id="metro-km", version=1)


def rule_out_of_the_providers_scope(r: Registry) -> bytes:
    day = Days.now().today - timedelta(days=2)
    return r.attest("bike-co", "b-metro", [km(A1, 4, day)], day, rule_id="metro-km", version=1)


def record_without_consent(r: Registry) -> bytes:
    day = Days.now().today - timedelta(days=2)
    return r.attest("bike-co", "b-a3", [km(A1, 2, day), km(A3, 4, day)], day)


def day_past_the_late_window(r: Registry) -> bytes:
    day = Days.now().today - timedelta(days=LATE_WINDOW + 10)
    return r.attest("bike-co", "b-late", [km(A1, 4, day)], day, version=1)


def day_not_ended(r: Registry) -> bytes:
    day = Days.now().today
    return r.attest("bike-co", "b-today", [km(A1, 4, day)], day)


def day_before_the_rule(r: Registry) -> bytes:
    day = Days.now().bike_v1 - timedelta(days=1)
    return r.attest("bike-co", "b-early", [km(A1, 4, day)], day, version=1)


def version_not_in_force_that_day(r: Registry) -> bytes:
    day = Days.now().today - timedelta(days=5)
    return r.attest("bike-co", "b-v1", [km(A1, 4, day)], day, version=1)


def count_not_uploaded(r: Registry) -> bytes:
    day = Days.now().today - timedelta(days=2)
    records = [km(A1, 4, day), km(A2, 6, day)]
    return r.attest("bike-co", "b-count", records, day, count=1)


def total_not_uploaded(r: Registry) -> bytes:
    day = Days.now().today - timedelta(days=2)
    return r.attest("bike-co", "b-total", [km(A1, 4, day), km(A2, 6, day)], day, total_quantity=11)


def root_not_uploaded(r: Registry) -> bytes:
    day = Days.now().today - timedelta(days=2)
    records = [km(A1, 4, day), km(A2, 6, day)]
    swapped = batch_root("b-root", [km(A1, 6, day), km(A2, 4, day)]).hex()  # same count and total
    return r.attest("bike-co", "b-root", records, day, root=swapped)


def attestation_without_upload(r: Registry) -> bytes:
    day = Days.now().today - timedelta(days=2)
    return r.wire("bike-co", attestation("b-none", [km(A1, 4, day)], day))


def account_twice_in_a_batch(r: Registry) -> bytes:
    day = Days.now().today - timedelta(days=2)
    return r.attest("bike-co", "b-twice", [km(A1, 4, day), km(A1, 6, day)], day)


def subject_not_the_account_and_day(r: Registry) -> bytes:
    day = Days.now().today - timedelta(days=2)
    yesterday = day - timedelta(days=1)
    return r.attest("bike-co", "b-subject", [PointRecord(A1, 4, km(A1, 4, yesterday).subject)], day)


def record_for_an_unopened_account(r: Registry) -> bytes:
    day = Days.now().today - timedelta(days=2)
    return r.attest("bike-co", "b-nobody", [km(A1, 4, day), km(NOBODY, 4, day)], day)


def lifetime_shortened_once_points_exist(r: Registry) -> bytes:
    return r.wire(AUTHORITY, PointsPolicy(lifetime_months=6))


def month_not_yet_expirable(r: Registry) -> bytes:
    return r.wire(AUTHORITY, PointsExpire(through_month=Days.now().capped.strftime("%Y-%m")))


def clawback_of_an_unknown_batch(r: Registry) -> bytes:
    return r.wire(AUTHORITY, PointsClawback(batch_id="b-none", reason="fraud"))


def clawback_twice(r: Registry) -> bytes:
    return r.wire(AUTHORITY, PointsClawback(batch_id="b-fraud", reason="fraud, again"))


def clawback_from_an_account_not_in_the_batch(r: Registry) -> bytes:
    return r.wire(AUTHORITY, PointsClawback(batch_id="b-cap", accounts=(A3,), reason="fraud"))


# --- scenes, offers, orders (ledger/state/scenes.py) -----------------------------------------------------


def order_more_than_the_balance(r: Registry) -> bytes:
    return r.wire("tianfu-app", PointsRedeem(order_id=NEW_ORDER, offer_id="cookie", account_id=A3, quantity=1))


def order_more_than_the_stock(r: Registry) -> bytes:
    return r.wire("tianfu-app", PointsRedeem(order_id=NEW_ORDER, offer_id="latte", account_id=A2, quantity=3))


def order_past_the_per_account_limit(r: Registry) -> bytes:
    return r.wire("tianfu-app", PointsRedeem(order_id=NEW_ORDER, offer_id="cookie", account_id=A1, quantity=1))


def order_of_a_withdrawn_offer(r: Registry) -> bytes:
    return r.wire("tianfu-app", PointsRedeem(order_id=NEW_ORDER, offer_id="old-mug", account_id=A1, quantity=1))


def order_before_the_offer_starts(r: Registry) -> bytes:
    return r.wire("tianfu-app", PointsRedeem(order_id=NEW_ORDER, offer_id="new-year-box", account_id=A1, quantity=1))


def order_at_a_suspended_scene(r: Registry) -> bytes:
    return r.wire("tianfu-app", PointsRedeem(order_id=NEW_ORDER, offer_id="tea-set", account_id=A1, quantity=1))


def order_of_an_unknown_offer(r: Registry) -> bytes:
    return r.wire("tianfu-app", PointsRedeem(order_id=NEW_ORDER, offer_id="no-such-offer", account_id=A1, quantity=1))


def order_for_another_operators_account(r: Registry) -> bytes:
    return r.wire("tianfu-app", PointsRedeem(order_id=NEW_ORDER, offer_id="cookie", account_id=B1, quantity=1))


def order_id_reused(r: Registry) -> bytes:
    return r.wire("tianfu-app", PointsRedeem(order_id=ORDER_FULFILLED, offer_id="cookie", account_id=A2, quantity=1))


def fulfil_a_fulfilled_order(r: Registry) -> bytes:
    return r.wire("green-cafe", RedemptionFulfil(order_id=ORDER_FULFILLED))


def fulfil_a_cancelled_order(r: Registry) -> bytes:
    return r.wire("green-cafe", RedemptionFulfil(order_id=ORDER_CANCELLED))


def cancel_a_cancelled_order(r: Registry) -> bytes:
    return r.wire("tianfu-app", RedemptionCancel(order_id=ORDER_CANCELLED, reason="again"))


def cancel_a_fulfilled_order(r: Registry) -> bytes:
    return r.wire("green-cafe", RedemptionCancel(order_id=ORDER_FULFILLED, reason="too late"))


def fulfil_another_merchants_order(r: Registry) -> bytes:
    return r.wire("tea-house", RedemptionFulfil(order_id=ORDER_PENDING))


def offer_at_an_unapproved_scene(r: Registry) -> bytes:
    today = Days.now().today
    offer = OfferPublish(
        offer_id="annex-tea", scene_id="tea-annex", title="Tea", price_points=100, stock=5, per_account_limit=1,
        valid_from=today, valid_until=today + timedelta(days=7),
    )  # fmt: skip
    return r.wire("tea-house", offer)


def offer_at_another_merchants_scene(r: Registry) -> bytes:
    today = Days.now().today
    offer = OfferPublish(
        offer_id="stolen-tea", scene_id="green-leaf", title="Tea", price_points=100, stock=5, per_account_limit=1,
        valid_from=today, valid_until=today + timedelta(days=7),
    )  # fmt: skip
    return r.wire("tea-house", offer)


def offer_withdrawn_twice(r: Registry) -> bytes:
    return r.wire("green-cafe", OfferWithdraw(offer_id="old-mug"))


def scene_applied_for_twice(r: Registry) -> bytes:
    scene = SceneApply(
        scene_id="green-leaf", name="Green Leaf again", category=SceneCategory.MALL, district="Wuhou", address="x"
    )
    return r.wire("tea-house", scene)


def scene_evaluated_by_its_merchant(r: Registry) -> bytes:
    return r.wire(
        "self-eval", SceneEvaluate(scene_id="self-shop", score=99, opinion=Opinion.POSITIVE, report_sha256=SHA)
    )


def scene_decided_before_its_evaluation(r: Registry) -> bytes:
    until = Days.now().today + timedelta(days=365)
    return r.wire(AUTHORITY, SceneDecide(scene_id="tea-annex", approve=True, valid_until=until, reason="looks fine"))


# --- one reduction, one claimant (ledger/state/projects.py) ----------------------------------------------
# points.attest's own claimed_elsewhere (a claim-mode batch over a day a report holds) is not reached by any
# valid log: a report's period has ended before it is submitted and a rule takes effect no earlier than the
# day it is published, so a claim-mode rule over those days existed first and refused the report or scope.


def report_over_days_a_claim_mode_rule_holds(r: Registry) -> bytes:
    start, end = Days.now().reported
    report = ReportSubmit(
        project_id=r.project("Taxi app"), period_start=start, period_end=end, claimed=50, verifier="verifier"
    )
    return r.wire("qingju", report)


def scope_over_a_reported_period_a_rule_claims(r: Registry) -> bytes:
    return r.wire("qingju", ProjectScope(project_id=r.project("Taxi fleet"), scopes=(TAXI_TRIPS,)))


# --- no citizen-to-citizen transfer ----------------------------------------------------------------------


def points_transfer_kind(r: Registry) -> bytes:
    # No kind moves points between accounts: one made up, and properly signed, is not a transaction.
    value = r.sign("tianfu-app", PointsExpire(through_month="2000-01")).to_json()
    value["body"]["payload"] = {"kind": "points.transfer", "from_account": A1, "to_account": A2, "points": 100}
    body = canonical_json(value["body"])
    value["signature"] = base64.b64encode(seeded_key("tianfu-app").sign(signing_message(body))).decode()
    return json.dumps(value).encode()


def units_to_a_point_account(r: Registry) -> bytes:
    tx = r.sign("qingju", Transfer(to="qingju-2", selection=Selection(quantity=1)))
    value = tx.to_json()
    value["body"]["payload"]["to"] = A1
    body = canonical_json(value["body"])
    value["signature"] = base64.b64encode(seeded_key("qingju").sign(signing_message(body))).decode()
    return json.dumps(value).encode()


@dataclass(frozen=True)
class Case:
    request: Callable[[Registry], bytes]
    status: int
    rule: str
    detail: str
    """A regular expression the problem's detail must match (what was wrong, in the person's terms)."""


DAY = r"\d{4}-\d{2}-\d{2}"
CLAIMED_BY_TAXI_CLAIM = (
    rf"report over {DAY}\.\.{DAY}: points rule taxi-claim \(version 1, claim mode, in force from {DAY}\) "
    "already claims the reductions of taxi-trips/account_day"
)
MONTH = r"\d{4}-\d{2}"
CASES = [
    # points.py: rules, providers' scopes, accounts, consent
    Case(next_version_skipped, 409, "rule_version", r"bike-km has 2 published version\(s\); the next one is version 3"),
    Case(rule_version_taking_effect_yesterday, 422, "retroactive", rf"on {DAY}, before today .* retroactively"),
    Case(rule_version_before_the_one_it_follows, 422, "retroactive", rf"after version 1 \(effective from {DAY}\)"),
    Case(rule_version_changing_what_it_rewards, 422, "invalid_rule", r"cannot change what it rewards"),
    Case(scope_for_a_non_provider, 422, "invalid_provider", r"tianfu-app is not a data provider"),
    Case(scope_listing_a_rule_twice, 422, "invalid_rule", r"the rules of bike-co list a rule twice"),
    Case(scope_naming_an_unknown_rule, 404, "not_found", r"no points rule 'walk-steps' is published"),
    Case(account_opened_twice, 409, "conflict", rf"point account {A1} is already open"),
    Case(consent_in_another_operators_app, 403, "forbidden", rf"{A1} is held in tianfu-app's app, not other-app's"),
    Case(consent_given_twice, 409, "invalid_state", rf"{A1} already consents to bike-co attesting rule bike-km"),
    Case(consent_withdrawn_never_given, 409, "invalid_state", rf"{A3} has no consent for bike-co .* to withdraw"),
    Case(consent_to_a_provider_out_of_scope, 409, "out_of_scope", r"bike-co may not attest rule metro-km; consent"),
    Case(consent_for_an_unknown_account, 404, "not_found", rf"no point account {NOBODY}"),
    # awards.py: attestations, policy, expiry, clawback
    Case(batch_attested_twice, 409, "duplicate_key", r"batch b-cap is already attested; give each batch its own id"),
    Case(
        subject_rewarded_by_another_provider, 409, "subject_rewarded", rf"for {DAY} was already rewarded by batch b-cap"
    ),
    Case(rule_out_of_the_providers_scope, 409, "out_of_scope", r"bike-co may not attest rule metro-km; the authority"),
    Case(record_without_consent, 409, "no_consent", rf"record 1 of batch b-a3: {A3} has not consented to bike-co"),
    Case(day_past_the_late_window, 409, "late_attestation", rf"for 30 day\(s\) after it; {DAY} is 40 days ago"),
    Case(day_not_ended, 409, "period_not_ended", rf"{DAY} has not ended yet \(today is {DAY} UTC\)"),
    Case(day_before_the_rule, 422, "not_in_force", rf"rule bike-km is not in force on {DAY}"),
    Case(
        version_not_in_force_that_day,
        409,
        "rule_version",
        rf"of rule bike-km is in force on {DAY}, not version 1",
    ),
    Case(count_not_uploaded, 422, "root_mismatch", r"batch b-count has 2 records uploaded; the attestation says 1"),
    Case(total_not_uploaded, 422, "root_mismatch", r"batch b-total total 10; the attestation says 11"),
    Case(root_not_uploaded, 422, "root_mismatch", r"uploaded for batch b-root do not have the root it attests"),
    Case(attestation_without_upload, 409, "records_missing", r"no records are uploaded for batch b-none; upload them"),
    Case(account_twice_in_a_batch, 422, "invalid_batch", rf"record 1 of batch b-twice: {A1} has two records"),
    Case(subject_not_the_account_and_day, 422, "invalid_batch", r"subject of an account_day record is its account and"),
    Case(record_for_an_unopened_account, 404, "not_found", rf"record 1 of batch b-nobody: no point account {NOBODY}"),
    Case(
        lifetime_shortened_once_points_exist, 409, "shorter_lifetime", r"redeemable for 12 months; .* never shortened"
    ),
    Case(month_not_yet_expirable, 409, "not_expirable", rf"{MONTH} stay redeemable for 12 months .* from {DAY}"),
    Case(clawback_of_an_unknown_batch, 404, "not_found", r"no attested batch b-none"),
    Case(clawback_twice, 409, "invalid_state", r"batch b-fraud has nothing left to claw back"),
    Case(clawback_from_an_account_not_in_the_batch, 404, "not_found", rf"batch b-cap has no record for {A3}"),
    # scenes.py: scenes, offers, redemption orders
    Case(order_more_than_the_balance, 409, "insufficient_points", rf"{A3} holds 0 points; 100 are needed"),
    Case(order_more_than_the_stock, 409, "out_of_stock", r"offer latte has 2 item\(s\) left; 3 were ordered"),
    Case(order_past_the_per_account_limit, 409, "limit_reached", rf"2 item\(s\) per account; {A1} has ordered 2"),
    Case(order_of_a_withdrawn_offer, 409, "offer_closed", r"offer old-mug is withdrawn; it takes no orders"),
    Case(order_before_the_offer_starts, 409, "offer_closed", rf"new-year-box runs {DAY}\.\.{DAY}; today .* outside"),
    Case(order_at_a_suspended_scene, 409, "scene_not_approved", r"tea-garden is suspended; an order needs an approved"),
    Case(order_of_an_unknown_offer, 404, "not_found", r"no offer no-such-offer"),
    Case(order_for_another_operators_account, 403, "forbidden", rf"{B1} is held in other-app's app; only other-app"),
    Case(order_id_reused, 409, "conflict", rf"redemption order {ORDER_FULFILLED} already exists"),
    Case(fulfil_a_fulfilled_order, 409, "invalid_state", rf"{ORDER_FULFILLED} is already fulfilled; only a pending"),
    Case(fulfil_a_cancelled_order, 409, "invalid_state", rf"{ORDER_CANCELLED} is already cancelled; only a pending"),
    Case(cancel_a_cancelled_order, 409, "invalid_state", rf"{ORDER_CANCELLED} is already cancelled; only a pending"),
    Case(cancel_a_fulfilled_order, 409, "invalid_state", rf"{ORDER_FULFILLED} is already fulfilled; only a pending"),
    Case(fulfil_another_merchants_order, 403, "forbidden", r"only green-cafe may fulfil it, not tea-house"),
    Case(offer_at_an_unapproved_scene, 409, "scene_not_approved", r"tea-annex is applied; an offer needs an approved"),
    Case(offer_at_another_merchants_scene, 403, "forbidden", r"scene green-leaf belongs to green-cafe, not tea-house"),
    Case(offer_withdrawn_twice, 409, "invalid_state", r"offer old-mug is already withdrawn"),
    Case(scene_applied_for_twice, 409, "conflict", r"scene green-leaf already exists"),
    Case(scene_evaluated_by_its_merchant, 403, "conflict_of_interest", r"self-eval runs scene self-shop and may not"),
    Case(scene_decided_before_its_evaluation, 409, "invalid_state", r"tea-annex is applied; only an evaluated scene"),
    # projects.py: one reduction, one claimant
    Case(report_over_days_a_claim_mode_rule_holds, 409, "claimed_elsewhere", CLAIMED_BY_TAXI_CLAIM),
    Case(
        scope_over_a_reported_period_a_rule_claims, 409, "claimed_elsewhere", r"report MR\d+ of P\d+: points rule taxi"
    ),
    # no citizen-to-citizen transfer
    Case(points_transfer_kind, 422, "invalid-transaction", r"tag 'points\.transfer' .* does not match"),
    Case(units_to_a_point_account, 422, "invalid-transaction", r"payload\.units\.transfer\.to: String should match"),
]


@pytest.mark.parametrize("case", CASES, ids=[case.request.__name__ for case in CASES])
def test_a_refusal_is_a_problem_and_changes_nothing(registry: Registry, case: Case) -> None:
    content = case.request(registry)  # after any upload the case needs
    before = database_snapshot(registry.ledger.engine)
    response = registry.post(content)
    assert response.status_code == case.status, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["type"] == PROBLEM_BASE + case.rule, problem
    assert problem["status"] == case.status
    assert problem["title"]
    assert re.search(case.detail, problem["detail"]), problem["detail"]
    after = database_snapshot(registry.ledger.engine)
    assert after == before
    assert after["point_uploads"]  # the private tables are compared too
    assert after["point_records"]


def test_the_cases_cover_every_points_rule_code() -> None:
    from ledger.state import SPECS

    kinds = {
        "points.rule_publish", "points.provider_scope", "points.account_open", "points.consent", "points.attest",
        "points.policy", "points.expire", "points.clawback", "scene.apply", "scene.evaluate", "scene.decide",
        "scene.suspend", "scene.reinstate", "scene.revoke", "scene.renew", "offer.publish", "offer.withdraw",
        "points.redeem", "redemption.fulfil", "redemption.cancel",
    }  # fmt: skip
    assert {kind for kind in SPECS if kind.split(".")[0] in ("points", "scene", "offer", "redemption")} == kinds
    declared = set().union(*(SPECS[kind].codes for kind in kinds)) | {"claimed_elsewhere"}
    assert declared - {case.rule for case in CASES} == set()
    # No kind moves points between accounts; the only transfer is of units, between participants.
    assert [kind for kind in SPECS if "transfer" in kind] == ["units.transfer"]


def test_a_capped_attestation_awards_up_to_the_cap(registry: Registry) -> None:
    # Caps are not refusals: what a record earns above them is recorded as capped, not awarded.
    day = Days.now().today - timedelta(days=2)
    before = registry.read("tianfu-app", f"/v1/points/accounts/{A1}")["totals"]["awarded"]
    content = registry.attest("bike-co", "b-over", [km(A1, 30, day), km(A2, 5, day)], day)
    response = registry.post(content)
    assert response.status_code == 201, response.text
    outcome = response.json()["outcome"]
    awarded, capped = DAILY_CAP + 5 * KM_POINTS, 30 * KM_POINTS - DAILY_CAP  # A1's 30 km earned 3,600
    assert (outcome["points_awarded"], outcome["points_capped"]) == (awarded, capped)
    batch = registry.client.get("/v1/points/batches/b-over").json()
    assert (batch["points_awarded"], batch["points_capped"]) == (awarded, capped)
    assert batch["reduction_g"] == 35 * KM_POINTS  # the caps limit points, not what was avoided
    assert registry.read("tianfu-app", f"/v1/points/accounts/{A1}")["totals"]["awarded"] == before + DAILY_CAP
    # The batch the registry was built with: A1's 25 km that day earned 3,000 points, 2,400 awarded.
    built = registry.client.get("/v1/points/batches/b-cap").json()
    assert (built["points_awarded"], built["points_capped"]) == (DAILY_CAP + 10 * KM_POINTS, 25 * KM_POINTS - DAILY_CAP)
