"""The permission matrix: every kind of write, signed by every role and by keys of no participant.

For each of the ledger's transaction kinds (`KIND_ROLES`: a new kind is covered as soon as it has a
payload below), one valid request is sent over HTTP by a participant holding each single role and by
two signers whose key belongs to no participant (one names an unregistered actor, one claims to be the
authority). A signer whose role may not write that kind gets a 403 problem naming the rule, and
neither the log nor any table changes; a signer whose role may write it is not refused for its role
(here the request even succeeds).

The registry is built once per process and engine (a database template) and copied for each test.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel
from sqlalchemy import Engine, select

from ledger.checkpoint import CosignatureSigner
from ledger.keys import PrivateKey
from ledger.ledger import Ledger, found_registry
from ledger.state import KIND_ROLES, State
from ledger.storage import schema
from ledger.storage.engine import make_engine, read_transaction
from ledger.storage.tables import metadata
from ledger.transactions import (
    Cancel,
    CancellationReason,
    ClaimIssue,
    ClaimMode,
    ClaimScope,
    EventFootprint,
    EventKind,
    EventRegister,
    FootprintSource,
    FootprintStage,
    Freeze,
    FreezeTarget,
    Issue,
    KeyAdd,
    KeyRevoke,
    KeyRotate,
    MethodologyPublish,
    MethodologyWithdraw,
    OfferPublish,
    OfferWithdraw,
    Opinion,
    ParticipantRegister,
    ParticipantReinstate,
    ParticipantSetRoles,
    ParticipantSuspend,
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
    ProjectClose,
    ProjectDecide,
    ProjectDecision,
    ProjectDetails,
    ProjectReinstate,
    ProjectResubmit,
    ProjectScope,
    ProjectSubmit,
    ProjectSuspend,
    ProjectValidate,
    ProviderScope,
    RedemptionCancel,
    RedemptionFulfil,
    RegistryGenesis,
    ReportReject,
    ReportSubmit,
    ReportVerify,
    Retire,
    RetirementPurpose,
    Role,
    SceneApply,
    SceneCategory,
    SceneDecide,
    SceneEvaluate,
    SceneReinstate,
    SceneRenew,
    SceneRevoke,
    SceneSuspend,
    Selection,
    SignedTransaction,
    TransactionSigner,
    Transfer,
    Unfreeze,
    WitnessRegister,
    WitnessRemove,
)
from registry.app import create_app
from registry.settings import Settings
from tests.conftest import AUTHORITY, AUTHORITY_NAME, Databases, Story, log_signer
from tests.ledger.scenario import ORIGIN, SHA, seeded_key

PROBLEM = "application/problem+json"
PROBLEM_BASE = "/problems/"
URL = "/v1/transactions"

# The participant who holds exactly one role, for every role there is.
ROLE_HOLDERS: dict[Role, str] = {
    Role.AUTHORITY: "authority",
    Role.VERIFIER: "verifier",
    Role.PROJECT_OWNER: "owner",
    Role.EVENT_ORGANISER: "organiser",
    Role.ACCOUNT_HOLDER: "buyer",
    Role.AUDITOR: "auditor",
    Role.DATA_PROVIDER: "bike-provider",
    Role.PLATFORM_OPERATOR: "tianfu-app",
    Role.MERCHANT: "tea-house",
    Role.SCENE_EVALUATOR: "scene-evaluator",
}
ACCOUNT = "PA00000000000000a1"  # a point account the platform operator opened
WITNESS = CosignatureSigner("witness.test/w1", seeded_key("witness").seed)
STRANGER = seeded_key("mallory")  # a key no participant holds

ONE_RECORD_KINDS = frozenset({"report.reject"})
POINTS_PATH_KINDS = frozenset(k for k in KIND_ROLES if k.split(".")[0] in {"scene", "offer", "redemption"}) | {
    "points.attest",
    "points.policy",
    "points.expire",
    "points.clawback",
    "points.redeem",
}
"""Kinds of the points path whose payloads here name records this registry does not hold: an allowed signer
passes authorisation and is then refused by a rule (4xx, never 403); their acceptance is tested in
tests/ledger/state/test_awards.py and test_scenes.py, and over HTTP in tests/cli/test_points.py."""
"""Kinds that act on one record, so only the first allowed signer can do it; the next ones are refused by
the record's state (409), never for their role."""

DETAILS = ProjectDetails(
    methodology_code="CDCER-PV",
    methodology_version="1.0",
    title="Rooftop PV, Xindu",
    district="Xindu",
    description="1 MW distributed PV",
    crediting_start=date(2022, 1, 1),
    crediting_end=date(2031, 12, 31),
    estimated_annual_reductions=800,
)


# --- who signs ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Signer:
    """Someone who signs a transaction: a participant holding one role, or a key of no participant."""

    label: str
    actor: str
    key: PrivateKey
    role: Role | None
    refusal: str
    """The rule a refused attempt names (the end of the problem's ``type``)."""

    def may_write(self, kind: str) -> bool:
        return self.role is not None and self.role in KIND_ROLES[kind]

    def sign(self, payload: BaseModel, *, at: datetime) -> SignedTransaction:
        return TransactionSigner(ORIGIN, self.actor, self.key).sign(payload, at=at)

    def named_in(self, kind: str) -> tuple[str, ...]:
        """What a refusal's detail must name so that the signer sees why."""
        if self.refusal == "forbidden":
            return (kind, self.actor)
        if self.refusal == "unknown_key":
            return (self.key.key_id, self.actor)
        return (self.actor,)


SIGNERS = (
    *(Signer(role.value, actor, seeded_key(actor), role, "forbidden") for role, actor in ROLE_HOLDERS.items()),
    Signer("no-participant", "mallory", STRANGER, None, "unknown_actor"),
    Signer("stray-key-as-authority", AUTHORITY, STRANGER, None, "unknown_key"),
)


class Clock:
    """Client times: fresh for the registry, after its last entry, one second apart."""

    def __init__(self, state: State) -> None:
        assert state.last_time is not None
        self.now = max(datetime.now(UTC), state.last_time)

    def tick(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


# --- the registry: one of everything every kind can act on ----------------------------------------------


def build_registry(engine: Engine) -> None:
    """A founded registry on `engine`, with `populate`'s story in it."""
    populate(founded_story(engine))


def founded_story(engine: Engine) -> Story:
    """A story over a new registry founded on an empty database (migrated here)."""
    schema.upgrade(engine)
    led = Ledger(engine, log_signer())
    found_registry(led, authority_id=AUTHORITY, authority_name=AUTHORITY_NAME, authority_key=seeded_key(AUTHORITY))
    return Story(led)  # registers verifier, owner, organiser and buyer, and publishes CDCER-PV 1.0


def populate(story: Story) -> None:
    """Participants of every role, and a record in the state each kind of transaction needs.

    Projects: P0001 registered with an issued batch, P0002 submitted, P0003 validated, P0004 with changes
    requested, P0005 suspended. Reports of P0001: issued (2023), submitted (2024), verified (2022). Units
    held by the owner, the organiser and the buyer. ``spare``, an account to act on; ``dormant``, suspended
    and frozen; a witness; an event with its final footprint and units retired for it, but no claim yet.
    """
    world = story.world
    for role in (Role.AUDITOR, Role.DATA_PROVIDER, Role.PLATFORM_OPERATOR, Role.MERCHANT, Role.SCENE_EVALUATOR):
        world.register(ROLE_HOLDERS[role], [role])
    world.submit("authority", points_rule("bike-km", world.clock.date()))
    world.submit("authority", ProviderScope(provider="bike-provider", rules=("bike-km",)))
    world.submit("tianfu-app", PointAccountOpen(account_id=ACCOUNT, account_kind=PointAccountKind.CITIZEN))
    world.register("spare", [Role.ACCOUNT_HOLDER])
    world.register("dormant", [Role.ACCOUNT_HOLDER])
    world.submit("authority", ParticipantSuspend(participant_id="dormant", reason="no activity for two years"))
    world.freeze(FreezeTarget.ACCOUNT, "dormant")
    world.submit("authority", WitnessRegister(vkey=WITNESS.verifier_key()))
    registered = world.registered_project()
    world.issued_batch(registered, 2023, 1200, 1150)
    world.transfer("owner", "organiser", 300)
    world.transfer("owner", "buyer", 300)
    world.submit(
        "owner",
        ReportSubmit(
            project_id=registered,
            period_start=date(2024, 1, 1),
            period_end=date(2024, 12, 31),
            claimed=500,
            verifier="verifier",
        ),
    )
    verified = world.submit(
        "owner",
        ReportSubmit(
            project_id=registered,
            period_start=date(2022, 1, 1),
            period_end=date(2022, 12, 31),
            claimed=400,
            verifier="verifier",
        ),
    ).details["report_id"]
    world.submit("verifier", ReportVerify(report_id=verified, verified=380, opinion_sha256=SHA, statement="ok"))
    world.submit("owner", ProjectSubmit(details=DETAILS))
    validated = world.submit("owner", ProjectSubmit(details=DETAILS)).details["project_id"]
    world.submit(
        "verifier", ProjectValidate(project_id=validated, opinion=Opinion.POSITIVE, opinion_sha256=SHA, statement="ok")
    )
    changes = world.submit("owner", ProjectSubmit(details=DETAILS)).details["project_id"]
    world.submit(
        "authority",
        ProjectDecide(project_id=changes, decision=ProjectDecision.REQUEST_CHANGES, reason="baseline unclear"),
    )
    suspended = world.registered_project()
    world.submit("authority", ProjectSuspend(project_id=suspended, reason="site inspection"))
    story.sync(together=True)
    event = world.submit("organiser", event_payload()).details["event_id"]
    story.sync()
    world.advance(timedelta(days=3))  # the event is over: its final footprint can be declared
    world.submit(
        "organiser",
        EventFootprint(event_id=event, stage=FootprintStage.FINAL, sources={FootprintSource.VENUE_ENERGY: 4500}),
    )
    world.retire("organiser", Selection(quantity=5), purpose=RetirementPurpose.EVENT, event_id=event)
    story.sync(together=True)


def points_rule(rule_id: str, effective_from: date) -> PointsRulePublish:
    return PointsRulePublish(
        rule_id=rule_id,
        version=1,
        title="Shared-bike kilometres",
        activity_unit="km",
        emission_factor_g=120,
        factor_source="Chengdu transport survey 2024",
        points_per_gram=1,
        daily_cap=2_000,
        monthly_cap=30_000,
        annual_cap=200_000,
        late_window_days=7,
        claim_mode=ClaimMode.REWARD_ONLY,
        subject=PointsSubject.ACCOUNT_DAY,
        displaced_source="car-trips",
        effective_from=effective_from,
    )


def event_payload() -> EventRegister:
    today = datetime.now(UTC).date()
    return EventRegister(
        name="Chengdu Low-Carbon Week",
        event_kind=EventKind.CONFERENCE,
        venue="Tianfu International Conference Centre",
        start_date=today,
        end_date=today + timedelta(days=1),
        expected_attendees=1200,
    )


def project_in(state: State, wanted: str) -> str:
    return next(p.id for p in state.projects.values() if p.state == wanted)


def report_in(state: State, wanted: str) -> str:
    return next(r.id for r in state.reports.values() if r.state == wanted)


def unclaimed_event(state: State) -> str:
    return next(e.id for e in state.events.values() if e.claim_id is None)


def event_entry(state: State, event_id: str) -> int:
    return state.events[event_id].registered_at


REASON = "registry decision of the bureau"

# One valid request per kind, built on the registry's state (its ids are the ledger's to assign).
PAYLOADS: dict[str, Callable[[State], BaseModel]] = {
    "registry.genesis": lambda _: RegistryGenesis(
        registry_vkey=log_signer().verifier_key(),
        authority_name=AUTHORITY_NAME,
        authority_public_key=seeded_key(AUTHORITY).public_key.b64(),
    ),
    "participant.register": lambda _: ParticipantRegister(
        participant_id="newcomer",
        name="Newcomer Ltd",
        roles=(Role.ACCOUNT_HOLDER,),
        public_keys=(seeded_key("newcomer").public_key.b64(),),
    ),
    "participant.set_roles": lambda _: ParticipantSetRoles(
        participant_id="spare", roles=(Role.ACCOUNT_HOLDER, Role.AUDITOR)
    ),
    "participant.suspend": lambda _: ParticipantSuspend(participant_id="spare", reason=REASON),
    "participant.reinstate": lambda _: ParticipantReinstate(participant_id="dormant", reason=REASON),
    "key.add": lambda _: KeyAdd(participant_id="spare", public_key=seeded_key("spare-2").public_key.b64()),
    "key.revoke": lambda _: KeyRevoke(participant_id="spare", key_id=seeded_key("spare").key_id, reason=REASON),
    "key.rotate": lambda _: KeyRotate(
        participant_id="spare",
        old_key_id=seeded_key("spare").key_id,
        new_public_key=seeded_key("spare-2").public_key.b64(),
        reason=REASON,
    ),
    "witness.register": lambda _: WitnessRegister(
        vkey=CosignatureSigner("witness.test/w2", seeded_key("witness-2").seed).verifier_key()
    ),
    "witness.remove": lambda _: WitnessRemove(name=WITNESS.name, reason=REASON),
    "methodology.publish": lambda _: MethodologyPublish(
        code="CDCER-WIND", version="1.0", title="Wind power", sector="energy", document_sha256=SHA
    ),
    "methodology.withdraw": lambda _: MethodologyWithdraw(code="CDCER-PV", version="1.0", reason=REASON),
    "project.submit": lambda _: ProjectSubmit(details=DETAILS),
    "project.resubmit": lambda s: ProjectResubmit(project_id=project_in(s, "changes_requested"), details=DETAILS),
    "project.validate": lambda s: ProjectValidate(
        project_id=project_in(s, "submitted"), opinion=Opinion.POSITIVE, opinion_sha256=SHA, statement="ok"
    ),
    "project.decide": lambda s: ProjectDecide(
        project_id=project_in(s, "validated"), decision=ProjectDecision.REGISTER, reason=REASON
    ),
    "project.suspend": lambda s: ProjectSuspend(project_id=project_in(s, "registered"), reason=REASON),
    "project.reinstate": lambda s: ProjectReinstate(project_id=project_in(s, "suspended"), reason=REASON),
    "project.close": lambda s: ProjectClose(project_id=project_in(s, "registered"), reason=REASON),
    "report.submit": lambda s: ReportSubmit(
        project_id=project_in(s, "registered"),
        period_start=date(2025, 1, 1),
        period_end=date(2025, 2, 28),
        claimed=600,
        verifier="verifier",
    ),
    "report.verify": lambda s: ReportVerify(
        report_id=report_in(s, "submitted"), verified=450, opinion_sha256=SHA, statement="ok"
    ),
    "report.reject": lambda s: ReportReject(report_id=report_in(s, "submitted"), reason=REASON),
    "issuance.issue": lambda s: Issue(report_id=report_in(s, "verified")),
    "units.transfer": lambda _: Transfer(to="spare", selection=Selection(quantity=1)),
    "units.retire": lambda _: Retire(
        selection=Selection(quantity=1), beneficiary="Chengdu", purpose=RetirementPurpose.VOLUNTARY, reason="gift"
    ),
    "units.cancel": lambda _: Cancel(
        holder="buyer", selection=Selection(quantity=1), reason_code=CancellationReason.CORRECTION, reason=REASON
    ),
    "freeze.set": lambda _: Freeze(target=FreezeTarget.ACCOUNT, target_id="spare", reason=REASON),
    "freeze.lift": lambda _: Unfreeze(target=FreezeTarget.ACCOUNT, target_id="dormant", reason=REASON),
    "event.register": lambda _: event_payload(),
    "event.footprint": lambda s: EventFootprint(
        event_id=unclaimed_event(s), stage=FootprintStage.PLANNED, sources={FootprintSource.CATERING: 900}
    ),
    "points.rule_publish": lambda s: points_rule("walk-steps", Clock(s).now.date() + timedelta(days=1)),
    "project.scope": lambda s: ProjectScope(
        project_id=project_in(s, "registered"),
        scopes=(ClaimScope(displaced_source="car-trips", subject=PointsSubject.ACCOUNT_DAY),),
    ),
    "points.provider_scope": lambda _: ProviderScope(provider="bike-provider", rules=("bike-km",)),
    "points.account_open": lambda _: PointAccountOpen(
        account_id="PA00000000000000b2", account_kind=PointAccountKind.SMALL_BUSINESS
    ),
    "points.consent": lambda _: PointsConsent(
        account_id=ACCOUNT, provider="bike-provider", rule_id="bike-km", granted=True
    ),
    "claim.issue": lambda s: ClaimIssue(event_id=unclaimed_event(s), event_entry=event_entry(s, unclaimed_event(s))),
    "points.attest": lambda _: PointsAttest(
        batch_id="bike-co-2026-03-02",
        rule_id="bike-km",
        version=1,
        day=date(2026, 3, 2),
        count=2,
        total_quantity=17,
        root="ab" * 32,
    ),
    "points.policy": lambda _: PointsPolicy(lifetime_months=12),
    "points.expire": lambda _: PointsExpire(through_month="2025-01"),
    "points.clawback": lambda _: PointsClawback(
        batch_id="bike-co-2026-03-02", accounts=("PA0123456789abcdef",), reason="x"
    ),
    "scene.apply": lambda _: SceneApply(
        scene_id="taikoo-li",
        name="Taikoo Li",
        category=SceneCategory.MALL,
        district="Jinjiang",
        address="Zhongshamao St",
    ),
    "scene.evaluate": lambda _: SceneEvaluate(
        scene_id="taikoo-li", score=86, opinion=Opinion.POSITIVE, report_sha256="cd" * 32
    ),
    "scene.decide": lambda _: SceneDecide(
        scene_id="taikoo-li", approve=True, valid_until=date(2027, 12, 31), reason="ok"
    ),
    "scene.suspend": lambda _: SceneSuspend(scene_id="taikoo-li", reason="x"),
    "scene.reinstate": lambda _: SceneReinstate(scene_id="taikoo-li", reason="x"),
    "scene.revoke": lambda _: SceneRevoke(scene_id="taikoo-li", reason="x"),
    "scene.renew": lambda _: SceneRenew(scene_id="taikoo-li", valid_until=date(2028, 12, 31)),
    "offer.publish": lambda _: OfferPublish(
        offer_id="tea-voucher",
        scene_id="taikoo-li",
        title="A pot of tea",
        price_points=5_000,
        stock=100,
        per_account_limit=2,
        valid_from=date(2026, 4, 1),
        valid_until=date(2026, 6, 30),
    ),
    "offer.withdraw": lambda _: OfferWithdraw(offer_id="tea-voucher"),
    "points.redeem": lambda _: PointsRedeem(
        order_id="RO0123456789abcdef", offer_id="tea-voucher", account_id="PA0123456789abcdef", quantity=1
    ),
    "redemption.fulfil": lambda _: RedemptionFulfil(order_id="RO0123456789abcdef"),
    "redemption.cancel": lambda _: RedemptionCancel(order_id="RO0123456789abcdef", reason="x"),
}


# --- fixtures and helpers -------------------------------------------------------------------------------


@pytest.fixture
def registry(databases: Databases, tmp_path: Path) -> Iterator[Ledger]:
    """A private copy of `build_registry`'s ledger (built once per process and engine)."""
    url = databases.from_template("permission-matrix", build_registry, directory=tmp_path)
    engine = make_engine(url)
    try:
        yield Ledger(engine, log_signer())
    finally:
        engine.dispose()
        databases.drop(url)


@pytest.fixture
def client(registry: Ledger) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(origin=ORIGIN), ledger=registry)) as test_client:
        yield test_client


def database_snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the ledger's schema (log, tree, checkpoints, projections), in key order."""
    with read_transaction(engine) as conn:
        return {
            table.name: [tuple(row) for row in conn.execute(select(table).order_by(*table.primary_key.columns))]
            for table in metadata.sorted_tables
        }


def post(client: TestClient, tx: SignedTransaction) -> httpx.Response:
    response: httpx.Response = client.post(URL, json=tx.to_json())
    return response


def assert_refused(response: httpx.Response, status: int, rule: str, *, names: tuple[str, ...] = ()) -> None:
    """A problem document of `status` whose type ends with `rule` and whose detail names each of `names`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == status
    assert problem["type"] == PROBLEM_BASE + rule, problem
    assert problem["title"]
    for name in names:
        assert name in problem["detail"], problem


# --- the matrix -----------------------------------------------------------------------------------------


def test_the_matrix_covers_every_kind_and_role(registry: Ledger) -> None:
    assert set(PAYLOADS) == set(KIND_ROLES), "every kind of transaction needs a payload in PAYLOADS"
    assert set(ROLE_HOLDERS) == set(Role)
    state = registry.state()
    for role, actor in ROLE_HOLDERS.items():
        assert state.participants[actor].roles == (role.value,)
        assert state.participants[actor].status == "active"
    assert "mallory" not in state.participants
    assert STRANGER.key_id not in state.keys
    for kind, build in PAYLOADS.items():
        assert build(state).kind == kind  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", sorted(set(KIND_ROLES) - {"registry.genesis"}))
def test_only_the_roles_a_kind_needs_may_write_it(client: TestClient, registry: Ledger, kind: str) -> None:
    state = registry.state()
    payload = PAYLOADS[kind](state)
    clock = Clock(state)
    allowed_done = 0
    for signer in SIGNERS:
        tx = signer.sign(payload, at=clock.tick())
        if signer.may_write(kind):
            response = post(client, tx)
            assert response.status_code != 403, f"{signer.label}: {response.text}"
            if kind in POINTS_PATH_KINDS:
                assert response.status_code in (201, 404, 409, 422), f"{signer.label}: {response.text}"
            elif kind not in ONE_RECORD_KINDS or not allowed_done:
                assert response.status_code == 201, f"{signer.label}: {response.text}"
                assert response.json()["outcome"]["kind"] == kind
            allowed_done += 1
            continue
        before = database_snapshot(registry.engine)
        response = post(client, tx)
        assert_refused(response, 403, signer.refusal, names=signer.named_in(kind))
        assert database_snapshot(registry.engine) == before, f"{signer.label}'s refused {kind} changed the ledger"
    assert allowed_done == len(KIND_ROLES[kind])  # every allowed role has its participant among the signers


def test_a_second_genesis_is_refused_whoever_signs(client: TestClient, registry: Ledger) -> None:
    # Nobody may found the registry again: whoever lacks the authority role gets the 403 every kind gives,
    # and an authority is told that a genesis is only valid as entry 0.
    state = registry.state()
    payload = PAYLOADS["registry.genesis"](state)
    clock = Clock(state)
    before = database_snapshot(registry.engine)
    for signer in SIGNERS:
        response = post(client, signer.sign(payload, at=clock.tick()))
        if signer.may_write("registry.genesis"):
            assert_refused(response, 422, "genesis_not_first", names=("entry 0",))
        else:
            assert_refused(response, 403, signer.refusal, names=signer.named_in("registry.genesis"))
    assert database_snapshot(registry.engine) == before


def test_any_participant_may_revoke_its_own_key(client: TestClient, registry: Ledger) -> None:
    # Whatever its role (a stolen key must be stoppable at once), except the authority's last valid key.
    clock = Clock(registry.state())
    for role, actor in ROLE_HOLDERS.items():
        key = seeded_key(actor)
        payload = KeyRevoke(participant_id=actor, key_id=key.key_id, reason="key compromised")
        response = post(client, TransactionSigner(ORIGIN, actor, key).sign(payload, at=clock.tick()))
        if role is Role.AUTHORITY:
            assert_refused(response, 409, "last_authority", names=(key.key_id,))
        else:
            assert response.status_code == 201, f"{actor}: {response.text}"
            assert registry.state().keys[key.key_id].revoked_at == response.json()["index"]
