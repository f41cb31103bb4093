"""The state machine of SPEC section 3: every kind's lifecycle and rules, and every refusal.

Each refusal is checked twice: the `RuleViolation` names the rule (code and message), and the
refused transaction changed nothing (every projection table, the size and the indexes).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, timedelta

import pytest
from pydantic import BaseModel, ValidationError

from ledger.errors import RuleViolation
from ledger.note import NoteSigner
from ledger.serials import SerialRange
from ledger.state import (
    CLAIM_WINDOW_MONTHS,
    FRESHNESS,
    KIND_ROLES,
    SPECS,
    Block,
    State,
    add_months,
)
from ledger.state.spec import AUTHORISATION_CODES
from ledger.transactions import (
    KINDS,
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
from tests.ledger.scenario import ORIGIN, SHA, World, full_story, seeded_key
from tests.ledger.state.test_points import ACCOUNT, rule

# --- helpers -------------------------------------------------------------------------------------------


def refuse(world: World, who: str, payload: BaseModel, code: str, match: str) -> RuleViolation:
    """Submit a transaction that must be refused; check the rule (one its kind declares) and that nothing
    changed."""
    before = world.snapshot()
    with pytest.raises(RuleViolation, match=match) as info:
        world.submit(who, payload)
    assert info.value.code == code
    kind = payload.model_dump()["kind"]
    assert code in SPECS[kind].codes | set(AUTHORISATION_CODES), f"{kind} refused with undeclared code {code}"
    assert world.snapshot() == before
    return info.value


def refuse_tx(
    world: World, tx: SignedTransaction, code: str, match: str, *, accepted_at: datetime | None = None
) -> RuleViolation:
    """Accept an already signed transaction that must be refused; nothing may change."""
    before = world.snapshot()
    with pytest.raises(RuleViolation, match=match) as info:
        world.accept_at(tx, world.clock if accepted_at is None else accepted_at)
    assert info.value.code == code
    assert world.snapshot() == before
    return info.value


def details(
    title: str = "Rooftop PV, Pidu", start: date = date(2022, 1, 1), end: date = date(2031, 12, 31)
) -> ProjectDetails:
    return ProjectDetails(
        methodology_code="CDCER-PV",
        methodology_version="1.0",
        title=title,
        district="Pidu",
        description="2 MW distributed PV",
        crediting_start=start,
        crediting_end=end,
        estimated_annual_reductions=1500,
    )


def block(batch: str, first: int, last: int) -> str:
    return str(SerialRange(batch, first, last))


def quantity(n: int) -> Selection:
    return Selection(quantity=n)


def blocks(*texts: str) -> Selection:
    return Selection(blocks=texts)


def transfer(to: str, selection: Selection) -> Transfer:
    return Transfer(to=to, selection=selection)


def retire(selection: Selection, purpose: RetirementPurpose = RetirementPurpose.VOLUNTARY, **extra: object) -> Retire:
    return Retire.model_validate(
        {"selection": selection, "beneficiary": "Chengdu", "purpose": purpose, "reason": "neutralisation", **extra}
    )


def cancel(holder: str, selection: Selection) -> Cancel:
    return Cancel(
        holder=holder, selection=selection, reason_code=CancellationReason.INVALIDATION, reason="double count"
    )


def held_map(state: State) -> dict[str, list[tuple[str, int, int]]]:
    """Every holder's held blocks as (batch, first, last), oldest first."""
    return {h: [(b.batch_id, b.first, b.last) for b in state.held_blocks(h)] for h in sorted(state.held)}


def assert_coalesced(state: State) -> None:
    """No two adjacent held blocks of one batch share a holder."""
    for bid, row in state.blocks.items():
        for left, right in zip(row, row[1:], strict=False):
            assert not (
                left.state == right.state == "held" and left.holder == right.holder and left.last + 1 == right.first
            ), f"{bid}: {left.first}-{left.last} and {right.first}-{right.last} of {left.holder} not merged"


def register_event(world: World, *, days: int = 1, organiser: str = "organiser") -> tuple[str, date]:
    """An event that starts today and ends ``days`` later; returns its id and end date."""
    end = world.clock.date() + timedelta(days=days)
    out = world.submit(
        organiser,
        EventRegister(
            name="Tianfu Green Forum",
            event_kind=EventKind.FORUM,
            venue="Chengdu Century City",
            start_date=world.clock.date(),
            end_date=end,
            expected_attendees=800,
        ),
    )
    return str(out.details["event_id"]), end


def final_footprint(event_id: str, kg: int) -> EventFootprint:
    return EventFootprint(event_id=event_id, stage=FootprintStage.FINAL, sources={FootprintSource.VENUE_ENERGY: kg})


# --- fixtures ------------------------------------------------------------------------------------------


@pytest.fixture
def world() -> World:
    """A founded registry: authority, verifier, owner, organiser, buyer, one methodology."""
    w = World()
    w.found()
    return w


@pytest.fixture
def market(world: World) -> World:
    """A founded registry with project P0001 and batch P0001-2023-001 of 1,000 units held by the owner."""
    world.registered_project()
    assert world.issued_batch("P0001", 2023, 1000, 1000) == "P0001-2023-001"
    return world


B23 = "P0001-2023-001"


# --- genesis, origin, actors and keys (invariant 5) -----------------------------------------------------


def test_entry_zero_must_be_genesis() -> None:
    w = World()
    payload = ParticipantRegister(
        participant_id="buyer",
        name="Buyer",
        roles=(Role.ACCOUNT_HOLDER,),
        public_keys=(seeded_key("b").public_key.b64(),),
    )
    refuse(w, "authority", payload, "genesis_missing", "entry 0 must be registry.genesis")
    assert w.state.size == 0


def test_genesis_founds_the_registry(world: World) -> None:
    st = world.state
    assert st.origin == ORIGIN
    assert st.registry_vkey == world.registry_key.verifier_key()
    assert st.participants["authority"].roles == ("authority",)
    assert st.keys[seeded_key("authority").key_id].participant_id == "authority"


def test_genesis_is_only_valid_first(world: World) -> None:
    payload = RegistryGenesis(
        registry_vkey=world.registry_key.verifier_key(),
        authority_name="Usurper",
        authority_public_key=seeded_key("authority").public_key.b64(),
    )
    refuse(world, "authority", payload, "genesis_not_first", "only valid as entry 0")


def test_genesis_must_carry_the_key_that_signs_it() -> None:
    w = World()
    payload = RegistryGenesis(
        registry_vkey=w.registry_key.verifier_key(),
        authority_name="Bureau",
        authority_public_key=seeded_key("someone else").public_key.b64(),
    )
    refuse(w, "authority", payload, "unknown_key", "genesis names key .* but carries")


def test_out_of_order_index_is_refused(world: World) -> None:
    tx = world.sign_as("buyer", KeyAdd(participant_id="buyer", public_key=seeded_key("x").public_key.b64()))
    st = world.state
    with pytest.raises(RuleViolation, match=f"entry {st.size + 1} applied when {st.size} was expected"):
        st.authorise(tx.body, index=st.size + 1, accepted_at=world.clock)
    with pytest.raises(RuleViolation, match="was expected"):
        st.apply(tx.body, index=st.size - 1, accepted_at=world.clock)


def test_wrong_origin_is_refused(market: World) -> None:
    stranger = TransactionSigner("other.registry/cdcer", "owner", seeded_key("owner"))
    tx = market.sign_as("owner", transfer("buyer", quantity(1)), signer=stranger)
    refuse_tx(market, tx, "wrong_origin", "for registry 'other.registry/cdcer', this is 'registry.test/cdcer'")


def test_unknown_actor_is_refused(market: World) -> None:
    refuse(market, "ghost", transfer("buyer", quantity(1)), "unknown_actor", "no participant 'ghost'")


def test_unknown_key_is_refused(market: World) -> None:
    unregistered = TransactionSigner(ORIGIN, "owner", seeded_key("not registered"))
    tx = market.sign_as("owner", transfer("buyer", quantity(1)), signer=unregistered)
    refuse_tx(market, tx, "unknown_key", "is not registered to owner")
    # A registered key, but another participant's.
    borrowed = TransactionSigner(ORIGIN, "owner", seeded_key("buyer"))
    tx = market.sign_as("owner", transfer("buyer", quantity(1)), signer=borrowed)
    refuse_tx(market, tx, "unknown_key", f"key {seeded_key('buyer').key_id} is not registered to owner")


def test_revoked_key_signs_nothing_after_its_revocation(market: World) -> None:
    kid = seeded_key("owner").key_id
    market.transfer("owner", "buyer", 1)  # fine before
    signed_before = market.sign_as("owner", transfer("buyer", quantity(1)))
    out = market.submit("authority", KeyRevoke(participant_id="owner", key_id=kid, reason="laptop stolen"))
    revoked_at = out.details["revoked_at"]
    assert market.state.keys[kid].revoked_at == revoked_at == market.state.size - 1
    # Neither a new transaction nor one signed before the revocation but arriving after it.
    refuse(market, "owner", transfer("buyer", quantity(1)), "revoked_key", f"was revoked at entry {revoked_at}")
    refuse_tx(market, signed_before, "revoked_key", f"key {kid} of owner was revoked")
    refuse(
        market,
        "authority",
        KeyRevoke(participant_id="owner", key_id=kid, reason="again"),
        "invalid_state",
        "already revoked",
    )


def test_rotated_key_is_replaced(market: World) -> None:
    old, new = seeded_key("owner"), seeded_key("owner, 2025")
    market.submit(
        "authority",
        KeyRotate(participant_id="owner", old_key_id=old.key_id, new_public_key=new.public_key.b64(), reason="yearly"),
    )
    refuse(market, "owner", transfer("buyer", quantity(1)), "revoked_key", "was revoked")
    market.signers["owner"] = TransactionSigner(ORIGIN, "owner", new)
    assert market.transfer("owner", "buyer", 1).details["quantity"] == 1


def test_self_revocation_is_allowed_without_the_role(market: World) -> None:
    kid = seeded_key("buyer").key_id
    # An account holder may not revoke anybody else's key...
    refuse(
        market,
        "buyer",
        KeyRevoke(participant_id="owner", key_id=seeded_key("owner").key_id, reason="mischief"),
        "forbidden",
        "key.revoke needs the role authority",
    )
    # ...but may revoke its own (stolen) one, after which that key signs nothing.
    market.submit("buyer", KeyRevoke(participant_id="buyer", key_id=kid, reason="phone lost"))
    assert market.state.keys[kid].revoked_at == market.state.size - 1
    refuse(market, "buyer", KeyRevoke(participant_id="buyer", key_id=kid, reason="again"), "revoked_key", "was revoked")
    # The authority adds a new key; it signs.
    fresh = seeded_key("buyer, new phone")
    market.submit("authority", KeyAdd(participant_id="buyer", public_key=fresh.public_key.b64()))
    market.signers["buyer"] = TransactionSigner(ORIGIN, "buyer", fresh)
    market.transfer("owner", "buyer", 5)
    assert market.transfer("buyer", "organiser", 5).details["quantity"] == 5


def test_authority_keeps_a_valid_key(world: World) -> None:
    kid = seeded_key("authority").key_id
    refuse(
        world,
        "authority",
        KeyRevoke(participant_id="authority", key_id=kid, reason="oops"),
        "last_authority",
        "last valid key",
    )
    spare = seeded_key("authority, spare")
    world.submit("authority", KeyAdd(participant_id="authority", public_key=spare.public_key.b64()))
    world.submit("authority", KeyRevoke(participant_id="authority", key_id=kid, reason="rotated by hand"))
    refuse(
        world,
        "authority",
        KeyAdd(participant_id="buyer", public_key=seeded_key("z").public_key.b64()),
        "revoked_key",
        "was revoked",
    )


def test_duplicate_key_is_refused(world: World) -> None:
    refuse(
        world,
        "authority",
        KeyAdd(participant_id="buyer", public_key=seeded_key("owner").public_key.b64()),
        "duplicate_key",
        "already registered",
    )


def test_suspended_participant_signs_nothing(market: World) -> None:
    market.submit("authority", ParticipantSuspend(participant_id="owner", reason="investigation"))
    refuse(market, "owner", transfer("buyer", quantity(1)), "actor_suspended", "participant owner is suspended")
    refuse(
        market,
        "authority",
        ParticipantSuspend(participant_id="owner", reason="again"),
        "invalid_state",
        "already suspended",
    )
    market.submit("authority", ParticipantReinstate(participant_id="owner", reason="cleared"))
    assert market.transfer("owner", "buyer", 1).details["quantity"] == 1


def test_suspended_account_cannot_receive(market: World) -> None:
    market.submit("authority", ParticipantSuspend(participant_id="buyer", reason="investigation"))
    refuse(market, "owner", transfer("buyer", quantity(1)), "invalid_recipient", "buyer cannot receive units")


def test_last_authority_cannot_be_suspended_or_demoted(world: World) -> None:
    refuse(
        world,
        "authority",
        ParticipantSuspend(participant_id="authority", reason="x"),
        "last_authority",
        "last active authority",
    )
    refuse(
        world,
        "authority",
        ParticipantSetRoles(participant_id="authority", roles=(Role.AUDITOR,)),
        "last_authority",
        "last active authority",
    )


def test_participant_ids_are_unique(world: World) -> None:
    payload = ParticipantRegister(
        participant_id="buyer",
        name="Buyer 2",
        roles=(Role.ACCOUNT_HOLDER,),
        public_keys=(seeded_key("b2").public_key.b64(),),
    )
    refuse(world, "authority", payload, "conflict", "participant buyer is already registered")


# --- role permissions: every kind against every role ---------------------------------------------------


def _role_actor(role: Role) -> str:
    return "as-" + role.value.replace("_", "-")


PAYLOADS: dict[str, Callable[[], BaseModel]] = {
    "participant.register": lambda: ParticipantRegister(
        participant_id="newcomer",
        name="Newcomer",
        roles=(Role.ACCOUNT_HOLDER,),
        public_keys=(seeded_key("newcomer").public_key.b64(),),
    ),
    "participant.set_roles": lambda: ParticipantSetRoles(participant_id="buyer", roles=(Role.ACCOUNT_HOLDER,)),
    "participant.suspend": lambda: ParticipantSuspend(participant_id="buyer", reason="x"),
    "participant.reinstate": lambda: ParticipantReinstate(participant_id="buyer", reason="x"),
    "key.add": lambda: KeyAdd(participant_id="buyer", public_key=seeded_key("spare").public_key.b64()),
    # Another participant's key: revoking one's own is open to every role (tested above).
    "key.revoke": lambda: KeyRevoke(participant_id="buyer", key_id=seeded_key("buyer").key_id, reason="x"),
    "key.rotate": lambda: KeyRotate(
        participant_id="buyer",
        old_key_id=seeded_key("buyer").key_id,
        new_public_key=seeded_key("spare").public_key.b64(),
        reason="x",
    ),
    "witness.register": lambda: WitnessRegister(vkey=NoteSigner("witness.test", seeded_key("w").seed).verifier_key()),
    "witness.remove": lambda: WitnessRemove(name="witness.test", reason="x"),
    "methodology.publish": lambda: MethodologyPublish(
        code="CDCER-WIND", version="1.0", title="Wind", sector="energy", document_sha256=SHA
    ),
    "methodology.withdraw": lambda: MethodologyWithdraw(code="CDCER-PV", version="1.0", reason="x"),
    "project.submit": lambda: ProjectSubmit(details=details()),
    "project.resubmit": lambda: ProjectResubmit(project_id="P0001", details=details()),
    "project.validate": lambda: ProjectValidate(
        project_id="P0001", opinion=Opinion.POSITIVE, opinion_sha256=SHA, statement="ok"
    ),
    "project.decide": lambda: ProjectDecide(project_id="P0001", decision=ProjectDecision.REJECT, reason="x"),
    "project.suspend": lambda: ProjectSuspend(project_id="P0001", reason="x"),
    "project.reinstate": lambda: ProjectReinstate(project_id="P0001", reason="x"),
    "project.close": lambda: ProjectClose(project_id="P0001", reason="x"),
    "report.submit": lambda: ReportSubmit(
        project_id="P0001",
        period_start=date(2024, 1, 1),
        period_end=date(2024, 12, 31),
        claimed=10,
        verifier="verifier",
    ),
    "report.verify": lambda: ReportVerify(report_id="MR0001", verified=1, opinion_sha256=SHA, statement="ok"),
    "report.reject": lambda: ReportReject(report_id="MR0001", reason="x"),
    "issuance.issue": lambda: Issue(report_id="MR0001"),
    "units.transfer": lambda: transfer("buyer", quantity(1)),
    "units.retire": lambda: retire(quantity(1)),
    "units.cancel": lambda: cancel("owner", quantity(1)),
    "freeze.set": lambda: Freeze(target=FreezeTarget.ACCOUNT, target_id="buyer", reason="x"),
    "freeze.lift": lambda: Unfreeze(target=FreezeTarget.ACCOUNT, target_id="buyer", reason="x"),
    "event.register": lambda: EventRegister(
        name="Expo",
        event_kind=EventKind.EXHIBITION,
        venue="Western China International Expo City",
        start_date=date(2025, 4, 1),
        end_date=date(2025, 4, 3),
        expected_attendees=5000,
    ),
    "event.footprint": lambda: final_footprint("E0001", 1000),
    "claim.issue": lambda: ClaimIssue(event_id="E0001", event_entry=0),
    "points.rule_publish": lambda: rule("bike-km", date(2025, 3, 1)),
    "points.provider_scope": lambda: ProviderScope(provider="as-data-provider", rules=()),
    "project.scope": lambda: ProjectScope(project_id="P0001", scopes=()),
    "points.account_open": lambda: PointAccountOpen(account_id=ACCOUNT, account_kind=PointAccountKind.CITIZEN),
    "points.consent": lambda: PointsConsent(account_id=ACCOUNT, provider="bike-co", rule_id="bike-km", granted=True),
    "points.attest": lambda: PointsAttest(
        batch_id="bike-co-2026-03-02",
        rule_id="bike-km",
        version=1,
        day=date(2026, 3, 2),
        count=2,
        total_quantity=17,
        root="ab" * 32,
    ),
    "points.policy": lambda: PointsPolicy(lifetime_months=12),
    "points.expire": lambda: PointsExpire(through_month="2025-01"),
    "points.clawback": lambda: PointsClawback(
        batch_id="bike-co-2026-03-02", accounts=("PA0123456789abcdef",), reason="x"
    ),
    "scene.apply": lambda: SceneApply(
        scene_id="taikoo-li",
        name="Taikoo Li",
        category=SceneCategory.MALL,
        district="Jinjiang",
        address="Zhongshamao St",
    ),
    "scene.evaluate": lambda: SceneEvaluate(
        scene_id="taikoo-li", score=86, opinion=Opinion.POSITIVE, report_sha256="cd" * 32
    ),
    "scene.decide": lambda: SceneDecide(
        scene_id="taikoo-li", approve=True, valid_until=date(2027, 12, 31), reason="ok"
    ),
    "scene.suspend": lambda: SceneSuspend(scene_id="taikoo-li", reason="x"),
    "scene.reinstate": lambda: SceneReinstate(scene_id="taikoo-li", reason="x"),
    "scene.revoke": lambda: SceneRevoke(scene_id="taikoo-li", reason="x"),
    "scene.renew": lambda: SceneRenew(scene_id="taikoo-li", valid_until=date(2028, 12, 31)),
    "offer.publish": lambda: OfferPublish(
        offer_id="tea-voucher",
        scene_id="taikoo-li",
        title="A pot of tea",
        price_points=5_000,
        stock=100,
        per_account_limit=2,
        valid_from=date(2026, 4, 1),
        valid_until=date(2026, 6, 30),
    ),
    "offer.withdraw": lambda: OfferWithdraw(offer_id="tea-voucher"),
    "points.redeem": lambda: PointsRedeem(
        order_id="RO0123456789abcdef", offer_id="tea-voucher", account_id="PA0123456789abcdef", quantity=1
    ),
    "redemption.fulfil": lambda: RedemptionFulfil(order_id="RO0123456789abcdef"),
    "redemption.cancel": lambda: RedemptionCancel(order_id="RO0123456789abcdef", reason="x"),
}


@pytest.fixture(scope="module")
def role_world() -> World:
    """A registry with one participant per role (``as-<role>``); authorise is all the tests call."""
    w = World()
    w.found()
    for role in Role:
        w.register(_role_actor(role), [role])
    return w


@pytest.fixture(params=list(Role), ids=lambda r: str(r.value))
def role(request: pytest.FixtureRequest) -> Role:
    value: Role = request.param
    return value


def test_permission_table_covers_every_kind() -> None:
    assert set(KIND_ROLES) == set(KINDS)
    assert set(PAYLOADS) | {"registry.genesis"} == set(KINDS)
    for kind, make in PAYLOADS.items():
        assert make().model_dump()["kind"] == kind


@pytest.mark.parametrize("kind", sorted(PAYLOADS))
def test_only_the_allowed_roles_pass_authorise(role_world: World, role: Role, kind: str) -> None:
    st = role_world.state
    tx = role_world.sign_as(_role_actor(role), PAYLOADS[kind]())
    if role in KIND_ROLES[kind]:
        key = st.authorise(tx.body, index=st.size, accepted_at=role_world.clock)
        tx.verify(key)
    else:
        before = role_world.snapshot()
        with pytest.raises(RuleViolation, match=f"{re.escape(kind)} needs the role") as info:
            st.authorise(tx.body, index=st.size, accepted_at=role_world.clock)
        assert info.value.code == "forbidden"
        assert role_world.snapshot() == before


def test_genesis_is_refused_to_every_role_after_entry_zero(role_world: World, role: Role) -> None:
    payload = RegistryGenesis(
        registry_vkey=role_world.registry_key.verifier_key(),
        authority_name="Usurper",
        authority_public_key=seeded_key(_role_actor(role)).public_key.b64(),
    )
    if role is Role.AUTHORITY:
        refuse(role_world, _role_actor(role), payload, "genesis_not_first", "only valid as entry 0")
    else:  # the role check comes first, as for every other kind
        refuse(role_world, _role_actor(role), payload, "forbidden", "registry.genesis needs the role authority")


# --- freshness, replay, time (invariant 4) -----------------------------------------------------------------


def test_replayed_transaction_is_refused(market: World) -> None:
    tx = market.sign_as("owner", transfer("buyer", quantity(1)))
    market.accept(tx)
    refuse_tx(market, tx, "replay", "was already used in the last 30 minutes")
    # The same nonce on a different body is a replay as well.
    other = market.sign_as("owner", transfer("organiser", quantity(2)), nonce=tx.body.nonce)
    refuse_tx(market, other, "replay", "already used")
    assert market.state.balance("buyer") == 1


def test_a_nonce_is_per_actor(market: World) -> None:
    market.transfer("owner", "buyer", 10)
    tx = market.sign_as("owner", transfer("buyer", quantity(1)))
    market.accept(tx)
    same_nonce = market.sign_as("buyer", transfer("organiser", quantity(1)), nonce=tx.body.nonce)
    market.accept(same_nonce)
    assert market.state.balance("organiser") == 1


def test_a_nonce_may_return_after_the_replay_window(market: World) -> None:
    tx = market.sign_as("owner", transfer("buyer", quantity(1)))
    market.accept(tx)
    # The window is kept in whole minutes, so a nonce returns 30 to 32 minutes later.
    market.advance(2 * FRESHNESS + timedelta(minutes=2))
    again = market.sign_as("owner", transfer("buyer", quantity(1)), nonce=tx.body.nonce)
    market.accept(again)
    assert market.state.balance("buyer") == 2


def test_stale_client_time_is_refused(market: World) -> None:
    tx = market.sign_as("owner", transfer("buyer", quantity(1)))
    refuse_tx(
        market,
        tx,
        "stale_transaction",
        "more than 15 minutes from the registry's time",
        accepted_at=market.clock + FRESHNESS + timedelta(microseconds=1),
    )
    early = market.sign_as("owner", transfer("buyer", quantity(1)), at=market.clock + FRESHNESS + timedelta(seconds=1))
    refuse_tx(market, early, "stale_transaction", "sign it again with the current time")
    # Exactly at the edge of the window is still fresh.
    market.accept_at(tx, market.clock + FRESHNESS)
    assert market.state.balance("buyer") == 1


def test_acceptance_time_never_goes_backwards(market: World) -> None:
    accepted = market.state.last_time
    assert accepted is not None
    tx = market.sign_as("owner", transfer("buyer", quantity(1)), at=accepted)
    refuse_tx(
        market,
        tx,
        "time_regression",
        "is before the previous entry's",
        accepted_at=accepted - timedelta(microseconds=1),
    )
    market.accept_at(tx, accepted)  # the same instant is fine
    assert market.state.last_time == accepted


# --- methodologies and projects -------------------------------------------------------------------------


def test_methodology_publish_and_withdraw(world: World) -> None:
    refuse(
        world,
        "authority",
        MethodologyPublish(code="CDCER-PV", version="1.0", title="Again", sector="energy", document_sha256=SHA),
        "conflict",
        "already published",
    )
    world.submit("authority", MethodologyWithdraw(code="CDCER-PV", version="1.0", reason="superseded"))
    assert world.state.methodologies[("CDCER-PV", "1.0")].status == "withdrawn"
    refuse(world, "owner", ProjectSubmit(details=details()), "invalid_state", "CDCER-PV version 1.0 is withdrawn")
    refuse(
        world,
        "authority",
        MethodologyWithdraw(code="CDCER-PV", version="1.0", reason="again"),
        "invalid_state",
        "already withdrawn",
    )
    refuse(
        world,
        "authority",
        MethodologyWithdraw(code="CDCER-PV", version="9.9", reason="x"),
        "not_found",
        "no methodology CDCER-PV version 9.9",
    )


def test_project_is_submitted_validated_and_registered(world: World) -> None:
    out = world.submit("owner", ProjectSubmit(details=details()))
    pid = out.details["project_id"]
    assert pid == "P0001"
    proj = world.state.projects[pid]
    assert (proj.state, proj.owner, proj.validator) == ("submitted", "owner", None)
    refuse(
        world,
        "authority",
        ProjectDecide(project_id=pid, decision=ProjectDecision.REGISTER, reason="x"),
        "invalid_state",
        "P0001 is submitted; registration needs a positive validation",
    )
    world.submit(
        "verifier", ProjectValidate(project_id=pid, opinion=Opinion.POSITIVE, opinion_sha256=SHA, statement="ok")
    )
    proj = world.state.projects[pid]
    assert (proj.state, proj.validator, proj.opinion) == ("validated", "verifier", "positive")
    refuse(
        world,
        "verifier",
        ProjectValidate(project_id=pid, opinion=Opinion.POSITIVE, opinion_sha256=SHA, statement="twice"),
        "invalid_state",
        "only a submitted project is validated",
    )
    world.submit("authority", ProjectDecide(project_id=pid, decision=ProjectDecision.REGISTER, reason="ok"))
    assert world.state.projects[pid].state == "registered"
    refuse(
        world,
        "authority",
        ProjectDecide(project_id=pid, decision=ProjectDecision.REJECT, reason="late"),
        "invalid_state",
        "only a pending project is decided",
    )


def test_negative_opinion_cannot_be_registered_but_can_be_rejected(world: World) -> None:
    pid = str(world.submit("owner", ProjectSubmit(details=details())).details["project_id"])
    world.submit(
        "verifier", ProjectValidate(project_id=pid, opinion=Opinion.NEGATIVE, opinion_sha256=SHA, statement="no")
    )
    refuse(
        world,
        "authority",
        ProjectDecide(project_id=pid, decision=ProjectDecision.REGISTER, reason="x"),
        "invalid_state",
        "with a negative opinion",
    )
    world.submit("authority", ProjectDecide(project_id=pid, decision=ProjectDecision.REJECT, reason="baseline"))
    assert world.state.projects[pid].state == "rejected"
    # Rejected is final: no resubmission, no validation, no reports.
    refuse(
        world,
        "owner",
        ProjectResubmit(project_id=pid, details=details()),
        "invalid_state",
        "only changes_requested can be resubmitted",
    )
    refuse(
        world,
        "verifier",
        ProjectValidate(project_id=pid, opinion=Opinion.POSITIVE, opinion_sha256=SHA, statement="ok"),
        "invalid_state",
        "is rejected",
    )
    refuse(
        world,
        "owner",
        ReportSubmit(
            project_id=pid, period_start=date(2023, 1, 1), period_end=date(2023, 12, 31), claimed=5, verifier="verifier"
        ),
        "invalid_state",
        "reports need a registered project",
    )


def test_changes_requested_then_resubmitted(world: World) -> None:
    world.register("owner2", [Role.PROJECT_OWNER])
    pid = str(world.submit("owner", ProjectSubmit(details=details())).details["project_id"])
    world.submit(
        "verifier", ProjectValidate(project_id=pid, opinion=Opinion.POSITIVE, opinion_sha256=SHA, statement="ok")
    )
    world.submit("authority", ProjectDecide(project_id=pid, decision=ProjectDecision.REQUEST_CHANGES, reason="docs"))
    assert world.state.projects[pid].state == "changes_requested"
    refuse(
        world,
        "owner2",
        ProjectResubmit(project_id=pid, details=details()),
        "forbidden",
        "P0001 belongs to owner, not owner2",
    )
    world.submit("owner", ProjectResubmit(project_id=pid, details=details(title="Rooftop PV, Pidu (rev. 2)")))
    proj = world.state.projects[pid]
    assert (proj.state, proj.title, proj.validator, proj.opinion) == (
        "submitted",
        "Rooftop PV, Pidu (rev. 2)",
        None,
        None,
    )
    world.submit(
        "verifier", ProjectValidate(project_id=pid, opinion=Opinion.POSITIVE, opinion_sha256=SHA, statement="ok")
    )
    world.submit("authority", ProjectDecide(project_id=pid, decision=ProjectDecision.REGISTER, reason="ok"))
    assert world.state.projects[pid].state == "registered"


def test_verifier_may_not_validate_its_own_project(world: World) -> None:
    world.register("dual", [Role.VERIFIER, Role.PROJECT_OWNER])
    pid = str(world.submit("dual", ProjectSubmit(details=details())).details["project_id"])
    refuse(
        world,
        "dual",
        ProjectValidate(project_id=pid, opinion=Opinion.POSITIVE, opinion_sha256=SHA, statement="looks great"),
        "conflict_of_interest",
        "dual owns project P0001 and may not validate it",
    )


def test_owner_may_not_decide_on_its_own_project(world: World) -> None:
    world.register("chief", [Role.AUTHORITY, Role.PROJECT_OWNER])
    pid = str(world.submit("chief", ProjectSubmit(details=details())).details["project_id"])
    world.submit(
        "verifier", ProjectValidate(project_id=pid, opinion=Opinion.POSITIVE, opinion_sha256=SHA, statement="ok")
    )
    for decision in ProjectDecision:
        refuse(
            world,
            "chief",
            ProjectDecide(project_id=pid, decision=decision, reason="mine"),
            "conflict_of_interest",
            "chief owns project P0001 and may not decide on it",
        )
    world.submit("authority", ProjectDecide(project_id=pid, decision=ProjectDecision.REGISTER, reason="ok"))


def test_project_suspend_reinstate_close(market: World) -> None:
    refuse(
        market,
        "authority",
        ProjectReinstate(project_id="P0001", reason="x"),
        "invalid_state",
        "project.reinstate needs suspended",
    )
    market.submit("authority", ProjectSuspend(project_id="P0001", reason="audit"))
    assert market.state.projects["P0001"].state == "suspended"
    refuse(
        market,
        "owner",
        ReportSubmit(
            project_id="P0001",
            period_start=date(2024, 1, 1),
            period_end=date(2024, 12, 31),
            claimed=5,
            verifier="verifier",
        ),
        "invalid_state",
        "P0001 is suspended; reports need a registered project",
    )
    market.submit("authority", ProjectReinstate(project_id="P0001", reason="ok"))
    market.submit("authority", ProjectClose(project_id="P0001", reason="end of life"))
    assert market.state.projects["P0001"].state == "closed"
    refuse(
        market,
        "authority",
        ProjectSuspend(project_id="P0001", reason="x"),
        "invalid_state",
        "P0001 is closed; project.suspend needs registered",
    )
    # Units already issued stay valid and movable.
    assert market.transfer("owner", "buyer", 3).details["quantity"] == 3


def test_unknown_project_is_not_found(world: World) -> None:
    refuse(
        world,
        "verifier",
        ProjectValidate(project_id="P0042", opinion=Opinion.POSITIVE, opinion_sha256=SHA, statement="ok"),
        "not_found",
        "no project P0042",
    )


# --- monitoring reports and issuance -----------------------------------------------------------------


def report(year_from: date, year_to: date, claimed: int = 100, project: str = "P0001") -> ReportSubmit:
    return ReportSubmit(
        project_id=project, period_start=year_from, period_end=year_to, claimed=claimed, verifier="verifier"
    )


def test_monitoring_periods_never_overlap(market: World) -> None:
    # P0001 has an issued report for 2023.
    refuse(
        market,
        "owner",
        report(date(2023, 6, 1), date(2024, 5, 31)),
        "overlapping_period",
        r"2023-06-01\.\.2024-05-31 overlaps report MR0001 \(2023-01-01\.\.2023-12-31\)",
    )
    refuse(market, "owner", report(date(2023, 12, 31), date(2023, 12, 31)), "overlapping_period", "overlaps")
    refuse(market, "owner", report(date(2022, 1, 1), date(2023, 1, 1)), "overlapping_period", "overlaps")
    out = market.submit("owner", report(date(2024, 1, 1), date(2024, 6, 30)))
    assert out.details["report_id"] == "MR0002"
    # A pending (not yet verified) report blocks its period too...
    refuse(
        market, "owner", report(date(2024, 6, 30), date(2024, 7, 31)), "overlapping_period", "overlaps report MR0002"
    )
    # ...until it is rejected.
    market.submit("verifier", ReportReject(report_id="MR0002", reason="meter data missing"))
    market.submit("owner", report(date(2024, 1, 1), date(2024, 12, 31)))
    assert market.state.reports["MR0003"].state == "submitted"


def test_monitoring_period_lies_inside_the_crediting_period(market: World) -> None:
    for start, end in ((date(2021, 12, 31), date(2022, 6, 30)), (date(2031, 7, 1), date(2032, 1, 1))):
        refuse(
            market,
            "owner",
            report(start, end),
            "outside_crediting_period",
            f"{start}..{end} is outside the crediting period 2022-01-01..2031-12-31 of P0001",
        )
    market.submit("owner", report(date(2024, 1, 1), date(2024, 12, 31)))


def test_only_the_owner_submits_reports(market: World) -> None:
    market.register("owner2", [Role.PROJECT_OWNER])
    refuse(
        market,
        "owner2",
        report(date(2024, 1, 1), date(2024, 12, 31)),
        "forbidden",
        "P0001 belongs to owner, not owner2",
    )


def test_verified_never_exceeds_claimed(market: World) -> None:
    rid = str(market.submit("owner", report(date(2024, 1, 1), date(2024, 12, 31), claimed=500)).details["report_id"])
    refuse(
        market,
        "verifier",
        ReportVerify(report_id=rid, verified=501, opinion_sha256=SHA, statement="generous"),
        "verified_exceeds_claimed",
        "verified quantity 501 is more than the 500 claimed",
    )
    market.submit("verifier", ReportVerify(report_id=rid, verified=500, opinion_sha256=SHA, statement="ok"))
    rep = market.state.reports[rid]
    assert (rep.state, rep.verified, rep.verifier) == ("verified", 500, "verifier")
    refuse(
        market,
        "verifier",
        ReportVerify(report_id=rid, verified=400, opinion_sha256=SHA, statement="again"),
        "invalid_state",
        "only a submitted report is verified",
    )


def test_owner_may_not_verify_or_reject_its_own_report(world: World) -> None:
    world.register("dual", [Role.VERIFIER, Role.PROJECT_OWNER])
    pid = world.registered_project(owner="dual")
    rid = str(world.submit("dual", report(date(2023, 1, 1), date(2023, 12, 31), project=pid)).details["report_id"])
    refuse(
        world,
        "dual",
        ReportVerify(report_id=rid, verified=10, opinion_sha256=SHA, statement="ok"),
        "conflict_of_interest",
        "may not verify its report",
    )
    refuse(world, "dual", ReportReject(report_id=rid, reason="x"), "conflict_of_interest", "owns the project")


def test_only_a_verified_report_is_issued(market: World) -> None:
    rid = str(market.submit("owner", report(date(2024, 1, 1), date(2024, 12, 31), claimed=50)).details["report_id"])
    refuse(market, "authority", Issue(report_id=rid), "invalid_state", f"report {rid} is submitted; only a verified")
    market.submit("verifier", ReportVerify(report_id=rid, verified=40, opinion_sha256=SHA, statement="ok"))
    out = market.submit("authority", Issue(report_id=rid))
    assert out.details == {
        "batch_id": "P0001-2024-001",
        "quantity": 40,
        "holder": "owner",
        "blocks": ["CDCER-P0001-2024-001-000001-000040"],
    }
    assert market.state.reports[rid].state == "issued"
    refuse(market, "authority", Issue(report_id=rid), "invalid_state", "is issued; only a verified report is issued")
    refuse(market, "verifier", ReportReject(report_id=rid, reason="late"), "invalid_state", "can no longer be rejected")
    refuse(market, "authority", Issue(report_id="MR0099"), "not_found", "no monitoring report MR0099")


def test_a_rejected_report_is_never_issued(market: World) -> None:
    rid = str(market.submit("owner", report(date(2024, 1, 1), date(2024, 12, 31), claimed=50)).details["report_id"])
    market.submit("verifier", ReportVerify(report_id=rid, verified=40, opinion_sha256=SHA, statement="ok"))
    market.submit("authority", ReportReject(report_id=rid, reason="double counting"))
    refuse(market, "authority", Issue(report_id=rid), "invalid_state", "is rejected")


def test_batch_ids_and_serials(world: World) -> None:
    p1 = world.registered_project()
    p2 = world.registered_project()
    assert (p1, p2) == ("P0001", "P0002")
    h1 = world.issued_period(p1, date(2023, 1, 1), date(2023, 6, 30), 500)
    h2 = world.issued_period(p1, date(2023, 7, 1), date(2023, 12, 31), 300)
    y24 = world.issued_period(p1, date(2024, 1, 1), date(2024, 12, 31), 7)
    other = world.issued_period(p2, date(2023, 1, 1), date(2023, 12, 31), 20)
    assert (h1, h2, y24, other) == ("P0001-2023-001", "P0001-2023-002", "P0001-2024-001", "P0002-2023-001")
    st = world.state
    batch = st.batches[h2]
    assert (batch.project_id, batch.vintage, batch.number, batch.quantity, batch.owner) == (p1, 2023, 2, 300, "owner")
    assert [b.sequence for b in (st.batches[h1], st.batches[h2], st.batches[y24], st.batches[other])] == [1, 2, 3, 4]
    for bid, n in ((h1, 500), (h2, 300), (y24, 7), (other, 20)):
        assert st.blocks[bid] == [Block(bid, 1, n, "held", "owner", None, st.batches[bid].issued_at)]
    assert world.holdings("owner")[0] == "CDCER-P0001-2023-001-000001-000500"
    assert st.balance("owner") == 827


def test_a_frozen_project_is_not_issued(market: World) -> None:
    rid = str(market.submit("owner", report(date(2024, 1, 1), date(2024, 12, 31), claimed=50)).details["report_id"])
    market.submit("verifier", ReportVerify(report_id=rid, verified=40, opinion_sha256=SHA, statement="ok"))
    market.freeze(FreezeTarget.PROJECT, "P0001")
    refuse(market, "authority", Issue(report_id=rid), "frozen", "project P0001 is frozen")
    market.unfreeze(FreezeTarget.PROJECT, "P0001")
    market.submit("authority", Issue(report_id=rid))


# --- transfers -----------------------------------------------------------------------------------------


def test_transfer_by_quantity_takes_the_oldest_vintage_first(world: World) -> None:
    pid = world.registered_project()
    newer = world.issued_period(pid, date(2024, 1, 1), date(2024, 12, 31), 100)  # issued first
    older = world.issued_period(pid, date(2023, 1, 1), date(2023, 12, 31), 100)
    out = world.transfer("owner", "buyer", 150)
    assert out.details["blocks"] == [block(older, 1, 100), block(newer, 1, 50)]
    assert world.holdings("buyer") == [block(older, 1, 100), block(newer, 1, 50)]
    assert world.holdings("owner") == [block(newer, 51, 100)]


def test_transfer_by_quantity_takes_the_earlier_batch_first(world: World) -> None:
    p1, p2 = world.registered_project(), world.registered_project()
    # Same vintage: the batch issued first goes first, whatever the project id.
    first = world.issued_period(p2, date(2023, 1, 1), date(2023, 12, 31), 10)
    second = world.issued_period(p1, date(2023, 1, 1), date(2023, 6, 30), 10)
    third = world.issued_period(p1, date(2023, 7, 1), date(2023, 12, 31), 10)
    out = world.transfer("owner", "buyer", 25)
    assert out.details["blocks"] == [block(first, 1, 10), block(second, 1, 10), block(third, 1, 5)]
    # And inside a block, the lowest serials first.
    out = world.transfer("owner", "buyer", 2)
    assert out.details["blocks"] == [block(third, 6, 7)]


def test_transfer_explicit_parts_of_one_block(market: World) -> None:
    out = market.transfer_blocks("owner", "buyer", [block(B23, 50, 59), block(B23, 10, 19)])
    assert out.details["quantity"] == 20
    assert sorted(out.details["blocks"]) == [block(B23, 10, 19), block(B23, 50, 59)]
    assert market.holdings("buyer") == [block(B23, 10, 19), block(B23, 50, 59)]
    assert market.holdings("owner") == [block(B23, 1, 9), block(B23, 20, 49), block(B23, 60, 1000)]
    # The blocks of the batch exactly cover 1..1000.
    row = market.state.blocks[B23]
    assert [(b.first, b.last) for b in row] == [(1, 9), (10, 19), (20, 49), (50, 59), (60, 1000)]


def test_transfer_explicit_parts_of_different_blocks(market: World) -> None:
    other = market.issued_batch("P0001", 2024, 100, 100)
    out = market.transfer_blocks("owner", "buyer", [block(other, 1, 5), block(B23, 996, 1000)])
    assert out.details["quantity"] == 10
    assert market.holdings("buyer") == [block(B23, 996, 1000), block(other, 1, 5)]
    assert market.state.balance("owner") == 1090


def test_transfer_more_than_held_is_refused(market: World) -> None:
    refuse(
        market,
        "owner",
        transfer("buyer", quantity(1001)),
        "insufficient_units",
        "owner holds 1000 units, 1001 requested",
    )
    refuse(market, "buyer", transfer("owner", quantity(1)), "insufficient_units", "buyer holds 0 units, 1 requested")


def test_moving_another_holders_units_is_refused(market: World) -> None:
    market.transfer("owner", "organiser", 10)
    refuse(
        market,
        "buyer",
        transfer("organiser", blocks(block(B23, 20, 30))),
        "not_held",
        "are held by owner, not buyer",
    )
    refuse(market, "buyer", retire(blocks(block(B23, 1, 1))), "not_held", "held by organiser, not buyer")
    # A range spanning two holders' blocks lies in no single block.
    refuse(market, "owner", transfer("buyer", blocks(block(B23, 5, 15))), "not_held", "do not lie in one block")
    # Serials that were never issued.
    refuse(market, "owner", transfer("buyer", blocks(block(B23, 990, 1001))), "not_held", "do not lie in one block")
    refuse(market, "owner", transfer("buyer", blocks(block("P0009-2023-001", 1, 1))), "not_held", "do not lie")


def test_overlapping_explicit_blocks_are_refused(market: World) -> None:
    refuse(
        market,
        "owner",
        transfer("buyer", blocks(block(B23, 1, 10), block(B23, 10, 20))),
        "invalid_block",
        "overlaps another block of the same request",
    )
    refuse(
        market,
        "owner",
        transfer("buyer", blocks(block(B23, 1, 10), block(B23, 1, 10))),
        "invalid_block",
        "overlaps",
    )


def test_malformed_block_is_refused(market: World) -> None:
    refuse(market, "owner", transfer("buyer", blocks("CDCER-P0001-2023-001-1-10")), "invalid_block", "expected CDCER-")
    refuse(
        market,
        "owner",
        transfer("buyer", blocks("CDCER-P0001-2023-001-000010-000001")),
        "invalid_block",
        "need 1 <= first <= last",
    )


def test_transfer_recipient_rules(market: World) -> None:
    refuse(market, "owner", transfer("owner", quantity(1)), "invalid_transfer", "another account than the sender's")
    refuse(market, "owner", transfer("nobody", quantity(1)), "not_found", "no account 'nobody'")
    refuse(market, "owner", transfer("verifier", quantity(1)), "invalid_recipient", "verifier cannot receive units")


# --- retirement and cancellation -------------------------------------------------------------------------


def test_retirement_records_the_purpose(market: World) -> None:
    out = market.retire("owner", quantity(30), purpose=RetirementPurpose.ORGANISATION, year=2024)
    rid = out.details["retirement_id"]
    assert (rid, out.details["blocks"]) == ("RT000001", [block(B23, 1, 30)])
    rec = market.state.retirements[rid]
    assert (rec.holder, rec.quantity, rec.purpose, rec.year, rec.event_id, rec.claim_id) == (
        "owner",
        30,
        "organisation",
        2024,
        None,
        None,
    )
    assert market.state.blocks[B23][0] == Block(B23, 1, 30, "retired", "owner", "RT000001", rec.entry)
    for purpose in (RetirementPurpose.INDIVIDUAL, RetirementPurpose.VOLUNTARY):
        assert market.retire("owner", quantity(1), purpose=purpose).details["quantity"] == 1
    assert market.state.balance("owner") == 968


@pytest.mark.parametrize(
    ("purpose", "extra", "message"),
    [
        (RetirementPurpose.EVENT, {}, "event_id is required for purpose 'event'"),
        (RetirementPurpose.ORGANISATION, {}, "year is required for purpose 'organisation'"),
        (RetirementPurpose.INDIVIDUAL, {"year": 2024}, "year is required for purpose 'organisation' and only for it"),
        (RetirementPurpose.VOLUNTARY, {"event_id": "E0001"}, "event_id is required .* and only for it"),
    ],
)
def test_retirement_purpose_needs_its_fields(
    purpose: RetirementPurpose, extra: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        retire(quantity(1), purpose, **extra)


def test_retired_units_never_move_again(market: World) -> None:
    market.retire("owner", blocks(block(B23, 1, 10)))
    refuse(market, "owner", retire(blocks(block(B23, 1, 10))), "already_retired", "serials .* are already retired")
    refuse(market, "owner", retire(blocks(block(B23, 5, 5))), "already_retired", "already retired")
    refuse(market, "owner", transfer("buyer", blocks(block(B23, 1, 1))), "already_retired", "already retired")
    refuse(market, "authority", cancel("owner", blocks(block(B23, 2, 3))), "already_retired", "already retired")
    # By quantity, retired units are simply not counted as held.
    refuse(market, "owner", retire(quantity(991)), "insufficient_units", "owner holds 990 units, 991 requested")
    assert market.transfer("owner", "buyer", 5).details["blocks"] == [block(B23, 11, 15)]


def test_cancellation_is_distinct_from_retirement(market: World) -> None:
    out = market.submit("authority", cancel("owner", blocks(block(B23, 101, 200))))
    cid = out.details["cancellation_id"]
    assert (cid, out.details["quantity"], out.details["blocks"]) == ("CX000001", 100, [block(B23, 101, 200)])
    st = market.state
    rec = st.cancellations[cid]
    assert (rec.holder, rec.quantity, rec.reason_code) == ("owner", 100, "invalidation")
    assert st.retirements == {}
    assert [b for b in st.blocks[B23] if b.first == 101] == [Block(B23, 101, 200, "cancelled", "owner", cid, rec.entry)]
    assert st.balance("owner") == 900
    refuse(market, "owner", retire(blocks(block(B23, 150, 150))), "already_cancelled", "are already cancelled")
    refuse(market, "authority", cancel("owner", blocks(block(B23, 101, 101))), "already_cancelled", "already cancelled")
    refuse(market, "authority", cancel("owner", quantity(901)), "insufficient_units", "holds 900 units")
    refuse(market, "authority", cancel("ghost", quantity(1)), "not_found", "no participant 'ghost'")
    # A retirement afterwards gets its own id space and never lists cancelled serials.
    out = market.retire("owner", quantity(150))
    assert out.details["blocks"] == [block(B23, 1, 100), block(B23, 201, 250)]
    assert list(st.cancellations) == [cid]
    assert list(st.retirements) == ["RT000001"]


def test_cancellation_by_quantity_takes_the_oldest_first(market: World) -> None:
    market.transfer("owner", "buyer", 100)
    out = market.submit("authority", cancel("buyer", quantity(40)))
    assert out.details["blocks"] == [block(B23, 1, 40)]
    assert market.state.balance("buyer") == 60


# --- freezes ----------------------------------------------------------------------------------------------


def test_frozen_account_moves_nothing_but_can_be_cancelled(market: World) -> None:
    market.freeze(FreezeTarget.ACCOUNT, "owner")
    assert market.state.participants["owner"].frozen
    refuse(market, "owner", transfer("buyer", quantity(1)), "frozen", "account owner is frozen and can move nothing")
    refuse(market, "owner", retire(blocks(block(B23, 1, 1))), "frozen", "account owner is frozen")
    refuse(
        market,
        "authority",
        Freeze(target=FreezeTarget.ACCOUNT, target_id="owner", reason="x"),
        "invalid_state",
        "account owner is already frozen",
    )
    # The authority can still correct it, and others can still pay it.
    assert market.cancel("owner", quantity(10)).details["quantity"] == 10
    market.unfreeze(FreezeTarget.ACCOUNT, "owner")
    refuse(
        market,
        "authority",
        Unfreeze(target=FreezeTarget.ACCOUNT, target_id="owner", reason="x"),
        "invalid_state",
        "account owner is not frozen",
    )
    assert market.transfer("owner", "buyer", 5).details["blocks"] == [block(B23, 11, 15)]


def test_frozen_account_can_still_receive(market: World) -> None:
    market.freeze(FreezeTarget.ACCOUNT, "buyer")
    market.transfer("owner", "buyer", 5)
    assert market.state.balance("buyer") == 5


def test_frozen_project_units_move_nowhere(market: World) -> None:
    other = market.registered_project()
    b2 = market.issued_batch(other, 2024, 50, 50)
    market.transfer_blocks("owner", "buyer", [block(B23, 1, 100), block(b2, 1, 10)])
    market.freeze(FreezeTarget.PROJECT, "P0001")
    assert market.state.projects["P0001"].frozen
    refuse(
        market, "buyer", transfer("organiser", quantity(1)), "frozen", "project P0001 is frozen; its units cannot move"
    )
    refuse(market, "buyer", retire(blocks(block(B23, 1, 1))), "frozen", "project P0001 is frozen")
    refuse(market, "owner", transfer("organiser", quantity(901)), "frozen", "project P0001 is frozen")
    # Units of another project still move, named explicitly.
    market.transfer_blocks("buyer", "organiser", [block(b2, 1, 10)])
    # The authority's cancellation still works on frozen units.
    assert market.cancel("buyer", blocks(block(B23, 1, 10))).details["quantity"] == 10
    refuse(
        market,
        "authority",
        Freeze(target=FreezeTarget.PROJECT, target_id="P0001", reason="x"),
        "invalid_state",
        "project P0001 is already frozen",
    )
    refuse(
        market,
        "authority",
        Freeze(target=FreezeTarget.PROJECT, target_id="P0404", reason="x"),
        "not_found",
        "no project P0404",
    )
    market.unfreeze(FreezeTarget.PROJECT, "P0001")
    assert market.transfer("buyer", "organiser", 90).details["blocks"] == [block(B23, 11, 100)]


# --- events and claims -----------------------------------------------------------------------------------


@pytest.fixture
def stocked(market: World) -> World:
    """The market, with 300 units in the organiser's account."""
    market.transfer("owner", "organiser", 300)
    return market


def test_final_footprint_only_after_the_event_ends(stocked: World) -> None:
    eid, end = register_event(stocked, days=2)
    planned = EventFootprint(
        event_id=eid,
        stage=FootprintStage.PLANNED,
        sources={FootprintSource.VENUE_ENERGY: 5000, FootprintSource.ATTENDEE_TRANSPORT: 4000},
    )
    out = stocked.submit("organiser", planned)
    assert out.details == {"event_id": eid, "stage": "planned", "total_kg": 9000}
    refuse(
        stocked, "organiser", final_footprint(eid, 9600), "too_early", f"ends {end}; the final footprint comes after it"
    )
    stocked.advance(timedelta(days=3))
    stocked.submit("organiser", final_footprint(eid, 9600))
    event = stocked.state.events[eid]
    assert event.final_footprint_kg == 9600
    assert event.planned_footprint == (("attendee_transport", 4000), ("venue_energy", 5000))


def test_only_the_organiser_declares_and_claims(stocked: World) -> None:
    stocked.register("rival", [Role.EVENT_ORGANISER])
    eid, _ = register_event(stocked)
    stocked.advance(timedelta(days=2))
    refuse(
        stocked, "rival", final_footprint(eid, 100), "forbidden", f"event {eid} is organised by organiser, not rival"
    )
    stocked.submit("organiser", final_footprint(eid, 100))
    stocked.retire("organiser", quantity(1), purpose=RetirementPurpose.EVENT, event_id=eid)
    refuse(stocked, "rival", stocked.claim_issue(eid), "forbidden", "is organised by organiser")
    refuse(stocked, "organiser", stocked.claim_issue("E0404"), "not_found", "no event E0404")


def test_claim_needs_a_final_footprint(stocked: World) -> None:
    eid, _ = register_event(stocked)
    stocked.retire("organiser", quantity(10), purpose=RetirementPurpose.EVENT, event_id=eid)
    refuse(stocked, "organiser", stocked.claim_issue(eid), "no_final_footprint", "has no final footprint declared")


def test_claim_without_coverage_is_refused_then_covered_exactly(stocked: World) -> None:
    eid, _ = register_event(stocked)
    stocked.advance(timedelta(days=2))
    stocked.submit("organiser", final_footprint(eid, 9600))
    stocked.retire("organiser", quantity(9), purpose=RetirementPurpose.EVENT, event_id=eid)
    refuse(
        stocked,
        "organiser",
        stocked.claim_issue(eid),
        "insufficient_coverage",
        "final footprint of 9600 kgCO2e, which needs 10 retired units; 9 are retired for it",
    )
    # Units retired for another purpose never count.
    stocked.retire("organiser", quantity(5), purpose=RetirementPurpose.VOLUNTARY)
    refuse(stocked, "organiser", stocked.claim_issue(eid), "insufficient_coverage", "9 are retired")
    stocked.retire("organiser", quantity(1), purpose=RetirementPurpose.EVENT, event_id=eid)
    out = stocked.submit("organiser", stocked.claim_issue(eid))
    cid = out.details["claim_id"]
    assert out.details["units"] == 10
    assert out.details["blocks"] == [block(B23, 1, 9), block(B23, 15, 15)]
    st = stocked.state
    claim = st.claims[cid]
    assert (claim.event_id, claim.footprint_kg, claim.units, claim.retirements) == (
        eid,
        9600,
        10,
        ("RT000001", "RT000003"),
    )
    assert st.events[eid].claim_id == cid
    assert st.events[eid].retired_units == 10
    assert [r.claim_id for r in st.retirements.values()] == [cid, None, cid]


@pytest.mark.parametrize(("kg", "units"), [(9600, 10), (10000, 10), (1, 1)])
def test_claim_covering_exactly(stocked: World, kg: int, units: int) -> None:
    eid, _ = register_event(stocked)
    stocked.advance(timedelta(days=2))
    stocked.submit("organiser", final_footprint(eid, kg))
    stocked.retire("organiser", quantity(units), purpose=RetirementPurpose.EVENT, event_id=eid)
    assert stocked.submit("organiser", stocked.claim_issue(eid)).details["units"] == units


def test_claim_one_kilogram_short_is_refused(stocked: World) -> None:
    eid, _ = register_event(stocked)
    stocked.advance(timedelta(days=2))
    stocked.submit("organiser", final_footprint(eid, 10001))
    stocked.retire("organiser", quantity(10), purpose=RetirementPurpose.EVENT, event_id=eid)
    refuse(stocked, "organiser", stocked.claim_issue(eid), "insufficient_coverage", "needs 11 retired units")


def test_the_scenario_claim(market: World) -> None:
    market.transfer("owner", "organiser", 300)
    story = market.event_with_claim(units=10, footprint_kg=9600)
    assert story["claim"]["units"] == 10


def test_second_claim_for_an_event_is_refused(stocked: World) -> None:
    story = stocked.event_with_claim()
    eid = story["event_id"]
    refuse(stocked, "organiser", stocked.claim_issue(eid), "conflict", f"event {eid} already has claim CN0001")
    refuse(
        stocked,
        "organiser",
        retire(quantity(1), RetirementPurpose.EVENT, event_id=eid),
        "invalid_state",
        "already has claim CN0001; it is closed",
    )
    refuse(stocked, "organiser", final_footprint(eid, 1), "invalid_state", "its footprint is final")


def test_retirement_for_an_event_closes_twelve_months_after_it_ends(stocked: World) -> None:
    eid, end = register_event(stocked)
    deadline = add_months(end, CLAIM_WINDOW_MONTHS)
    assert deadline == date(end.year + 1, end.month, end.day)
    stocked.advance(timedelta(days=2))
    stocked.submit("organiser", final_footprint(eid, 2000))
    stocked.retire("organiser", quantity(1), purpose=RetirementPurpose.EVENT, event_id=eid)
    # On the last day of the window a retirement is still accepted...
    stocked.clock = datetime.combine(deadline, stocked.clock.timetz())
    stocked.retire("organiser", quantity(1), purpose=RetirementPurpose.EVENT, event_id=eid)
    # ...and the next day it is refused, and so is the claim.
    stocked.advance(timedelta(days=1))
    refuse(
        stocked,
        "organiser",
        retire(quantity(1), RetirementPurpose.EVENT, event_id=eid),
        "claim_window_closed",
        f"ended {end}; retirements for it were possible until {deadline}",
    )
    refuse(stocked, "organiser", stocked.claim_issue(eid), "claim_window_closed", f"claims closed on {deadline}")
    refuse(
        stocked,
        "organiser",
        retire(quantity(1), RetirementPurpose.EVENT, event_id="E0404"),
        "not_found",
        "no event E0404",
    )


def test_add_months_clamps_to_the_month_end() -> None:
    assert add_months(date(2024, 2, 29), 12) == date(2025, 2, 28)
    assert add_months(date(2025, 1, 31), 1) == date(2025, 2, 28)
    assert add_months(date(2025, 12, 15), 12) == date(2026, 12, 15)


# --- coalescing ---------------------------------------------------------------------------------------------


def test_coalescing_after_back_and_forth_transfers(market: World) -> None:
    for _ in range(20):
        market.transfer("owner", "buyer", 10)
        market.transfer("buyer", "owner", 10)
        assert_coalesced(market.state)
        assert len(market.state.blocks[B23]) <= 3
    assert market.state.blocks[B23] == [
        Block(B23, 1, 1000, "held", "owner", None, market.state.blocks[B23][0].updated_at)
    ]
    assert held_map(market.state)["owner"] == [(B23, 1, 1000)]


def test_coalescing_explicit_parts_coming_home(market: World) -> None:
    market.transfer_blocks("owner", "buyer", [block(B23, 10, 19), block(B23, 50, 59), block(B23, 20, 20)])
    assert market.holdings("buyer") == [block(B23, 10, 20), block(B23, 50, 59)]
    market.transfer_blocks("buyer", "owner", [block(B23, 10, 20)])
    assert market.holdings("owner") == [block(B23, 1, 49), block(B23, 60, 1000)]
    market.transfer_blocks("buyer", "owner", [block(B23, 55, 59), block(B23, 50, 54)])
    assert market.holdings("owner") == [block(B23, 1, 1000)]
    assert len(market.state.blocks[B23]) == 1


def test_coalescing_with_several_accounts(market: World) -> None:
    # Owner -> buyer -> organiser -> owner in interleaved pieces.
    for _ in range(5):
        market.transfer("owner", "buyer", 7)
        market.transfer("buyer", "organiser", 3)
        market.transfer("organiser", "owner", 2)
        assert_coalesced(market.state)
    market.transfer("buyer", "owner", market.state.balance("buyer"))
    market.transfer("organiser", "owner", market.state.balance("organiser"))
    assert market.holdings("owner") == [block(B23, 1, 1000)]


def test_coalescing_never_merges_across_retired_units(market: World) -> None:
    market.transfer("owner", "buyer", 20)
    market.retire("buyer", blocks(block(B23, 10, 10)))
    market.transfer("buyer", "owner", 19)
    assert market.holdings("owner") == [block(B23, 1, 9), block(B23, 11, 1000)]
    assert_coalesced(market.state)


def test_the_full_story_leaves_consistent_indexes() -> None:
    st = full_story().state
    assert held_map(st) == {
        "organiser": [("P0001-2023-001", 11, 300)],
        "owner": [("P0001-2023-001", 301, 1150)],
    }
    assert st.reports_by_project == {"P0001": ["MR0001"]}
    assert st.lookup("unit_blocks", ("P0001-2023-001", 11)) == st.blocks["P0001-2023-001"][1]
    assert st.lookup("unit_blocks", ("P0001-2023-001", 12)) is None
    assert st.lookup("claims", ("CN0001",)) is not None


def test_the_snapshot_sees_an_applied_transaction(market: World) -> None:
    before = market.snapshot()
    market.transfer("owner", "buyer", 1)
    assert market.snapshot() != before


# --- claims nobody can poison or forge (issue 14) -------------------------------------------------------


def test_only_the_organiser_retires_units_for_its_event(stocked: World) -> None:
    stocked.transfer("owner", "buyer", 20)
    eid, _ = register_event(stocked)
    refuse(
        stocked,
        "buyer",
        retire(quantity(5), RetirementPurpose.EVENT, event_id=eid),
        "forbidden",
        f"event {eid} is organised by organiser; only its organiser retires units for it",
    )
    stocked.advance(timedelta(days=2))
    stocked.submit("organiser", final_footprint(eid, 2000))
    stocked.retire("organiser", quantity(2), purpose=RetirementPurpose.EVENT, event_id=eid)
    out = stocked.submit("organiser", stocked.claim_issue(eid))
    claim = stocked.state.claims[str(out.details["claim_id"])]
    assert {stocked.state.retirements[r].holder for r in claim.retirements} == {"organiser"}


def test_a_final_footprint_of_zero_is_refused(stocked: World) -> None:
    eid, _ = register_event(stocked)
    stocked.advance(timedelta(days=2))
    refuse(stocked, "organiser", final_footprint(eid, 0), "empty_footprint", "a final footprint of 0 kgCO2e")
    refuse(stocked, "organiser", stocked.claim_issue(eid), "no_final_footprint", "has no final footprint")


def test_a_claim_names_the_entry_that_registered_its_event(stocked: World) -> None:
    first, _ = register_event(stocked)
    other, _ = register_event(stocked)
    stocked.advance(timedelta(days=2))
    stocked.submit("organiser", final_footprint(first, 1000))
    stocked.retire("organiser", quantity(1), purpose=RetirementPurpose.EVENT, event_id=first)
    registered = stocked.state.events[first].registered_at
    for wrong in (stocked.state.events[other].registered_at, registered + 1, 0):
        refuse(
            stocked,
            "organiser",
            ClaimIssue(event_id=first, event_entry=wrong),
            "event_mismatch",
            f"event {first} was registered at log entry {registered}, not at entry {wrong}",
        )
    stocked.submit("organiser", ClaimIssue(event_id=first, event_entry=registered))


def test_only_the_engaged_verifier_verifies_or_rejects_a_report(market: World) -> None:
    market.register("verifier2", [Role.VERIFIER])
    rid = str(market.submit("owner", report(date(2024, 1, 1), date(2024, 12, 31))).details["report_id"])
    assert market.state.reports[rid].verifier == "verifier"
    verify = ReportVerify(report_id=rid, verified=10, opinion_sha256=SHA, statement="ok")
    refuse(market, "verifier2", verify, "not_engaged", f"report {rid} engaged verifier to verify it; verifier2 may not")
    refuse(market, "verifier2", ReportReject(report_id=rid, reason="x"), "not_engaged", "verifier2 may not reject")
    market.submit("verifier", verify)
    # Once verified, another verifier still cannot reject it; an authority can.
    refuse(market, "verifier2", ReportReject(report_id=rid, reason="x"), "not_engaged", "may not reject")
    market.submit("authority", ReportReject(report_id=rid, reason="evidence withdrawn"))
    assert market.state.reports[rid].state == "rejected"


@pytest.mark.parametrize(
    ("verifier", "code", "match"),
    [
        ("owner", "conflict_of_interest", "owner owns project P0001 and may not verify its reports"),
        ("buyer", "invalid_verifier", "buyer cannot verify reports"),
        ("nobody", "not_found", "no participant 'nobody' is registered"),
    ],
)
def test_a_report_engages_an_active_verifier_other_than_its_owner(
    market: World, verifier: str, code: str, match: str
) -> None:
    payload = ReportSubmit(
        project_id="P0001", period_start=date(2024, 1, 1), period_end=date(2024, 12, 31), claimed=5, verifier=verifier
    )
    refuse(market, "owner", payload, code, match)


def test_a_dual_role_owner_cannot_engage_itself(world: World) -> None:
    world.register("dual", [Role.VERIFIER, Role.PROJECT_OWNER])
    pid = world.registered_project(owner="dual")
    payload = ReportSubmit(
        project_id=pid, period_start=date(2023, 1, 1), period_end=date(2023, 12, 31), claimed=5, verifier="dual"
    )
    refuse(world, "dual", payload, "conflict_of_interest", "may not verify its reports")


def test_a_monitoring_period_must_have_ended(market: World) -> None:
    today = market.clock.date()
    for end in (today, today + timedelta(days=1), date(2030, 12, 31)):
        refuse(
            market,
            "owner",
            report(date(today.year, 1, 1), end),
            "period_not_ended",
            f"has not ended \\(the registry's date is {today} UTC\\)",
        )
    market.submit("owner", report(date(today.year, 1, 1), today - timedelta(days=1)))
